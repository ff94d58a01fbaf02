"""Five senders nobody here wrote, judged on a core set of library scenarios.

Each sender runs through ``--scu-command`` exactly as ``scukit conformance`` runs it (see
:mod:`tests.support.senders` for the command lines), against the in-process mock. The
verdict expected for each sender and scenario is written below, with the expectations
that fail ("level name"); every finding is explained where it is expected.

What the verdicts rest on:

- ``required``: the DICOM standard (the scenario cites the PS3.x section), plus the
  sender's process itself: death by a signal or running past the time limit always
  fails a run, whatever the journal shows.
- ``recommended``: robust practice the standard does not demand (re-associating after an
  A-ABORT, going on after a refused store, converting what the PACS refuses, an exit
  status that says whether every file was stored).
- A setting a command line cannot carry makes what depends on it not applicable:
  gdcmscu takes no DIMSE timeout, so dimse-stall judges it on the wire only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import scenarios
from scenarios import Verdict
from tests.support import senders
from tests.support.orthanc import run_orthanc
from tests.support.tools import dcmtk_tool, gdcmscu_binary, node_binary, npm_binary

pytestmark = pytest.mark.interop

C, NR, NC = Verdict.CONFORMANT, Verdict.NOT_ROBUST, Verdict.NON_CONFORMANT

# Recurring findings, named once.
NO_REASSOCIATION = {
    # The sender stops at the A-ABORT: the rest of the queue is never sent (recommended,
    # not required: PS3.7 A.6 only asks that the outstanding store fail).
    "recommended scp.stores",
    "recommended scp.status_counts",
    "recommended scp.associations",
    "recommended scp.ended",
}
SIGABRT = {
    # Debian's gdcmscu (GDCM 3.0) stores and releases, then dies at exit with SIGABRT
    # ("ProtocolStream as nullptr is invalid"; also against DCMTK storescp, even for
    # --echo). A process killed by a signal fails the run: required.
    "required sender process",
}
NO_CONVERSION = {
    # The compressed files are not decompressed for an uncompressed-only PACS; they fail
    # before sending (recommended: the standard does not require transcoding).
    "recommended scp.stores",
    "recommended scp.status_counts",
}

EXPECTED: dict[str, dict[str, tuple[Verdict, set[str]]]] = {
    "dcmtk-storescu": {
        "clean-accept": (C, set()),
        "warnings-on-some-stores": (C, set()),
        # With -nh storescu goes on after a refused store, then exits 0.
        "out-of-resources-mid-study": (NR, {"recommended sender.exit"}),
        # storescu does not re-associate after an A-ABORT (it exits 1: honest).
        "abort-before-response": (NR, NO_REASSOCIATION),
        # At its (whole-second) DIMSE timeout storescu neither aborts nor re-associates:
        # it sends the next stores on the same association while the stalled one is
        # still outstanding (no Asynchronous Operations Window was negotiated, PS3.7
        # D.3.3.3), mistakes the late responses for the later stores', then releases.
        "dimse-stall": (
            NC,
            {
                "required scp.violations",
                "recommended scp.associations",
                "recommended scp.ended",
            },
        ),
        "busy-pacs-transient-reject": (C, set()),
        "called-ae-not-recognised": (C, set()),
        # storescu proposes uncompressed syntaxes only and does not decompress.
        "refuses-compressed": (NR, NO_CONVERSION),
        "small-max-pdu": (C, set()),
        # The Secondary Capture files fail (no accepted context), yet storescu exits 0.
        "sop-class-refused": (NR, {"recommended sender.exit"}),
    },
    "pynetdicom-storescu": {
        "clean-accept": (C, set()),
        "warnings-on-some-stores": (C, set()),
        # The app logs the refusal and exits 0 whatever the statuses were.
        "out-of-resources-mid-study": (NR, {"recommended sender.exit"}),
        # No re-association after the A-ABORT, and exit status 0 again.
        "abort-before-response": (NR, NO_REASSOCIATION | {"recommended sender.exit"}),
        # At its DIMSE timeout the app aborts (as it should) but then stops: the last
        # three files are never sent, and it exits 0.
        "dimse-stall": (
            NR,
            {
                "recommended scp.stores",
                "recommended scp.associations",
                "recommended scp.ended",
                "recommended sender.exit",
            },
        ),
        "busy-pacs-transient-reject": (C, set()),
        "called-ae-not-recognised": (C, set()),
        # It converts only between uncompressed syntaxes.
        "refuses-compressed": (NR, NO_CONVERSION),
        "small-max-pdu": (C, set()),
        # The SC files fail (no accepted context); exit status 0.
        "sop-class-refused": (NR, {"recommended sender.exit"}),
    },
    "gdcmscu": {
        # SIGABRT at exit after every successful store; exit status 134, not 0.
        "clean-accept": (NC, SIGABRT | {"recommended sender.exit"}),
        "warnings-on-some-stores": (NC, SIGABRT | {"recommended sender.exit"}),
        "out-of-resources-mid-study": (NC, SIGABRT),
        # When the PACS aborts, gdcmscu exits 1 without the crash; no re-association.
        "abort-before-response": (NR, NO_REASSOCIATION),
        # gdcmscu takes no DIMSE timeout: the robustness groups are not applicable and
        # it waits the stall out; then the crash at exit.
        "dimse-stall": (NC, SIGABRT),
        "busy-pacs-transient-reject": (NC, SIGABRT),
        # A permanent rejection ends it with exit status 1, without the crash.
        "called-ae-not-recognised": (C, set()),
        # gdcmscu sends the data set on a presentation context the PACS refused
        # (unknown-context, PS3.8 7.1.1.13): a violation of the standard.
        "refuses-compressed": (
            NC,
            NO_CONVERSION | {"required scp.violations", "recommended scp.transfer_syntaxes"},
        ),
        "small-max-pdu": (NC, SIGABRT | {"recommended sender.exit"}),
        # Again a P-DATA on a refused context (the Secondary Capture one), which the
        # mock aborts; the MR files after it are never sent.
        "sop-class-refused": (NC, NO_CONVERSION | {"required scp.violations"}),
    },
    "dcmjs-dimse": {
        "clean-accept": (C, set()),
        "warnings-on-some-stores": (C, set()),
        # Our driver script goes on after a refusal and exits 1: conformant.
        "out-of-resources-mid-study": (C, set()),
        # dcmjs-dimse's Client does not re-associate after an A-ABORT.
        "abort-before-response": (NR, NO_REASSOCIATION),
        # At the PDU timeout the Client aborts (checked once a second), then drops the
        # requests left: no re-association.
        "dimse-stall": (
            NR,
            {"recommended scp.stores", "recommended scp.associations", "recommended scp.ended"},
        ),
        "busy-pacs-transient-reject": (C, set()),
        "called-ae-not-recognised": (C, set()),
        # With the codecs initialised and Explicit VR LE offered, it transcodes.
        "refuses-compressed": (C, set()),
        "small-max-pdu": (C, set()),
        "sop-class-refused": (C, set()),
    },
    "orthanc": {
        "clean-accept": (C, set()),
        "warnings-on-some-stores": (C, set()),
        # Orthanc's store job stops at the first refused instance (HTTP 500, exit 1):
        # the other four refusals the scenario sets up are never reached.
        "out-of-resources-mid-study": (
            NR,
            {
                "recommended scp.stores",
                "recommended scp.status_counts",
                "recommended scp.rule_hits",
            },
        ),
        # The job fails at the A-ABORT; Orthanc does not re-associate.
        "abort-before-response": (NR, NO_REASSOCIATION),
        # At its (whole-second) timeout Orthanc gives up: it sends an A-RELEASE-RQ with
        # the store still outstanding and closes the connection before the A-RELEASE-RP
        # can come, with no A-ABORT (a dropped connection); the job fails.
        "dimse-stall": (
            NC,
            {
                "required scp.violations",
                "recommended scp.stores",
                "recommended scp.associations",
                "recommended scp.ended",
            },
        ),
        "busy-pacs-transient-reject": (C, set()),
        "called-ae-not-recognised": (C, set()),
        # Orthanc transcodes (its DCMTK codecs) when the PACS refuses JPEG and RLE.
        "refuses-compressed": (C, set()),
        "small-max-pdu": (C, set()),
        # The job stops at the first Secondary Capture instance: the MR ones are lost.
        "sop-class-refused": (NR, NO_CONVERSION),
    },
}

CORE = list(EXPECTED["dcmtk-storescu"])


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scukit-tests"


@pytest.fixture(scope="session")
def dcmjs_modules() -> Path:
    """dcmjs-dimse installed with npm (once per machine; loud failure when npm fails)."""
    node_binary()
    npm_binary()
    try:
        return senders.install_dcmjs_dimse(_cache_dir())
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def orthanc_sender() -> Iterator[senders.Sender]:
    """An Orthanc of its own, used only as a sender (the PACS is the mock)."""
    with run_orthanc(aet="ORTHANC-SCU") as server:
        yield senders.orthanc_scu(server.url)


def _judge(sender: senders.Sender, name: str) -> None:
    verdict, failing = EXPECTED[sender.name][name]
    report = scenarios.run(name, scu_command=sender.command)
    found = {f"{e.level} {e.name}" for e in report.failures}
    assert (report.verdict, found) == (verdict, failing), report.describe()
    # The command line that ran, and which program it named, are in the report.
    assert report.program is not None and "not found" not in report.program
    if verdict is not NC:
        assert {e.name: e.ok for e in report.expectations}["sender process"] is True


def _params(sender: str) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.xdist_group(f"matrix-{sender}")) for n in CORE]


@pytest.mark.parametrize("name", _params("dcmtk"))
def test_dcmtk_storescu(name: str) -> None:
    dcmtk_tool("storescu")
    _judge(senders.dcmtk_storescu(), name)


@pytest.mark.parametrize("name", _params("pynetdicom"))
def test_pynetdicom_storescu(name: str) -> None:
    _judge(senders.pynetdicom_storescu(), name)


@pytest.mark.parametrize("name", _params("gdcmscu"))
def test_gdcmscu(name: str) -> None:
    gdcmscu_binary()
    _judge(senders.gdcmscu(), name)


@pytest.mark.parametrize("name", _params("dcmjs"))
def test_dcmjs_dimse(name: str, dcmjs_modules: Path) -> None:
    _judge(senders.dcmjs_dimse(dcmjs_modules), name)


@pytest.mark.parametrize("name", _params("orthanc"))
def test_orthanc_as_scu(name: str, orthanc_sender: senders.Sender) -> None:
    _judge(orthanc_sender, name)


def test_the_matrix_covers_every_sender_on_the_same_scenarios() -> None:
    assert set(EXPECTED) == {
        "dcmtk-storescu",
        "pynetdicom-storescu",
        "gdcmscu",
        "dcmjs-dimse",
        "orthanc",
    }
    for sender, table in EXPECTED.items():
        assert list(table) == CORE, sender
        for name in CORE:
            verdict, failing = table[name]
            # A verdict and its findings agree: no finding, conformant; required, not.
            assert (verdict is C) == (not failing), (sender, name)
            assert (verdict is NC) == any(f.startswith("required") for f in failing)
