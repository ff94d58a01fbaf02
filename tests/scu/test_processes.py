"""Worker processes (scu.processes): with ``concurrency > 1`` and enough entries the
workers are forked processes; the accounting, the callbacks (on the caller's thread,
one at a time), fail_fast, interruption, retries, rate limits, the journal and a worker
that dies all behave as with threads.

The threshold is lowered so that short queues use processes; a spy on the pool says
they did. No timing assertions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import scu.processes as processes
from mock_scp import MockScp, datagen
from scu import AssociationRejected, FileSending, FileSent, Interrupted, StoreScu
from scu.ratelimit import SharedRateLimiter
from tests.support.recorder import Recorder

pytestmark = pytest.mark.skipif(
    not processes.processes_available(), reason="worker processes need os.fork (Linux)"
)

_TEMPLATE_UID = "2.25.300000000000"


def uid_of(n: int) -> str:
    return f"2.25.{300000000000 + n}"


def queue(scu: StoreScu, count: int, *, side: int = 8) -> list[str]:
    template = datagen.make_bytes(sop_instance_uid=_TEMPLATE_UID, rows=side, columns=side)
    names = []
    for n in range(count):
        names.append(f"p{n:04d}")
        scu.add_file_from_memory(template.replace(_TEMPLATE_UID.encode(), uid_of(n).encode()),
                                 names[-1])  # fmt: skip
    return names


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Processes for any queue of 2 entries or more; counts the processes forked."""
    monkeypatch.setattr(processes, "PROCESS_MIN_FILES", 2)
    forked: list[int] = []
    start = processes.ProcessPool.start

    def spy(self: processes.ProcessPool, *args: object, **kwargs: object) -> None:
        start(self, *args, **kwargs)  # type: ignore[arg-type]
        forked.append(len(self.exits))

    monkeypatch.setattr(processes.ProcessPool, "start", spy)
    return forked


def scu_for(scp: MockScp, **options: object) -> StoreScu:
    settings: dict[str, object] = {"called_ae_title": scp.ae_title, "concurrency": 3,
                                   "dimse_timeout": 5.0, **options}  # fmt: skip
    return StoreScu(scp.addr, **settings)  # type: ignore[arg-type]


def test_every_entry_accounted_once_with_callbacks_on_the_callers_thread(
    mock_scp: MockScp, forks: list[int]
) -> None:
    mock_scp.on_store(sop_instance_uid=uid_of(5)).fail(0xA700, comment="full")
    mock_scp.on_store(sop_instance_uid=uid_of(9)).warn(0xB000, comment="coerced")
    scu = scu_for(mock_scp)
    names = queue(scu, 40)
    scu.add_file_from_memory(b"not dicom at all", "broken")
    rec = Recorder(hold=0.001)
    result = scu.send(**rec.callbacks)

    assert forks == [3]
    rec.check_invariants(result, [*names, "broken"])
    assert rec.threads == {threading.get_ident()}
    assert (result.successful, result.failed) == (39, 2)
    assert result.files[5].status == 0xA700 and "full" in (result.files[5].error or "")
    assert result.files[9].ok and result.warnings and "0xB000" in result.warnings[0]
    assert "broken" in (result.files[-1].file or "") and not result.files[-1].ok
    assert sorted(r.sop_instance_uid for r in mock_scp.received) == sorted(map(uid_of, range(40)))
    assert 1 < len(mock_scp.associations) <= 3
    for name in names:  # per entry: FileSending before its outcome, once each
        kinds = [type(e).__name__ for e in rec.events if getattr(e, "file", None) == name]
        assert kinds in (["FileSending", "FileSent"], ["FileSending", "FileError"])


def test_send_async_with_processes(mock_scp: MockScp, forks: list[int]) -> None:
    scu = scu_for(mock_scp, concurrency=2)
    names = queue(scu, 30)
    rec = Recorder()
    result = asyncio.run(scu.send_async(**rec.callbacks))
    assert forks == [2]
    rec.check_invariants(result, names)
    assert result.successful == 30


def test_fail_fast_stops_every_process(mock_scp: MockScp, forks: list[int]) -> None:
    mock_scp.on_store(sop_instance_uid=uid_of(3)).fail(0xA900)
    scu = scu_for(mock_scp, fail_fast=True)
    names = queue(scu, 60)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    assert forks == [3]
    rec.check_invariants(result, names)
    refused = [o for o in result.files if o.status == 0xA900]
    skipped = [o for o in result.files if o.error == "not sent: fail_fast"]
    assert len(refused) == 1 and skipped
    assert result.failed == 1 + len(skipped) == result.total_files - result.successful
    sent = {r.sop_instance_uid for r in mock_scp.received}
    assert not {o.sop_instance_uid for o in skipped} & sent
    assert len(mock_scp.received) + len(skipped) == 60


def test_interrupted_by_sigint_every_entry_accounted(mock_scp: MockScp, forks: list[int]) -> None:
    """Ctrl-C (SIGINT to the caller's process) after 10 files: the processes stop
    taking entries, what they had in flight is answered, the rest is "not sent:
    interrupted", and send() raises Interrupted with the complete result."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is handled on the main thread")
    scu = scu_for(mock_scp)
    names = queue(scu, 400)
    rec = Recorder()
    callbacks = rec.callbacks
    record_sent = callbacks["on_file_sent"]

    def on_sent(event: FileSent) -> None:
        record_sent(event)
        if len(rec.of(FileSent)) == 10:
            os.kill(os.getpid(), signal.SIGINT)

    callbacks["on_file_sent"] = on_sent
    with pytest.raises(Interrupted) as caught:
        scu.send(**callbacks)

    result = caught.value.result
    assert forks == [3]
    rec.check_invariants(result, names)
    assert result.interrupted
    not_sent = [o for o in result.files if o.error == "not sent: interrupted"]
    assert not_sent and result.successful >= 10
    assert (
        result.successful
        + len(not_sent)
        + sum(1 for o in result.files if not o.ok and o.error != "not sent: interrupted")
        == 400
    )
    assert len(mock_scp.received) < 400
    received = {r.sop_instance_uid for r in mock_scp.received}
    assert not {o.sop_instance_uid for o in not_sent if o.sop_instance_uid} & received


def test_cancelled_send_async_with_processes(mock_scp: MockScp, forks: list[int]) -> None:
    scu = scu_for(mock_scp)
    names = queue(scu, 400)
    rec = Recorder()
    cancelled: list[object] = []

    async def main() -> None:
        task = asyncio.create_task(scu.send_async(**rec.callbacks))
        while len(rec.of(FileSent)) < 10:
            await asyncio.sleep(0.001)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as exc:
            cancelled.append(getattr(exc, "result", None))

    asyncio.run(main())
    assert forks == [3]
    result = cancelled[0]
    assert result is not None and result.interrupted  # type: ignore[attr-defined]
    rec.check_invariants(result, names)  # type: ignore[arg-type]
    assert any(o.error == "not sent: interrupted" for o in result.files)  # type: ignore[attr-defined]


def test_no_association_at_all_raises_with_every_entry_failed(
    mock_scp: MockScp, forks: list[int]
) -> None:
    mock_scp.reject_associations(result="permanent", source="service-user",
                                 reason="calling-ae-title-not-recognized")  # fmt: skip
    scu = scu_for(mock_scp)
    names = queue(scu, 20)
    rec = Recorder()
    with pytest.raises(AssociationRejected) as caught:
        scu.send(**rec.callbacks)
    assert forks == [3]
    assert caught.value.result is not None and caught.value.rejection.result == 1
    rec.check_invariants(caught.value.result, names)
    assert caught.value.result.failed == 20
    assert not rec.of(FileSending)


def test_retries_and_reassociation_in_a_process(mock_scp: MockScp, forks: list[int]) -> None:
    mock_scp.on_store(sop_instance_uid=uid_of(4), times=1).fail(0xA700)  # transient
    mock_scp.on_store(sop_instance_uid=uid_of(7), times=1).abort()
    scu = scu_for(mock_scp, retries=1, retry_backoff=0)
    names = queue(scu, 30)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, names)
    assert result.successful == 30
    assert [a.status for a in result.files[4].attempts] == [0xA700, 0x0000]
    assert len(result.files[7].attempts) == 2


def test_the_journal_is_written_by_the_caller(
    mock_scp: MockScp, forks: list[int], tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    scu = scu_for(mock_scp)
    names = queue(scu, 50)
    result = scu.send(journal=journal)
    assert result.successful == 50
    with sqlite3.connect(journal) as db:
        (count,) = db.execute("SELECT count(*) FROM outcomes WHERE ok = 1").fetchone()
    assert count == len(names)
    again = scu.send(journal=journal, resume=True)
    assert again.total_files == 0 and len(again.already_sent) == 50


def test_a_worker_process_that_dies_leaves_no_entry_unaccounted(
    forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process killed while it holds entries (a codec crash, the OOM killer):
    those entries fail naming the process's end (the events it had not passed on yet are
    lost with it, so some may have reached the SCP); the other processes send the rest.
    (A server of its own: the dead process drops its connection, a violation.)"""
    from scu.worker import Worker

    payload = Worker._payload
    parent = os.getpid()

    def dying(self: Worker, index: int, *args: object) -> object:
        if index == 13 and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return payload(self, index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Worker, "_payload", dying)
    with MockScp() as scp:
        scu = scu_for(scp)
        names = queue(scu, 60)
        rec = Recorder()
        result = scu.send(**rec.callbacks)
        assert scp.wait_idle(5)
        received = {r.sop_instance_uid for r in scp.received}

    assert forks == [3]
    rec.check_invariants(result, names)
    lost = [o for o in result.files if not o.ok]
    assert lost and result.files[13] in lost
    assert all("process sending it ended unexpectedly (killed by signal 9)" in (o.error or "")
               for o in lost)  # fmt: skip
    assert result.successful + len(lost) == 60
    assert uid_of(13) not in received
    assert {o.sop_instance_uid for o in result.files if o.ok} <= received


def test_conversions_in_worker_processes_after_the_caller_converted(
    mock_scp: MockScp, forks: list[int]
) -> None:
    """Worker processes forked while the caller's converter child runs each convert
    through one of their own: every data set arrives converted, and each is the one its
    request announced (jobs mixed in one child's pipes would swap or fail them)."""
    rle = "1.2.840.10008.1.2.5"
    warm = scu_for(mock_scp, transfer_syntax=rle, concurrency=1)
    queue(warm, 1)
    assert warm.send().successful == 1  # the caller's converter child now runs
    scu = scu_for(mock_scp, transfer_syntax=rle)
    names = queue(scu, 24, side=256)  # jobs larger than a pipe writes at once
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, names)
    assert forks == [3]
    assert result.successful == 24, [o.error for o in result.files if not o.ok]
    assert {o.transfer_syntax for o in result.files} == {rle}
    assert mock_scp.wait_idle(5)
    by_uid = {r.sop_instance_uid: r for r in mock_scp.received}
    assert {uid_of(n) for n in range(24)} <= set(by_uid)
    assert all(by_uid[uid_of(n)].transfer_syntax == rle for n in range(24))
    assert not mock_scp.violations  # each data set is the one its request announced


def test_object_storage_entries_are_sent_by_threads(forks: list[int]) -> None:
    """Objects are read through fsspec, whose event loop thread and sessions a forked
    process would inherit half-alive: a queue holding one is sent by threads."""
    from scu.association import Endpoint
    from scu.options import Address
    from scu.planning import SyntaxPolicy
    from scu.source import Entry
    from scu.transfer import Callbacks, Transfer

    def transfer(entries: list[Entry]) -> Transfer:
        endpoint = Endpoint(address=Address("127.0.0.1", 1), calling_ae_title="SCU",
                            called_ae_title="ANY", max_pdu_length=16384)  # fmt: skip
        return Transfer(entries, endpoint=endpoint, policy=SyntaxPolicy(),
                        concurrency=2, fail_fast=False, callbacks=Callbacks())  # fmt: skip

    local = [Entry(f"m{n}", data=b"x") for n in range(4)]
    assert transfer(local).use_processes
    remote = object()  # only its presence is looked at
    mixed = [*local, Entry("s3://bucket/key", remote=remote)]  # type: ignore[arg-type]
    assert not transfer(mixed).use_processes


def test_rate_limit_shared_across_processes() -> None:
    """One budget for every process: a file taken in the caller's process after the
    fork is not there for a worker process any more (1 file/s, no burst)."""
    limiter = SharedRateLimiter(1.0, None)
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: waits for the caller to spend the token, then tries
        try:
            os.read(ready_r, 1)
            got = limiter.acquire(1, lambda: True)  # no waiting
            os.write(done_w, b"1" if got else b"0")
        finally:
            os._exit(0)
    assert limiter.acquire(1, lambda: True)
    os.write(ready_w, b"x")
    answer = os.read(done_r, 1)
    os.waitpid(pid, 0)
    assert answer == b"0"
    time.sleep(0)  # the caller's own copy agrees
    assert not limiter.acquire(1, lambda: True)
