"""What the mock saw: stores, associations and the SCU's violations of the standard.

A store's data set is kept exactly as received (see :mod:`mock_scp.storage` for where)
and decoded only on demand (:meth:`ReceivedStore.dataset`), so the receive path never
pays for pydicom. :class:`Journal` holds the records for one server and tells its
listeners; every text a peer sent is shown through :func:`printable`.
"""

from __future__ import annotations

import bisect
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scu.protocol.identity import UserIdentity
from scu.protocol.status import status_label
from scu.protocol.text import printable

from .storage import Payload, part10_bytes


def _arrival(store: ReceivedStore) -> int:
    return store.nth


#: The longest a reader waits for a store being journalled after its answer (a bound,
#: not a figure: journalling takes microseconds).
_SETTLE_SECONDS = 5.0

if TYPE_CHECKING:
    from pydicom.dataset import FileDataset

__all__ = [
    "AssociationRecord",
    "Journal",
    "Listener",
    "ReceivedStore",
    "Violation",
    "ViolationKind",
    "printable",
]


class ViolationKind:
    """Names of the violations the mock detects (``Violation.kind``)."""

    UID_MISMATCH = "uid-mismatch"
    WRONG_TRANSFER_SYNTAX = "wrong-transfer-syntax"
    PDU_TOO_LARGE = "pdu-too-large"
    DUPLICATE_MESSAGE_ID = "duplicate-message-id"
    OPERATIONS_WINDOW = "operations-window"
    #: Not the standard's: a store no rule matched under ``strict_rules``.
    UNMATCHED_STORE = "unmatched-store"
    DROPPED_CONNECTION = "dropped-connection"
    UNKNOWN_CONTEXT = "unknown-context"
    CONTEXT_MISMATCH = "context-mismatch"
    INVALID_UID = "invalid-uid"
    NEGOTIATION = "negotiation"
    PROTOCOL = "protocol"


@dataclass(frozen=True)
class Violation:
    """Something the SCU did against the standard."""

    kind: str
    association_id: int
    detail: str
    message_id: int | None = None

    def __str__(self) -> str:
        where = f"association {self.association_id}"
        if self.message_id is not None:
            where += f", message {self.message_id}"
        return f"{self.kind} ({where}): {printable(self.detail)}"


@dataclass(eq=False)
class AssociationRecord:
    """One association attempt. ``ended`` is ``None`` while open, then one of
    ``"released"``, ``"aborted"``, ``"dropped"``, ``"rejected"``; ``end_detail`` says
    who ended it and why (e.g. ``"A-ABORT from the SCU"``, ``"network timeout"``).

    ``proposed_contexts`` holds ``(context_id, abstract_syntax, transfer_syntaxes)``;
    ``accepted_contexts`` ``(context_id, abstract_syntax, transfer_syntax)``.
    ``max_pdu_length`` is the SCU's announced maximum (0 = none). ``user_identity`` is
    what the SCU presented (its ``repr`` never shows a secret)."""

    id: int
    calling_ae_title: str
    called_ae_title: str
    proposed_contexts: list[tuple[int, str, tuple[str, ...]]]
    accepted_contexts: list[tuple[int, str, str]]
    max_pdu_length: int
    ended: str | None = None
    end_detail: str | None = None
    peer: str = ""
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    rejection: tuple[int, int, int] | None = None  # (result, source, reason)
    stores: int = 0
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    user_identity: UserIdentity | None = None
    tls: bool = False
    #: Who ended it: ``"scu"`` (release, A-ABORT or close from the SCU) or ``"mock"``
    #: (a reject, a rule's fault, a timeout, a protocol abort, the server stopping).
    ended_by: str | None = None

    def __repr__(self) -> str:
        state = self.ended or "open"
        detail = f" ({printable(self.end_detail)})" if self.end_detail else ""
        identity = "" if self.user_identity is None else f", {self.user_identity!r}"
        return (
            f"<AssociationRecord #{self.id} {printable(self.calling_ae_title)} -> "
            f"{printable(self.called_ae_title)} from {self.peer or '?'}: "
            f"{len(self.accepted_contexts)}/{len(self.proposed_contexts)} contexts, "
            f"{self.stores} stores{identity}, {state}{detail}>"
        )


@dataclass(eq=False)
class ReceivedStore:
    """One C-STORE request the mock received.

    ``status`` is the status sent back, or ``None`` when no response was sent (the
    rule aborted, disconnected or sent garbage, or the association ended first);
    ``action`` names what the mock did (``"accept"``, ``"respond"``, ``"warn"``,
    ``"fail"``, ``"abort"``, ``"disconnect"``, ``"garbage"``, or ``"interrupted"``);
    ``complete`` is False when the data set did not arrive in full. ``raw`` is the
    data set as received, in ``transfer_syntax`` (when kept); ``path`` the Part-10 file
    written under ``store_dir``, if any; ``write_error`` why it could not be written."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae_title: str
    called_ae_title: str
    association_id: int
    message_id: int
    status: int | None
    action: str
    comment: str | None = None
    stalled_seconds: float = 0.0
    complete: bool = True
    nth: int = 0
    payload: Payload | None = field(default=None, repr=False)
    path: Path | None = None
    write_error: str | None = None
    dataset_sop_instance_uid: str | None = None  # from the data set, when read cheaply
    #: When the data set was complete (``time.time()``).
    received_at: float = field(default_factory=time.time)
    #: When the C-STORE-RQ command arrived, and when the response went out (``None``
    #: when no response was sent).
    requested_at: float | None = None
    answered_at: float | None = None

    @property
    def answered(self) -> bool:
        """Complete and answered with a status (what ``MockScp.stored`` lists)."""
        return self.complete and self.status is not None

    @property
    def data(self) -> bytes | bytearray:
        """The data set as received (raises ``ValueError`` when it was not kept)."""
        if self.payload is None:
            return b""
        return self.payload.read()

    @property
    def raw(self) -> bytes:
        """The data set as received, in ``transfer_syntax`` (a copy)."""
        return bytes(self.data)

    @property
    def head(self) -> bytes:
        """The first bytes of the data set (kept even when the data set is not)."""
        return self.payload.head if self.payload is not None else b""

    @property
    def size(self) -> int:
        """Bytes of data set received."""
        return self.payload.size if self.payload is not None else 0

    def part10_header(self) -> bytes:
        """Preamble, ``DICM`` and the file meta group for this store."""
        return part10_bytes(
            b"",
            sop_class_uid=self.sop_class_uid,
            sop_instance_uid=self.sop_instance_uid,
            transfer_syntax=self.transfer_syntax,
            source_ae_title=self.calling_ae_title,
        )

    def part10(self) -> bytes:
        """The store as a DICOM Part-10 file (preamble, file meta, data set)."""
        return self.part10_header() + self.data

    def dataset(self) -> FileDataset:
        """Decode the received data set with pydicom (on demand; not cached)."""
        import pydicom

        if not self.complete:
            raise ValueError(
                f"store {self.nth} ({printable(self.sop_instance_uid)}) was not received in "
                f"full ({self.size} bytes received)"
            )
        return pydicom.dcmread(io.BytesIO(self.part10()))

    def __repr__(self) -> str:
        answer = status_label(self.status) if self.status is not None else "no response"
        partial = "" if self.complete else ", incomplete"
        return (
            f"<ReceivedStore #{self.nth} {printable(self.sop_instance_uid)} "
            f"(association {self.association_id}, message {self.message_id}): {self.action} "
            f"{answer}{partial}, {self.size} bytes>"
        )


Listener = Callable[[AssociationRecord | ReceivedStore], object]


class Journal:
    """Everything one server saw, shared by its connections; thread-safe.

    Connections add to it through these methods only. Listeners are called from server
    threads; what they raise is kept in :attr:`errors` (reported by ``check()``).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._stores: list[ReceivedStore] = []
        self._associations: list[AssociationRecord] = []
        self._violations: list[Violation] = []
        self._errors: list[BaseException] = []
        self._deferred_checks: list[ReceivedStore] = []
        self._listeners: list[Listener] = []
        self._request_listeners: list[Callable[[object], object]] = []
        self._next_id = 1
        self.refused_connections = 0
        # Threads that have answered a store and are still journalling it (see
        # ``answering``), by thread ident; readers wait for the others.
        self._unsettled: dict[int, int] = {}
        self._settled = threading.Condition(self.lock)

    # -- answering first
    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around a store's answer and its journalling: the answer leaves first (the SCU
        waits for nothing else), and until the store is journalled every read of the
        journal from another thread waits, so a test that has seen the response always
        finds the store (and what the checks found) in the journal."""
        ident = threading.get_ident()
        with self.lock:
            self._unsettled[ident] = self._unsettled.get(ident, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                left = self._unsettled[ident] - 1
                if left:
                    self._unsettled[ident] = left
                else:
                    del self._unsettled[ident]
                    self._settled.notify_all()

    def _settle(self) -> None:
        """With the lock held: wait while another thread journals an answered store (a
        thread never waits for itself: a listener may read the journal)."""
        ident = threading.get_ident()
        deadline = time.monotonic() + _SETTLE_SECONDS
        while any(t != ident for t in self._unsettled):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._settled.wait(left)

    # -- adding
    def new_association(self, **fields: object) -> AssociationRecord:
        with self.lock:
            record = AssociationRecord(id=self._next_id, **fields)  # type: ignore[arg-type]
            self._next_id += 1
            self._associations.append(record)
        return record

    def end_association(
        self, record: AssociationRecord, how: str, detail: str, by: str = "mock"
    ) -> bool:
        """Record how an association ended (once); whether this call ended it."""
        with self.lock:
            if record.ended is not None:
                return False
            record.ended = how
            record.ended_by = by
            record.end_detail = detail
            record.ended_at = time.time()
            return True

    def add_store(self, store: ReceivedStore, record: AssociationRecord | None) -> None:
        """Add a store where its request's arrival puts it (stores are journalled when
        they end: one stalled or still arriving ends after later ones)."""
        with self.lock:
            stores = self._stores
            if not stores or stores[-1].nth < store.nth:  # the usual case: the newest
                stores.append(store)
            else:
                bisect.insort(stores, store, key=_arrival)
            if record is not None:
                record.stores += 1

    def violation(self, violation: Violation) -> None:
        with self.lock:
            self._violations.append(violation)

    def error(self, exc: BaseException) -> None:
        with self.lock:
            self._errors.append(exc)

    def check_later(self, store: ReceivedStore) -> None:
        with self.lock:
            self._deferred_checks.append(store)

    def take_deferred(self) -> list[ReceivedStore]:
        with self.lock:
            pending, self._deferred_checks = self._deferred_checks, []
        return pending

    # -- listeners
    def add_listener(self, fn: Listener) -> None:
        with self.lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self.lock:
            self._listeners.remove(fn)

    def add_request_listener(self, fn: Callable[[object], object]) -> None:
        with self.lock:
            self._request_listeners.append(fn)

    def notify(self, item: AssociationRecord | ReceivedStore) -> None:
        for fn in list(self._listeners):
            try:
                fn(item)
            except Exception as exc:
                self.error(exc)

    def notify_request(self, request: object) -> None:
        for fn in list(self._request_listeners):
            try:
                fn(request)
            except Exception as exc:
                self.error(exc)

    # -- reading
    @property
    def stores(self) -> list[ReceivedStore]:
        with self.lock:
            self._settle()
            return list(self._stores)

    @property
    def associations(self) -> list[AssociationRecord]:
        with self.lock:
            self._settle()
            return list(self._associations)

    @property
    def violations(self) -> list[Violation]:
        with self.lock:
            self._settle()
            return list(self._violations)

    @property
    def errors(self) -> list[BaseException]:
        with self.lock:
            self._settle()
            return list(self._errors)

    def reset(self) -> None:
        with self.lock:
            self._stores.clear()
            self._associations.clear()
            self._violations.clear()
            self._errors.clear()
            self._deferred_checks.clear()
            self._listeners.clear()
            self._request_listeners.clear()
            self._next_id = 1
            self.refused_connections = 0
