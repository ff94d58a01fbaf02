"""Interrupting ``send()`` (Ctrl-C: a KeyboardInterrupt or SIGINT) and cancelling
``send_async()``, against a MockScp on loopback.

Whatever the way in, the store in flight gets :attr:`Interruption.GRACE` seconds to be
answered (patched short here) and is then aborted, every entry is accounted (``not
sent: interrupted`` for those never sent), ``on_transfer_completed`` fires, the
transfer journal is written, and ``send()`` raises :class:`scu.Interrupted` (a
KeyboardInterrupt) with the complete ``.result``; a cancelled ``send_async()`` raises
``CancelledError`` with ``.result``. The mock sees every association end."""

from __future__ import annotations

import _thread
import asyncio
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import scu.streaming
from mock_scp import MockScp
from mock_scp.rules import StoreRequest
from scu import FileError, Interrupted, TransferCompleted, TransferJournal
from scu.result import TransferResult
from scu.source import Entry, EntryError, Header
from scu.waiting import Interruption
from scu.worker import INTERRUPTED
from tests.support.recorder import Recorder
from tests.support.scu_helpers import SCP_AE, instance_uid, make_scu, write_series

IN_FLIGHT_ABORTED = "not answered before the transfer was interrupted"
IN_FLIGHT = "interrupted while it was being sent"


@pytest.fixture
def pacs() -> Iterator[MockScp]:
    with MockScp(ae_title=SCP_AE, acse_timeout=5, dimse_timeout=30, network_timeout=30) as scp:
        yield scp


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store in flight waits 0.5 s for its answer instead of 2 s."""
    monkeypatch.setattr(Interruption, "GRACE", 0.5)


def when_stores_arrive(scp: MockScp, count: int, action: Callable[[], None]) -> None:
    """Run ``action`` on a new thread once the mock has received ``count`` C-STORE
    requests (the ``count``-th is then in flight)."""
    seen = {"n": 0}
    lock = threading.Lock()

    def listener(request: StoreRequest) -> None:
        with lock:
            seen["n"] += 1
            fire = seen["n"] == count
        if fire:
            threading.Thread(target=action, daemon=True).start()

    scp.add_request_listener(listener)


def sigint() -> None:
    """A real SIGINT to this process, delivered to the main thread (as Ctrl-C is)."""
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


INTERRUPTS: dict[str, Callable[[], None]] = {
    "interrupt_main": _thread.interrupt_main,
    "SIGINT": sigint,
}


def check_interrupted(
    rec: Recorder, result: TransferResult, files: list[str], scp: MockScp
) -> None:
    """What every interrupted transfer must show, whatever the way in."""
    rec.check_invariants(result, files)
    assert result.interrupted
    assert result.successful + result.failed == result.total_files == len(files)
    completed = rec.of(TransferCompleted)[0]
    assert (completed.successful, completed.failed) == (result.successful, result.failed)
    assert scp.wait_idle(10)
    received = {store.sop_instance_uid for store in scp.received}
    answered = {s.sop_instance_uid for s in scp.received if s.status == 0}
    for path, outcome in zip(files, result.files, strict=True):
        uid = instance_uid(path)
        if outcome.ok:
            assert uid in answered, f"{path} reported sent, the mock did not answer it"
        elif outcome.error == INTERRUPTED:
            assert uid not in received, f"{path} is 'not sent' but the mock received it"
        else:
            assert "interrupted" in (outcome.error or ""), outcome.error
            assert uid not in answered, f"{path} was answered but reported {outcome.error}"
    ended = [a.ended for a in scp.associations]
    assert ended and all(e in ("released", "aborted") for e in ended), ended


# --- a KeyboardInterrupt raised by a callback -----------------------------------------


@pytest.mark.parametrize("concurrency", [1, 2])
def test_keyboard_interrupt_from_a_callback(
    pacs: MockScp, tmp_path: Path, concurrency: int
) -> None:
    """on_file_sent of the 3rd file raises KeyboardInterrupt: the transfer stops, the
    stores after it are held back by the mock long enough that they are not all sent,
    and everything is accounted; the callbacks still run one terminal event per entry."""
    files = write_series(tmp_path, 8)
    pacs.on_store(nth=range(4, 100)).stall(0.3)
    scu = make_scu(pacs, concurrency=concurrency)
    for path in files:
        scu.add_file(path)
    rec = Recorder()
    callbacks = rec.callbacks
    record_sent = callbacks["on_file_sent"]

    def third_raises(event: Any) -> None:
        record_sent(event)
        if len(rec.terminal()) == 3:
            raise KeyboardInterrupt

    callbacks["on_file_sent"] = third_raises
    with pytest.raises(Interrupted) as caught:
        scu.send(**callbacks)
    assert isinstance(caught.value, KeyboardInterrupt)
    result = caught.value.result
    check_interrupted(rec, result, files, pacs)
    assert result.successful >= 3
    not_sent = [o for o in result.files if o.error == INTERRUPTED]
    assert len(not_sent) >= 8 - 3 - concurrency  # at most one store in flight per worker
    assert len(pacs.received) < 8
    if concurrency == 1:
        assert [o.ok for o in result.files[:3]] == [True] * 3
        assert all(o.error == INTERRUPTED for o in result.files[3:])
        assert not pacs.received[3:]  # nothing after the 3rd reached the mock


# --- Ctrl-C while the mock stalls -----------------------------------------------------


@pytest.mark.parametrize("how", list(INTERRUPTS))
@pytest.mark.parametrize("concurrency", [1, 2])
def test_ctrl_c_while_the_mock_stalls(
    pacs: MockScp, tmp_path: Path, how: str, concurrency: int
) -> None:
    """Every store after the first stalls for a minute; Ctrl-C once they are all in
    flight: each is given the grace period, then aborted; nothing else is sent."""
    files = write_series(tmp_path, 6)
    journal = tmp_path / "journal.sqlite"
    pacs.on_store(nth=range(2, 100)).stall(60)
    when_stores_arrive(pacs, 1 + concurrency, INTERRUPTS[how])
    scu = make_scu(pacs, concurrency=concurrency, dimse_timeout=60)
    for path in files:
        scu.add_file(path)
    rec = Recorder()
    with pytest.raises(Interrupted) as caught:
        scu.send(**rec.callbacks, journal=journal)
    result = caught.value.result
    check_interrupted(rec, result, files, pacs)
    assert result.successful == 1  # the first to arrive (either file with 2 workers)
    in_flight = [o for o in result.files if IN_FLIGHT_ABORTED in (o.error or "")]
    assert len(in_flight) == concurrency
    assert sum(o.error == INTERRUPTED for o in result.files) == 5 - concurrency
    assert len(pacs.received) == 1 + concurrency
    assert sorted(a.ended for a in pacs.associations) == ["aborted"] * concurrency
    # the journal was written: one acknowledgement, the rest failed, the run interrupted
    with_journal = TransferJournal(journal)
    try:
        summary = with_journal.summary()
    finally:
        with_journal.close()
    (counts,) = summary.destinations.values()
    assert counts == {"acknowledged": 1, "failed": 5}
    (run,) = summary.runs
    assert run["interrupted"] is True and run["ended_at"] is not None
    assert run["counts"] == {"successful": 1, "failed": 5, "total": 6, "already_sent": 0}


def test_sigterm_interrupts_the_same_way_when_asked(pacs: MockScp, tmp_path: Path) -> None:
    """A program that gives SIGTERM Python's KeyboardInterrupt handler (as ``scukit``
    wants SIGTERM to end a send like Ctrl-C) gets the same accounting: the store in
    flight aborted after the grace period, the rest not sent, nothing lost."""
    files = write_series(tmp_path, 4)
    pacs.on_store(nth=range(2, 100)).stall(60)

    def sigterm() -> None:
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)

    when_stores_arrive(pacs, 2, sigterm)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        scu = make_scu(pacs, dimse_timeout=60)
        for path in files:
            scu.add_file(path)
        rec = Recorder()
        with pytest.raises(Interrupted) as caught:
            scu.send(**rec.callbacks)
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    result = caught.value.result
    check_interrupted(rec, result, files, pacs)
    assert [o.ok for o in result.files] == [True, False, False, False]
    assert IN_FLIGHT_ABORTED in (result.files[1].error or "")
    assert [o.error for o in result.files[2:]] == [INTERRUPTED] * 2


def test_the_store_in_flight_is_answered_within_the_grace_period(
    pacs: MockScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 2nd store is answered 0.3 s after Ctrl-C, inside the grace period: it counts
    as sent; the association is then released, not aborted."""
    monkeypatch.setattr(Interruption, "GRACE", 5.0)
    files = write_series(tmp_path, 4)
    pacs.on_store(nth=2).stall(0.3)
    when_stores_arrive(pacs, 2, sigint)
    scu = make_scu(pacs)
    for path in files:
        scu.add_file(path)
    rec = Recorder()
    with pytest.raises(Interrupted) as caught:
        scu.send(**rec.callbacks)
    result = caught.value.result
    check_interrupted(rec, result, files, pacs)
    assert [o.ok for o in result.files] == [True, True, False, False]
    assert [a.ended for a in pacs.associations] == ["released"]


@pytest.mark.timeout(60)
def test_a_second_ctrl_c_stops_at_once(
    pacs: MockScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a grace period of ten minutes, a second Ctrl-C does not wait for it (if it
    did, the test's timeout would fail it): the store in flight is abandoned, the
    association aborted."""
    monkeypatch.setattr(Interruption, "GRACE", 600.0)
    first_seen = threading.Event()
    original = Interruption.interrupt

    def noting_interrupt(self: Interruption) -> None:
        original(self)
        first_seen.set()

    monkeypatch.setattr(Interruption, "interrupt", noting_interrupt)

    def twice() -> None:
        sigint()
        assert first_seen.wait(10)
        sigint()

    files = write_series(tmp_path, 3)
    pacs.on_store(nth=2).stall(600)
    when_stores_arrive(pacs, 2, twice)
    scu = make_scu(pacs, dimse_timeout=600)
    for path in files:
        scu.add_file(path)
    rec = Recorder()
    with pytest.raises(Interrupted) as caught:
        scu.send(**rec.callbacks)
    result = caught.value.result
    check_interrupted(rec, result, files, pacs)
    assert result.files[1].error in (IN_FLIGHT, f"{IN_FLIGHT_ABORTED}; the association was aborted")
    assert [o.error for o in result.files[::2]] == [None, INTERRUPTED]
    assert [a.ended for a in pacs.associations] == ["aborted"]


def test_ctrl_c_while_the_files_are_read(
    pacs: MockScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C before anything is sent (the queue is still being checked): reading
    stops, no association is made, every entry is 'not sent: interrupted'."""
    files = write_series(tmp_path, 5)
    read: list[str] = []
    real = scu.streaming.safe_header

    def slow_reader(entry: Entry, keep: Any = None) -> Header | EntryError:
        read.append(entry.name)
        if len(read) == 2:
            sigint()
        return real(entry, keep)

    monkeypatch.setattr(scu.streaming, "safe_header", slow_reader)
    sender = make_scu(pacs)
    for path in files:
        sender.add_file(path)
    rec = Recorder()
    with pytest.raises(Interrupted) as caught:
        sender.send(**rec.callbacks)
    result = caught.value.result
    rec.check_invariants(result, files, in_order=True)
    assert len(read) < 5
    assert [o.error for o in result.files] == [INTERRUPTED] * 5
    assert rec.of(FileError) and not pacs.associations


def test_a_rate_limited_transfer_stops_waiting(pacs: MockScp, tmp_path: Path) -> None:
    """At 1 file/s over 2 associations, an interruption after the first file ends the
    wait of the other worker for its turn: it sends nothing more."""
    files = write_series(tmp_path, 6)
    scu = make_scu(pacs, concurrency=2, max_rate=1)
    for path in files:
        scu.add_file(path)

    def stop(event: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        scu.send(on_file_sent=stop)
    result = caught.value.result
    assert result.successful == 1
    assert [o.error for o in result.files if not o.ok] == [INTERRUPTED] * 5
    assert pacs.wait_idle(10) and len(pacs.received) == 1


def test_an_applications_own_sigint_handler_is_left_alone(pacs: MockScp, tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        scu = make_scu(pacs)
        scu.add_file(write_series(tmp_path, 1)[0])
        result = scu.send(on_file_sent=lambda event: os.kill(os.getpid(), signal.SIGINT))
        assert result.successful == 1 and not result.interrupted
        assert calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_default_sigint_handler_is_restored(pacs: MockScp, tmp_path: Path) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    scu = make_scu(pacs)
    scu.add_file(write_series(tmp_path, 1)[0])
    assert scu.send().successful == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(Interrupted):
        scu.send(on_file_sent=lambda event: sigint())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- send_async cancelled -------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 2])
def test_cancelling_send_async(pacs: MockScp, tmp_path: Path, concurrency: int) -> None:
    files = write_series(tmp_path, 6)
    pacs.on_store(nth=range(2, 100)).stall(60)
    scu = make_scu(pacs, concurrency=concurrency, dimse_timeout=60)
    for path in files:
        scu.add_file(path)
    rec = Recorder()
    started = threading.Event()
    when_stores_arrive(pacs, 1 + concurrency, started.set)

    async def run() -> TransferResult:
        task = asyncio.ensure_future(scu.send_async(**rec.callbacks))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        result: TransferResult = caught.value.result  # type: ignore[attr-defined]
        return result

    result = asyncio.run(run())
    check_interrupted(rec, result, files, pacs)
    assert result.successful == 1
    assert sum(IN_FLIGHT_ABORTED in (o.error or "") for o in result.files) == concurrency


def test_cancelling_send_async_while_the_files_are_read(
    pacs: MockScp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled before the first association: reading stops, every entry is accounted,
    the journal is closed, CancelledError carries the result."""
    files = write_series(tmp_path, 40)
    journal = tmp_path / "journal.sqlite"
    reading = threading.Event()
    read: list[str] = []
    real = scu.streaming.safe_header

    def slow_reader(entry: Entry, keep: Any = None) -> Header | EntryError:
        read.append(entry.name)
        reading.set()
        threading.Event().wait(0.02)
        return real(entry, keep)

    monkeypatch.setattr(scu.streaming, "safe_header", slow_reader)
    sender = make_scu(pacs)
    for path in files:
        sender.add_file(path)
    rec = Recorder()

    async def run() -> TransferResult:
        task = asyncio.ensure_future(sender.send_async(**rec.callbacks, journal=journal))
        assert await asyncio.to_thread(reading.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        result: TransferResult = caught.value.result  # type: ignore[attr-defined]
        return result

    result = asyncio.run(run())
    rec.check_invariants(result, files, in_order=True)
    assert result.interrupted and result.failed == 40
    assert {o.error for o in result.files} == {INTERRUPTED}
    assert len(read) < 40
    assert not pacs.associations
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert not any(p.startswith(str(journal)) for p in open_files), "the journal is left open"
