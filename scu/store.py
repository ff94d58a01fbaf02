"""``StoreScu``: the documented node-dicom StoreScu API, in Python, keeping its promises.

A transfer runs in three steps:

1. *prepare* (caller's thread): every queued entry is read and checked
   (:func:`scu.source.read_header`) and the presentation contexts are planned
   (:mod:`scu.planning`);
2. *work*: one worker per association (``concurrency``) takes entries in queue order
   from a shared cursor and stores them on its own association
   (:mod:`scu.association`), re-associating after an abort, a drop or a DIMSE timeout;
3. *dispatch* (caller's thread): workers only *emit* ``(index, event)`` pairs; the
   caller's thread does all the accounting and runs the callbacks, one at a time. With
   ``concurrency=1`` and ``send()`` the worker runs inline on the caller's thread, so no
   thread is started at all.

Because accounting lives in one place and the dispatcher closes any entry that a
worker failed to close (with an "internal error" outcome), every queued entry ends in
exactly one ``on_file_sent`` or ``on_file_error``, whatever happens.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from scu.association import Association, Payload, SourceError, Timeouts
from scu.convert import ConversionError, convert
from scu.errors import (
    AssociationError,
    CallbackError,
    ConnectionFailed,
    ProtocolError,
    TransportError,
)
from scu.events import Event, FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from scu.options import parse_address, validate_ae_title, validate_max_pdu, validate_timeout
from scu.planning import AssociationPlan, Refusal, plan_associations, select_context
from scu.result import FileOutcome, PreflightItem, TransferResult
from scu.source import Entry, EntryError, Header, read_header
from scu.status import StatusCategory, classify, format_status
from scu.syntaxes import DEFLATED_EXPLICIT_VR_LE, resolve_transfer_syntax, syntax_name

__all__ = ["EchoResult", "StoreScu", "echo"]

log = logging.getLogger("scu")

_DEFAULT_CALLED = "ANY-SCP"
_UNSET: Any = object()

E = TypeVar("E")
Callback = Callable[[E], object] | None


@dataclass(frozen=True)
class EchoResult:
    status: int
    duration_seconds: float


class StoreScu:
    """A DICOM Storage SCU: queue files, then ``send()`` them to ``addr``.

    ``addr`` is ``"host:port"``, ``"AE@host:port"`` (the AE is the called AE title
    unless ``called_ae_title`` is given) or ``"[IPv6]:port"``. Every option is checked
    here; a bad value raises :class:`ValueError` naming the parameter and what is
    accepted. Timeouts are seconds (``None``: wait forever).
    """

    def __init__(
        self,
        addr: str,
        *,
        calling_ae_title: str = "STORE-SCU",
        called_ae_title: str = _UNSET,
        max_pdu_length: int = 16384,
        verbose: bool = False,
        transfer_syntax: str | None = None,
        concurrency: int = 1,
        connect_timeout: float | None = 10.0,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
        tls: ssl.SSLContext | None = None,
        never_transcode: bool = False,
        fail_fast: bool = False,
    ) -> None:
        address = parse_address(addr)
        self.addr = addr
        self._address = address
        self.calling_ae_title = validate_ae_title(calling_ae_title, parameter="calling_ae_title")
        if called_ae_title is _UNSET:
            self.called_ae_title = address.ae_title or _DEFAULT_CALLED
        else:
            called = validate_ae_title(called_ae_title, parameter="called_ae_title")
            if address.ae_title is not None and address.ae_title != called:
                raise ValueError(
                    f"called_ae_title {called!r} contradicts the AE title in addr {addr!r}; "
                    "give it in one place"
                )
            self.called_ae_title = called
        self.max_pdu_length = validate_max_pdu(max_pdu_length)
        self.transfer_syntax = (
            None if transfer_syntax is None else resolve_transfer_syntax(transfer_syntax)
        )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        self.timeouts = Timeouts(
            connect=validate_timeout(connect_timeout, parameter="connect_timeout"),
            acse=validate_timeout(acse_timeout, parameter="acse_timeout"),
            dimse=validate_timeout(dimse_timeout, parameter="dimse_timeout"),
            network=validate_timeout(network_timeout, parameter="network_timeout"),
        )
        if tls is not None and not isinstance(tls, ssl.SSLContext):
            raise ValueError(f"tls must be an ssl.SSLContext or None, got {type(tls).__name__}")
        self.tls = tls
        for name, flag in (
            ("never_transcode", never_transcode),
            ("fail_fast", fail_fast),
            ("verbose", verbose),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.never_transcode = never_transcode
        self.fail_fast = fail_fast
        self.verbose = verbose
        self._log = _verbose_logger() if verbose else _QUIET_LOG
        self._entries: list[Entry] = []

    # --- the queue -----------------------------------------------------------------

    def add_file(self, path: str | os.PathLike[str]) -> None:
        """Queue one file. Raises :class:`FileNotFoundError` if it does not exist."""
        text = os.fspath(path)
        if not os.path.exists(text):
            raise FileNotFoundError(f"add_file: no such file: {text}")
        if os.path.isdir(text):
            raise IsADirectoryError(f"add_file: {text} is a directory; use add_directory()")
        self._entries.append(Entry(text, path=text))

    def add_directory(
        self, path: str | os.PathLike[str], pattern: str = "*.dcm", recursive: bool = True
    ) -> int:
        """Queue the files under ``path`` whose names match ``pattern``, sorted by path;
        ``DICOMDIR`` files are skipped. Returns how many were queued."""
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"add_directory: no such directory: {os.fspath(path)}")
        if not root.is_dir():
            raise NotADirectoryError(f"add_directory: {os.fspath(path)} is not a directory")
        found: list[str] = []
        walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
        for folder, dirs, names in walker:
            dirs.sort()
            for name in names:
                if name.upper() == "DICOMDIR" or not fnmatch.fnmatchcase(name, pattern):
                    continue
                full = os.path.join(folder, name)
                if os.path.isfile(full):
                    found.append(full)
        found.sort()
        self._entries.extend(Entry(p, path=p) for p in found)
        return len(found)

    def add_file_from_memory(self, data: bytes | bytearray | memoryview, name: str) -> None:
        """Queue a file held in memory; ``name`` identifies it in events and results."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"add_file_from_memory: data must be bytes, got {type(data).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError("add_file_from_memory: name must be a non-empty string")
        self._entries.append(Entry(name, data=bytes(data)))

    def clean(self) -> None:
        """Empty the queue (``send()`` does not)."""
        self._entries.clear()

    @property
    def files(self) -> list[str]:
        """The names of the queued entries, in queue order."""
        return [entry.name for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    # --- sending -------------------------------------------------------------------

    def send(
        self,
        *,
        on_transfer_started: Callback[TransferStarted] = None,
        on_file_sending: Callback[FileSending] = None,
        on_file_sent: Callback[FileSent] = None,
        on_file_error: Callback[FileError] = None,
        on_transfer_completed: Callback[TransferCompleted] = None,
    ) -> TransferResult:
        """Send every queued entry; callbacks run on this thread, one at a time.

        Raises :class:`ConnectionFailed` / :class:`AssociationRejected` only when no
        association could be established at all (``.result`` accounts every entry as
        failed), and :class:`CallbackError` after the transfer if a callback raised.
        """
        transfer = _Transfer(self, _Callbacks(
            on_transfer_started, on_file_sending, on_file_sent, on_file_error, on_transfer_completed
        ))  # fmt: skip
        transfer.prepare()
        if self.concurrency == 1:
            transfer.run_inline()
        else:
            transfer.run_threads()
        return transfer.finish()

    async def send_async(
        self,
        *,
        on_transfer_started: Callback[TransferStarted] = None,
        on_file_sending: Callback[FileSending] = None,
        on_file_sent: Callback[FileSent] = None,
        on_file_error: Callback[FileError] = None,
        on_transfer_completed: Callback[TransferCompleted] = None,
    ) -> TransferResult:
        """Like :meth:`send`, without blocking the event loop; callbacks run on the
        loop's thread, one at a time."""
        transfer = _Transfer(self, _Callbacks(
            on_transfer_started, on_file_sending, on_file_sent, on_file_error, on_transfer_completed
        ))  # fmt: skip
        await asyncio.to_thread(transfer.prepare)
        await transfer.run_async()
        return transfer.finish()

    def preflight(self) -> list[PreflightItem]:
        """Negotiate without sending: what would happen to each queued entry.

        Raises :class:`ConnectionFailed` / :class:`AssociationRejected` like ``send()``.
        """
        entries = list(self._entries)
        headers = [_safe_header(e) for e in entries]
        plans, plan_of = _plan(headers, self.transfer_syntax, self.never_transcode)
        negotiated: dict[int, Any] = {}
        for index, plan in enumerate(plans):
            assoc = self._open(plan)
            negotiated[index] = assoc.negotiated
            assoc.release()
        items: list[PreflightItem] = []
        for entry, header in zip(entries, headers, strict=True):
            if isinstance(header, EntryError):
                items.append(PreflightItem(entry.name, "unreadable", reason=str(header)))
                continue
            common = {
                "sop_class_uid": header.sop_class_uid,
                "sop_instance_uid": header.sop_instance_uid,
                "file_transfer_syntax": header.transfer_syntax,
            }
            choice = select_context(
                negotiated[plan_of[header.sop_class_uid]],
                header.sop_class_uid,
                header.transfer_syntax,
                forced=self.transfer_syntax,
                never_transcode=self.never_transcode,
            )
            if isinstance(choice, Refusal):
                items.append(PreflightItem(entry.name, "refuse", reason=choice.reason, **common))
                continue
            if choice.convert:
                try:
                    convert(entry, header, choice.transfer_syntax)
                except ConversionError as exc:
                    items.append(PreflightItem(entry.name, "refuse", reason=str(exc), **common))
                    continue
            reason = None
            if choice.convert:
                reason = (
                    f"{syntax_name(header.transfer_syntax)} -> "
                    f"{syntax_name(choice.transfer_syntax)}: "
                    + (
                        "the transfer syntax is forced"
                        if self.transfer_syntax is not None
                        else "the SCP did not accept the file's own transfer syntax"
                    )
                )
            items.append(
                PreflightItem(
                    entry.name,
                    "convert" if choice.convert else "accept",
                    transfer_syntax=choice.transfer_syntax,
                    reason=reason,
                    **common,
                )
            )
        return items

    def _open(self, plan: AssociationPlan | None, *, verification: bool = False) -> Association:
        return Association.open(
            self._address,
            calling_ae_title=self.calling_ae_title,
            called_ae_title=self.called_ae_title,
            plan=plan,
            max_pdu_length=self.max_pdu_length,
            timeouts=self.timeouts,
            tls=self.tls,
            verification=verification,
            log=self._log,
        )

    def __repr__(self) -> str:
        return (
            f"StoreScu({self.addr!r}, calling_ae_title={self.calling_ae_title!r}, "
            f"called_ae_title={self.called_ae_title!r}, queued={len(self._entries)})"
        )


def echo(
    addr: str,
    *,
    calling_ae_title: str = "STORE-SCU",
    called_ae_title: str = _UNSET,
    connect_timeout: float | None = 10.0,
    acse_timeout: float | None = 30.0,
    dimse_timeout: float | None = 30.0,
    network_timeout: float | None = 60.0,
    tls: ssl.SSLContext | None = None,
) -> EchoResult:
    """C-ECHO ``addr``; raises :class:`ConnectionFailed` / :class:`AssociationRejected`,
    or :class:`ProtocolError` / :class:`TransportError` if the echo itself fails."""
    scu = StoreScu(
        addr,
        calling_ae_title=calling_ae_title,
        called_ae_title=called_ae_title,
        connect_timeout=connect_timeout,
        acse_timeout=acse_timeout,
        dimse_timeout=dimse_timeout,
        network_timeout=network_timeout,
        tls=tls,
    )
    started = time.monotonic()
    assoc = scu._open(None, verification=True)
    try:
        response = assoc.echo()
    finally:
        assoc.release()
    assert response.status is not None
    return EchoResult(response.status, time.monotonic() - started)


# --- the transfer ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Callbacks:
    started: Callback[TransferStarted]
    sending: Callback[FileSending]
    sent: Callback[FileSent]
    error: Callback[FileError]
    completed: Callback[TransferCompleted]


def _safe_header(entry: Entry) -> Header | EntryError:
    try:
        return read_header(entry)
    except EntryError as exc:
        return exc
    except Exception as exc:  # a reader bug must not lose the entry
        return EntryError(f"cannot read: {type(exc).__name__}: {exc}")


def _plan(
    headers: Iterable[Header | EntryError], forced: str | None, never_transcode: bool
) -> tuple[list[AssociationPlan], dict[str, int]]:
    needs = [(h.sop_class_uid, h.transfer_syntax) for h in headers if isinstance(h, Header)]
    plans = plan_associations(needs, forced=forced, never_transcode=never_transcode)
    plan_of = {sop_class: i for i, plan in enumerate(plans) for sop_class in plan.sop_classes}
    return plans, plan_of


_DONE = object()


@dataclass
class _Transfer:
    scu: StoreScu
    callbacks: _Callbacks
    entries: list[Entry] = field(init=False)
    headers: list[Header | EntryError] = field(init=False, default_factory=list)
    plans: list[AssociationPlan] = field(init=False, default_factory=list)
    plan_of: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.entries = list(self.scu._entries)
        self.total = len(self.entries)
        self.outcomes: list[FileOutcome | None] = [None] * self.total
        self.warnings: list[str] = []
        self.successful = 0
        self.failed = 0
        self.started_at = time.monotonic()
        self.callback_error: BaseException | None = None
        # Shared between workers (guarded by _lock).
        self._lock = threading.Lock()
        self._cursor = 0
        self._fail_fast_hit = False
        self._cancelled = False
        self._alive = 0
        self._established = False
        self._last_association_error: AssociationError | None = None
        self._requeued: list[int] = []

    # -- step 1
    def prepare(self) -> None:
        self.headers = [_safe_header(e) for e in self.entries]
        self.plans, self.plan_of = _plan(
            self.headers, self.scu.transfer_syntax, self.scu.never_transcode
        )

    # -- step 3: dispatch (caller's thread only)
    def _call(self, callback: Callable[[Any], object] | None, event: Event) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception as exc:
            log.error("a %s callback raised %r; the transfer goes on", type(event).__name__, exc)
            if self.callback_error is None:
                self.callback_error = exc

    def dispatch(self, index: int | None, event: Event) -> None:
        cb = self.callbacks
        if isinstance(event, FileSending):
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
        if isinstance(event, FileSent):
            self.successful += 1
            self.outcomes[index] = FileOutcome(
                event.file, event.status, True, None, event.transfer_syntax,
                event.sop_instance_uid, event.sop_class_uid, event.warning,
            )  # fmt: skip
            if event.warning is not None:
                self.warnings.append(f"{event.file}: {event.warning}")
            self._call(cb.sent, event)
        else:
            self.failed += 1
            self.outcomes[index] = FileOutcome(
                event.file, event.status, False, event.error, None,
                event.sop_instance_uid, event.sop_class_uid,
            )  # fmt: skip
            self._call(cb.error, event)

    def _start_event(self) -> TransferStarted:
        return TransferStarted("Transfer started", self.total)

    def _close_leftovers(self) -> None:
        """Close any entry a worker failed to close (a bug): invariant 2 holds anyway."""
        for index, outcome in enumerate(self.outcomes):
            if outcome is None:
                self.dispatch(
                    index, self._error_event(index, "internal error: the entry was never processed")
                )

    def _completed_event(self) -> TransferCompleted:
        duration = time.monotonic() - self.started_at
        return TransferCompleted(
            f"Transfer completed: {self.successful} successful, {self.failed} failed",
            self.total, self.successful, self.failed, duration,
        )  # fmt: skip

    # -- running
    def run_inline(self) -> None:
        self.dispatch(None, self._start_event())
        self._alive = 1
        try:
            self._worker(self.dispatch)
        finally:
            self._close_leftovers()
            self.dispatch(None, self._completed_event())

    def run_threads(self) -> None:
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        workers = self._start_workers(lambda i, e: events.put((i, e)), lambda: events.put(_DONE))
        self.dispatch(None, self._start_event())
        remaining = len(workers)
        try:
            while remaining:
                item = events.get()
                if item is _DONE:
                    remaining -= 1
                else:
                    self.dispatch(*item)
        except BaseException:
            self._cancelled = True  # workers stop at their next entry; joined below
            raise
        finally:
            _join_all(workers)
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

        workers = self._start_workers(
            emit, lambda: _discard(loop.call_soon_threadsafe(events.put_nowait, _DONE))
        )
        self.dispatch(None, self._start_event())
        remaining = len(workers)
        try:
            while remaining:
                item = await events.get()
                if item is _DONE:
                    remaining -= 1
                else:
                    self.dispatch(*item)
        except BaseException:
            self._cancelled = True
            raise
        finally:
            await asyncio.to_thread(_join_all, workers)
            while not events.empty():
                item = events.get_nowait()
                if item is not _DONE:
                    self.dispatch(*item)
            self._close_leftovers()
            self.dispatch(None, self._completed_event())

    def _start_workers(
        self, emit: Callable[[int | None, Event], None], done: Callable[[], None]
    ) -> list[threading.Thread]:
        count = max(1, min(self.scu.concurrency, self.total))
        self._alive = count

        def body() -> None:
            try:
                self._worker(emit)
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
        result = TransferResult(
            self.successful, self.failed, list(self.warnings), self.total, files,
            time.monotonic() - self.started_at,
        )  # fmt: skip
        error = self._last_association_error
        if error is not None and not self._established:
            error.result = result
            raise error
        if self.callback_error is not None:
            raise CallbackError(
                f"a callback raised {type(self.callback_error).__name__}: {self.callback_error}; "
                "the transfer completed and .result holds its outcome",
                result=result,
            ) from self.callback_error
        return result

    # -- step 2: a worker
    def _next_index(self) -> int | None:
        """The next entry for this worker, or ``None`` when the queue is empty, in which
        case the worker counts itself out (under the same lock, so an entry handed back
        by a failing worker is never left with nobody to take it)."""
        with self._lock:
            if self._requeued:
                return self._requeued.pop(0)
            if self._cursor < self.total:
                self._cursor += 1
                return self._cursor - 1
            self._alive -= 1
            return None

    def _give_back(self, index: int) -> bool:
        """Hand an entry back for another worker (this one stops); False if no other
        worker is left to take it."""
        with self._lock:
            if self._alive > 1:
                self._alive -= 1
                self._requeued.append(index)
                return True
            return False

    def _error_event(
        self, index: int, error: str, *, status: int | None = None, message: str = "File not sent"
    ) -> FileError:
        entry = self.entries[index]
        header = self.headers[index] if index < len(self.headers) else None
        error = " ".join(error.split())  # one line, whatever the library's message looked like
        if isinstance(header, Header):
            return FileError(
                message, entry.name, error, header.sop_instance_uid, header.sop_class_uid,
                header.transfer_syntax, status,
            )  # fmt: skip
        return FileError(message, entry.name, error, status=status)

    def _worker(self, emit: Callable[[int | None, Event], None]) -> None:
        assoc: Association | None = None
        assoc_plan = -1
        dead: str | None = None
        try:
            while True:
                index = self._next_index()
                if index is None:
                    return
                if self._cancelled:
                    emit(index, self._error_event(index, "not sent: the transfer was cancelled"))
                    continue
                if dead is not None:
                    emit(index, self._error_event(index, dead))
                    continue
                if self._fail_fast_hit:
                    emit(index, self._error_event(index, "not sent: fail_fast"))
                    continue
                header = self.headers[index]
                if isinstance(header, EntryError):
                    self._fail(index, emit, self._error_event(
                        index, str(header), message="File could not be read"
                    ))  # fmt: skip
                    continue
                plan_index = self.plan_of[header.sop_class_uid]
                if assoc is None or not assoc.usable or assoc_plan != plan_index:
                    if assoc is not None:
                        assoc.release()
                        assoc = None
                    try:
                        assoc = self.scu._open(self.plans[plan_index])
                        assoc_plan = plan_index
                        with self._lock:
                            self._established = True
                    except Exception as exc:
                        if not isinstance(exc, AssociationError):  # a bug: keep the accounting
                            log.exception("internal error while opening an association")
                            exc = ConnectionFailed(
                                f"could not establish association with {self.scu._address}: "
                                f"internal error: {exc!r}"
                            )
                        with self._lock:
                            self._last_association_error = exc
                        if self._give_back(index):
                            return  # other workers carry on with the queue
                        dead = str(exc)
                        self._fail(index, emit, self._error_event(index, dead))
                        continue
                try:
                    self._store_one(index, header, assoc, emit)
                except Exception as exc:  # a bug here must not lose the entry
                    log.exception("internal error while sending %s", self.entries[index].name)
                    if assoc is not None:
                        assoc.abort()
                    self._fail(index, emit, self._error_event(index, f"internal error: {exc!r}"))
        finally:
            if assoc is not None:
                assoc.release()

    def _fail(
        self, index: int, emit: Callable[[int | None, Event], None], event: FileError
    ) -> None:
        if self.scu.fail_fast:
            self._fail_fast_hit = True
        emit(index, event)

    def _store_one(
        self,
        index: int,
        header: Header,
        assoc: Association,
        emit: Callable[[int | None, Event], None],
    ) -> None:
        entry = self.entries[index]
        choice = select_context(
            assoc.negotiated,
            header.sop_class_uid,
            header.transfer_syntax,
            forced=self.scu.transfer_syntax,
            never_transcode=self.scu.never_transcode,
        )
        if isinstance(choice, Refusal):
            self._fail(index, emit, self._error_event(index, choice.reason))
            return
        if choice.convert:
            try:
                payload = Payload.from_bytes(convert(entry, header, choice.transfer_syntax))
            except ConversionError as exc:
                self._fail(index, emit, self._error_event(index, f"cannot convert: {exc}"))
                return
        elif entry.data is not None:
            payload = Payload.from_bytes(memoryview(entry.data)[header.dataset_offset :])
        else:
            assert entry.path is not None
            payload = Payload(
                path=entry.path,
                offset=header.dataset_offset,
                length=header.size - header.dataset_offset,
            )
        deflated = header.transfer_syntax == DEFLATED_EXPLICIT_VR_LE
        if deflated and payload.length % 2 and not choice.convert:
            # PS3.5 A.5: a deflated stream of odd length is padded with one null byte
            # (files on disk often are not; DCMTK aborts on the odd fragment).
            payload = payload.padded(b"\x00")
        emit(index, FileSending(
            "Sending file", entry.name, header.sop_instance_uid, header.sop_class_uid
        ))  # fmt: skip
        started = time.monotonic()
        try:
            response = assoc.store(
                choice.context_id, header.sop_class_uid, header.sop_instance_uid, payload
            )
        except (TransportError, ProtocolError) as exc:
            self._fail(index, emit, self._error_event(index, str(exc), message="File failed"))
            return
        except SourceError as exc:  # the file vanished or changed after it was queued
            assoc.abort()
            self._fail(index, emit, self._error_event(
                index, f"{exc}; the association was aborted", message="File failed"
            ))  # fmt: skip
            return
        duration = time.monotonic() - started
        status = response.status
        assert status is not None
        category = classify(status)
        if category is StatusCategory.FAILURE:
            self._fail(index, emit, self._error_event(
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
            choice.transfer_syntax, duration, status, warning,
        ))  # fmt: skip


def _discard(_value: object) -> None:
    return None


def _join_all(threads: Iterable[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


_QUIET_LOG = logging.getLogger("scu.association")
_VERBOSE_LOG = logging.getLogger("scu.verbose")


def _verbose_logger() -> logging.Logger:
    """The logger of ``verbose=True`` instances: it lets their protocol exchange through
    at DEBUG (other instances log to ``scu.association``, which follows the
    application's logging set-up), and prints to stderr when nothing is configured."""
    _VERBOSE_LOG.setLevel(logging.DEBUG)
    if not _VERBOSE_LOG.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        _VERBOSE_LOG.addHandler(handler)
    return _VERBOSE_LOG
