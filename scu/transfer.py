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

from scu.association import Endpoint, Interruption
from scu.errors import CallbackError, Interrupted
from scu.events import Event, FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from scu.journal import TransferJournal, entry_key
from scu.planning import AssociationPlan, SyntaxPolicy, plan_associations
from scu.ratelimit import RateLimiter
from scu.result import FileOutcome, TransferResult
from scu.source import Entry, EntryError, Header, read_header
from scu.worker import INTERRUPTED, Emit, RetryPolicy, Worker, WorkQueue, error_event

__all__ = ["Callbacks", "Transfer", "plan", "safe_header"]

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


def safe_header(entry: Entry) -> Header | EntryError:
    """The entry's header, or why it cannot be sent (a reader bug included)."""
    try:
        return read_header(entry)
    except EntryError as exc:
        return exc
    except Exception as exc:  # a reader bug must not lose the entry
        return EntryError(f"cannot read: {type(exc).__name__}: {exc}")


def plan(
    headers: Iterable[Header | EntryError], policy: SyntaxPolicy
) -> tuple[list[AssociationPlan], dict[str, int]]:
    """The associations to open, and which one serves each SOP class."""
    needs = [(h.sop_class_uid, h.transfer_syntax) for h in headers if isinstance(h, Header)]
    plans = plan_associations(needs, policy)
    plan_of = {sop_class: i for i, p in enumerate(plans) for sop_class in p.sop_classes}
    return plans, plan_of


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
        self.headers: list[Header | EntryError] = []
        self.plans: list[AssociationPlan] = []
        self.plan_of: dict[str, int] = {}

    # -- step 1
    def prepare(self) -> None:
        headers: list[Header | EntryError] = []
        try:
            for entry in self.entries:
                if self.interruption.interrupted:  # Ctrl-C, or send_async cancelled
                    break
                headers.append(safe_header(entry))
        except KeyboardInterrupt:
            self.interruption.interrupt()
        headers += [EntryError(INTERRUPTED)] * (len(self.entries) - len(headers))
        self.headers = headers
        self.plans, self.plan_of = plan(self.headers, self.policy)
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
        """Close any entry no worker closed (interrupted, or a bug): nothing is dropped.
        An interrupted entry whose store had begun may have reached the SCP: it says so."""
        interrupted = self.interruption.interrupted
        for index, outcome in enumerate(self.outcomes):
            if outcome is not None:
                continue
            if not interrupted:
                why = "internal error: the entry was never processed"
            elif index in self.announced:
                why = INTERRUPTED_IN_FLIGHT
            else:
                why = INTERRUPTED
            self.dispatch(
                index,
                error_event(
                    self.entries[index],
                    self.headers[index] if index < len(self.headers) else None,
                    why,
                ),
            )

    def _completed_event(self) -> TransferCompleted:
        duration = time.monotonic() - self.started_at
        return TransferCompleted(
            f"Transfer completed: {self.successful} successful, {self.failed} failed",
            self.total, self.successful, self.failed, duration,
        )  # fmt: skip

    def _worker(self) -> Worker:
        return Worker(
            self.entries, self.headers, self.plans, self.plan_of,
            endpoint=self.endpoint, policy=self.policy, work=self.work, retry=self.retry,
            limiter=self.limiter, interruption=self.interruption,
        )  # fmt: skip

    # -- running
    def run_inline(self) -> None:
        self.dispatch(None, TransferStarted("Transfer started", self.total))
        self.work.start_workers(1)
        try:
            self._worker().run(self.dispatch)
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
    def sigint_interrupts(self) -> Iterator[None]:
        """While ``send()`` runs on the main thread, Ctrl-C (SIGINT) interrupts the
        transfer instead of raising KeyboardInterrupt wherever the thread happens to be:
        raised between taking a worker's event and accounting it, it would lose that
        outcome (a file the SCP acknowledged reported as not sent, and missing from the
        transfer journal). A second Ctrl-C raises at once, except in the middle of
        accounting an outcome. This holds for each of SIGINT and SIGTERM whose handler
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
