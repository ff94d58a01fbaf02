"""DCMTK's storescu, run through --scu-command, passes the library scenarios it can.

The others need what storescu does not do: re-associate after an abort, a drop, garbage
on the wire or its own timeout, decode JPEG 2000 / JPEG for an uncompressed-only PACS,
open parallel associations, or announce a 128 KiB PDU by default. Two of them are run to
show the judgement is not vacuous: DCMTK must fail them, for the reason stated.
"""

from __future__ import annotations

import shlex

import pytest

import scenarios
from tests.support.tools import dcmtk_tool

pytestmark = pytest.mark.interop

DCMTK_PASSES = [
    "busy-pacs-transient-reject",
    "called-ae-not-recognised",
    "calling-ae-not-recognised",
    "clean-accept",
    "duplicate-instances",
    "implicit-vr-only",
    "large-study",
    "out-of-resources-mid-study",
    "refuses-compressed-never-transcode",
    "slow-network",
    "small-max-pdu",
    "sop-class-refused",
    "warnings-on-some-stores",
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
