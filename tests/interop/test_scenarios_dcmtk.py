"""DCMTK's storescu, run through --scu-command, passes the library scenarios it can.

The others need what storescu does not do: re-associate after an abort, a drop, garbage
on the wire or its own timeout, decode JPEG 2000 / JPEG for an uncompressed-only PACS,
open parallel associations, or announce a 128 KiB PDU by default. Two of them are run to
show the judgement is not vacuous: DCMTK must fail them, for the reason stated. Three
more are passed at the required level but not robustly: with -nh storescu goes on after a
refused store yet exits 0 (the matrix in test_conformance_matrix.py covers the rest).
"""

from __future__ import annotations

import shlex

import pytest

import scenarios
from scenarios import Verdict
from tests.support.tools import dcmtk_tool

pytestmark = pytest.mark.interop

DCMTK_PASSES = [
    "busy-pacs-transient-reject",
    "called-ae-not-recognised",
    "calling-ae-not-recognised",
    "clean-accept",
    "implicit-vr-only",
    "large-study",
    "refuses-compressed-never-transcode",
    "slow-network",
    "small-max-pdu",
    "warnings-on-some-stores",
]
# Files are refused (0x0111, 0xA700, no context for SC), storescu -nh goes on and exits 0.
DCMTK_EXITS_0_AFTER_REFUSALS = [
    "duplicate-instances",
    "out-of-resources-mid-study",
    "sop-class-refused",
]


def storescu_command() -> str:
    # -nh: go on after a failed store, as a sender checked before a rollout should.
    # TCP_NODELAY=1: Debian's DCMTK leaves Nagle on otherwise (see ANCHORS.md).
    return (
        f"TCP_NODELAY=1 {shlex.quote(dcmtk_tool('storescu'))} -nh "
        "-aet {calling_ae} -aec {called_ae} {host} {port} {files}"
    )


@pytest.mark.parametrize("name", DCMTK_PASSES)
def test_dcmtk_storescu_passes(name: str) -> None:
    report = scenarios.run(name, scu_command=storescu_command(), timeout=60)
    report.raise_for_failure()
    assert {e.name: e.ok for e in report.expectations}["sender connected"] is True


@pytest.mark.parametrize("name", DCMTK_EXITS_0_AFTER_REFUSALS)
def test_dcmtk_storescu_hides_refusals_in_its_exit_status(name: str) -> None:
    report = scenarios.run(name, scu_command=storescu_command(), timeout=60)
    assert report.verdict is Verdict.NOT_ROBUST, report.describe()
    assert [(e.level, e.name) for e in report.failures] == [("recommended", "sender.exit")]
    assert report.exit_status == 0


def test_dcmtk_storescu_does_not_resume_after_an_abort() -> None:
    report = scenarios.run("abort-before-response", scu_command=storescu_command(), timeout=60)
    failed = {e.name: e for e in report.failures}
    assert not report.ok
    # storescu stops at the abort: 4 stores on one association, never a second one.
    assert failed["scp.stores"].observed == "4"
    assert failed["scp.associations"].observed == "1"


def test_dcmtk_storescu_cannot_deliver_jpeg2000_to_an_explicit_only_pacs() -> None:
    report = scenarios.run(
        "explicit-only-jpeg2000-files", scu_command=storescu_command(), timeout=60
    )
    failed = {e.name: e for e in report.failures}
    assert failed["scp.stores"].observed == "0"
    assert "JPEG 2000" in report.output
