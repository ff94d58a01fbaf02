"""StoreScu against SCPs that lie, drip, flood or never stop (raw sockets).

Each attack must end within the deadline it targets (plus a generous margin), with every
queued entry accounted for exactly once, and the SCU must have told the peer (A-ABORT)
when it gave up on it. Memory is measured where the attack is about memory: the SCU then
runs in a child process and its peak RSS is read from ``/proc``.
"""

from __future__ import annotations

import ssl
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from scu import ConnectionFailed, StoreScu
from scu.protocol import dimse, pdu
from scu.protocol.pdu import PduType
from tests.support.hostile import Harassment, HostileScp, PeerClosed, RawConn, p_data, raw_pdu
from tests.support.recorder import Recorder
from tests.support.scu_helpers import write_series
from tests.support.serve import scukit
from tests.support.victim import send_in_child

ACSE = 2.0
DIMSE = 2.0
#: What "returned within its deadline" allows on top: a loaded 2-core CI machine.
MARGIN = 15.0
MIB = 1024 * 1024


def _scu(addr: str, **options: Any) -> StoreScu:
    settings: dict[str, Any] = {
        "connect_timeout": 5.0,
        "acse_timeout": ACSE,
        "dimse_timeout": DIMSE,
        "network_timeout": 5.0,
        **options,
    }
    return StoreScu(addr, **settings)


def _send(scu: StoreScu, files: list[str]) -> tuple[Any, Recorder, float]:
    for path in files:
        scu.add_file(path)
    recorder = Recorder()
    started = time.monotonic()
    result = scu.send(**recorder.callbacks)
    return result, recorder, time.monotonic() - started


# --- release ------------------------------------------------------------------------------


def _release_answered_with_p_data(conn: RawConn) -> Harassment:
    """Store everything, then answer A-RELEASE-RQ with a C-STORE-RSP every second."""
    conn.accept()
    first = conn.serve_until_control()
    assert first.pdu_type is PduType.RELEASE_RQ, first
    rsp = dimse.encode_store_rsp(1, 0x0000, sop_class_uid="1.2.3", sop_instance_uid="1.2.3.4")
    piece = pdu.encode_p_data(1, rsp, command=True, max_pdu_length=0)
    return conn.harass(iter(lambda: piece, None), interval=1.0)


def _release_rp_dripped(conn: RawConn) -> Harassment:
    """Store everything, then drip the A-RELEASE-RP one byte a second."""
    conn.accept()
    first = conn.serve_until_control()
    assert first.pdu_type is PduType.RELEASE_RQ, first
    rp = pdu.encode_release_rp()
    return conn.harass((rp[i : i + 1] for i in range(len(rp))), interval=1.0)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize(
    "script", [_release_answered_with_p_data, _release_rp_dripped], ids=["p-data", "drip-rp"]
)
def test_release_that_never_completes_is_aborted_at_the_acse_deadline(
    tmp_path: Path, concurrency: int, script: Any
) -> None:
    files = write_series(tmp_path, 6)
    with HostileScp(script) as scp:
        result, recorder, elapsed = _send(_scu(scp.addr, concurrency=concurrency), files)
        scp.join()
    recorder.check_invariants(result, files)
    # The stores themselves were answered: the release is not the files' business.
    assert (result.successful, result.failed) == (6, 0)
    assert elapsed < ACSE + MARGIN
    assert scp.results, "no association reached the release"
    for seen in scp.results:
        assert isinstance(seen, Harassment)
        # The peer kept going (more than one piece), and the SCU ended it with A-ABORT.
        assert seen.sent >= 2, seen
        assert seen.closed, seen
        assert seen.aborted == (0, 0), seen


# --- negotiation --------------------------------------------------------------------------


def _ac_dripped(conn: RawConn) -> tuple[int, Harassment]:
    conn.read_associate_rq()
    ac = conn.associate_ac()
    return len(ac), conn.harass((ac[i : i + 1] for i in range(len(ac))), interval=1.0)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("concurrency", [1, 4])
def test_associate_ac_dripped_one_byte_a_second_fails_at_the_acse_deadline(
    tmp_path: Path, concurrency: int
) -> None:
    files = write_series(tmp_path, 5)
    with HostileScp(_ac_dripped) as scp:
        scu = _scu(scp.addr, concurrency=concurrency)
        for path in files:
            scu.add_file(path)
        recorder = Recorder()
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as caught:
            scu.send(**recorder.callbacks)
        elapsed = time.monotonic() - started
        scp.join()
    result = caught.value.result
    assert result is not None
    recorder.check_invariants(result, files)
    assert (result.successful, result.failed) == (0, 5)
    assert f"acse_timeout={ACSE}s" in str(caught.value)
    assert all(f"acse_timeout={ACSE}s" in (o.error or "") for o in result.files)
    # Each worker waits out one deadline at most (they run side by side).
    assert elapsed < concurrency * ACSE + MARGIN
    assert scp.results
    for size, seen in scp.results:  # type: ignore[misc]
        assert isinstance(seen, Harassment)
        assert 1 <= seen.sent < size, seen  # the SCU did not wait for the whole answer
        assert seen.closed and seen.aborted == (0, 0), seen


# --- while a response is awaited ----------------------------------------------------------

#: A P-DATA-TF of 16,374 bytes: 2,729 PDVs of one command fragment each, carrying no data
#: and never the last one. It never completes a command set and never grows one.
_EMPTY_FRAGMENTS = raw_pdu(0x04, struct.pack(">LBB", 2, 1, 0x01) * ((16384 - 10) // 6))


def _flood_empty_fragments(conn: RawConn) -> int:
    conn.accept()
    conn.read_request()
    return conn.flood(_EMPTY_FRAGMENTS * 64, seconds=60)


def _command_never_ends(conn: RawConn) -> Harassment:
    conn.accept()
    request = conn.read_request()
    piece = p_data(request.context_id, b"\x00" * 16000, command=True, last=False)
    return conn.harass(iter(lambda: piece, None), interval=0.01, linger=0.0)


@pytest.mark.timeout(120)
def test_endless_empty_fragments_while_a_response_is_awaited_keep_memory_flat(
    tmp_path: Path,
) -> None:
    """The SCP answers the C-STORE with fragments that never end a command set, as fast
    as it can, until the SCU gives up: the SCU fails that entry at the DIMSE deadline,
    sends the others on a new association, and its memory does not follow the flood."""
    files = write_series(tmp_path, 3)
    served = {"n": 0}

    def script(conn: RawConn) -> object:
        served["n"] += 1
        if served["n"] == 1:
            return _flood_empty_fragments(conn)
        conn.accept()
        return conn.serve_until_control()

    with HostileScp(script) as scp:
        report = send_in_child(
            {
                "addr": scp.addr,
                "files": files,
                "options": {"dimse_timeout": DIMSE, "acse_timeout": 5.0, "network_timeout": 5.0},
            },
            timeout=120,
        )
        scp.join()
    result = report["result"]
    outcomes = [(f["ok"], f["error"]) for f in result["files"]]
    assert [ok for ok, _ in outcomes] == [False, True, True], outcomes
    assert f"dimse_timeout={DIMSE}s" in (outcomes[0][1] or "")
    assert report["seconds"] < DIMSE + MARGIN
    flooded = next(r for r in scp.results if isinstance(r, int))
    assert flooded > 2 * MIB, "the flood did not get going; the test proves nothing"
    grown_mib = (report["peak_rss_kb"] - report["baseline_rss_kb"]) / 1024
    assert grown_mib < 64, f"the SCU grew {grown_mib:.0f} MiB under a {flooded >> 20} MiB flood"


@pytest.mark.timeout(60)
def test_command_set_that_never_ends_is_refused_at_64_kib(tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    served = {"n": 0}

    def script(conn: RawConn) -> object:
        served["n"] += 1
        if served["n"] == 1:
            return _command_never_ends(conn)
        conn.accept()
        return conn.serve_until_control()

    with HostileScp(script) as scp:
        result, recorder, _ = _send(_scu(scp.addr, dimse_timeout=60.0), files)
        scp.join()
    recorder.check_invariants(result, files, in_order=True)
    assert [o.ok for o in result.files] == [False, True]
    assert "command set longer than 65536 bytes" in (result.files[0].error or "")
    seen = next(r for r in scp.results if isinstance(r, Harassment))
    assert seen.closed and seen.aborted == (2, 6), seen


# --- absurd lengths -----------------------------------------------------------------------

#: (what answers the C-STORE-RQ, words of the file's error)
ABSURD: list[tuple[str, bytes, str]] = [
    ("p-data-4gib", raw_pdu(0x04, b"\x00" * 64, length=0xFFFFFFFF), "byte pdu (p-data-tf)"),
    ("p-data-over-our-max", raw_pdu(0x04, b"\x00" * 64, length=16385), "above the 16384"),
    ("abort-2gib", raw_pdu(0x07, b"\x00" * 4, length=0x7FFFFFFF), "a-abort"),
    ("release-rp-1gib", raw_pdu(0x06, b"\x00" * 4, length=1 << 30), "a-release-rp"),
    ("unknown-type-4gib", raw_pdu(0x4F, b"", length=0xFFFFFFFF), "0x4f"),
    (
        "pdv-longer-than-its-pdu",
        raw_pdu(0x04, struct.pack(">LBB", 0x7FFFFFFF, 1, 3) + b"\x00" * 10),
        "does not fit",
    ),
    (
        "associate-ac-4gib",
        raw_pdu(0x02, b"\x00" * 64, length=0xFFFFFFFF),
        "a-associate-ac",
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("answer", "words"), [a[1:] for a in ABSURD], ids=[a[0] for a in ABSURD])
def test_absurd_pdu_lengths_are_refused_on_sight(tmp_path: Path, answer: bytes, words: str) -> None:
    """A header claiming gigabytes is refused when it arrives (the SCU does not wait
    for the bytes, nor make room for them): that file fails naming the limit, the
    SCU aborts, and the others go out on a new association."""
    files = write_series(tmp_path, 3)
    served = {"n": 0}

    def script(conn: RawConn) -> object:
        served["n"] += 1
        conn.accept()
        if served["n"] > 1:
            return conn.serve_until_control()
        conn.read_request()
        return conn.harass([answer], interval=0.0, linger=20.0)

    with HostileScp(script) as scp:
        result, recorder, _ = _send(_scu(scp.addr, dimse_timeout=60.0), files)
        scp.join()
    recorder.check_invariants(result, files, in_order=True)
    assert [o.ok for o in result.files] == [False, True, True]
    error = (result.files[0].error or "").lower()
    assert words in error, error
    assert "timeout" not in error, error
    seen = next(r for r in scp.results if isinstance(r, Harassment))
    assert seen.closed, seen
    assert seen.aborted is not None and seen.aborted[0] == 2, seen  # a provider abort


def test_associate_ac_claiming_gigabytes_is_refused_on_sight(tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)

    def script(conn: RawConn) -> object:
        conn.read_associate_rq()
        return conn.harass([raw_pdu(0x02, b"\x00" * 64, length=0xFFFFFFF0)], 0.0, linger=20.0)

    with HostileScp(script) as scp:
        scu = _scu(scp.addr, acse_timeout=60.0)
        for path in files:
            scu.add_file(path)
        with pytest.raises(ConnectionFailed) as caught:
            scu.send()
        scp.join()
    assert "exceeds the 262144-byte limit" in str(caught.value)
    assert caught.value.result is not None and caught.value.result.failed == 2
    (seen,) = scp.results
    assert isinstance(seen, Harassment) and seen.aborted is not None, seen


# --- lies about what is answered ----------------------------------------------------------

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def _lying_scp(lie: str) -> Any:
    """Answers the second store of the first association with a lie; honest after."""

    served = {"n": 0}

    def script(conn: RawConn) -> object:
        served["n"] += 1
        conn.accept()
        if served["n"] > 1:
            return conn.serve_until_control()
        first = conn.read_request()
        conn.answer(first)
        second = conn.read_request()
        if lie == "replayed-response":  # the first store's response again
            body = first.response()
            context_id = second.context_id
        elif lie == "echo-response":
            body = second.response(command_field=dimse.C_ECHO_RSP)
            context_id = second.context_id
        else:  # the right response, on the other (accepted) presentation context
            body = second.response()
            assert conn.request is not None
            context_id = next(
                c.context_id for c in conn.request.contexts if c.context_id != second.context_id
            )
        data = pdu.encode_p_data(context_id, body, command=True, max_pdu_length=0)
        return conn.harass([data], interval=0.0, linger=20.0)

    return script


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("lie", "words"),
    [
        ("replayed-response", "for message 1 where 0x8001 for message 2"),
        ("echo-response", "c-echo-rsp"),
        ("other-context", "answered on presentation context"),
    ],
)
def test_a_response_for_another_message_or_context_fails_that_file_only(
    tmp_path: Path, lie: str, words: str
) -> None:
    """Two SOP classes, so the SCU holds two accepted contexts and the lie is plausible."""
    ct = write_series(tmp_path / "ct", 2, prefix="ct")
    mr = write_series(tmp_path / "mr", 2, prefix="mr", sop_class="MRImageStorage")
    files = [ct[0], mr[0], ct[1], mr[1]]
    with HostileScp(_lying_scp(lie)) as scp:
        result, recorder, _ = _send(_scu(scp.addr, dimse_timeout=60.0), files)
        scp.join()
    recorder.check_invariants(result, files, in_order=True)
    assert [o.ok for o in result.files] == [True, False, True, True]
    error = (result.files[1].error or "").lower()
    assert words.lower() in error, error
    assert scp.connections == 2  # aborted, then a new association for the rest
    seen = next(r for r in scp.results if isinstance(r, Harassment))
    assert seen.aborted == (2, 6), seen


# --- TLS ------------------------------------------------------------------------------------

#: The start of a TLS record (handshake, TLS 1.2, 512 bytes) that never gets its body.
_TLS_RECORD = bytes((0x16, 0x03, 0x03, 0x02, 0x00)) + bytes((0x02, 0x00, 0x01, 0xFC)) + bytes(508)


@pytest.mark.timeout(60)
def test_tls_handshake_dripped_one_byte_a_second_fails_at_the_acse_deadline(
    tmp_path: Path,
) -> None:
    """The server's side of the TLS handshake arrives a byte a second: the ACSE deadline
    covers the handshake, so the SCU gives up in time, whatever trickles in."""
    (path,) = write_series(tmp_path, 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def script(conn: RawConn) -> object:
        return conn.harass((_TLS_RECORD[i : i + 1] for i in range(len(_TLS_RECORD))), 1.0)

    with HostileScp(script) as scp:
        scu = _scu(scp.addr, tls=context)
        scu.add_file(path)
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as caught:
            scu.send()
        elapsed = time.monotonic() - started
        scp.join()
    assert f"acse_timeout={ACSE}s" in str(caught.value)
    assert caught.value.result is not None and caught.value.result.failed == 1
    assert elapsed < ACSE + MARGIN
    (seen,) = scp.results
    assert isinstance(seen, Harassment) and seen.closed and 2 <= seen.sent < len(_TLS_RECORD)


@pytest.mark.timeout(60)
def test_scukit_send_escapes_the_scps_error_comment(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, 1)
    comment = "\x1b]0;owned\x07\x1b[2Jdisk full"

    def script(conn: RawConn) -> object:
        conn.accept()
        request = conn.read_request()
        rsp = dimse.encode_store_rsp(
            request.message_id,
            0xA700,
            sop_class_uid=request.command.affected_sop_class_uid or "",
            sop_instance_uid=request.command.affected_sop_instance_uid or "",
            error_comment=comment,
        )
        conn.send(pdu.encode_p_data(request.context_id, rsp, command=True, max_pdu_length=0))
        return conn.serve_until_control()

    with HostileScp(script) as scp:
        done = subprocess.run(
            [*scukit(), "send", scp.addr, path], capture_output=True, text=True, timeout=60
        )
        scp.join()
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "disk full" in done.stdout  # the comment is reported...
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout  # ...escaped


def test_hostile_helpers_fail_loudly_on_a_broken_script(tmp_path: Path) -> None:
    """A script that breaks is reported (so a silent helper cannot make a test pass)."""

    def broken(conn: RawConn) -> object:
        conn.accept()
        raise RuntimeError("script bug")

    (path,) = write_series(tmp_path, 1)
    with pytest.raises(AssertionError, match="script bug"):
        with HostileScp(broken) as scp:
            scu = _scu(scp.addr)
            scu.add_file(path)
            scu.send()
    with pytest.raises(PeerClosed):
        raise PeerClosed("x")
