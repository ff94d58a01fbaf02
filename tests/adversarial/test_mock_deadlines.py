"""MockScp against SCUs that drip: a byte a second during negotiation, during a data set,
or just enough to look alive. Each connection is aborted at the deadline that covers
what it is doing, its slot is freed, and ten such clients do not lock a legitimate sender
out for longer than that deadline. Also: an SCU that works without a pause is never
taken for an idle one."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mock_scp import MockScp
from scu import AssociationError, StoreScu
from scu.protocol import dimse, pdu
from scu.protocol.pdu import PduType
from tests.support.hostile import CT, Harassment, PeerClosed, RawConn, p_data
from tests.support.scu_helpers import write_series

MARGIN = 15.0
DRIPPERS = 10


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _run_drippers(
    port: int, attack: Callable[[RawConn], Harassment], stop: threading.Event
) -> tuple[list[threading.Thread], list[Harassment], list[float]]:
    """Start the drippers; each reports what it saw and when the mock cut it off."""
    seen: list[Harassment] = []
    ended: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        conn = RawConn.connect(port, stop)
        try:
            result = attack(conn)
        except PeerClosed:
            result = Harassment(closed=True)
        finally:
            conn.close()
        with lock:
            seen.append(result)
            ended.append(time.monotonic())

    threads = [threading.Thread(target=run, daemon=True) for _ in range(DRIPPERS)]
    for thread in threads:
        thread.start()
    return threads, seen, ended


def _held(scp: MockScp) -> int:
    """Connections the mock holds now (accepted, served or about to be)."""
    with scp._lock:
        return len(scp._connections) + scp._in_flight


def _send_until_through(scp: MockScp, files: list[str], deadline: float) -> tuple[Any, int]:
    """Try to send until it works (or ``deadline`` seconds pass); the result and how many
    attempts were turned away first."""
    end = time.monotonic() + deadline
    refused = 0
    while True:
        scu = StoreScu(scp.addr, connect_timeout=5, acse_timeout=5, dimse_timeout=5)
        for path in files:
            scu.add_file(path)
        try:
            return scu.send(), refused
        except AssociationError:
            refused += 1
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _drip_associate_rq(conn: RawConn) -> Harassment:
    request = pdu.encode_associate_rq(
        pdu.AssociateRQ(
            "ANY-SCP", "DRIPPER", (pdu.ContextProposal(1, CT, ("1.2.840.10008.1.2",)),), 16384
        )
    )
    return conn.harass((request[i : i + 1] for i in range(len(request))), interval=1.0)


@pytest.mark.timeout(120)
def test_dripping_the_associate_request_is_cut_at_the_acse_deadline(
    tmp_path: Path, stop: threading.Event
) -> None:
    """Ten clients take every connection the mock allows and drip their A-ASSOCIATE-RQ a
    byte a second: each is closed at the ACSE deadline, and the sender that was turned
    away meanwhile gets through."""
    acse = 2.0
    files = write_series(tmp_path, 3)
    with MockScp(
        max_associations=2, max_connections=DRIPPERS, acse_timeout=acse, dimse_timeout=5
    ) as scp:
        started = time.monotonic()
        threads, seen, ended = _run_drippers(scp.port, _drip_associate_rq, stop)
        deadline = time.monotonic() + MARGIN
        while _held(scp) < DRIPPERS:  # every dripper holds one of the connections
            assert time.monotonic() < deadline, "the drippers never got their connections"
            time.sleep(0.01)
        result, refused = _send_until_through(scp, files, deadline=acse + MARGIN)
        for thread in threads:
            thread.join(acse + MARGIN)
        assert scp.wait_idle(MARGIN)
        records = scp.associations
        refused_connections = scp.refused_connections
    assert (result.successful, result.failed) == (3, 0)
    assert refused >= 1 and refused_connections >= 1, "the drippers never held the mock"
    assert len(seen) == DRIPPERS and all(s.closed for s in seen), seen
    assert all(1 <= s.sent < 60 for s in seen), seen  # cut off long before the end
    assert max(ended) - started < acse + MARGIN
    cut = [r for r in records if r.calling_ae_title == ""]
    assert len(cut) == DRIPPERS
    assert all(r.ended == "aborted" and "ACSE timeout" in (r.end_detail or "") for r in cut)
    assert [r.ended for r in records if r.calling_ae_title == "STORE-SCU"][-1] == "released"


def _drip_data_set(conn: RawConn) -> Harassment:
    answer = conn.associate()
    assert answer.pdu_type is PduType.ASSOCIATE_AC, answer
    command = dimse.encode_store_rq(1, CT, "1.2.826.0.1.3680043.10.1399.66.1")
    conn.send(p_data(1, command, command=True, last=True))
    fragment = p_data(1, bytes(8000), command=False, last=True)
    return conn.harass((fragment[i : i + 1] for i in range(len(fragment))), interval=1.0)


@pytest.mark.timeout(120)
def test_dripping_a_data_set_is_cut_at_the_dimse_deadline(
    tmp_path: Path, stop: threading.Event
) -> None:
    """Ten clients take every association slot and drip a data set a byte a second: each
    is aborted at the DIMSE deadline (A-ABORT to the client, the store journaled as
    interrupted), the slots come back, and the sender that was rejected gets through."""
    dimse_timeout = 2.0
    files = write_series(tmp_path, 3)
    with MockScp(max_associations=DRIPPERS, dimse_timeout=dimse_timeout, acse_timeout=5) as scp:
        arrived = threading.Semaphore(0)
        scp.add_request_listener(lambda _request: arrived.release())
        started = time.monotonic()
        threads, seen, ended = _run_drippers(scp.port, _drip_data_set, stop)
        for _ in range(DRIPPERS):  # every dripper holds a slot, its store under way
            assert arrived.acquire(timeout=MARGIN)
        result, refused = _send_until_through(scp, files, deadline=dimse_timeout + MARGIN)
        for thread in threads:
            thread.join(dimse_timeout + MARGIN)
        assert scp.wait_idle(MARGIN)
        records = scp.associations
        stores = scp.received
    assert (result.successful, result.failed) == (3, 0)
    assert refused >= 1, "the drippers never held every association slot"
    assert any(
        r.ended == "rejected" and "max_associations" in (r.end_detail or "") for r in records
    )
    assert len(seen) == DRIPPERS
    for s in seen:
        assert s.closed and s.aborted == (2, 0), s  # the mock's A-ABORT, then the close
    assert max(ended) - started < dimse_timeout + MARGIN
    dripped = [r for r in records if r.calling_ae_title == "HOSTILE"]
    assert len(dripped) == DRIPPERS
    assert all(r.ended == "aborted" and "DIMSE timeout" in (r.end_detail or "") for r in dripped)
    cut = [s for s in stores if s.calling_ae_title == "HOSTILE"]
    assert len(cut) == DRIPPERS
    assert all(s.action == "interrupted" and not s.complete and s.status is None for s in cut)


def _keep_alive_with_empty_pdus(conn: RawConn) -> Harassment:
    """Associate, then send an empty P-DATA-TF (no PDV: no message) every half second."""
    answer = conn.associate()
    assert answer.pdu_type is PduType.ASSOCIATE_AC, answer
    empty = bytes((0x04, 0, 0, 0, 0, 0))
    return conn.harass(iter(lambda: empty, None), interval=0.5)


@pytest.mark.timeout(60)
def test_pdus_that_carry_no_message_do_not_keep_an_idle_association_open(
    stop: threading.Event,
) -> None:
    network = 2.0
    with MockScp(network_timeout=network, dimse_timeout=5, acse_timeout=5) as scp:
        conn = RawConn.connect(scp.port, stop)
        started = time.monotonic()
        seen = _keep_alive_with_empty_pdus(conn)
        elapsed = time.monotonic() - started
        conn.close()
        assert scp.wait_idle(MARGIN)
        (record,) = scp.associations
    assert seen.closed and seen.aborted == (2, 0), seen
    assert seen.sent >= 2, seen
    assert elapsed < network + MARGIN
    assert record.ended == "aborted" and "network timeout" in (record.end_detail or "")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", ["stores", "echoes"])
def test_an_scu_working_without_a_pause_is_never_taken_for_idle(tmp_path: Path, what: str) -> None:
    """Small stores (or C-ECHOs) back to back on one association for at least four
    network timeouts (200 of them, 10 ms apart): every one is answered. Each message
    arrives whole in one read, so the mock never sees the link busy in between; the idle
    time it must count is the time between messages."""
    network = 0.5
    count = 200
    with MockScp(network_timeout=network, dimse_timeout=5, acse_timeout=5) as scp:
        if what == "stores":
            (path,) = write_series(tmp_path, 1)
            scu = StoreScu(scp.addr, dimse_timeout=5, acse_timeout=5)
            for _ in range(count):
                scu.add_file(path)
            result = scu.send(on_file_sent=lambda _event: time.sleep(0.01))
            assert (result.successful, result.failed) == (count, 0), result.files[-1]
        else:
            conn = RawConn.connect(scp.port)
            verification = ((1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),)
            assert conn.associate(verification).pdu_type is PduType.ASSOCIATE_AC
            for message_id in range(1, count + 1):
                echo = dimse.encode_echo_rq(message_id)
                conn.send(pdu.encode_p_data(1, echo, command=True, max_pdu_length=0))
                assert conn.read_status() == 0
                time.sleep(0.01)
            conn.send(pdu.encode_release_rq())
            assert conn.read_control().pdu_type is PduType.RELEASE_RP
            conn.close()
        assert scp.wait_idle(MARGIN)
        ends = [(r.ended, r.end_detail) for r in scp.associations]
    assert ends == [("released", "A-RELEASE by the SCU")], ends


def _server_tls(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate made now (EC: quick)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


#: The start of a TLS ClientHello record (512 bytes announced) that never gets its body.
_CLIENT_HELLO = bytes((0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC)) + bytes(508)


@pytest.mark.timeout(60)
def test_a_tls_handshake_dripped_a_byte_a_second_is_cut_at_the_acse_deadline(
    tmp_path: Path, stop: threading.Event
) -> None:
    """The ACSE deadline covers the TLS handshake: a client that drips its ClientHello
    is cut off at it (the handshake journaled as failed), and frees its connection."""
    acse = 2.0
    with MockScp(tls=_server_tls(tmp_path), acse_timeout=acse, max_associations=1,
                 max_connections=1) as scp:  # fmt: skip
        conn = RawConn.connect(scp.port, stop)
        started = time.monotonic()
        try:
            seen = conn.harass((_CLIENT_HELLO[i : i + 1] for i in range(len(_CLIENT_HELLO))), 1.0)
        finally:
            conn.close()
        elapsed = time.monotonic() - started
        assert scp.wait_idle(MARGIN)
        (record,) = scp.associations
    assert seen.closed and 1 <= seen.sent < len(_CLIENT_HELLO), seen
    assert elapsed < acse + MARGIN
    assert record.ended == "aborted" and record.tls
    assert "TLS handshake failed" in (record.end_detail or ""), record.end_detail
