"""MockScp against DCMTK's storescu/echoscu: what DCMTK reports must match the rules,
as it would against a real PACS."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mock_scp import MockScp
from tests.support.tools import dcmtk_env, dcmtk_tool

pytestmark = pytest.mark.interop


def _files(tmp_path: Path, h: Any, n: int, size: int = 256) -> list[Path]:
    out = []
    for i in range(n):
        ds = h.make_dataset(size=size)
        path = tmp_path / f"f{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def _run(
    tool: str, scp: MockScp, *args: str, files: list[Path] = (), called: str = "ANY-SCP"
) -> subprocess.CompletedProcess[str]:  # type: ignore[assignment]
    cmd = [
        dcmtk_tool(tool),
        "-v",
        "-aec",
        called,
        *args,
        "127.0.0.1",
        str(scp.port),
        *map(str, files),
    ]
    proc = subprocess.run(cmd, env=dcmtk_env(), capture_output=True, text=True, timeout=60)
    assert scp.wait_idle(10)
    return proc


def test_echoscu(scp: MockScp) -> None:
    proc = _run("echoscu", scp)
    assert proc.returncode == 0, proc.stderr
    assert "Received Echo Response (Success)" in proc.stdout + proc.stderr
    assert scp.associations[0].ended == "released"
    scp.check()


def test_storescu_statuses_match_the_rules(scp: MockScp, tmp_path: Path, h: Any) -> None:
    scp.on_store(nth=2).fail("out-of-resources", comment="disk full")
    scp.on_store(nth=3).warn()
    scp.on_store(nth=4).fail(0xA900)
    scp.on_store(nth=5).fail("cannot-understand")
    files = _files(tmp_path, h, 6)
    proc = _run("storescu", scp, "--no-halt", files=files)
    out = proc.stdout + proc.stderr
    responses = [
        line.split("Received Store Response ", 1)[1]
        for line in out.splitlines()
        if "Received Store Response" in line
    ]
    assert responses == [
        "(Success)",
        "(Refused: OutOfResources)",
        "(Warning: CoercionOfDataElements)",
        "(Error: DataSetDoesNotMatchSOPClass)",
        "(Error: CannotUnderstand)",
        "(Success)",
    ]
    assert [r.status for r in scp.received] == [0, 0xA700, 0xB000, 0xA900, 0xC000, 0]
    assert [r.message_id for r in scp.received] == [1, 2, 3, 4, 5, 6]
    scp.check()  # DCMTK is a well-behaved SCU


def test_storescu_halts_on_failure_by_default(scp: MockScp, tmp_path: Path, h: Any) -> None:
    scp.on_store(nth=1).fail("processing-failure")
    proc = _run("storescu", scp, files=_files(tmp_path, h, 3))
    assert proc.returncode != 0
    assert len(scp.received) == 1


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (
            {
                "result": "transient",
                "source": "provider-presentation",
                "reason": "temporary-congestion",
            },
            ["Rejected Transient", "Presentation Related", "Temporary Congestion"],
        ),
        (
            {
                "result": "permanent",
                "source": "service-user",
                "reason": "calling-ae-title-not-recognized",
            },
            ["Rejected Permanent", "Service User", "Calling AE Title Not Recognized"],
        ),
    ],
)
def test_rejects_seen_by_echoscu(scp: MockScp, kwargs: dict[str, Any], words: list[str]) -> None:
    scp.reject_associations(**kwargs)
    proc = _run("echoscu", scp)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Association Rejected" in out
    for w in words:
        assert w in out
    assert scp.associations[0].ended == "rejected"


def test_called_ae_title_required(scp_factory: Callable[..., MockScp]) -> None:
    scp = scp_factory("PACS", require_called_ae_title=True)
    proc = _run("echoscu", scp, called="WRONG")
    assert "Called AE Title Not Recognized" in proc.stdout + proc.stderr
    assert _run("echoscu", scp, called="PACS").returncode == 0


def test_abort_instead_of_response(scp: MockScp, tmp_path: Path, h: Any) -> None:
    scp.on_store(nth=2).abort()
    proc = _run("storescu", scp, files=_files(tmp_path, h, 3))
    out = proc.stdout + proc.stderr
    assert "Peer aborted Association" in out or "Peer Aborted Association" in out
    assert [r.status for r in scp.received] == [0, None]
    assert scp.associations[0].ended == "aborted"


def test_abort_during_dataset(scp: MockScp, tmp_path: Path, h: Any) -> None:
    scp.on_store(nth=1).abort(during_dataset=True)
    proc = _run("storescu", scp, files=_files(tmp_path, h, 1, size=2_000_000))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Store Failed" in out or "Store SCU Failed" in out
    [store] = scp.received
    assert not store.complete and store.action == "abort"


def test_stall_beyond_storescu_dimse_timeout(scp: MockScp, tmp_path: Path, h: Any) -> None:
    scp.on_store(nth=1).stall(1.5)
    proc = _run("storescu", scp, "-td", "1", files=_files(tmp_path, h, 1))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "timeout" in out.lower()
    assert scp.associations[0].ended == "aborted"
    assert "from the SCU" in (scp.associations[0].end_detail or "")


def test_stall_within_storescu_dimse_timeout(scp: MockScp, tmp_path: Path, h: Any) -> None:
    scp.on_store(nth=1).stall(0.3)
    scp.on_store(nth=1).warn("elements-discarded")
    proc = _run("storescu", scp, "-td", "5", files=_files(tmp_path, h, 1))
    assert proc.returncode == 0, proc.stderr
    assert "Warning: ElementsDiscarded" in proc.stdout + proc.stderr


@pytest.mark.parametrize("rst", [False, True])
def test_disconnect(scp: MockScp, tmp_path: Path, h: Any, rst: bool) -> None:
    scp.on_store(nth=1).disconnect(rst=rst)
    proc = _run("storescu", scp, files=_files(tmp_path, h, 2))
    assert proc.returncode != 0
    assert "Store Failed" in proc.stdout + proc.stderr
    assert scp.associations[0].ended == "dropped"


def test_refused_sop_class(scp_factory: Callable[..., MockScp], tmp_path: Path, h: Any) -> None:
    scp = scp_factory(sop_classes=["MRImageStorage"])
    proc = _run("storescu", scp, files=_files(tmp_path, h, 1))
    assert proc.returncode != 0
    assert scp.received == []
    accepted = {abstract for _, abstract, _ in scp.associations[0].accepted_contexts}
    assert h.CT not in accepted


def test_received_datasets_match_the_files(scp: MockScp, tmp_path: Path, h: Any) -> None:
    import pydicom

    files = _files(tmp_path, h, 3, size=20_000)
    proc = _run("storescu", scp, files=files)
    assert proc.returncode == 0, proc.stderr
    sent = [pydicom.dcmread(f) for f in files]
    got = [r.dataset() for r in scp.received]
    assert [d.SOPInstanceUID for d in got] == [d.SOPInstanceUID for d in sent]
    assert got[0][0x00091010].value == sent[0][0x00091010].value
    scp.check()


@pytest.mark.parametrize(
    ("flag", "syntax"),
    [
        ("-xi", "1.2.840.10008.1.2"),  # implicit only
        ("-xs", "1.2.840.10008.1.2.1"),  # JPEG lossless first, uncompressed too: Explicit wins
        ("-xb", "1.2.840.10008.1.2.1"),  # big endian first in the proposal: Explicit LE wins
    ],
)
def test_syntax_chosen_like_storescp(
    scp: MockScp, tmp_path: Path, h: Any, flag: str, syntax: str
) -> None:
    proc = _run("storescu", scp, flag, files=_files(tmp_path, h, 1))
    assert proc.returncode == 0, proc.stderr
    [store] = scp.received
    assert store.transfer_syntax == syntax
    assert store.dataset().PatientName == "Mock^Test"
    scp.check()


def test_echoscu_reads_a_reject_closed_at_once(scp: MockScp) -> None:
    scp.reject_associations(reason="no-reason-given", close_at_once=True)
    for _ in range(5):
        out = _run("echoscu", scp)
        assert "Association Rejected" in out.stdout + out.stderr
