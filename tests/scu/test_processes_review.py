"""Worker processes (scu.processes) at their edges: entries handed back by processes
that get no association, a worker process ended while it holds entries under
``fail_fast``, and what the worker processes had already reported when the transfer
ends early. No timing assertions: waits are bounded and only make an order certain.
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import scu.processes as processes
from mock_scp import MockScp
from scu import FileSent, Interrupted
from scu.processes import Outbox, Shared
from scu.worker import Worker
from tests.scu.test_processes import forks, queue, scu_for, uid_of
from tests.support.recorder import Recorder

__all__ = ["forks"]

pytestmark = pytest.mark.skipif(
    not processes.processes_available(), reason="worker processes need os.fork (Linux)"
)

ENDED = "ended unexpectedly"


def until(condition: Any, seconds: float = 20.0) -> None:
    """Wait (bounded) for ``condition()``: it only orders events across processes."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> list[Shared]:
    """The transfer's shared counters, as the worker processes inherit them."""
    made: list[Shared] = []
    init = Shared.__init__

    def spy(self: Shared, *args: Any) -> None:
        init(self, *args)
        made.append(self)

    monkeypatch.setattr(Shared, "__init__", spy)
    return made


@pytest.mark.timeout(60)
def test_every_entry_handed_back_is_sent_by_the_process_that_has_an_association(
    forks: list[int],
) -> None:
    """An SCP that takes one association at a time: the two processes refused hand back
    all they took (their first claims are far larger than later ones) and the process
    that has the association sends everything."""
    with MockScp(max_associations=1) as scp:
        scu = scu_for(scp)
        names = queue(scu, 600)
        rec = Recorder()
        result = scu.send(**rec.callbacks)
        assert scp.wait_idle(5)
        received = {r.sop_instance_uid for r in scp.received}

    assert forks == [3]
    rec.check_invariants(result, names)
    assert result.successful == 600, sorted({o.error or "" for o in result.files if not o.ok})
    assert received == {uid_of(n) for n in range(600)}


@pytest.mark.timeout(60)
def test_a_process_killed_after_fail_fast_does_not_call_what_it_sent_not_sent(
    forks: list[int], shared: list[Shared], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fail_fast stops the transfer (entry 25 is refused), and the process that holds
    entries 0-19 is killed right after the SCP acknowledged entry 5, before it passed the
    outcome on. Entry 5 reached the SCP: it must not be reported "not sent: fail_fast",
    but as taken by a process that ended ("may have reached the SCP"). The processes that
    stopped cleanly did not send what they held: "not sent: fail_fast"."""
    emit, payload = Outbox.emit, Worker._payload
    parent = os.getpid()
    acknowledged = mmap.mmap(-1, 1)  # entry 5 was answered (seen by every process)

    def dying(self: Outbox, index: int | None, event: Any) -> None:
        if index == 5 and isinstance(event, FileSent) and os.getpid() != parent:
            acknowledged[0] = 1
            ints = shared[0].ints
            until(lambda: ints[Shared.FAIL_FAST])
            os.kill(os.getpid(), signal.SIGKILL)
        emit(self, index, event)

    def refused_after_5(self: Worker, index: int, *args: Any) -> Any:
        if index == 25 and os.getpid() != parent:
            until(lambda: acknowledged[0] == 1)
        return payload(self, index, *args)

    monkeypatch.setattr(Outbox, "emit", dying)
    monkeypatch.setattr(Worker, "_payload", refused_after_5)
    with MockScp() as scp:
        scp.on_store(sop_instance_uid=uid_of(25)).fail(0xA900)
        scu = scu_for(scp, fail_fast=True)
        names = queue(scu, 60)
        rec = Recorder()
        result = scu.send(**rec.callbacks)
        assert scp.wait_idle(5)
        received = {r.sop_instance_uid for r in scp.received}

    assert forks == [3]
    rec.check_invariants(result, names)
    assert uid_of(5) in received
    assert ENDED in (result.files[5].error or ""), result.files[5].error
    skipped = [n for n, o in enumerate(result.files) if o.error == "not sent: fail_fast"]
    assert skipped and not {uid_of(n) for n in skipped} & received
    # Entries 20-59 were taken by the processes that stopped cleanly, or by none.
    assert not [n for n in range(20, 60) if ENDED in (result.files[n].error or "")]


def ended(pid: int) -> bool:
    """The process has exited and is not reaped yet (a zombie)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.timeout(60)
def test_outcomes_the_processes_reported_are_accounted_when_a_callback_ends_the_send(
    forks: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A callback ends send() with SystemExit after the first outcome, once every worker
    process has sent everything and exited: the outcomes already read and those still
    in the pipes are acknowledged stores. They are accounted as sent (callbacks and
    journal), as with threads, not as "interrupted while it was being sent"."""
    pools: list[processes.ProcessPool] = []
    start = processes.ProcessPool.start

    def spy(self: processes.ProcessPool, *args: Any, **kwargs: Any) -> None:
        pools.append(self)
        start(self, *args, **kwargs)

    monkeypatch.setattr(processes.ProcessPool, "start", spy)
    journal = tmp_path / "journal.sqlite"
    with MockScp() as scp:
        scu = scu_for(scp)
        names = queue(scu, 60)
        rec = Recorder()
        callbacks = rec.callbacks
        record = callbacks["on_file_sent"]

        def on_sent(event: FileSent) -> None:
            record(event)
            if len(rec.of(FileSent)) == 1:
                until(lambda: all(ended(pid) for pid in pools[0].pids.values()))
                raise SystemExit(3)

        callbacks["on_file_sent"] = on_sent
        with pytest.raises(SystemExit):
            scu.send(journal=journal, **callbacks)
        assert scp.wait_idle(5)
        assert len(scp.received) == 60

    assert forks == [3]
    assert sorted(e.file for e in rec.terminal()) == names
    assert not rec.errors_by_file() and len(rec.of(FileSent)) == 60
    with sqlite3.connect(journal) as db:
        (count,) = db.execute("SELECT count(*) FROM outcomes WHERE ok = 1").fetchone()
    assert count == 60


@pytest.mark.timeout(60)
def test_a_worker_process_that_dies_stops_the_others_under_fail_fast(
    forks: list[int], shared: list[Shared], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fail_fast: the process holding entries 0-19 dies at entry 5, which fails what it
    held; as after any other failure, the other processes stop and the rest fail "not
    sent: fail_fast". (Each of them waits, bounded, at its first entry from 20 on until
    the transfer is stopped, so that it still holds entries then.)"""
    payload = Worker._payload
    parent = os.getpid()
    waited: list[int] = []  # per process: each has its own copy

    def dying(self: Worker, index: int, *args: Any) -> Any:
        if os.getpid() != parent:
            if index == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            if index >= 20 and not waited:
                waited.append(index)
                ints = shared[0].ints
                until(lambda: ints[Shared.FAIL_FAST], 10)
        return payload(self, index, *args)

    monkeypatch.setattr(Worker, "_payload", dying)
    with MockScp() as scp:
        scu = scu_for(scp, fail_fast=True)
        names = queue(scu, 60)
        rec = Recorder()
        result = scu.send(**rec.callbacks)
        assert scp.wait_idle(5)
        received = {r.sop_instance_uid for r in scp.received}

    assert forks == [3]
    rec.check_invariants(result, names)
    assert ENDED in (result.files[5].error or "")
    skipped = [n for n, o in enumerate(result.files) if o.error == "not sent: fail_fast"]
    assert skipped, "the other processes went on after the failure"
    assert not {uid_of(n) for n in skipped} & received


_NO_ORPHAN = """
import ctypes, os, sys
assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # a child subreaper
import scu.processes as processes
processes.PROCESS_MIN_FILES = 2
from mock_scp import MockScp
from tests.scu.test_processes import queue, scu_for

def parent_of(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])

with MockScp() as scp:
    scu = scu_for(scp, transfer_syntax="1.2.840.10008.1.2.5")
    queue(scu, 12)
    result = scu.send()
    assert result.successful == 12, [o.error for o in result.files if not o.ok]
    left = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and parent_of(name) == os.getpid():
                left.append(name)
        except OSError:
            pass
print(left)
"""


@pytest.mark.timeout(60)
def test_worker_processes_leave_no_converter_process_behind() -> None:
    """Each worker process that converts runs a converter child of its own. The worker
    ends with os._exit, so it must end and reap that child itself: otherwise the child
    outlives it, an orphan handed to init, or to the caller's process where that is
    the subreaper (a container's PID 1), whose zombie it then stays."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _NO_ORPHAN], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.timeout(60)
def test_a_second_ctrl_c_while_reading_the_pipes_duplicates_nothing(
    forks: list[int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A second Ctrl-C raises at once, but not in the middle of reading a process's
    pipe and cutting it into frames: raised there, the frames already queued were
    left in the buffer and queued again (on_file_sending twice for the same entry, its
    second outcome dropped), or bytes read were lost. The first Ctrl-C comes with the
    first frame read, the second as a batch of several outcomes is unframed."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is handled on the main thread")
    frames = processes._frames
    calls = [0]

    def unframed(buffer: bytearray) -> Any:
        calls[0] += 1
        several = False
        if len(buffer) >= 4:
            size = int.from_bytes(buffer[:4], "little")
            several = len(buffer) >= 4 + size and len(pickle.loads(buffer[4 : 4 + size])) > 1
        if calls[0] == 1:
            os.kill(os.getpid(), signal.SIGINT)
        for n, item in enumerate(frames(buffer)):
            if n == 1 and several and calls[0] < 10**6:  # the first item is queued
                calls[0] = 10**6  # once
                os.kill(os.getpid(), signal.SIGINT)
            yield item

    monkeypatch.setattr(processes, "_frames", unframed)
    with MockScp() as scp:
        scu = scu_for(scp)
        names = queue(scu, 300)
        rec = Recorder()
        with pytest.raises(Interrupted) as caught:
            scu.send(**rec.callbacks)

    assert forks == [3] and calls[0] >= 10**6
    assert not [r for r in caplog.records if "second outcome" in r.getMessage()]
    rec.check_invariants(caught.value.result, names)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["shared counters", "rate limits"])
def test_a_process_killed_while_it_holds_the_shared_lock_does_not_hang_the_others(
    which: str,
) -> None:
    """The OOM killer may end a worker process in the microseconds it holds the lock on
    the shared counters or the shared rate limits: the lock goes with it, and the other
    processes (here the caller) take it next. (A process-shared semaphore stays taken
    forever: this test then ends by its timeout.)"""
    from scu.ratelimit import SharedRateLimiter

    limiter = SharedRateLimiter(1000.0, None)
    shared = Shared(10, 2)
    lock = shared.lock if which == "shared counters" else limiter._lock
    held_r, held_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: takes the lock and dies holding it
        try:
            lock.acquire()
            os.write(held_w, b"x")
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    assert os.read(held_r, 1) == b"x"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    with lock:  # free again
        pass
    assert limiter.acquire(1, lambda: True)
    with shared.lock:
        shared.requeue([3])
        assert shared.take_requeued() == 3


@pytest.mark.timeout(60)
def test_a_worker_process_that_dies_no_longer_counts_as_alive() -> None:
    """A worker process killed before it said it left is taken off the count of live
    workers when the caller's process reaps it: a survivor that cannot get an
    association then fails the rest itself (with the association's error) instead of
    handing them back to nobody."""
    shared = Shared(40, 2)
    pool = processes.ProcessPool(shared, 2)

    def child(outbox: Outbox, work: processes.ProcessWorkQueue) -> None:
        if work.number == 0:  # takes its first entries, then dies without a word
            work.next_index()
            os.kill(os.getpid(), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while shared.ints[Shared.ALIVE] > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        index = work.next_index()
        assert index is not None
        outbox.tell("handed back", work.give_back(index))

    pool.start(child, fail_fast=False)
    while pool.running:
        for fd in pool.wait(0.5):
            pool.read(fd)
    told = [item for _, item in pool.pending if item[0] == "handed back"]
    assert told == [("handed back", False)]
    assert shared.ints[Shared.ALIVE] == 0
    assert sorted(e.status or 0 for e in pool.exits.values()) == [-signal.SIGKILL, 0]
