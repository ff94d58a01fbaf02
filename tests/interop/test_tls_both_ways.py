"""TLS in both directions with DCMTK, client certificates included, with a small PKI made
at test time (a CA, a server and a client certificate signed by it, and a stranger):
StoreScu (and ``scukit send``) to ``storescp +tls``, DCMTK ``storescu +tls`` to MockScp
(and to ``scukit serve``), and the words a failed verification gets."""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from mock_scp import MockScp
from scu import ConnectionFailed, StoreScu, echo
from scu.cli import main as scukit_main
from tests.support.serve import WAIT, serve
from tests.support.tools import dcmtk_env, dcmtk_tool, free_port

pytestmark = pytest.mark.interop

CT = get_testdata_file("CT_small.dcm")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_key: Path
    server_cert: Path
    client_key: Path
    client_cert: Path
    stranger_key: Path
    stranger_cert: Path  # self-signed, trusted by nobody
    wrong_name_key: Path
    wrong_name_cert: Path  # signed by the CA, for another host name


def _signed(
    folder: Path, name: str, subject: str, san: str | None, ca: Path, ca_key: Path
) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    extra = folder / f"{name}.ext"
    extra.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "1", "-extfile", str(extra),
             "-out", str(cert))  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=scukit test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    server = _signed(folder, "server", "/CN=localhost", "IP:127.0.0.1,DNS:localhost", ca, ca_key)
    client = _signed(folder, "client", "/CN=STORE-SCU", None, ca, ca_key)
    wrong = _signed(folder, "wrong", "/CN=pacs.example", "DNS:pacs.example", ca, ca_key)
    stranger_key, stranger = folder / "stranger.key", folder / "stranger.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(stranger_key), "-out", str(stranger))  # fmt: skip
    return Pki(ca, *server, *client, stranger_key, stranger, *wrong)


def _client_context(pki: Pki, *, with_cert: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


def _server_context(key: Path, cert: Path, *, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def storescp_requiring_client_certs(pki: Pki, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [dcmtk_tool("storescp"), "+tls", str(pki.server_key), str(pki.server_cert),
         "+cf", str(pki.ca), "-rc", "+xa", "-od", str(out), "-aet", "TLS-SCP", str(port)],
        env=dcmtk_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            echo(f"TLS-SCP@127.0.0.1:{port}", tls=_client_context(pki), connect_timeout=1)
            break
        except ConnectionFailed:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"storescp +tls did not come up: {output}")
            time.sleep(0.1)
    yield port, out
    proc.terminate()
    proc.wait(timeout=10)


def _instance(path: Path | str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_store_scu_presents_its_client_certificate_to_storescp(
    pki: Pki, storescp_requiring_client_certs: tuple[int, Path]
) -> None:
    port, out = storescp_requiring_client_certs
    sender = StoreScu(f"TLS-SCP@127.0.0.1:{port}", tls=_client_context(pki))
    sender.add_file(CT)
    result = sender.send()
    assert (result.successful, result.failed) == (1, 0), result.files
    assert [_instance(p) for p in out.iterdir()] == [_instance(CT)]


def test_without_a_client_certificate_storescp_refuses(
    pki: Pki, storescp_requiring_client_certs: tuple[int, Path]
) -> None:
    port, out = storescp_requiring_client_certs
    sender = StoreScu(
        f"TLS-SCP@127.0.0.1:{port}", tls=_client_context(pki, with_cert=False), acse_timeout=5
    )
    sender.add_file(CT)
    with pytest.raises(ConnectionFailed) as info:
        sender.send()
    assert "could not establish association" in str(info.value)
    assert list(out.iterdir()) == []


def test_scukit_send_with_tls_options(
    pki: Pki, storescp_requiring_client_certs: tuple[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    port, out = storescp_requiring_client_certs
    code = scukit_main([
        "send", f"TLS-SCP@127.0.0.1:{port}", CT, "--tls-ca", str(pki.ca),
        "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert [_instance(p) for p in out.iterdir()] == [_instance(CT)]


@pytest.mark.parametrize(
    ("which", "words"),
    [
        ("stranger", "self-signed certificate"),  # an issuer trusted by nobody
        ("wrong-name", "mismatch"),
    ],
)
def test_a_failed_verification_says_which_check_failed(pki: Pki, which: str, words: str) -> None:
    key, cert = (
        (pki.stranger_key, pki.stranger_cert)
        if which == "stranger"
        else (pki.wrong_name_key, pki.wrong_name_cert)
    )
    with MockScp(tls=_server_context(key, cert, client_ca=None), acse_timeout=5) as scp:
        with pytest.raises(ConnectionFailed) as info:
            echo(scp.addr, tls=_client_context(pki, with_cert=False))
        assert scp.wait_idle(WAIT)
    message = str(info.value)
    assert "TLS certificate verification failed" in message
    assert words in message.lower(), message
    (record,) = scp.associations
    assert record.ended == "aborted" and "TLS handshake failed" in (record.end_detail or "")


def _storescu_tls(
    pki: Pki, port: int, *paths: str, called: str = "PACS"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk_tool("storescu"), "+tls", str(pki.client_key), str(pki.client_cert),
         "+cf", str(pki.ca), "-aec", called, "127.0.0.1", str(port), *paths],
        capture_output=True, text=True, timeout=WAIT, env=dcmtk_env(), check=False,
    )  # fmt: skip


def test_storescu_over_tls_to_mock_scp_requiring_client_certificates(pki: Pki) -> None:
    context = _server_context(pki.server_key, pki.server_cert, client_ca=pki.ca)
    with MockScp("PACS", tls=context) as scp:
        proc = _storescu_tls(pki, scp.port, CT)
        assert scp.wait_idle(WAIT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(s.sop_instance_uid, s.status) for s in scp.stored] == [(_instance(CT), 0)]
    (record,) = scp.associations
    assert record.tls and record.ended == "released"
    scp.check()


def test_storescu_without_a_client_certificate_is_refused_by_mock_scp(pki: Pki) -> None:
    context = _server_context(pki.server_key, pki.server_cert, client_ca=pki.ca)
    with MockScp("PACS", tls=context) as scp:
        proc = subprocess.run(
            [dcmtk_tool("storescu"), "+tla", "+cf", str(pki.ca), "-aec", "PACS",
             "127.0.0.1", str(scp.port), CT],
            capture_output=True, text=True, timeout=WAIT, env=dcmtk_env(), check=False,
        )  # fmt: skip
        assert scp.wait_idle(WAIT)
    assert proc.returncode != 0
    assert scp.received == []
    (record,) = scp.associations
    assert "TLS handshake failed" in (record.end_detail or "")


def test_storescu_over_tls_to_scukit_serve(pki: Pki, tmp_path: Path) -> None:
    with serve(
        "--ae-title", "PACS", "--tls-cert", str(pki.server_cert), "--tls-key",
        str(pki.server_key), "--tls-ca", str(pki.ca), "--store-dir", str(tmp_path / "in"),
    ) as server:  # fmt: skip
        proc = _storescu_tls(pki, server.port, CT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        server.wait_for("status 0x0000")
        code, _lines, stderr = server.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert [p.name for p in (tmp_path / "in").iterdir()] == [f"{_instance(CT)}.dcm"]
