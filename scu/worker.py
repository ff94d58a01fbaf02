"""The workers of a transfer: each holds one association at a time and stores entries
from a shared queue on it, in queue order.

A worker only *emits* ``(index, event)``; the transfer's dispatcher (on the caller's
thread) accounts and runs callbacks. After an abort, a drop or a DIMSE timeout the
entry in flight fails and the worker re-associates for the next entry. A worker that
cannot get an association hands its entry back to the others (a PACS that limits
associations still gets the whole study); the last worker standing fails the rest with
the cause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from scu.association import Association, Endpoint
from scu.convert import ConversionError, convert
from scu.errors import AssociationError, ConnectionFailed, ProtocolError, TransportError
from scu.events import Event, FileError, FileSending, FileSent
from scu.payload import Payload, SourceError
from scu.planning import AssociationPlan, Refusal, SyntaxPolicy
from scu.protocol.status import StatusCategory, classify, format_status
from scu.protocol.uids import DEFLATED_EXPLICIT_VR_LE
from scu.source import Entry, EntryError, Header

__all__ = ["Emit", "WorkQueue", "Worker", "error_event"]

log = logging.getLogger("scu")

Emit = Callable[[int | None, Event], None]


def error_event(
    entry: Entry,
    header: Header | EntryError | None,
    error: str,
    *,
    status: int | None = None,
    message: str = "File not sent",
) -> FileError:
    """A :class:`FileError` for an entry, with what is known of it."""
    error = " ".join(error.split())  # one line, whatever the library's message looked like
    if isinstance(header, Header):
        return FileError(
            message, entry.name, error, header.sop_instance_uid, header.sop_class_uid,
            header.transfer_syntax, status,
        )  # fmt: skip
    return FileError(message, entry.name, error, status=status)


class WorkQueue:
    """The entries' indexes, shared by the workers of one transfer, and what the
    workers learn together (an association was made; fail_fast hit; cancelled)."""

    def __init__(self, total: int, *, fail_fast: bool) -> None:
        self._lock = threading.Lock()
        self._total = total
        self._cursor = 0
        self._requeued: list[int] = []
        self._alive = 0
        self.fail_fast = fail_fast
        self.fail_fast_hit = False
        self.cancelled = False
        self.established = False
        self.association_error: AssociationError | None = None

    def start_workers(self, count: int) -> None:
        with self._lock:
            self._alive = count

    def cancel(self) -> None:
        self.cancelled = True

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
            self.fail_fast_hit = True


class Worker:
    """Stores entries from a :class:`WorkQueue` over its own association."""

    def __init__(
        self,
        entries: Sequence[Entry],
        headers: Sequence[Header | EntryError],
        plans: Sequence[AssociationPlan],
        plan_of: dict[str, int],
        *,
        endpoint: Endpoint,
        policy: SyntaxPolicy,
        work: WorkQueue,
    ) -> None:
        self.entries = entries
        self.headers = headers
        self.plans = plans
        self.plan_of = plan_of
        self.endpoint = endpoint
        self.policy = policy
        self.work = work

    def _error(self, index: int, error: str, **kwargs: object) -> FileError:
        return error_event(self.entries[index], self.headers[index], error, **kwargs)  # type: ignore[arg-type]

    def _fail(self, index: int, emit: Emit, event: FileError) -> None:
        self.work.failed()
        emit(index, event)

    def run(self, emit: Emit) -> None:
        assoc: Association | None = None
        assoc_plan = -1
        dead: str | None = None
        work = self.work
        try:
            while True:
                index = work.next_index()
                if index is None:
                    return
                if work.cancelled:
                    emit(index, self._error(index, "not sent: the transfer was cancelled"))
                    continue
                if dead is not None:
                    emit(index, self._error(index, dead))
                    continue
                if work.fail_fast_hit:
                    emit(index, self._error(index, "not sent: fail_fast"))
                    continue
                header = self.headers[index]
                if isinstance(header, EntryError):
                    self._fail(
                        index,
                        emit,
                        self._error(index, str(header), message="File could not be read"),
                    )
                    continue
                plan_index = self.plan_of[header.sop_class_uid]
                if assoc is None or not assoc.usable or assoc_plan != plan_index:
                    if assoc is not None:
                        assoc.release()
                        assoc = None
                    try:
                        assoc = self.endpoint.open(self.plans[plan_index])
                        assoc_plan = plan_index
                        work.opened()
                    except Exception as exc:
                        if not isinstance(exc, AssociationError):  # a bug: keep the accounting
                            log.exception("internal error while opening an association")
                            exc = ConnectionFailed(
                                f"could not establish association with {self.endpoint.address}: "
                                f"internal error: {exc!r}"
                            )
                        work.could_not_open(exc)
                        if work.give_back(index):
                            return  # other workers carry on with the queue
                        dead = str(exc)
                        self._fail(index, emit, self._error(index, dead))
                        continue
                try:
                    self._store_one(index, header, assoc, emit)
                except Exception as exc:  # a bug here must not lose the entry
                    log.exception("internal error while sending %s", self.entries[index].name)
                    assoc.abort()
                    self._fail(index, emit, self._error(index, f"internal error: {exc!r}"))
        finally:
            if assoc is not None:
                assoc.release()

    def _payload(self, index: int, header: Header, wire_syntax: str, convert_it: bool) -> Payload:
        entry = self.entries[index]
        if convert_it:
            return Payload.from_bytes(convert(entry, header, wire_syntax))
        if entry.data is not None:
            payload = Payload.from_bytes(memoryview(entry.data)[header.dataset_offset :])
        else:
            assert entry.path is not None
            payload = Payload(
                path=entry.path,
                offset=header.dataset_offset,
                length=header.size - header.dataset_offset,
            )
        if header.transfer_syntax == DEFLATED_EXPLICIT_VR_LE and payload.length % 2:
            # PS3.5 A.5: a deflated stream of odd length is padded with one null byte
            # (files on disk often are not; DCMTK aborts on the odd fragment).
            payload = payload.padded(b"\x00")
        return payload

    def _store_one(self, index: int, header: Header, assoc: Association, emit: Emit) -> None:
        entry = self.entries[index]
        choice = self.policy.select(assoc.negotiated, header.sop_class_uid, header.transfer_syntax)
        if isinstance(choice, Refusal):
            self._fail(index, emit, self._error(index, choice.reason))
            return
        try:
            payload = self._payload(index, header, choice.wire_syntax, choice.convert)
        except ConversionError as exc:
            self._fail(index, emit, self._error(index, f"cannot convert: {exc}"))
            return
        emit(index, FileSending(
            "Sending file", entry.name, header.sop_instance_uid, header.sop_class_uid
        ))  # fmt: skip
        started = time.monotonic()
        try:
            response = assoc.store(
                choice.context_id, header.sop_class_uid, header.sop_instance_uid, payload
            )
        except (TransportError, ProtocolError) as exc:
            self._fail(index, emit, self._error(index, str(exc), message="File failed"))
            return
        except SourceError as exc:  # the file vanished or changed after it was queued
            self._fail(index, emit, self._error(
                index, f"{exc}; the association was aborted", message="File failed"
            ))  # fmt: skip
            return
        duration = time.monotonic() - started
        status = response.status
        assert status is not None
        category = classify(status)
        if category is StatusCategory.FAILURE:
            self._fail(index, emit, self._error(
                index,
                f"the SCP answered {format_status(status, response.error_comment)}",
                status=status,
                message="File rejected by the SCP",
            ))  # fmt: skip
            return
        warning = (
            format_status(status, response.error_comment)
            if category is StatusCategory.WARNING
            else None
        )
        emit(index, FileSent(
            "File sent successfully" if warning is None else "File sent with a warning",
            entry.name, header.sop_instance_uid, header.sop_class_uid,
            choice.wire_syntax, duration, status, warning,
        ))  # fmt: skip
