"""MockScp against SCUs that flood it: hundreds of connections claiming megabyte
requests, thousands of presentation contexts, huge user items, a command set that never
ends. The mock runs in a child process, so that its RSS and threads are its own; each
attack is refused on its limit, journaled, and leaves room for a legitimate sender."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_scp import MockScp
from scu import StoreScu
from scu.protocol import dimse, pdu
from scu.protocol.identity import UserIdentity
from scu.protocol.pdu import PduType
from tests.support.hostile import CT, EXPLICIT, RawConn, p_data, raw_pdu
from tests.support.scu_helpers import write_series
from tests.support.victim import MockProcess

MIB = 1024 * 1024
MARGIN = 15.0


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _send_files(addr: str, tmp_path: Path, count: int = 3) -> tuple[int, int]:
    files = write_series(tmp_path, count)
    scu = StoreScu(addr, connect_timeout=5, acse_timeout=5, dimse_timeout=5)
    for path in files:
        scu.add_file(path)
    result = scu.send()
    return result.successful, result.failed


@pytest.mark.timeout(180)
def test_600_connections_claiming_megabyte_requests(
    tmp_path: Path, sockets: list[socket.socket]
) -> None:
    """600 connections at once, each then claiming a 1 MiB A-ASSOCIATE-RQ: the mock holds
    max_connections of them (one thread each) and resets the rest at once, counting
    them; each one it holds is refused on the claim (the limit is 128 KiB) without
    making room for it; memory and threads stay flat; a real sender then gets through."""
    with MockProcess(max_associations=10, acse_timeout=60, dimse_timeout=10) as mock:
        baseline = mock.status()
        held = 40  # the default: 4 x max_associations
        for _ in range(600):
            try:
                sock = socket.create_connection(("127.0.0.1", mock.port), timeout=10)
            except ConnectionResetError:
                continue  # accepted, and reset before connect() returned: one refused
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sockets.append(sock)
        stats = mock.wait_until(lambda s: s["refused_connections"] >= 600 - held)
        assert stats["refused_connections"] == 600 - held, stats
        threads = mock.status()["Threads"]
        assert threads <= baseline["Threads"] + held + 2, (threads, baseline)

        claim = raw_pdu(0x01, bytes(64 * 1024), length=1 * MIB)
        for sock in sockets:
            try:
                sock.sendall(claim)
            except OSError:
                pass  # one the mock reset
        stats = mock.wait_until(lambda s: s["ends"].get("aborted", 0) >= held)
        assert stats["associations"] == held, stats
        assert stats["ends"] == {"aborted": held}, stats
        assert stats["violation_kinds"] == {"protocol": held}, stats
        assert "exceeds the 131072-byte limit" in stats["violation_samples"][0], stats
        grown_mib = (mock.status()["VmHWM"] - baseline["VmRSS"]) / 1024
        assert grown_mib < 64, f"the mock grew {grown_mib:.0f} MiB"

        for sock in sockets:
            sock.close()
        sockets.clear()
        assert _send_files(mock.addr, tmp_path) == (3, 0)
        final = mock.wait_until(lambda s: s["stored"] == 3)
        assert final["errors"] == [], final
        assert final["threads"] <= baseline["Threads"] + 2, final


@pytest.mark.timeout(120)
def test_a_flood_past_the_file_descriptor_limit_does_not_stop_the_server(
    tmp_path: Path, sockets: list[socket.socket]
) -> None:
    """The mock may open 40 files, and would hold 200 connections: 100 connections
    exhaust its descriptors. Once they are gone, a sender must get through again."""
    with MockProcess(max_associations=50, acse_timeout=30, rlimit_nofile=40) as mock:
        for _ in range(100):
            try:
                sock = socket.create_connection(("127.0.0.1", mock.port), timeout=5)
            except OSError:
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sockets.append(sock)
        deadline = time.monotonic() + MARGIN
        while mock.open_files() < 38 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mock.open_files() >= 38, "the flood did not reach the limit"
        for sock in sockets:
            sock.close()
        sockets.clear()
        while mock.open_files() > 20 and time.monotonic() < deadline + MARGIN:
            time.sleep(0.05)
        assert _send_files(mock.addr, tmp_path) == (3, 0)


def _contexts_rq(count: int) -> bytes:
    """An A-ASSOCIATE-RQ proposing ``count`` contexts whose IDs repeat every 128."""
    contexts = tuple(pdu.ContextProposal(2 * (i % 128) + 1, "1.2", ()) for i in range(count))
    return pdu.encode_associate_rq(pdu.AssociateRQ("ANY-SCP", "FLOOD", contexts, 16384))


def _refused(port: int, request: bytes) -> tuple[int, int]:
    conn = RawConn.connect(port)
    try:
        conn.send(request)
        answer = conn.read_control()
    finally:
        conn.close()
    assert answer.pdu_type is PduType.ABORT, answer
    return pdu.decode_abort(answer.body)


@pytest.mark.timeout(120)
def test_8000_presentation_contexts_with_duplicate_ids(tmp_path: Path) -> None:
    """Recorded as the SCU's violation, refused with A-ABORT (strict), and what the
    journal keeps of each is small: fifty more such requests, once the process has
    warmed up, cost the mock far less than the 120 KiB each one weighs."""
    request = _contexts_rq(8000)
    assert len(request) < 128 * 1024
    warm, more = 10, 50
    with MockProcess(acse_timeout=10) as mock:
        for _ in range(warm):
            assert _refused(mock.port, request) == (2, 6)
        mock.wait_until(lambda s: s["ends"].get("aborted", 0) == warm)
        warmed = mock.status()["VmRSS"]
        for _ in range(more):
            assert _refused(mock.port, request) == (2, 6)
        stats = mock.wait_until(lambda s: s["ends"].get("aborted", 0) == warm + more)
        grown_mib = (mock.status()["VmRSS"] - warmed) / 1024
        assert stats["ends"] == {"aborted": warm + more}, stats
        assert any("proposed twice" in d for d in stats["end_details"]), stats
        # Per request: the first notes in words, then one counting the other 7,800.
        negotiation = stats["violation_kinds"]["negotiation"]
        assert negotiation == (warm + more) * (pdu.MAX_NOTES + 1), negotiation
        assert grown_mib < 32, f"{more} requests grew the mock {grown_mib:.0f} MiB"
        assert _send_files(mock.addr, tmp_path) == (3, 0)


def _huge_user_items_rq() -> bytes:
    """An A-ASSOCIATE-RQ whose User Information carries a User Identity of 60 KiB
    (username and passcode of 30 KiB each) and a second item of 16,000 unknown
    sub-items."""
    identity = UserIdentity(2, b"u" * 30_000, b"p" * 30_000, positive_response_requested=True)
    rq = pdu.AssociateRQ(
        "ANY-SCP", "HUGE", (pdu.ContextProposal(1, CT, (EXPLICIT,)),), 16384, user_identity=identity
    )
    data = pdu.encode_associate_rq(rq)
    unknown = bytes((0x7E, 0, 0, 0)) * 16_000
    extra = struct.pack(">BxH", 0x50, len(unknown)) + unknown
    body = data[6:] + extra
    return raw_pdu(0x01, body)


@pytest.mark.timeout(60)
def test_huge_user_items_are_taken_within_the_request_limit(tmp_path: Path) -> None:
    request = _huge_user_items_rq()
    assert 100 * 1024 < len(request) < 128 * 1024
    with MockScp(require_user_identity={"u" * 30_000: "p" * 30_000}) as scp:
        conn = RawConn.connect(scp.port)
        try:
            conn.send(request)
            answer = conn.read_control()
            assert answer.pdu_type is PduType.ASSOCIATE_AC, answer
            command = dimse.encode_store_rq(1, CT, "1.2.826.0.1.3680043.10.1399.66.2")
            conn.send(p_data(1, command, command=True, last=True))
            conn.send(p_data(1, b"\x08\x00\x16\x00UI\x02\x001\x00", command=False, last=True))
            assert conn.read_status() == 0
            conn.send(pdu.encode_release_rq())
            assert conn.read_control().pdu_type is PduType.RELEASE_RP
        finally:
            conn.close()
        assert scp.wait_idle(MARGIN)
        (record,) = scp.associations
        assert record.user_identity is not None
        assert record.user_identity.primary == b"u" * 30_000
        assert "p" * 100 not in repr(record)  # the secret never shows
        assert record.ended == "released"


@pytest.mark.timeout(60)
def test_a_command_set_that_never_ends_is_refused_at_64_kib() -> None:
    with MockScp(dimse_timeout=30) as scp:
        conn = RawConn.connect(scp.port)
        try:
            assert conn.associate().pdu_type is PduType.ASSOCIATE_AC
            piece = p_data(1, bytes(16000), command=True, last=False)
            seen = conn.harass(iter(lambda: piece, None), interval=0.01, linger=0.0)
        finally:
            conn.close()
        assert scp.wait_idle(MARGIN)
        (record,) = scp.associations
        violations = scp.violations
    assert seen.closed and seen.aborted == (2, 6), seen
    assert seen.sent * 16000 < 1 * MIB, seen  # refused on the limit, not on a deadline
    assert record.ended == "aborted"
    assert any("command set longer than 65536 bytes" in v.detail for v in violations), violations


@pytest.mark.timeout(60)
def test_a_data_set_over_max_dataset_size_is_refused_at_the_limit(tmp_path: Path) -> None:
    """With ``max_dataset_size``, a data set that goes past it is refused there (A-ABORT,
    a protocol violation, the store journaled as interrupted), whatever follows."""
    limit = 1 * MIB
    with MockScp(max_dataset_size=limit, dimse_timeout=30) as scp:
        conn = RawConn.connect(scp.port)
        try:
            assert conn.associate().pdu_type is PduType.ASSOCIATE_AC
            command = dimse.encode_store_rq(1, CT, "1.2.826.0.1.3680043.10.1399.66.4")
            conn.send(p_data(1, command, command=True, last=True))
            piece = p_data(1, bytes(16000), command=False, last=False)
            seen = conn.harass(iter(lambda: piece, None), interval=0.001, linger=0.0)
        finally:
            conn.close()
        big = write_series(tmp_path / "big", 1, prefix="big", rows=1024, columns=1024)
        small = write_series(tmp_path / "small", 1, prefix="small", seed=1)
        scu = StoreScu(scp.addr, dimse_timeout=10)
        for path in [*big, *small]:
            scu.add_file(path)
        result = scu.send()
        assert scp.wait_idle(MARGIN)
        received = scp.received
        violations = scp.violations
    assert seen.closed and seen.aborted == (2, 6), seen
    assert 64 <= seen.sent < 1000, seen  # refused past 1 MiB, not streamed on and on
    assert [o.ok for o in result.files] == [False, True], result.files
    assert "A-ABORT" in (result.files[0].error or ""), result.files[0].error
    assert [(s.action, s.complete) for s in received[:2]] == [("interrupted", False)] * 2
    assert received[2].status == 0
    over = [v for v in violations if "larger than the 1048576-byte limit" in v.detail]
    assert len(over) == 2, violations
