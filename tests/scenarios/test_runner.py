"""The runner judges what it observed: failing expectations, external senders, timeouts."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import scenarios
from scenarios.judge import EXTERNAL_SCU

BASE = """\
name: {name}
description: |
  A test scenario.
scp:
  ae_title: PACS
{scp}
files:
  - generate: {{count: 3, sop_class: CTImageStorage, seed: 9}}
expect:
{expect}
"""


def scenario(tmp_path: Path, *, scp: str = "", expect: str, name: str = "t") -> scenarios.Scenario:
    text = BASE.format(
        name=name, scp=textwrap.indent(scp, "  "), expect=textwrap.indent(expect, "  ")
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return scenarios.load(path)


def by_name(report: scenarios.ScenarioReport) -> dict[str, scenarios.ExpectationResult]:
    return {e.name: e for e in report.expectations}


def test_expectations_that_do_not_hold_are_reported_with_observed_values(tmp_path: Path) -> None:
    sc = scenario(
        tmp_path,
        scp="rules:\n  - {nth: 2, fail: OutOfResources}\n",
        expect="successful: 3\nfailed: 0\nevents: 'started, (sending, sent){3}, completed'\n"
        "scp:\n  stores: 3\n  status_counts: {Success: 3}\n",
    )
    report = scenarios.run(sc)
    assert not report.ok
    got = by_name(report)
    assert (got["successful"].expected, got["successful"].observed, got["successful"].ok) == (
        "3",
        "2",
        False,
    )
    assert (got["failed"].observed, got["failed"].ok) == ("1", False)
    assert got["events"].ok is False
    assert "error[0xA700]" in got["events"].observed
    assert got["scp.stores"].ok is True
    assert got["scp.status_counts"].ok is False
    assert "0xA700" in got["scp.status_counts"].observed
    text = report.describe()
    assert "successful: expected 3, observed 2" in text
    json.dumps(report.to_dict())  # JSON-able


def test_an_unexpected_exception_fails_the_scenario(tmp_path: Path) -> None:
    sc = scenario(
        tmp_path,
        scp="reject_associations:\n"
        "  - {result: permanent, source: service-user, reason: no-reason-given}\n",
        expect="total: 3\n",
    )
    report = scenarios.run(sc)
    raises = by_name(report)["raises"]
    assert (raises.expected, raises.ok) == ("none", False)
    assert raises.observed.startswith("AssociationRejected")
    assert by_name(report)["total"].ok is True


def test_rule_expect_counts_are_checked(tmp_path: Path) -> None:
    sc = scenario(
        tmp_path, scp="rules:\n  - {nth: 7, accept: true, expect: 1}\n", expect="successful: 3\n"
    )
    report = scenarios.run(sc)
    hits = by_name(report)["scp.rule_hits"]
    assert hits.ok is False and "expected 1 hit" in hits.observed
    # A fault the sender never reached is a robustness finding, not a violation.
    assert (hits.level, report.verdict) == ("recommended", scenarios.Verdict.NOT_ROBUST)


def test_external_sender_that_never_connects_fails(tmp_path: Path) -> None:
    sc = scenario(tmp_path, expect="successful: 3\nscp:\n  stores: 0\n")
    report = scenarios.run(sc, scu_command="true {host} {port} {files}")
    got = by_name(report)
    assert not report.ok
    assert (got["sender connected"].ok, got["sender connected"].observed) == (
        False,
        "0 association(s)",
    )
    # SCU-side facts are not silently passed: they are marked not applicable.
    assert (got["successful"].ok, got["successful"].observed) == (None, EXTERNAL_SCU)
    assert "raises" not in got  # nothing was expected about exceptions
    assert got["scp.stores"].ok is True


def test_external_sender_is_killed_after_the_timeout(tmp_path: Path) -> None:
    sc = scenario(tmp_path, expect="scp:\n  stores: 0\n")
    report = scenarios.run(sc, scu_command="sleep 60", timeout=0.5)
    assert not report.ok
    process = by_name(report)["sender process"]
    assert (process.ok, process.level) == (False, "required")
    assert process.observed == "still running at the time limit of 0.5 s (killed)"
    assert report.verdict is scenarios.Verdict.NON_CONFORMANT
    assert report.exit_status is None and report.duration_seconds < 10


def test_external_sender_judged_from_the_journal(tmp_path: Path) -> None:
    """Our own `scukit send`, run as an external program, is judged like any sender."""
    sc = scenario(
        tmp_path,
        scp="rules:\n  - {nth: 2, warn: ElementsDiscarded}\n",
        expect="warnings: 1\nscp:\n  stores: 3\n  statuses: [Success, ElementsDiscarded, Success]\n"
        "  associations: 1\n  ended: {released: 1}\n  violations: none\n",
    )
    command = (
        f"{shlex.quote(sys.executable)} -m scu.cli send {{addr}} {{files}} "
        "--calling-ae {calling_ae} --called-ae {called_ae}"
    )
    report = scenarios.run(sc, scu_command=command)
    assert report.ok, report.describe()
    got = by_name(report)
    assert got["warnings"].ok is None
    assert got["sender connected"].ok is True
    assert got["sender process"].ok is True
    assert report.exit_status == 0


def test_a_hanging_in_process_transfer_fails_after_the_timeout(tmp_path: Path) -> None:
    # The mock stalls far longer than the run may take and the SCU would wait 60 s.
    sc = scenario(tmp_path, scp="rules:\n  - {nth: 1, stall: 30}\n", expect="successful: 3\n")
    sc = sc.model_copy(update={"scu": sc.scu.model_copy(update={"dimse_timeout": 60.0})})
    report = scenarios.run(sc, timeout=0.5)
    assert not report.ok
    assert report.error == "the transfer did not finish within 0.5 s"
