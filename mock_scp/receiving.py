"""How one connection of the mock SCP receives a store and answers it: the plan made
when the C-STORE-RQ arrives, the data set into its sink (and ``store_dir``), the
decision once it is complete, a stall, the answer (sent first, then journalled) or the
fault, and the checks on what arrived. A part of :class:`mock_scp.connection.Connection`
kept apart so that each module has one concern."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scu.protocol.status import StatusCategory, classify

from .checks import error_comment, sniff, uid_mismatch
from .config import ScpConfig
from .journal import AssociationRecord, Journal, ReceivedStore
from .machine import (
    ConnectionMachine,
    DatasetData,
    Fault,
    Output,
    StorePlan,
    StoreRequested,
)
from .matching import Plan
from .rules import Action, Decision, StoreContent, StoreRequest
from .storage import Payload, Sink, StoreFile

if TYPE_CHECKING:
    from .connection import ServerPort

__all__ = ["Receiving", "Stopped", "Store"]

_FAULTS = {"abort": Fault.ABORT, "disconnect": Fault.DISCONNECT, "garbage": Fault.GARBAGE}
_ANSWERS = ("accept", "respond", "warn", "fail")


class Stopped(Exception):
    """The server is stopping."""


@dataclass
class Store:
    """A store being received or answered."""

    request: StoreRequest
    plan: Plan
    sink: Sink
    file: StoreFile | None
    requested_at: float
    complete: bool = False
    decision: Decision | None = None
    payload: Payload | None = None
    #: Data set bytes of the last read not yet in the sink: views into the read buffer,
    #: valid until the next read (see :meth:`Receiving._flush_data`).
    pending: list[memoryview] = field(default_factory=list)


class Receiving:
    """Receiving and answering stores, for :class:`mock_scp.connection.Connection`."""

    # What the connection provides.
    port: ServerPort
    config: ScpConfig
    journal: Journal
    sock: socket.socket
    machine: ConnectionMachine
    record: AssociationRecord | None
    store: Store | None
    _stall_view: memoryview

    def _send(self, data: bytes) -> bool:
        raise NotImplementedError

    def _end(self, how: str, detail: str, by: str = "mock") -> None:
        raise NotImplementedError

    def _handle(self, outputs: list[Output]) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _violation(self, kind: str, detail: str, message_id: int | None = None) -> None:
        raise NotImplementedError

    # --- stores --------------------------------------------------------------------------

    def _plan_store(self, event: StoreRequested) -> StorePlan:
        """The machine asks, as a C-STORE-RQ arrives, how to receive its data set."""
        record = self.record
        assert record is not None
        command = event.command
        request = StoreRequest(
            nth=self.port.next_nth(),
            sop_class_uid=command.affected_sop_class_uid or "",
            sop_instance_uid=command.affected_sop_instance_uid or "",
            transfer_syntax=event.transfer_syntax,
            calling_ae_title=record.calling_ae_title,
            called_ae_title=record.called_ae_title,
            association_id=record.id,
            message_id=command.message_id or 0,
            context_id=event.context_id,
            priority=command.priority or 0,
            move_originator_ae_title=command.move_originator_ae_title,
        )
        plan = self.port.plan(request)
        self.journal.notify_request(request)
        writer = self.port.writer
        file = None
        if writer is not None:
            from .storage import part10_bytes

            file = writer.open(
                part10_bytes(
                    b"",
                    sop_class_uid=request.sop_class_uid,
                    sop_instance_uid=request.sop_instance_uid,
                    transfer_syntax=request.transfer_syntax,
                    source_ae_title=request.calling_ae_title,
                )
            )
        arrived = event.arrived_at or time.time()
        self.store = Store(request, plan, self.port.payloads.open(), file, arrived)
        early = plan.decision.action if plan.decision is not None else None
        return StorePlan(
            abort_during_dataset=early is not None and early.name == "abort",
            read_rate=plan.bytes_per_second,
        )

    def _dataset_data(self, event: DatasetData) -> None:
        """The bytes go to the sink (and ``store_dir``) before the next read; without a
        ``store_dir`` they wait there until then, so that the last read's bytes of a
        data set reach the sink after its answer has left (the SCU waits for nothing
        else), unless the decision looks at the content first."""
        store = self.store
        if store is None:
            return
        if store.file is None:
            store.pending += event.chunks
            return
        store.sink.write_chunks(event.chunks)
        for chunk in event.chunks:
            store.file.write(chunk)

    def _flush_data(self) -> None:
        """Put the bytes waiting in :attr:`Store.pending` into the sink (called before
        the read buffer is read into again)."""
        if self.store is not None:
            _write_pending(self.store)

    def _payload_of(self, store: Store) -> Payload:
        """The complete data set of ``store`` as kept (its pending bytes written first)."""
        _write_pending(store)
        if store.payload is None:
            store.payload = store.sink.close()
        return store.payload

    def _store_ended(
        self,
        status: int | None,
        action: str,
        complete: bool,
        comment: str | None = None,
        *,
        notify: bool = True,
    ) -> ReceivedStore | None:
        """Journal the current store; tell the listeners unless ``notify`` is False."""
        store = self.store
        if store is None:
            return None
        payload = self._payload_of(store)
        self.store = None
        path = None
        error = None
        if store.file is not None:
            if complete and status is not None:
                path = store.file.commit(store.request.sop_instance_uid, store.request.nth)
                error = store.file.error
            else:
                store.file.discard()
        req = store.request
        received = ReceivedStore(
            sop_class_uid=req.sop_class_uid,
            sop_instance_uid=req.sop_instance_uid,
            transfer_syntax=req.transfer_syntax,
            calling_ae_title=req.calling_ae_title,
            called_ae_title=req.called_ae_title,
            association_id=req.association_id,
            message_id=req.message_id,
            status=status,
            action=action,
            comment=comment if status is not None else None,
            stalled_seconds=store.decision.stall_seconds if store.decision else 0.0,
            complete=complete,
            nth=req.nth,
            payload=payload,
            path=path,
            write_error=error,
            requested_at=store.requested_at,
        )
        self.journal.add_store(received, self.record)
        if notify:
            self.journal.notify(received)
        return received

    def _store_complete(self) -> None:
        store = self.store
        if store is None:
            return
        store.complete = True
        req = store.request

        def content() -> bytes | bytearray:
            payload = self._payload_of(store)
            whole = payload.path is not None or payload.in_memory
            return payload.read() if whole else payload.head

        decision = store.decision = self.port.decide(store.plan, StoreContent(req, content))
        if decision.stall_seconds > 0 or decision.action.name not in _ANSWERS:
            self._payload_of(store)  # a stall reads on; a fault journals the store now
        if decision.stall_seconds > 0:
            cut = self._stall(decision.stall_seconds)
            if cut:
                self._check_dataset(store)
                self._store_ended(None, "interrupted", True)
                self._handle(cut)
                return
        action = decision.action
        if action.name in _ANSWERS:
            self._answer(store, action)
            return
        self._check_dataset(store)
        self._store_ended(None, action.name, True)
        fault = Fault.RESET if action.name == "disconnect" and action.rst else _FAULTS[action.name]
        data = self.machine.fault(fault, garbage=action.data)
        if fault is Fault.ABORT:
            self._end("aborted", "A-ABORT by the mock instead of a response (rule)")
        elif fault is Fault.GARBAGE:
            self._end(
                "dropped", f"{len(action.data)} garbage bytes then TCP close by the mock (rule)"
            )
        else:
            self._end(
                "dropped",
                "TCP closed by the mock (rule" + (", reset)" if fault is Fault.RESET else ")"),
            )
        self._send(data)

    def _check_dataset(self, store: Store) -> tuple[str | None, str | None]:
        """What the data set's first bytes say: a problem with its encoding (recorded as
        a violation), and the SOP Instance UID it holds (``None``: not in the head)."""
        payload = self._payload_of(store)
        req = store.request
        problem, uid = sniff(payload.head, req.transfer_syntax, payload.size)
        if problem is not None:
            self._violation("wrong-transfer-syntax", problem, req.message_id)
        return problem, uid

    def _answer(self, store: Store, action: Action) -> None:
        """Answer first (the SCU waits for nothing else), then journal the store and run
        the checks; readers of the journal wait until that is done."""
        status, comment = action.status, action.comment
        path: Path | None = None
        error: str | None = None
        written = store.file is not None and classify(status) is not StatusCategory.FAILURE
        if written:
            assert store.file is not None
            # Written before the answer: a store that cannot be kept is not a success.
            path = store.file.commit(store.request.sop_instance_uid, store.request.nth)
            error = None if path is not None else store.file.error or "cannot write"
            if error is not None:
                status, comment = 0xA700, error_comment(error)
            store.file = None
        data = self.machine.answer(status, comment)
        with self.journal.answering():
            answered_at = time.time()
            self._send(data)
            problem, uid = self._check_dataset(store)  # the data set reaches the sink here
            received = self._store_ended(status, action.name, True, comment, notify=False)
            assert received is not None
            received.answered_at = answered_at
            if written:
                received.path = path
                received.write_error = error  # in full: the comment may be cut short
            if problem is None:
                if uid is None:
                    self.journal.check_later(received)
                else:
                    received.dataset_sop_instance_uid = uid
                    if uid != received.sop_instance_uid:
                        self.journal.violation(uid_mismatch(received, uid))
        self.journal.notify(received)
        self._handle(self.machine.resume())
        self._flush()

    def _stall(self, seconds: float) -> list[Output]:
        """Hold the answer back; what ended it early (the SCU's A-ABORT or close), or
        ``[]`` when it ran its course. What else arrives waits (the machine keeps it)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if self.port.stop_event.is_set():
                raise Stopped
            if left <= 0:
                return []
            if not self.machine.accepts_input:
                if self.port.stop_event.wait(min(left, 0.05)):
                    raise Stopped
                continue
            self.sock.settimeout(min(left, 0.25))
            try:
                n = self.sock.recv_into(self._stall_view)
            except TimeoutError:
                continue
            except OSError as exc:
                if self.port.stop_event.is_set():
                    raise Stopped from None
                return self.machine.peer_closed(f"reset ({exc})")
            if n == 0:
                if self.port.stop_event.is_set():
                    raise Stopped
                return self.machine.peer_closed()
            outputs = self.machine.receive(self._stall_view[:n])
            if self.machine.ended:
                return outputs


def _write_pending(store: Store) -> None:
    if store.pending:
        store.sink.write_chunks(store.pending)
        store.pending.clear()
