"""``echo()``, ``preflight()``, TLS and IPv6 against a real pynetdicom SCP."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from scu import AssociationRejected, ConnectionFailed, StoreScu, echo
from tests.support.pynetdicom_scp import UNCOMPRESSED, HarnessScp, Reject
from tests.support.scu_helpers import FAST, SCP_AE, make_scu, pydicom_file, write_series
from tests.support.tools import free_port


def test_echo(scp: HarnessScp) -> None:
    result = echo(scp.addr, called_ae_title=SCP_AE, **FAST)
    assert result.status == 0x0000
    assert result.duration_seconds >= 0
    (assoc,) = scp.associations
    assert assoc.ended == "released"
    assert not scp.received


def test_echo_refused_and_rejected(scp: HarnessScp) -> None:
    with pytest.raises(ConnectionFailed) as refused:
        echo(f"127.0.0.1:{free_port()}", connect_timeout=2.0)
    assert "could not establish association" in str(refused.value)
    scp.reject_from(1, Reject(1, 1, 7))
    with pytest.raises(AssociationRejected) as rejected:
        echo(scp.addr, called_ae_title=SCP_AE, **FAST)
    assert "called AE title not recognised" in str(rejected.value)


def test_preflight_negotiates_without_sending(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path
) -> None:
    scp = scp_factory(default_syntaxes=UNCOMPRESSED)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"junk" * 100)
    files = [
        pydicom_file("CT_small.dcm"),
        pydicom_file("MR_small_RLE.dcm"),
        str(junk),
        pydicom_file("ExplVR_LitEndNoMeta.dcm"),  # RT Ion Plan: not supported by the SCP
    ]
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    items = scu.preflight()

    assert [i.file for i in items] == files
    assert [i.verdict for i in items] == ["accept", "convert", "unreadable", "refuse"]
    assert items[0].transfer_syntax == ExplicitVRLittleEndian
    assert items[1].transfer_syntax in UNCOMPRESSED
    assert items[2].reason and "not a dicom file" in items[2].reason.lower()
    assert items[3].reason and "refused" in items[3].reason
    assert not scp.received  # negotiation only
    assert all(a.ended == "released" for a in scp.associations)


def test_preflight_reports_impossible_conversions(scp: HarnessScp, tmp_path: Path) -> None:
    eight = write_series(tmp_path, 1, bits_allocated=8)[0]
    scu = make_scu(scp, transfer_syntax="JPEGBaseline")
    scu.add_file(eight)
    scu.add_file(pydicom_file("CT_small.dcm"))
    items = scu.preflight()
    assert [i.verdict for i in items] == ["convert", "refuse"]
    assert items[1].reason and "16" in items[1].reason
    assert not scp.received


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (EC key: quick to make)."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return key, cert


def _server_context(key: Path, cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_send_over_tls(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    key, cert = certificate
    scp = scp_factory(ssl_context=_server_context(key, cert))
    files = write_series(tmp_path, 3, size=100_000)
    client = ssl.create_default_context(cafile=str(cert))
    scu = make_scu(scp, tls=client)
    for f in files:
        scu.add_file(f)
    result = scu.send()
    assert result.successful == 3, [o.error for o in result.files]
    assert len(scp.received) == 3
    assert all(r.decode_error is None for r in scp.received)
    assert echo(scp.addr, called_ae_title=SCP_AE, tls=client, **FAST).status == 0


def test_tls_with_an_untrusted_certificate_fails_cleanly(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    key, cert = certificate
    scp = scp_factory(ssl_context=_server_context(key, cert))
    (path,) = write_series(tmp_path, 1)
    scu = make_scu(scp, tls=ssl.create_default_context())  # system CAs: ours is unknown
    scu.add_file(path)
    with pytest.raises(ConnectionFailed) as caught:
        scu.send()
    message = str(caught.value)
    assert "could not establish association" in message
    assert "TLS" in message or "certificate" in message.lower(), message
    assert not scp.received


def test_plain_scu_against_a_tls_scp_fails_cleanly(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    key, cert = certificate
    scp = scp_factory(ssl_context=_server_context(key, cert))
    (path,) = write_series(tmp_path, 1)
    scu = StoreScu(scp.addr, called_ae_title=SCP_AE, **FAST)
    scu.add_file(path)
    with pytest.raises(ConnectionFailed) as caught:
        scu.send()
    assert "could not establish association" in str(caught.value)


# --- IPv6 loopback ----------------------------------------------------------------------


def test_send_and_echo_over_ipv6_loopback(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path
) -> None:
    scp = scp_factory(host="::1")
    assert scp.addr.startswith("[::1]:")
    files = write_series(tmp_path, 2)
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    assert scu.send().successful == 2
    assert echo(scp.addr, called_ae_title=SCP_AE, **FAST).status == 0
    with pytest.raises(ConnectionFailed) as caught:
        echo(f"[::1]:{free_port()}", connect_timeout=2.0)
    assert "[::1]:" in str(caught.value)
