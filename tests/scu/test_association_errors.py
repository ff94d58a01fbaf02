"""Association errors: refused connections, rejections, and faults mid-transfer
(A-ABORT, dropped connection, DIMSE stall) against a real pynetdicom SCP."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from scu import (
    AssociationError,
    AssociationRejected,
    ConnectionFailed,
    FileError,
    FileSending,
    StoreScu,
)
from tests.support.pynetdicom_scp import (
    Abort,
    Action,
    CloseSocket,
    HarnessScp,
    Reject,
    Respond,
    Stall,
)
from tests.support.recorder import Recorder
from tests.support.scu_helpers import instance_uid, make_scu, write_series
from tests.support.tools import free_port

#: (result, source, reason, the reason in words), as PS3.8 9.3.4 numbers them.
REJECTIONS = [
    (1, 1, 1, "no reason given"),
    (1, 1, 2, "application context name not supported"),
    (1, 1, 3, "calling AE title not recognised"),
    (1, 1, 7, "called AE title not recognised"),
    (1, 2, 1, "no reason given"),
    (1, 2, 2, "protocol version not supported"),
    (2, 3, 1, "temporary congestion"),
    (2, 3, 2, "local limit exceeded"),
    (2, 1, 1, "no reason given"),
]
RESULT_WORDS = {1: "permanent", 2: "transient"}


def _queue(scu: StoreScu, files: list[str]) -> list[str]:
    for f in files:
        scu.add_file(f)
    return files


@pytest.mark.parametrize("concurrency", [1, 3])
def test_refused_port_raises_connection_failed_with_every_entry_failed(
    tmp_path: Path, concurrency: int
) -> None:
    port = free_port()  # nothing listens there any more
    files = write_series(tmp_path, 3)
    scu = StoreScu(f"127.0.0.1:{port}", concurrency=concurrency, connect_timeout=2.0)
    _queue(scu, files)
    rec = Recorder()
    with pytest.raises(ConnectionFailed) as caught:
        scu.send(**rec.callbacks)

    message = str(caught.value)
    assert "could not establish association" in message
    assert f"127.0.0.1:{port}" in message
    assert "refused" in message.lower()
    assert isinstance(caught.value, AssociationError)
    result = caught.value.result
    assert result is not None
    rec.check_invariants(result, files)
    assert (result.successful, result.failed, result.total_files) == (0, 3, 3)
    assert all("refused" in (o.error or "") for o in result.files)
    assert not rec.of(FileSending)


def test_unanswered_connect_fails_on_connect_timeout(tmp_path: Path) -> None:
    """A listener whose accept queue is full: the kernel drops the SYN, so connect()
    hangs until connect_timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(3):  # fill the accept queue
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        try:
            (path,) = write_series(tmp_path, 1)
            scu = StoreScu(f"127.0.0.1:{port}", connect_timeout=0.5, acse_timeout=5.0)
            scu.add_file(path)
            with pytest.raises(ConnectionFailed) as caught:
                scu.send()
        finally:
            for filler in fillers:
                filler.close()
    assert "could not establish association" in str(caught.value)
    assert "connect_timeout=0.5s" in str(caught.value)
    assert caught.value.result is not None and caught.value.result.failed == 1


def test_silent_peer_fails_on_acse_timeout(tmp_path: Path) -> None:
    """A listener that never answers the A-ASSOCIATE-RQ (the kernel accepts)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        (path,) = write_series(tmp_path, 1)
        scu = StoreScu(f"127.0.0.1:{port}", acse_timeout=0.5, connect_timeout=2.0)
        scu.add_file(path)
        with pytest.raises(ConnectionFailed) as caught:
            scu.send()
    assert "acse_timeout" in str(caught.value)
    assert caught.value.result is not None and caught.value.result.failed == 1


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "could not establish association"),
        (bytes((0x07, 0, 0, 0, 0, 4, 0, 0, 2, 1)), "a-abort"),  # A-ABORT instead of AC/RJ
        (b"", "closed the connection"),
        (bytes((0x02, 0, 0, 0, 0, 3, 1, 2, 3)), "malformed a-associate-ac"),
    ],
    ids=["http", "abort", "close", "short-ac"],
)
def test_peer_answering_the_request_wrongly_fails_cleanly(
    tmp_path: Path, answer: bytes, words: str
) -> None:
    """A server that answers the A-ASSOCIATE-RQ with something else, then closes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        (path,) = write_series(tmp_path, 1)
        scu = StoreScu(f"127.0.0.1:{port}", acse_timeout=2.0, connect_timeout=2.0)
        scu.add_file(path)
        with pytest.raises(ConnectionFailed) as caught:
            scu.send()
        server.join(5)
    message = str(caught.value)
    assert "could not establish association" in message
    assert words in message.lower(), message
    assert caught.value.result is not None and caught.value.result.failed == 1


@pytest.mark.parametrize(
    ("result", "source", "reason", "words"),
    REJECTIONS,
    ids=[f"{r}-{s}-{n}" for r, s, n, _ in REJECTIONS],
)
def test_rejection_raises_association_rejected_with_the_reason(
    scp: HarnessScp, tmp_path: Path, result: int, source: int, reason: int, words: str
) -> None:
    scp.reject_from(1, Reject(result, source, reason))
    files = write_series(tmp_path, 2)
    scu = _queue_scu(scp, files)
    rec = Recorder()
    with pytest.raises(AssociationRejected) as caught:
        scu.send(**rec.callbacks)

    error = caught.value
    message = str(error).lower()
    assert "rejected" in message
    assert words.lower() in message
    assert RESULT_WORDS[result] in message
    assert (error.rejection.result, error.rejection.source, error.rejection.reason) == (
        result,
        source,
        reason,
    )
    assert words.lower() in error.rejection.description.lower()
    assert isinstance(error, AssociationError)
    assert error.result is not None
    rec.check_invariants(error.result, files)
    assert (error.result.successful, error.result.failed) == (0, 2)
    assert all("rejected" in (o.error or "") for o in error.result.files)
    assert not scp.received


def _queue_scu(scp: HarnessScp, files: list[str], **options: object) -> StoreScu:
    scu = make_scu(scp, **options)
    _queue(scu, files)
    return scu


def test_wrong_called_ae_title_is_rejected_by_the_scp(scp: HarnessScp, tmp_path: Path) -> None:
    """pynetdicom's own check (require_called_aet), not a scripted rejection."""
    files = write_series(tmp_path, 1)
    scu = _queue_scu(scp, files, called_ae_title="NOT-THE-SCP")
    with pytest.raises(AssociationRejected) as caught:
        scu.send()
    assert "called AE title not recognised" in str(caught.value)
    assert caught.value.rejection.reason == 7
    assert scp.associations[0].called_ae_title == "NOT-THE-SCP"


def test_ae_at_address_form_sets_the_called_ae(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 1)
    scu = StoreScu(f"TEST-SCP@{scp.addr}", calling_ae_title="MY-SCU", dimse_timeout=2.0)
    _queue(scu, files)
    assert scu.send().successful == 1
    assert scp.associations[0].called_ae_title == "TEST-SCP"
    assert scp.received[0].calling_ae_title == "MY-SCU"


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Abort(), "abort"),
        (CloseSocket(), "clos"),
        (Stall(1.5), "dimse_timeout"),
    ],
    ids=["abort", "close-socket", "dimse-stall"],
)
def test_fault_on_third_store_fails_it_and_the_rest_go_on(
    scp: HarnessScp, tmp_path: Path, fault: Action, words: str
) -> None:
    """The entry in flight fails with a clear reason; the SCU re-associates and sends
    the entries not yet attempted."""
    scp.actions({3: fault})
    files = write_series(tmp_path, 6)
    scu = _queue_scu(scp, files, dimse_timeout=0.5)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, True, False, True, True, True]
    error = result.files[2].error or ""
    assert words in error.lower(), error
    assert result.files[2].status is None
    (file_error,) = rec.of(FileError)
    assert file_error.file == files[2] and file_error.sop_instance_uid == instance_uid(files[2])
    # The SCP saw the third store (then failed it) and a second association for the rest.
    assert len(scp.associations) == 2
    assert [r.association for r in scp.received] == [1, 1, 1, 2, 2, 2]
    assert scp.instance_uids == [instance_uid(f) for f in files]
    assert scp.associations[1].ended == "released"


def test_fault_on_the_last_store(scp: HarnessScp, tmp_path: Path) -> None:
    scp.actions({3: Abort()})
    files = write_series(tmp_path, 3)
    scu = _queue_scu(scp, files)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, True, False]
    assert len(scp.associations) == 1  # nothing left: no new association


def test_fault_on_every_store(scp: HarnessScp, tmp_path: Path) -> None:
    scp.actions({}, default=Abort())
    files = write_series(tmp_path, 4)
    scu = _queue_scu(scp, files)
    rec = Recorder()
    result = scu.send(**rec.callbacks)  # associations were established: no raise
    rec.check_invariants(result, files)
    assert result.failed == 4
    assert len(scp.associations) == 4


@pytest.mark.parametrize("fault", [Abort(), CloseSocket()], ids=["abort", "close-socket"])
def test_reassociation_refused_after_a_fault(
    scp: HarnessScp, tmp_path: Path, fault: Action
) -> None:
    """After the abort the SCP rejects every new association: the remaining entries
    fail with that cause; send() itself does not raise (one association worked)."""
    scp.actions({2: fault})
    scp.reject_from(2, Reject(2, 3, 1))
    files = write_series(tmp_path, 5)
    scu = _queue_scu(scp, files)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, False, False, False, False]
    for outcome in result.files[2:]:
        assert "rejected" in (outcome.error or "")
        assert "temporary congestion" in (outcome.error or "")
    assert len(scp.received) == 2
    # Entries 3-5 were never sent.
    assert [e.file for e in rec.of(FileSending)] == files[:2]


def test_reassociation_refused_port_after_abort(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path
) -> None:
    """The SCP goes away entirely after aborting: the rest fail with the cause."""
    scp = scp_factory()
    scp.actions({2: Abort()})
    files = write_series(tmp_path, 4)
    scu = _queue_scu(scp, files)
    sent: list[str] = []

    def stop_on_error(event: FileError) -> None:
        sent.append(event.file)
        scp.stop()  # on the caller's thread, before the SCU re-associates

    result = scu.send(on_file_error=stop_on_error)
    assert [o.ok for o in result.files] == [True, False, False, False]
    for outcome in result.files[2:]:
        assert "could not establish association" in (outcome.error or "")
        assert "refused" in (outcome.error or "")


@pytest.mark.parametrize(
    "fault",
    [Respond(0xA700, "disk full"), Abort(), Stall(1.5)],
    ids=["failure-status", "abort", "stall"],
)
def test_fail_fast_stops_at_the_first_failure(
    scp: HarnessScp, tmp_path: Path, fault: Action
) -> None:
    scp.actions({2: fault})
    files = write_series(tmp_path, 5)
    scu = _queue_scu(scp, files, fail_fast=True, dimse_timeout=0.5)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, False, False, False, False]
    assert "not sent: fail_fast" not in (result.files[1].error or "")
    for outcome in result.files[2:]:
        assert outcome.error == "not sent: fail_fast"
    assert [e.file for e in rec.of(FileSending)] == files[:2]
    assert len(scp.received) == 2


def test_fail_fast_on_an_unreadable_entry(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 3)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all" * 20)
    queue = [files[0], str(junk), *files[1:]]
    scu = _queue_scu(scp, queue, fail_fast=True)
    result = scu.send()
    assert [o.ok for o in result.files] == [True, False, False, False]
    assert [o.error for o in result.files[2:]] == ["not sent: fail_fast"] * 2
    assert len(scp.received) == 1


def test_rejection_then_immediate_close_is_never_lost(tmp_path: Path) -> None:
    """DCMTK storescp and Orthanc close the socket right after A-ASSOCIATE-RJ; plain
    pynetdicom then sometimes reports an abort (ANCHORS). 30 tries, 30 rejections."""
    tries = 30
    rj = bytes((0x03, 0, 0, 0, 0, 4, 0, 1, 1, 7))  # permanent, service user, called AE
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        def serve() -> None:
            for _ in range(tries):
                conn, _ = listener.accept()
                with conn:
                    header = conn.recv(6, socket.MSG_WAITALL)
                    length = int.from_bytes(header[2:6], "big")
                    conn.recv(length, socket.MSG_WAITALL)
                    conn.sendall(rj)
                # closed at once, FIN right behind the reject

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        (path,) = write_series(tmp_path, 1)
        outcomes = []
        for _ in range(tries):
            scu = StoreScu(f"127.0.0.1:{port}", connect_timeout=2.0, acse_timeout=2.0)
            scu.add_file(path)
            try:
                scu.send()
            except AssociationError as exc:
                outcomes.append(type(exc).__name__)
        server.join(5)
    assert outcomes == ["AssociationRejected"] * tries


def test_send_async_raises_association_errors_too(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    refused = StoreScu(f"127.0.0.1:{free_port()}", connect_timeout=2.0)
    _queue(refused, files)
    with pytest.raises(ConnectionFailed) as caught:
        asyncio.run(refused.send_async())
    assert caught.value.result is not None and caught.value.result.failed == 2
    scp.reject_from(1, Reject(2, 3, 1))
    rejected = _queue_scu(scp, files)
    with pytest.raises(AssociationRejected) as rejection:
        asyncio.run(rejected.send_async())
    assert rejection.value.rejection.reason == 1
    assert rejection.value.result is not None and rejection.value.result.failed == 2
