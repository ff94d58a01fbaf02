"""External senders, as real processes: every setting reaches them, their process is
judged, and what they cannot be told is not applicable rather than failed.

The sender here is our own ``scukit send`` run as a program through ``--scu-command``
(with and without placeholders), and shell lines that kill themselves with a signal.
"""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest

import scenarios
from scenarios import Verdict
from scu.cli import main

SEND = f"{shlex.quote(sys.executable)} -m scu.cli send {{addr}}"
#: Our sender with every setting a placeholder can carry.
FULL = (
    f"{SEND} {{files}} --calling-ae {{calling_ae}} --called-ae {{called_ae}} "
    "--max-pdu {max_pdu} --connect-timeout {connect_timeout} --acse-timeout {acse_timeout} "
    "--dimse-timeout {dimse_timeout} --network-timeout {network_timeout} "
    "--concurrency {concurrency} {never_transcode:--never-transcode} {fail_fast:--fail-fast} "
    "{transfer_syntax:--transfer-syntax }"
)

ONE_REFUSAL = """\
name: one-refusal
description: |
  The 2nd of 3 stores is refused.
scp:
  ae_title: PACS
  rules:
    - {nth: 2, fail: OutOfResources, expect: 1}
files:
  - generate: {count: 3, sop_class: CTImageStorage, seed: 5}
expect:
  - level: required
    cite: PS3.8 9.3
    scp: {violations: none, stores: 3}
  - level: recommended
    why: a nonzero exit status when a file was not stored
    sender: {exit: nonzero}
"""


def by_name(report: scenarios.ScenarioReport) -> dict[str, scenarios.ExpectationResult]:
    return {e.name: e for e in report.expectations}


@pytest.fixture
def one_refusal(tmp_path: Path) -> Path:
    path = tmp_path / "one-refusal.yaml"
    path.write_text(ONE_REFUSAL, encoding="utf-8")
    return path


@pytest.mark.parametrize("entry", scenarios.pytest_params())
def test_our_sender_run_as_a_program_is_conformant_on_the_library(entry: Path) -> None:
    """The library's expectations, recommended ones included, can all be met from outside:
    our own command-line sender, told every setting, meets them (exit statuses too)."""
    report = scenarios.run(entry, scu_command=FULL)
    report.raise_for_failure()
    assert report.verdict is Verdict.CONFORMANT
    assert report.not_carried == []
    assert by_name(report)["sender process"].ok is True


def test_a_setting_the_command_does_not_carry_is_not_applicable() -> None:
    # dimse-stall's groups need scu.dimse_timeout, except the wire group (needs: []).
    report = scenarios.run("dimse-stall", scu_command=f"{SEND} {{files}}")
    assert report.not_carried == ["dimse_timeout"]
    na = [e for e in report.expectations if e.ok is None]
    assert {e.name for e in na} >= {"scp.stores", "scp.associations", "sender.exit"}
    reason = (
        "not applicable: the command line does not carry {dimse_timeout} (scu.dimse_timeout: 0.5)"
    )
    assert all(e.observed == reason for e in na if e.name.startswith(("scp.", "sender.")))
    assert by_name(report)["scp.violations"].ok is True  # judged all the same
    assert report.failures == [] and report.verdict is Verdict.CONFORMANT
    assert report.time_scale == 1.0


def test_a_whole_second_timeout_scales_the_stall_and_the_run_is_judged() -> None:
    report = scenarios.run(
        "dimse-stall", scu_command=f"{SEND} {{files}} --dimse-timeout {{dimse_timeout}}"
    )
    assert report.settings == {"dimse_timeout": "1"}
    assert report.time_scale == 2.0 and report.time_limit == 120.0
    assert (report.command or "").endswith("--dimse-timeout 1")
    report.raise_for_failure()
    # Judged, not skipped: the re-association after the (scaled) stall was observed.
    assert by_name(report)["scp.associations"].observed == "2"


def test_a_sender_killed_by_a_signal_fails_whatever_the_journal_says(one_refusal: Path) -> None:
    report = scenarios.run(one_refusal, scu_command=f"{SEND} {{files}}; kill -ABRT $$")
    process = by_name(report)["sender process"]
    assert (process.ok, process.level) == (False, "required")
    assert process.observed == "killed by SIGABRT (signal 6)"
    assert by_name(report)["scp.stores"].ok is True
    assert report.verdict is Verdict.NON_CONFORMANT


def test_a_signal_reported_by_the_shell_as_128_plus_n_is_a_signal(one_refusal: Path) -> None:
    abort = f"{shlex.quote(sys.executable)} -c 'import os; os.abort()'"
    report = scenarios.run(one_refusal, scu_command=f"{SEND} {{files}}; {abort}; exit $?")
    assert report.exit_status == 134
    assert report.signal == "SIGABRT (signal 6; the shell reported exit status 134)"
    assert report.verdict is Verdict.NON_CONFORMANT


def test_a_child_left_behind_is_stopped_with_the_sender(one_refusal: Path, tmp_path: Path) -> None:
    # The sender exits at once; a child it started (output detached) lives on.
    marker = tmp_path / "child-still-ran"
    late = f"(sleep 1; touch {shlex.quote(str(marker))}) >/dev/null 2>&1 &"
    report = scenarios.run(one_refusal, scu_command=late, timeout=30)
    assert report.exit_status == 0 and report.error is None
    time.sleep(2)
    assert not marker.exists(), "the sender's child outlived the run"


def test_the_exit_status_is_judged(one_refusal: Path) -> None:
    honest = scenarios.run(one_refusal, scu_command=f"{SEND} {{files}}")
    assert (honest.exit_status, honest.verdict) == (1, Verdict.CONFORMANT)
    quiet = scenarios.run(one_refusal, scu_command=f"{SEND} {{files}}; exit 0")
    exit_fact = by_name(quiet)["sender.exit"]
    assert (exit_fact.ok, exit_fact.level, exit_fact.observed) == (False, "recommended", "0")
    assert quiet.verdict is Verdict.NOT_ROBUST


def test_dir_holds_every_queued_file_in_queue_order() -> None:
    # duplicate-instances queues one instance three times: {dir} holds three files.
    report = scenarios.run("duplicate-instances", scu_command=f"{SEND} {{dir}}")
    report.raise_for_failure()
    assert by_name(report)["scp.stores"].observed == "5"


def test_program_and_output_are_shown(
    one_refusal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = f"{SEND} {{files}}"
    assert main(["scenario", "run", str(one_refusal), "--scu-command", command, "-v"]) == 0
    out = capsys.readouterr().out
    assert f"program: {sys.executable}" in out and "running module scu.cli" in out
    assert "sender output:" in out and "0xA700" in out
    assert main(["scenario", "run", str(one_refusal), "--scu-command", command, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)["scenarios"][0]
    assert payload["program"].startswith(sys.executable)
    assert "0xA700" in payload["output"] and payload["exit_status"] == 1
    levels = {(e["name"], e["level"]) for e in payload["expectations"]}
    assert ("scp.violations", "required") in levels and ("sender.exit", "recommended") in levels


def test_statuses_are_shown_compactly(tmp_path: Path) -> None:
    text = ONE_REFUSAL.replace("count: 3", "count: 40").replace(
        "scp: {violations: none, stores: 3}", "scp: {statuses: [Success]}"
    )
    path = tmp_path / "many.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    fact = by_name(scenarios.run(path))["scp.statuses"]
    assert fact.observed == "[0x0000 (success), 0xA700 (out-of-resources), 0x0000 x38]"
