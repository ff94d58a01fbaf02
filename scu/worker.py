"""The workers of a transfer: each holds one association at a time and stores entries
from a shared queue on it, in queue order.

A worker only *emits* ``(index, event)``; the transfer's dispatcher (on the caller's
thread) accounts and runs callbacks. After an abort, a drop or a DIMSE timeout the
entry in flight fails (or, with ``retries``, is tried again after a back-off) and the
worker re-associates for the next entry. A worker that cannot get an association hands
its entry back to the others (a PACS that limits associations still gets the whole
study); the last worker standing fails the rest with the cause.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scu.association import Association, Endpoint
from scu.convert import ConversionError, convert
from scu.errors import AssociationError, ConnectionFailed, ProtocolError, TransportError
from scu.events import Event, FileError, FileSending, FileSent
from scu.payload import Payload, SourceError
from scu.planning import Refusal, Selection, SyntaxPolicy
from scu.protocol.status import StatusCategory, classify, format_status
from scu.protocol.uids import DEFLATED_EXPLICIT_VR_LE
from scu.ratelimit import RateLimiter
from scu.result import Attempt
from scu.source import Entry, EntryError, Header
from scu.streaming import REPLAN_AHEAD, Headers, need_of, own_contexts
from scu.waiting import Interruption

__all__ = ["Emit", "RetryPolicy", "WorkQueue", "Worker", "error_event"]

log = logging.getLogger("scu")

Emit = Callable[[int | None, Event], None]
INTERRUPTED = "not sent: interrupted"
#: The longest a lone worker spins for an answer once it has nothing left to check.
SPIN = 0.0002


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more tries after a transient failure, after an exponential back-off
    with jitter: ``backoff`` seconds before the second try, doubling, at most
    ``max_backoff``, each delay drawn between half and all of it."""

    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 30.0

    def delay(self, tried: int, draw: Callable[[], float] = random.random) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (tried - 1))
        return float(ceiling * (0.5 + 0.5 * draw()))


def error_event(
    entry: Entry,
    header: Header | EntryError | None,
    error: str,
    *,
    status: int | None = None,
    message: str = "File not sent",
    attempts: tuple[Attempt, ...] = (),
) -> FileError:
    """A :class:`FileError` for an entry, with what is known of it."""
    error = " ".join(error.split())  # one line, whatever the library's message looked like
    if isinstance(header, Header):
        return FileError(
            message, entry.name, error, header.sop_instance_uid, header.sop_class_uid,
            header.transfer_syntax, status, attempts,
        )  # fmt: skip
    return FileError(message, entry.name, error, status=status, attempts=attempts)


class WorkQueue:
    """The entries' indexes, shared by the workers of one transfer, and what the
    workers learn together (an association was made; fail_fast hit; interrupted)."""

    def __init__(self, total: int, *, fail_fast: bool) -> None:
        self._lock = threading.Lock()
        self._total = total
        self._cursor = 0
        self._requeued: list[int] = []
        self._alive = 0
        self.fail_fast = fail_fast
        self._fail_fast_hit = False
        self.established = False
        self.association_error: AssociationError | None = None

    def start_workers(self, count: int) -> None:
        with self._lock:
            self._alive = count

    def upcoming(self) -> tuple[int, int]:
        """The entries not handed out yet (what the workers will ask for next)."""
        return self._cursor, self._total

    def next_index(self) -> int | None:
        """The next entry, or ``None`` when the queue is empty, in which case the worker
        counts itself out (under the same lock, so an entry handed back by a failing
        worker is never left with nobody to take it)."""
        with self._lock:
            if self._requeued:
                return self._requeued.pop(0)
            if self._cursor < self._total:
                self._cursor += 1
                return self._cursor - 1
            self._alive -= 1
            return None

    def give_back(self, index: int) -> bool:
        """Hand an entry back for another worker (this one stops); False if no other
        worker is left to take it."""
        with self._lock:
            if self._alive > 1:
                self._alive -= 1
                self._requeued.append(index)
                return True
            return False

    def opened(self) -> None:
        with self._lock:
            self.established = True

    def could_not_open(self, exc: AssociationError) -> None:
        with self._lock:
            self.association_error = exc

    def failed(self) -> None:
        if self.fail_fast:
            self._fail_fast_hit = True

    @property
    def fail_fast_hit(self) -> bool:
        """A failure stopped the transfer (``fail_fast``)."""
        return self._fail_fast_hit


class Worker:
    """Stores entries from a :class:`WorkQueue` over its own association."""

    def __init__(
        self,
        entries: Sequence[Entry],
        headers: Headers,
        *,
        endpoint: Endpoint,
        policy: SyntaxPolicy,
        work: WorkQueue,
        retry: RetryPolicy,
        limiter: RateLimiter,
        interruption: Interruption,
    ) -> None:
        self.entries = entries
        self.headers = headers
        self.planner = headers.planner
        self.endpoint = endpoint
        self.policy = policy
        self.work = work
        self.retry = retry
        self.limiter = limiter
        self.interruption = interruption
        self.assoc: Association | None = None
        #: What the open association can carry (see :func:`scu.streaming.own_contexts`).
        self.carried: frozenset[tuple[str, str]] = frozenset()
        #: Where each (SOP class, file syntax) goes on the open association.
        self.selections: dict[tuple[str, str], Selection | Refusal] = {}
        #: Work done while an answer is awaited (see :meth:`Association.store`).
        self.idle: Callable[[], bool] = headers.idle
        #: How long answers took to come once the idle work ran out (a moving average),
        #: and when it last ran out (see :meth:`spin_when_idle`).
        self.answer_time = 0.0
        self._waiting_since: float | None = None
        #: Called before anything that may block for long (opening an association,
        #: a back-off, a rate limit): a worker process sends the events it holds.
        self.before_block: Callable[[], None] = _nothing

    def _error(self, index: int, error: str, **kwargs: object) -> FileError:
        return error_event(self.entries[index], self.headers.peek(index), error, **kwargs)  # type: ignore[arg-type]

    def _fail(self, index: int, emit: Emit, event: FileError) -> None:
        self.work.failed()
        emit(index, event)

    def _drop_association(self, abort: bool = False) -> None:
        assoc, self.assoc = self.assoc, None
        self.carried, self.selections = frozenset(), {}
        if assoc is not None:
            if abort:
                assoc.abort()
            else:
                assoc.release()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless interrupted; ``False`` when the transfer was interrupted."""
        self.before_block()
        end = time.monotonic() + seconds
        while not self.interruption.interrupted:
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.1))
        return False

    def spin_when_idle(self) -> None:
        """Use :meth:`_idle_then_spin` while answers are awaited: for a worker alone on
        its machine's share (``concurrency=1``), not for workers sharing the cores."""
        self.idle = self._idle_then_spin

    def _idle_then_spin(self) -> bool:
        """Check the next entries while the answer is awaited; once there is nothing
        left to check, spin (poll without sleeping) for the answer up to :data:`SPIN`
        seconds when answers have been coming that fast, then block. A thread woken from
        a blocking wait starts tens of microseconds late on a virtual machine, which a
        small file's whole store takes no more than three times over; an SCP that
        answers slower than :data:`SPIN` is waited for in the kernel, without spinning."""
        if self.headers.idle():
            return True
        now = self._waiting_since = time.monotonic()
        assoc = self.assoc
        if assoc is not None and self.answer_time <= SPIN:
            readable, clock, until = assoc.readable, time.monotonic, now + SPIN
            while not readable() and clock() < until:
                pass
        return False

    def _acquire(self, size: int) -> bool:
        """Wait for the rate limits; ``False`` if the transfer was interrupted first."""
        self.before_block()
        return self.limiter.acquire(size, lambda: self.interruption.interrupted)

    def _open(self, header: Header) -> Association:
        """An association that carries ``header``, planned from every entry checked so
        far (and :data:`REPLAN_AHEAD` more), trying again after a transient refusal."""
        self.before_block()
        self.headers.check_ahead(REPLAN_AHEAD)
        tried = 0
        while True:
            tried += 1
            plan = self.planner.plan_for(header)
            try:
                assoc = self.endpoint.open(plan, interruption=self.interruption)
            except AssociationError as exc:
                if not exc.transient or tried > self.retry.retries:
                    raise
                log.info("association refused (%s); trying again", exc)
                if not self._sleep(self.retry.delay(tried)):
                    raise
                continue
            self.assoc, self.carried = assoc, own_contexts(plan)
            self.work.opened()
            return assoc

    def _usable(self, header: Header) -> Association:
        """The open association if it is alive and carries ``header``, else a new one."""
        assoc = self.assoc
        if assoc is not None and (
            need_of(self.policy, header) not in self.carried or not assoc.usable
        ):
            self._drop_association()
            assoc = None
        if assoc is None:
            return self._open(header)
        return assoc

    def run(self, emit: Emit) -> None:
        dead: str | None = None
        work = self.work
        try:
            while True:
                index = work.next_index()
                if index is None:
                    return
                try:
                    dead = self._one(index, emit, dead)
                    self.headers.forget(index)
                except _Retired:
                    return
                except KeyboardInterrupt:
                    # Inline on the caller's thread: a callback raised it (after its entry
                    # was accounted) or a second Ctrl-C. The transfer accounts the rest.
                    self.interruption.interrupt()
                    self._drop_association(abort=True)
                    raise
                except Exception as exc:  # a bug here must not lose the entry
                    log.exception("internal error while sending %s", self.entries[index].name)
                    self._drop_association(abort=True)
                    self._fail(index, emit, self._error(index, f"internal error: {exc!r}"))
        finally:
            self._drop_association()

    def _one(self, index: int, emit: Emit, dead: str | None) -> str | None:
        """Handle one entry; the reason the remaining entries cannot be sent, if any."""
        if self.interruption.interrupted:
            emit(index, self._error(index, INTERRUPTED))
            return dead
        if dead is not None:
            emit(index, self._error(index, dead))
            return dead
        if self.work.fail_fast_hit:
            emit(index, self._error(index, "not sent: fail_fast"))
            return dead
        header = self.headers.get(index)
        if isinstance(header, EntryError):
            self._fail(
                index, emit, self._error(index, str(header), message="File could not be read")
            )
            return dead
        try:
            assoc = self._usable(header)
        except Exception as exc:
            if not isinstance(exc, AssociationError):  # a bug: keep the accounting
                log.exception("internal error while opening an association")
                exc = ConnectionFailed(
                    f"could not establish association with {self.endpoint.address}: "
                    f"internal error: {exc!r}"
                )
            self.work.could_not_open(exc)
            if self.interruption.interrupted:
                emit(index, self._error(index, INTERRUPTED))
                return dead
            if self.work.give_back(index):
                raise _Retired from None  # other workers carry on with the queue
            self._fail(index, emit, self._error(index, str(exc)))
            return str(exc)
        self._store_one(index, header, assoc, emit)
        return dead

    def _payload(self, index: int, header: Header, wire_syntax: str, convert_it: bool) -> Payload:
        entry = self.entries[index]
        if convert_it:
            return Payload.from_bytes(convert(entry, header, wire_syntax))
        if entry.data is not None:
            payload = Payload.from_bytes(memoryview(entry.data)[header.dataset_offset :])
        elif (data := self.headers.unchanged_bytes(index)) is not None:
            payload = Payload.from_bytes(memoryview(data)[header.dataset_offset :])
        else:
            assert entry.path is not None or entry.remote is not None
            payload = Payload(
                path=entry.path or entry.name,
                offset=header.dataset_offset,
                length=header.size - header.dataset_offset,
                remote=entry.remote,
            )
        if header.transfer_syntax == DEFLATED_EXPLICIT_VR_LE and payload.length % 2:
            # PS3.5 A.5: a deflated stream of odd length is padded with one null byte
            # (files on disk often are not; DCMTK aborts on the odd fragment).
            payload = payload.padded(b"\x00")
        return payload

    def _store_one(self, index: int, header: Header, assoc: Association, emit: Emit) -> None:
        """Store one entry, trying again after a transient failure (``retries``)."""
        entry = self.entries[index]
        attempts: list[Attempt] = []
        announced = False
        while True:
            number = len(attempts) + 1
            key = (header.sop_class_uid, header.transfer_syntax)
            choice = self.selections.get(key)
            if choice is None:  # the same for every such file on this association
                choice = self.selections[key] = self.policy.select(
                    assoc.negotiated, header.sop_class_uid, header.transfer_syntax
                )
            if isinstance(choice, Refusal):
                self._fail(index, emit, self._error(index, choice.reason, attempts=tuple(attempts)))
                return
            try:
                payload = self._payload(index, header, choice.wire_syntax, choice.convert)
            except ConversionError as exc:
                self._fail(index, emit, self._error(index, f"cannot convert: {exc}"))
                return
            if self.interruption.interrupted or (
                self.limiter.active and not self._acquire(payload.length)
            ):  # interrupted while the association was being opened, or waiting for the rate
                emit(index, self._error(index, INTERRUPTED, attempts=tuple(attempts)))
                return
            if not announced:
                emit(index, FileSending(
                    "Sending file", entry.name, header.sop_instance_uid, header.sop_class_uid
                ))  # fmt: skip
                announced = True
            started = time.monotonic()
            failure: str | None = None
            transient = False
            status: int | None = None
            comment: str | None = None
            try:
                response = assoc.store(
                    choice.context_id, header.sop_class_uid, header.sop_instance_uid, payload,
                    self.idle,
                )  # fmt: skip
            except TransportError as exc:
                failure, transient = str(exc), exc.transient
                self._drop_association()
            except ProtocolError as exc:
                failure = str(exc)
                self._drop_association()
            except SourceError as exc:  # the file vanished or changed after it was queued
                failure, transient = f"{exc}; the association was aborted", exc.transient
                self._drop_association()
            else:
                status, comment = response.status, response.error_comment
                assert status is not None
            now = time.monotonic()
            duration = now - started
            if self._waiting_since is not None:
                self.answer_time += 0.125 * (now - self._waiting_since - self.answer_time)
                self._waiting_since = None
            if failure is None and status is not None:
                category = classify(status)
                if category is not StatusCategory.FAILURE:
                    attempts.append(Attempt(number, True, status, None, duration))
                    warning = (
                        format_status(status, comment)
                        if category is StatusCategory.WARNING
                        else None
                    )
                    emit(index, FileSent(
                        "File sent successfully" if warning is None else "File sent with a warning",
                        entry.name, header.sop_instance_uid, header.sop_class_uid,
                        choice.wire_syntax, duration, status, warning, tuple(attempts),
                        payload.length,
                    ))  # fmt: skip
                    return
                failure = f"the SCP answered {format_status(status, comment)}"
                transient = 0xA700 <= status <= 0xA7FF  # out of resources: maybe later
            assert failure is not None
            attempts.append(Attempt(number, False, status, failure, duration))
            if not transient or number > self.retry.retries or self.interruption.interrupted:
                message = "File rejected by the SCP" if status is not None else "File failed"
                self._fail(index, emit, self._error(
                    index, failure, status=status, message=message, attempts=tuple(attempts)
                ))  # fmt: skip
                return
            log.info("%s: %s; trying again (attempt %d)", entry.name, failure, number + 1)
            try:
                if not self._sleep(self.retry.delay(number)):
                    raise AssociationError("the transfer was interrupted")
                assoc = self._usable(header)
            except AssociationError as exc:
                self._fail(index, emit, self._error(
                    index, f"{failure}; then {exc}", status=status, attempts=tuple(attempts)
                ))  # fmt: skip
                return


def _nothing() -> None:
    pass


class _Retired(Exception):
    """This worker handed its entry back and stops (see :meth:`WorkQueue.give_back`)."""
