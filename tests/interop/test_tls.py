"""StoreScu over TLS against DCMTK's storescp (+tls), with a certificate made per test."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from scu import ConnectionFailed, StoreScu, echo
from tests.support.tools import dcmtk_env, dcmtk_tool, free_port

pytestmark = pytest.mark.interop


def _make_cert(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture
def tls_storescp(tmp_path: Path):  # type: ignore[no-untyped-def]
    key, cert = _make_cert(tmp_path)
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [
            dcmtk_tool("storescp"), "+tls", str(key), str(cert), "-ic", "+xa",
            "-od", str(out), "-aet", "TLS-SCP", str(port),
        ],
        env=dcmtk_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 10
    while True:
        try:
            echo(f"127.0.0.1:{port}", called_ae_title="TLS-SCP", tls=context, connect_timeout=1)
            break
        except ConnectionFailed:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"storescp +tls did not come up: {output}")
            time.sleep(0.1)
    yield port, context, out, cert
    proc.terminate()
    proc.wait(timeout=10)


def test_send_over_tls_arrives(tls_storescp) -> None:  # type: ignore[no-untyped-def]
    port, context, out, _cert = tls_storescp
    sender = StoreScu(f"TLS-SCP@127.0.0.1:{port}", tls=context)
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]
    for name in names:
        sender.add_file(get_testdata_file(name))
    result = sender.send()
    assert (result.successful, result.failed) == (3, 0)
    received = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out.iterdir()}
    sent = {str(pydicom.dcmread(get_testdata_file(n)).SOPInstanceUID) for n in names}
    assert received == sent


def test_untrusted_certificate_is_a_connection_failure(tls_storescp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, _context, _out, _cert = tls_storescp
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    _key, other_cert = _make_cert(other_folder)
    sender = StoreScu(
        f"TLS-SCP@127.0.0.1:{port}", tls=ssl.create_default_context(cafile=str(other_cert))
    )
    sender.add_file(get_testdata_file("CT_small.dcm"))
    with pytest.raises(ConnectionFailed) as info:
        sender.send()
    assert "could not establish association" in str(info.value)
    assert "TLS" in str(info.value) or "certificate" in str(info.value).lower()
    assert info.value.result is not None and info.value.result.failed == 1
