"""Worker processes: ``concurrency > 1`` without the GIL.

Threads share one interpreter lock, and a C-STORE costs the SCU some Python work per
file (the check of the file, the request, the response, the events), so on a machine
with few cores several threads send small files *slower* than one. With
``concurrency=N`` and at least :data:`PROCESS_MIN_FILES` queued entries (on Linux),
``send()`` forks N worker processes instead; each runs the same
:class:`scu.worker.Worker` as a thread would, on associations of its own, and the
caller's process only accounts and calls back:

* **work**: the entries' indexes are handed out from a counter in shared memory
  (:class:`ProcessWorkQueue`), in queue order, a few at a time (at most :data:`CHUNK`, so
  that a process can check the next ones while it waits for an answer). An entry a
  process hands back (it could not get an association) goes to the others first, as
  with threads;
* **events**: each process sends its ``(index, event)`` pairs to the caller's process
  through a pipe, in batches (at least every :data:`FLUSH_AFTER` seconds while it waits
  for an answer, and before anything that may block for long). The caller's thread
  reads them and dispatches them exactly as it dispatches a thread's, so callbacks run
  there, one at a time, the journal is written there, and every entry is accounted
  there, once;
* **shared decisions**: an interruption (Ctrl-C, a cancelled ``send_async``), a
  ``fail_fast`` failure and the rate limits (``max_rate``, ``max_bandwidth``) live in
  shared memory, so every process sees them at once. On an interruption or after a
  ``fail_fast`` failure the processes stop taking entries; the caller's process closes
  what no process took ("not sent: interrupted" / "not sent: fail_fast"), as it closes
  what a process that died unexpectedly left (with its exit status);
* **processes are forked** from the caller's process when the transfer starts, so they
  inherit the queue, the checked headers and the options without copying them. They
  ignore SIGINT and SIGTERM (the caller's process decides, through the shared
  interruption) and stop taking entries if the caller's process disappears.

Below :data:`PROCESS_MIN_FILES` entries (or where ``os.fork`` is missing) the workers
are threads: forking costs a few milliseconds, which a short queue does not win back.
"""

from __future__ import annotations

import gc
import math
import mmap
import os
import pickle
import random
import select
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from scu.convert import end_converter
from scu.errors import AssociationError, AssociationRejected, ConnectionFailed, Rejection
from scu.events import FileError, FileSending, FileSent
from scu.proclock import ProcessLock
from scu.result import Attempt
from scu.streaming import FIRST_PLAN_ENTRIES
from scu.waiting import Interruption
from scu.worker import WorkQueue

__all__ = [
    "CHUNK",
    "FLUSH_AFTER",
    "PROCESS_MIN_FILES",
    "ChildExit",
    "Outbox",
    "ProcessPool",
    "ProcessWorkQueue",
    "Shared",
    "SharedInterruption",
    "processes_available",
]

#: Fewest queued entries for which ``concurrency > 1`` uses processes (else threads).
PROCESS_MIN_FILES = 64
#: Most entries a process takes at once.
CHUNK = 16
#: Longest a process keeps events before sending them while it waits for an answer.
FLUSH_AFTER = 0.005
#: Events a process collects before it sends them whatever the time.
_BATCH = 256
_HEADER = 4


def processes_available() -> bool:
    """Whether worker processes can be forked here (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class Shared:
    """Counters and flags shared by the caller's process and its worker processes: an
    anonymous shared mapping, guarded by one lock that dies with its holder
    (:class:`scu.proclock.ProcessLock`). Made before forking.
    """

    # int slots
    CURSOR, TOTAL, ALIVE, FAIL_FAST, ESTABLISHED, REQUEUED = range(6)
    _INTS = 6
    # float slots
    INTERRUPTED_AT = 0
    _FLOATS = 2

    def __init__(self, total: int, workers: int) -> None:
        self.lock = ProcessLock()
        # An entry is handed back at most once before it is taken again, and a process
        # may hand back its whole first claim (up to FIRST_PLAN_ENTRIES, far more than
        # CHUNK): room for every entry.
        self.capacity = max(1, total)
        #: Where each worker's "has left" flag is (see :meth:`leave`).
        self._left = self._INTS + self.capacity
        ints = self._left + workers
        self._map = mmap.mmap(-1, 8 * (ints + self._FLOATS))
        view = memoryview(self._map)
        self.ints = view[: 8 * ints].cast("q")
        self.floats = view[8 * ints :].cast("d")
        self.ints[self.TOTAL] = total
        self.ints[self.ALIVE] = workers
        self.floats[self.INTERRUPTED_AT] = math.nan

    def leave(self, worker: int) -> None:
        """(Under the lock) worker number ``worker`` takes no more entries: it no longer
        counts as alive. Once per worker, whether it says so itself or the caller's
        process finds it dead: a survivor that cannot get an association must know
        whether anyone is left to hand its entries to."""
        if not self.ints[self._left + worker]:
            self.ints[self._left + worker] = 1
            self.ints[self.ALIVE] -= 1

    def requeue(self, indexes: list[int]) -> None:
        """(Under the lock) put indexes back for the other processes, first in line."""
        ints, n = self.ints, self.ints[self.REQUEUED]
        for index in indexes:
            assert n < self.capacity
            ints[self._INTS + n] = index
            n += 1
        ints[self.REQUEUED] = n

    def requeued(self) -> list[int]:
        """(Under the lock) the indexes handed back and not taken again."""
        return [self.ints[self._INTS + i] for i in range(self.ints[self.REQUEUED])]

    def take_requeued(self) -> int | None:
        """(Under the lock) the oldest index handed back, if any."""
        ints, n = self.ints, self.ints[self.REQUEUED]
        if not n:
            return None
        first = ints[self._INTS]
        for i in range(1, n):
            ints[self._INTS + i - 1] = ints[self._INTS + i]
        ints[self.REQUEUED] = n - 1
        return first


class SharedInterruption(Interruption):
    """:class:`Interruption` kept in shared memory: set in the caller's process (a
    signal handler may set it: no lock), seen at once by every worker process."""

    def __init__(self, shared: Shared) -> None:
        super().__init__()
        self._floats = shared.floats

    def interrupt(self) -> None:
        now = time.monotonic()
        at = self._floats[Shared.INTERRUPTED_AT]
        self._floats[Shared.INTERRUPTED_AT] = now if math.isnan(at) else now - self.GRACE

    @property
    def interrupted(self) -> bool:
        return not math.isnan(self._floats[Shared.INTERRUPTED_AT])

    def cutoff(self) -> float | None:
        at = self._floats[Shared.INTERRUPTED_AT]
        return None if math.isnan(at) else at + self.GRACE


#: Tags of a packed outcome (see :func:`pack`); messages are tuples led by a string.
SENT, ERROR = 1, 2


def pack(index: int, event: FileSent | FileError, announced: bool) -> tuple[Any, ...]:
    """An entry's outcome as plain values (cheap to pickle): the entry's name and the
    FileSending that came before (``announced``) are rebuilt by :func:`unpack`."""
    attempts = tuple(
        (a.number, a.ok, a.status, a.error, a.duration_seconds) for a in event.attempts
    )
    if isinstance(event, FileSent):
        return (SENT, index, announced, event.message, event.sop_instance_uid,
                event.sop_class_uid, event.transfer_syntax, event.duration_seconds,
                event.status, event.warning, attempts, event.size)  # fmt: skip
    return (ERROR, index, announced, event.message, event.error, event.sop_instance_uid,
            event.sop_class_uid, event.file_transfer_syntax, event.status, attempts)  # fmt: skip


def unpack(item: tuple[Any, ...], name: str) -> tuple[FileSending | None, FileSent | FileError]:
    """The events of a packed outcome: its FileSending (if it was announced), then it."""
    attempts = tuple(Attempt(*a) for a in item[-2 if item[0] == SENT else -1])
    if item[0] == SENT:
        _, _, announced, message, uid, sop_class, syntax, duration, status, warning = item[:10]
        event: FileSent | FileError = FileSent(
            message, name, uid, sop_class, syntax, duration, status, warning, attempts, item[11]
        )
    else:
        _, _, announced, message, error, uid, sop_class, syntax, status = item[:9]
        event = FileError(message, name, error, uid, sop_class, syntax, status, attempts)
    sending = FileSending("Sending file", name, uid, sop_class) if announced else None
    return sending, event


class Outbox:
    """A worker process's side of its pipe: packed outcomes and messages, in batches of
    length-prefixed pickles. A FileSending is not sent on its own: the outcome that
    follows it says it was announced, and the caller's process dispatches both."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.items: list[tuple[Any, ...]] = []
        self.first = 0.0
        self.announced: set[int] = set()

    def emit(self, index: int | None, event: Any) -> None:
        assert index is not None
        if isinstance(event, FileSending):
            self.announced.add(index)
            return
        if not self.items:
            self.first = time.monotonic()
        announced = index in self.announced
        if announced:
            self.announced.discard(index)
        self.items.append(pack(index, event, announced))
        if len(self.items) >= _BATCH:
            self.flush()

    def tell(self, *message: Any) -> None:
        """A message for the caller's process (sent at once); led by a string."""
        self.items.append(message)
        self.flush()

    def idle(self) -> bool:
        """Send what waited long enough (called while an answer is awaited)."""
        if self.items and time.monotonic() - self.first >= FLUSH_AFTER:
            self.flush()
        return False

    def flush(self) -> None:
        if not self.items:
            return
        data = pickle.dumps(self.items, protocol=pickle.HIGHEST_PROTOCOL)
        self.items.clear()
        view = memoryview(len(data).to_bytes(_HEADER, "little") + data)
        while view:
            view = view[os.write(self.fd, view) :]


class ProcessWorkQueue(WorkQueue):
    """A worker process's view of the shared queue: it takes indexes a few at a time,
    hands back what it cannot send, and reports to the caller's process through its
    :class:`Outbox` (an association made, or why none could be)."""

    def __init__(
        self, shared: Shared, outbox: Outbox, *, fail_fast: bool, parent: int, number: int = 0
    ) -> None:
        super().__init__(shared.ints[Shared.TOTAL], fail_fast=fail_fast)
        self.shared = shared
        self.number = number
        self.outbox = outbox
        self.parent = parent
        self.interruption = SharedInterruption(shared)
        self._pos = self._stop = 0
        self._told_open = False
        self._gone = False
        self._first_claim = True

    def upcoming(self) -> tuple[int, int]:
        return self._pos, self._stop

    def _leave(self) -> None:
        """(Under the lock) this process takes no more entries."""
        if not self._gone:
            self._gone = True
            self.shared.leave(self.number)

    def next_index(self) -> int | None:
        shared, ints = self.shared, self.shared.ints
        if os.getppid() != self.parent:  # nobody left to report to
            with shared.lock:
                self._leave()
            return None
        if self._pos < self._stop:
            # Handed out even after an interruption or a fail_fast failure: the worker
            # closes them ("not sent: ...") without sending, so that whatever a process
            # holds unaccounted when it ends is what it may have sent.
            self._pos += 1
            return self._pos - 1
        stop = self.interruption.interrupted or ints[Shared.FAIL_FAST]
        with shared.lock:
            if stop:
                self._leave()
                return None
            requeued = shared.take_requeued()
            if requeued is not None:
                return requeued
            cursor, total = ints[Shared.CURSOR], ints[Shared.TOTAL]
            if cursor >= total:
                self._leave()
                return None
            alive = max(1, ints[Shared.ALIVE])
            if self._first_claim:
                # The first association is planned from the entries this process takes
                # first (streaming.FIRST_PLAN_ENTRIES between the processes).
                take = max(1, min(FIRST_PLAN_ENTRIES // alive, (total - cursor) // alive))
                self._first_claim = False
            else:
                take = max(1, min(CHUNK, (total - cursor) // (2 * alive)))
            ints[Shared.CURSOR] = cursor + take
        self._pos, self._stop = cursor + 1, cursor + take
        return cursor

    def give_back(self, index: int) -> bool:
        with self.shared.lock:
            if self.shared.ints[Shared.ALIVE] <= 1:
                return False
            self.shared.requeue([index, *range(self._pos, self._stop)])
            self._pos = self._stop
            self._leave()
        return True

    def opened(self) -> None:
        if not self._told_open:
            self._told_open = True
            self.shared.ints[Shared.ESTABLISHED] = 1
            self.outbox.tell("opened")

    def could_not_open(self, exc: AssociationError) -> None:
        rejection = getattr(exc, "rejection", None)
        self.outbox.tell("could-not-open", str(exc), exc.transient, rejection)

    def failed(self) -> None:
        if self.fail_fast:
            self.shared.ints[Shared.FAIL_FAST] = 1

    @property
    def fail_fast_hit(self) -> bool:
        return bool(self.shared.ints[Shared.FAIL_FAST])


def rebuild_error(message: str, transient: bool, rejection: Rejection | None) -> AssociationError:
    """The association error a worker process reported, as the caller raises it."""
    if rejection is not None:
        return AssociationRejected(message, rejection=rejection)
    return ConnectionFailed(message, transient=transient)


class ChildExit:
    """How a worker process ended: cleanly (it said so), or not (its exit status)."""

    def __init__(self) -> None:
        self.clean = False
        self.status: int | None = None

    def describe(self) -> str:
        if self.status is not None and self.status < 0:
            return f"killed by signal {-self.status}"
        return f"exit status {self.status}"


class ProcessPool:
    """The worker processes of one transfer, seen from the caller's process."""

    def __init__(self, shared: Shared, count: int) -> None:
        self.shared = shared
        self.count = count
        self.pids: dict[int, int] = {}  # read fd -> pid
        self._numbers: dict[int, int] = {}  # pid -> worker number
        self.exits: dict[int, ChildExit] = {}  # pid -> how it ended
        self._buffers: dict[int, bytearray] = {}
        self._poller = select.poll()
        #: Items read and not dispatched yet: (pid, packed outcome or message).
        self.pending: deque[tuple[int, tuple[Any, ...]]] = deque()

    def start(self, child: Callable[[Outbox, ProcessWorkQueue], None], *, fail_fast: bool) -> None:
        """Fork the processes; each runs ``child(outbox, work)`` and exits."""
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # objects the children inherit are never scanned (no copy-on-write)
        try:
            for number in range(self.count):
                rfd, wfd = os.pipe()
                try:
                    _grow_pipe(wfd)
                    pid = os.fork()
                except BaseException:
                    os.close(rfd)
                    os.close(wfd)
                    raise
                if pid == 0:  # pragma: no cover - the child's side, measured by its effects
                    _child_main(self, child, rfd, wfd, parent, fail_fast, number)
                os.close(wfd)
                os.set_blocking(rfd, False)
                self.pids[rfd] = pid
                self._numbers[pid] = number
                self.exits[pid] = ChildExit()
                self._buffers[rfd] = bytearray()
                self._poller.register(rfd, select.POLLIN)
        except BaseException:
            # The processes already started go on: their entries are accounted as
            # they report; the shared counter makes sure none is taken twice.
            with self.shared.lock:
                for number in range(len(self.pids), self.count):
                    self.shared.leave(number)
            raise
        finally:
            gc.unfreeze()

    @property
    def running(self) -> bool:
        return bool(self.pids)

    @property
    def fds(self) -> list[int]:
        return list(self.pids)

    def wait(self, timeout: float | None) -> list[int]:
        """The pipes with something to read (or closed), within ``timeout`` seconds."""
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return [fd for fd, _ in self._poller.poll(ms)]

    def read(self, fd: int) -> None:
        """Queue in :attr:`pending` what process ``fd`` sent since the last read; at its
        end the process is reaped and forgotten."""
        if self._drain(fd):
            self._reap(fd)

    def _drain(self, fd: int) -> bool:
        """Queue what can be read from ``fd`` now; whether its end was reached."""
        pid = self.pids[fd]
        buffer = self._buffers[fd]
        closed = False
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                closed = True
                break
            buffer += chunk
        self.pending.extend((pid, item) for item in _frames(buffer))
        return closed

    def _reap(self, fd: int, status: int | None = None) -> None:
        pid = self.pids.pop(fd)
        self._poller.unregister(fd)
        os.close(fd)
        del self._buffers[fd]
        if status is None:
            _, status = os.waitpid(pid, 0)
        self.exits[pid].status = os.waitstatus_to_exitcode(status)
        with self.shared.lock:  # (already so, unless it died)
            self.shared.leave(self._numbers[pid])

    def mark_clean(self, pid: int) -> None:
        self.exits[pid].clean = True

    def unclean(self) -> list[ChildExit]:
        return [e for e in self.exits.values() if not e.clean]

    def kill(self) -> None:
        """End every process still running at once (SIGKILL) and reap them. What they
        wrote before they ended is queued in :attr:`pending` first: outcomes the SCP
        acknowledged are still accounted as such."""
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for fd, pid in list(self.pids.items()):
            _, status = os.waitpid(pid, 0)
            self._drain(fd)  # all it wrote is in the pipe now: nothing more will come
            self._reap(fd, status)


def _frames(buffer: bytearray) -> Iterator[tuple[Any, ...]]:
    """The complete frames at the start of ``buffer`` (consumed), item by item."""
    pos = 0
    while len(buffer) - pos >= _HEADER:
        size = int.from_bytes(buffer[pos : pos + _HEADER], "little")
        if len(buffer) - pos - _HEADER < size:
            break
        items = pickle.loads(memoryview(buffer)[pos + _HEADER : pos + _HEADER + size])
        pos += _HEADER + size
        yield from items
    del buffer[:pos]


def _grow_pipe(fd: int) -> None:
    """A larger pipe buffer (1 MiB where allowed): a busy caller's thread does not stall
    the workers on a full pipe as soon."""
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
    except (OSError, ImportError):
        pass


def _child_main(
    pool: ProcessPool,
    child: Callable[[Outbox, ProcessWorkQueue], None],
    rfd: int,
    wfd: int,
    parent: int,
    fail_fast: bool,
    number: int,
) -> None:  # pragma: no cover - runs in the worker process
    code = 0
    try:
        os.close(rfd)
        for fd in pool.pids:  # the other workers' pipes, inherited: not ours to hold
            os.close(fd)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        random.seed()  # the retries' jitter must differ between processes
        outbox = Outbox(wfd)
        work = ProcessWorkQueue(
            pool.shared, outbox, fail_fast=fail_fast, parent=parent, number=number
        )
        try:
            child(outbox, work)
            outbox.flush()
            outbox.tell("done")
        except BaseException:
            code = 1
            report = traceback.format_exc()
            try:
                outbox.flush()  # what was done before is accounted
            except BaseException:
                outbox.items.clear()
            outbox.tell("crashed", report)
    except BaseException:
        code = 2
    finally:
        try:  # os._exit runs no atexit handler: the converter child is ended here
            end_converter()
        finally:
            os._exit(code)
