"""One run of ``StoreScu.send()``: the accounting, the callbacks, and the threads.

A transfer runs in three steps:

1. *prepare* (caller's thread): every queued entry is read and checked
   (:func:`scu.source.read_header`) and the presentation contexts are planned
   (:mod:`scu.planning`);
2. *work*: one :class:`scu.worker.Worker` per association (``concurrency``) takes
   entries in queue order from a shared :class:`scu.worker.WorkQueue` and stores them on
   its own association, re-associating after an abort, a drop or a DIMSE timeout;
3. *dispatch* (caller's thread): workers only *emit* ``(index, event)`` pairs; the
   caller's thread does all the accounting and runs the callbacks, one at a time. With
   ``concurrency=1`` and ``send()`` the worker runs inline on the caller's thread, so no
   thread is started at all.

Because accounting lives in one place and the dispatcher closes any entry that a worker
failed to close (with an "internal error" outcome), every queued entry ends in exactly
one ``on_file_sent`` or ``on_file_error``, whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from scu import processes
from scu.association import Endpoint
from scu.errors import CallbackError, Interrupted
from scu.events import Event, FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from scu.journal import TransferJournal, entry_key
from scu.planning import SyntaxPolicy
from scu.processes import (
    ERROR,
    SENT,
    Outbox,
    ProcessPool,
    ProcessWorkQueue,
    Shared,
    SharedInterruption,
    processes_available,
    rebuild_error,
    unpack,
)
from scu.ratelimit import RateLimiter, SharedRateLimiter
from scu.result import FileOutcome, TransferResult
from scu.source import Entry
from scu.streaming import FIRST_PLAN_ENTRIES, Headers, Planner
from scu.waiting import Interruption
from scu.worker import INTERRUPTED, Emit, RetryPolicy, Worker, WorkQueue, error_event

__all__ = ["Callbacks", "Transfer"]

log = logging.getLogger("scu")

E = TypeVar("E")
Callback = Callable[[E], object] | None


@dataclass(frozen=True)
class Callbacks:
    started: Callback[TransferStarted] = None
    sending: Callback[FileSending] = None
    sent: Callback[FileSent] = None
    error: Callback[FileError] = None
    completed: Callback[TransferCompleted] = None


_DONE = object()
#: How long the caller's thread waits for an event before it looks at the interruption
#: again (an interruption that is not a signal does not wake a blocked wait).
_POLL = 0.25
#: The error of an entry whose store had begun when the transfer was interrupted.
INTERRUPTED_IN_FLIGHT = "interrupted while it was being sent"


class Transfer:
    """The state of one ``send()``: the queue snapshot, outcomes and counts."""

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        endpoint: Endpoint,
        policy: SyntaxPolicy,
        concurrency: int,
        fail_fast: bool,
        callbacks: Callbacks,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        journal: TransferJournal | None = None,
        resume: bool = False,
    ) -> None:
        self.destination = f"{endpoint.address}/{endpoint.called_ae_title}"
        self.journal = journal
        keys = [entry_key(e) for e in entries] if journal is not None else []
        self.already_sent: list[str] = []
        if journal is not None and resume:
            done = journal.acknowledged(keys, self.destination)
            self.already_sent = [e.name for e, k in zip(entries, keys, strict=True) if k in done]
            kept = [(e, k) for e, k in zip(entries, keys, strict=True) if k not in done]
            entries, keys = [e for e, _ in kept], [k for _, k in kept]
        self.keys = keys
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or RateLimiter(None, None)
        self.interruption = Interruption()
        self.entries = list(entries)
        self.total = len(self.entries)
        self.endpoint = endpoint
        self.policy = policy
        self.concurrency = concurrency
        self.callbacks = callbacks
        self.outcomes: list[FileOutcome | None] = [None] * self.total
        self.warnings: list[str] = []
        self.successful = 0
        self.failed = 0
        self.started_at = time.monotonic()
        self.callback_error: BaseException | None = None
        self.work = WorkQueue(self.total, fail_fast=fail_fast)
        self.cancelled = False
        #: Entries announced with FileSending (their store had begun).
        self.announced: set[int] = set()
        #: True while the caller's thread accounts an outcome (see sigint_interrupts).
        self._accounting = False
        #: Worker processes instead of threads (see :mod:`scu.processes`).
        self.workers = max(1, min(concurrency, self.total))
        # Objects in object storage are read through fsspec, whose event loop thread
        # and open sessions a forked process would inherit half-alive: threads then.
        self.use_processes = (
            self.workers > 1
            and self.total >= processes.PROCESS_MIN_FILES
            and processes_available()
            and not any(entry.remote is not None for entry in self.entries)
        )
        self.shared: Shared | None = None
        self.pool: ProcessPool | None = None
        if self.use_processes:
            self.shared = Shared(self.total, self.workers)
            self.interruption = SharedInterruption(self.shared)
            if self.limiter.active:
                self.limiter = SharedRateLimiter(*self.limiter.rates)
        self.planner = Planner(policy)
        self.headers = Headers(self.entries, self.planner, self.work.upcoming)

    # -- step 1
    def prepare(self) -> None:
        """Check the first entries, those the first association is planned from (see
        :mod:`scu.streaming`); the rest are checked as the transfer goes. Worker
        processes check the first entries they take themselves, in parallel."""
        first = 0 if self.use_processes else min(FIRST_PLAN_ENTRIES, self.total)
        try:
            for index in range(first):
                if self.interruption.interrupted:  # Ctrl-C, or send_async cancelled
                    break
                self.headers.get(index)
        except KeyboardInterrupt:
            self.interruption.interrupt()
        if self.journal is not None:
            self.journal.begin(self.destination)

    # -- step 3: dispatch (caller's thread only)
    def _call(self, callback: Callable[[Any], object] | None, event: Event) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except KeyboardInterrupt:
            # Ctrl-C while a callback ran (or a callback that means to stop): the entry
            # is already accounted; the workers stop where it is safe.
            self.interruption.interrupt()
        except Exception as exc:
            log.error("a %s callback raised %r; the transfer goes on", type(event).__name__, exc)
            if self.callback_error is None:
                self.callback_error = exc

    def dispatch(self, index: int | None, event: Event) -> None:
        cb = self.callbacks
        if isinstance(event, FileSending):
            if index is not None:
                self.announced.add(index)
            self._call(cb.sending, event)
            return
        if isinstance(event, TransferStarted):
            self._call(cb.started, event)
            return
        if isinstance(event, TransferCompleted):
            self._call(cb.completed, event)
            return
        assert index is not None
        if self.outcomes[index] is not None:
            log.error("internal error: a second outcome for %s was ignored", event.file)
            return
        # The accounting is done whole or not at all: a Ctrl-C waits until it is done
        # (see sigint_interrupts); a callback that raises KeyboardInterrupt comes after.
        self._accounting = True
        try:
            if isinstance(event, FileSent):
                self.successful += 1
                outcome = self.outcomes[index] = FileOutcome(
                    event.file, event.status, True, None, event.transfer_syntax,
                    event.sop_instance_uid, event.sop_class_uid, event.warning, event.attempts,
                    event.size,
                )  # fmt: skip
                if event.warning is not None:
                    self.warnings.append(f"{event.file}: {event.warning}")
            else:
                self.failed += 1
                outcome = self.outcomes[index] = FileOutcome(
                    event.file, event.status, False, event.error, None,
                    event.sop_instance_uid, event.sop_class_uid, None, event.attempts,
                )  # fmt: skip
            self._journal(index, outcome)
        finally:
            self._accounting = False
        self._call(cb.sent if isinstance(event, FileSent) else cb.error, event)

    def _journal(self, index: int, outcome: FileOutcome) -> None:
        if self.journal is not None:
            self.journal.record(self.keys[index], self.destination, outcome)

    def _close_leftovers(self) -> None:
        """Close any entry no worker closed (interrupted, stopped by ``fail_fast``, left
        by a worker process that died, or a bug): nothing is dropped. An entry that a
        worker process held when it ended, or an interrupted entry whose store had
        begun, may have reached the SCP: it says so, also after a ``fail_fast`` stop."""
        interrupted = self.interruption.interrupted
        ended = self.pool.unclean() if self.pool is not None else []
        died = (
            "not sent or not answered: the worker process sending it ended "
            f"unexpectedly ({ended[0].describe()}); it may have reached the SCP"
            if ended
            else "internal error: the entry was never processed"
        )
        if interrupted:
            why = INTERRUPTED
        elif self.work.fail_fast_hit or (self.shared and self.shared.ints[Shared.FAIL_FAST]):
            why = "not sent: fail_fast"
        else:
            why = died
        taken = self._taken_by_ended_processes()
        for index, outcome in enumerate(self.outcomes):
            if outcome is None:
                if interrupted and (index in self.announced or index in taken):
                    reason = INTERRUPTED_IN_FLIGHT
                else:
                    reason = died if index in taken else why
                self.dispatch(
                    index, error_event(self.entries[index], self.headers.peek(index), reason)
                )

    def _taken_by_ended_processes(self) -> set[int]:
        """The entries taken by worker processes, if one of them was ended before it
        said it was done (a process sends an entry's FileSending with its outcome, so
        such an entry, taken and not accounted, may have been in flight). A process
        that ends cleanly closes every entry it took, so those not accounted are the
        ended processes'."""
        if self.shared is None or self.pool is None or not self.pool.unclean():
            return set()
        with self.shared.lock:
            cursor = self.shared.ints[Shared.CURSOR]
            requeued = self.shared.requeued()
        return set(range(cursor)) - set(requeued)

    def _completed_event(self) -> TransferCompleted:
        duration = time.monotonic() - self.started_at
        return TransferCompleted(
            f"Transfer completed: {self.successful} successful, {self.failed} failed",
            self.total, self.successful, self.failed, duration,
        )  # fmt: skip

    def _worker(self) -> Worker:
        return Worker(
            self.entries, self.headers, endpoint=self.endpoint, policy=self.policy,
            work=self.work, retry=self.retry, limiter=self.limiter, interruption=self.interruption,
        )  # fmt: skip

    # -- running
    def run_inline(self) -> None:
        self.dispatch(None, TransferStarted("Transfer started", self.total))
        self.work.start_workers(1)
        worker = self._worker()
        worker.spin_when_idle()
        try:
            worker.run(self.dispatch)
        except KeyboardInterrupt:  # between entries: the rest are accounted below
            self.interruption.interrupt()
        finally:
            self._close_leftovers()
            self.dispatch(None, self._completed_event())

    def run_threads(self) -> None:
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        workers = self._start_workers(lambda i, e: events.put((i, e)), lambda: events.put(_DONE))
        self.dispatch(None, TransferStarted("Transfer started", self.total))
        remaining = len(workers)
        try:
            while remaining:
                try:
                    try:
                        item = events.get(timeout=_POLL)
                    except queue.Empty:
                        continue
                    if item is _DONE:
                        remaining -= 1
                    else:
                        self.dispatch(*item)
                except KeyboardInterrupt:
                    # The workers give what is in flight a moment, then account the rest;
                    # a second interruption ends the wait at once.
                    self.interruption.interrupt()
        finally:
            self._join(workers)
            while not events.empty():
                item = events.get()
                if item is not _DONE:
                    self.dispatch(*item)
            self._close_leftovers()
            self.dispatch(None, self._completed_event())

    async def run_async(self) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def emit(index: int | None, event: Event) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (index, event))

        def done() -> None:
            loop.call_soon_threadsafe(events.put_nowait, _DONE)

        workers = self._start_workers(emit, done)
        self.dispatch(None, TransferStarted("Transfer started", self.total))
        remaining = len(workers)
        try:
            while remaining:
                try:
                    item = await events.get()
                    if item is _DONE:
                        remaining -= 1
                    else:
                        self.dispatch(*item)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    # Cancelled: account for everything first, as send() does.
                    self.interruption.interrupt()
                    self.cancelled = True
        finally:
            await asyncio.to_thread(self._join, workers)
            while not events.empty():
                item = events.get_nowait()
                if item is not _DONE:
                    self.dispatch(*item)
            self._close_leftovers()
            self.dispatch(None, self._completed_event())

    def _join(self, workers: Iterable[threading.Thread]) -> None:
        """Wait for the workers to end. A KeyboardInterrupt (a second Ctrl-C) ends the
        wait: the workers know of the interruption and end on their own; whatever they
        had not accounted is closed as interrupted."""
        try:
            for worker in workers:
                worker.join()
        except KeyboardInterrupt:
            self.interruption.interrupt()

    @contextmanager
    def _undisturbed(self) -> Iterator[None]:
        """A step that a Ctrl-C must not cut short (see :meth:`sigint_interrupts`)."""
        self._accounting = True
        try:
            yield
        finally:
            self._accounting = False

    @contextmanager
    def sigint_interrupts(self) -> Iterator[None]:
        """While ``send()`` runs on the main thread, Ctrl-C (SIGINT) interrupts the
        transfer instead of raising KeyboardInterrupt wherever the thread happens to be:
        raised between taking a worker's event and accounting it, it would lose that
        outcome (a file the SCP acknowledged reported as not sent, and missing from the
        transfer journal). A second Ctrl-C raises at once, except in the middle of
        accounting an outcome, of reading what a worker process sent, or of ending
        them. This holds for each of SIGINT and SIGTERM whose handler
        is Python's ``signal.default_int_handler`` (SIGINT's by default; a program that
        wants SIGTERM to interrupt a send the same way installs it for SIGTERM too); any
        other handler is left alone."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def interrupt(signum: int, frame: FrameType | None) -> None:
            again = self.interruption.interrupted
            self.interruption.interrupt()
            if again and not self._accounting:
                raise KeyboardInterrupt

        previous = {
            signum: signal.signal(signum, interrupt)
            for signum in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(signum) is signal.default_int_handler
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def close_journal(self) -> None:
        if self.journal is not None:
            self.journal.close()

    # -- worker processes (see scu.processes)
    def _child(self, outbox: Outbox, work: ProcessWorkQueue) -> None:
        """What a worker process runs (forked: it has the queue and the headers)."""
        self.headers.after_fork(work.upcoming)
        worker = Worker(
            self.entries, self.headers, endpoint=self.endpoint, policy=self.policy,
            work=work, retry=self.retry, limiter=self.limiter, interruption=self.interruption,
        )  # fmt: skip
        headers_idle = self.headers.idle

        def idle() -> bool:
            if headers_idle():
                outbox.idle()
                return True
            outbox.idle()
            if outbox.items:
                # Nothing left to check: send the events held unless the answer comes
                # at once (a stalled SCP must not hold back the events of earlier files).
                assoc = worker.assoc
                if assoc is None or not assoc.readable(0.001):
                    outbox.flush()
            return False

        worker.idle = idle
        worker.before_block = outbox.flush
        worker.run(outbox.emit)

    def _deliver(self, pool: ProcessPool, pid: int, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == SENT or kind == ERROR:
            index = item[1]
            sending, event = unpack(item, self.entries[index].name)
            if sending is not None:
                self.dispatch(index, sending)
            self.dispatch(index, event)
        elif kind == "opened":
            self.work.opened()
        elif kind == "could-not-open":
            self.work.could_not_open(rebuild_error(*item[1:]))
        elif kind == "done":
            pool.mark_clean(pid)
        elif kind == "crashed":
            log.error("internal error in a worker process:\n%s", item[1])

    def _pump(self, pool: ProcessPool, fds: Iterable[int]) -> None:
        """Read what the processes sent and dispatch it, in the order each sent it."""
        pending = pool.pending
        for fd in fds:
            # Done whole, as accounting is: a second Ctrl-C raised in the middle would
            # leave frames already queued in the buffer, to be queued again.
            with self._undisturbed():
                pool.read(fd)
        while pending:
            pid, item = pending.popleft()
            self._deliver(pool, pid, item)
        if self.work.fail_fast and any(e.status is not None for e in pool.unclean()):
            # A process that died failed what it held: as after any failure, the
            # others stop (its "done" would have been delivered above).
            assert self.shared is not None
            self.shared.ints[Shared.FAIL_FAST] = 1

    def run_processes(self) -> None:
        assert self.shared is not None
        pool = self.pool = ProcessPool(self.shared, self.workers)
        self.dispatch(None, TransferStarted("Transfer started", self.total))
        try:
            pool.start(self._child, fail_fast=self.work.fail_fast)
            while pool.running or pool.pending:
                try:
                    self._pump(pool, pool.wait(0.5) if pool.running else ())
                except KeyboardInterrupt:
                    # The processes stop taking entries and give what is in flight a
                    # moment (see Interruption.GRACE). A KeyboardInterrupt after the
                    # interruption (a second Ctrl-C, see sigint_interrupts) ends them
                    # at once: what they had taken and not accounted may have been sent.
                    if self.interruption.interrupted:
                        with self._undisturbed():
                            pool.kill()
                    self.interruption.interrupt()
        finally:
            if pool.running:  # an error of our own: do not leave processes behind
                self.interruption.interrupt()
                with self._undisturbed():
                    pool.kill()
            self._pump(pool, ())  # what was read already, or before they were ended
            self._close_leftovers()
            self.dispatch(None, self._completed_event())

    async def run_processes_async(self) -> None:
        assert self.shared is not None
        loop = asyncio.get_running_loop()
        pool = self.pool = ProcessPool(self.shared, self.workers)
        finished: asyncio.Future[None] = loop.create_future()

        def readable(fd: int) -> None:
            try:
                self._pump(pool, (fd,))
            finally:
                if fd not in pool.pids:
                    loop.remove_reader(fd)
                if not pool.running and not finished.done():
                    finished.set_result(None)

        self.dispatch(None, TransferStarted("Transfer started", self.total))
        try:
            pool.start(self._child, fail_fast=self.work.fail_fast)
            for fd in pool.fds:
                loop.add_reader(fd, readable, fd)
            if not pool.running:
                finished.set_result(None)
            while not finished.done():
                try:
                    await asyncio.shield(finished)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    # Cancelled: account for everything first, as send() does.
                    self.interruption.interrupt()
                    self.cancelled = True
        finally:
            for fd in pool.fds:
                loop.remove_reader(fd)
            if pool.running:
                self.interruption.interrupt()
                pool.kill()
            self._pump(pool, ())
            self._close_leftovers()
            self.dispatch(None, self._completed_event())

    def _start_workers(self, emit: Emit, done: Callable[[], None]) -> list[threading.Thread]:
        count = max(1, min(self.concurrency, self.total))
        self.work.start_workers(count)

        def body() -> None:
            try:
                self._worker().run(emit)
            finally:
                done()

        threads = [
            threading.Thread(target=body, name=f"scu-worker-{n}", daemon=True) for n in range(count)
        ]
        for thread in threads:
            thread.start()
        return threads

    def finish(self) -> TransferResult:
        files = [o for o in self.outcomes if o is not None]
        interrupted = self.interruption.interrupted
        result = TransferResult(
            self.successful, self.failed, list(self.warnings), self.total, files,
            time.monotonic() - self.started_at, interrupted, list(self.already_sent),
        )  # fmt: skip
        if self.journal is not None:
            try:
                self.journal.end(
                    interrupted=interrupted,
                    summary={"successful": self.successful, "failed": self.failed,
                             "total": self.total, "already_sent": len(self.already_sent)},
                )  # fmt: skip
            finally:
                self.journal.close()
        if self.cancelled:
            cancelled = asyncio.CancelledError("send_async was cancelled")
            cancelled.result = result  # type: ignore[attr-defined]
            raise cancelled
        if interrupted:
            raise Interrupted(
                f"the transfer was interrupted: {self.successful} sent, {self.failed} not",
                result=result,
            )
        error = self.work.association_error
        if error is not None and not self.work.established:
            error.result = result
            raise error
        if self.callback_error is not None:
            raise CallbackError(
                f"a callback raised {type(self.callback_error).__name__}: {self.callback_error}; "
                "the transfer completed and .result holds its outcome",
                result=result,
            ) from self.callback_error
        return result
