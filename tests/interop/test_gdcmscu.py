"""GDCM's gdcmscu (Debian libgdcm-tools), a sender nobody here wrote, stores to MockScp
and to ``scukit serve`` as it does to DCMTK storescp.

gdcmscu reads UIDs in an A-ASSOCIATE-AC as they are: when an SCP pads one with a NUL,
it takes ``1.2.840.10008.1.2.1\\0`` for the accepted syntax, calls every context faulty
and stores nothing. The mock must never pad.

Debian's gdcmscu (GDCM 3.0) aborts with SIGABRT when it exits ("ProtocolStream as
nullptr is invalid"), after a successful store and against DCMTK storescp too; its exit
status says nothing here, the receiving side does.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from mock_scp import MockScp
from tests.support.serve import WAIT, serve
from tests.support.tools import dcmtk_env, gdcmscu_binary

pytestmark = pytest.mark.interop

FILES = ("CT_small.dcm", "MR_small.dcm")


def _files() -> list[str]:
    found = [get_testdata_file(name, download=False) for name in FILES]
    assert all(found), found
    return [str(f) for f in found]


def _gdcmscu(port: int, *paths: str, called: str = "PACS") -> subprocess.CompletedProcess[str]:
    command = [gdcmscu_binary(), "--store", "--call", called, "127.0.0.1", str(port)]
    for path in paths:
        command += ["-i", path]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=WAIT, env=dcmtk_env(), check=False
    )


def _instance(path: str) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize("name", FILES)
def test_gdcmscu_stores_to_mock_scp(name: str) -> None:
    (path,) = [p for p in _files() if p.endswith(name)]
    with MockScp("PACS") as scp:
        proc = _gdcmscu(scp.port, path)
        assert scp.wait_idle(WAIT)
    assert proc.returncode in (0, -signal.SIGABRT), proc.stderr
    assert [(s.sop_instance_uid, s.status) for s in scp.stored] == [(_instance(path), 0x0000)]
    (record,) = scp.associations
    assert record.ended == "released", record
    assert record.accepted_contexts, "gdcmscu found no usable context"
    assert scp.violations == []
    scp.check()


def test_gdcmscu_stores_to_scukit_serve(tmp_path: Path) -> None:
    paths = _files()
    with serve("--ae-title", "PACS", "--store-dir", str(tmp_path / "in")) as server:
        for path in paths:
            proc = _gdcmscu(server.port, path)
            assert proc.returncode in (0, -signal.SIGABRT), proc.stderr
            server.wait_for("status 0x0000")
        code, lines, stderr = server.stop(signal.SIGTERM)
    assert code == 0, stderr
    stored = sorted(p.name for p in (tmp_path / "in").iterdir())
    assert stored == sorted(f"{_instance(p)}.dcm" for p in paths), (stored, lines)
