"""One TCP connection of the mock SCP: the socket, the clock and the server's decisions
around :class:`mock_scp.machine.ConnectionMachine`, which decides every state change.

Deadlines, each for the whole exchange it guards (like the ARTIM timer of PS3.8):

* ``acse_timeout``: the TLS handshake and the whole A-ASSOCIATE-RQ, from the TCP accept;
* ``network_timeout``: the idle time between messages, from the answer to one (or the
  A-ASSOCIATE-AC) to the first byte of the next; bytes that carry no message (an empty
  P-DATA-TF) do not make an association busy;
* ``dimse_timeout``: a whole DIMSE message (command and data set), from its first byte;
  time the mock itself spends throttling a slow read is not counted.

When one passes, the connection is aborted (A-ABORT) and the association slot freed,
whatever the SCU is dripping. The connection reaches the server only through
:class:`ServerPort`.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scu.protocol.pdu import AssociateRQ, ContextResult, UserIdentity
from scu.protocol.status import StatusCategory, classify

from .checks import error_comment, sniff, uid_mismatch, unanswerable
from .config import ScpConfig
from .journal import AssociationRecord, Journal, ReceivedStore, Violation
from .machine import (
    Act,
    AssociationRequested,
    ConnectionMachine,
    ConnState,
    DatasetData,
    Fault,
    FaultCarriedOut,
    OtherCommand,
    Output,
    PeerAborted,
    PeerClosed,
    ReleaseRequested,
    StoreComplete,
    StoreInterrupted,
    StorePlan,
    StoreRequested,
    WeAborted,
)
from .machine import Violation as MachineViolation
from .matching import Plan
from .negotiation import negotiate
from .rules import Action, Decision, StoreContent, StoreRequest
from .storage import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    Payload,
    PayloadStore,
    Sink,
    StoreFile,
    StoreWriter,
)

__all__ = ["Connection", "ServerPort"]

_RECV_SIZE = 128 * 1024
_DRAIN_SECONDS = 1.0
#: Which rule action is which fault of the machine.
_FAULTS = {"abort": Fault.ABORT, "disconnect": Fault.DISCONNECT, "garbage": Fault.GARBAGE}
_ANSWERS = ("accept", "respond", "warn", "fail")


class ServerPort(Protocol):
    """What a connection may ask of its server, and nothing else."""

    config: ScpConfig
    journal: Journal
    stop_event: threading.Event
    payloads: PayloadStore
    writer: StoreWriter | None

    def admit(self, request: AssociateRQ) -> tuple[tuple[int, int, int], str, bool] | None: ...

    def release_slot(self) -> None: ...

    def next_nth(self) -> int: ...

    def plan(self, request: StoreRequest) -> Plan: ...

    def decide(self, plan: Plan, content: StoreContent) -> Decision: ...

    def check_identity(self, identity: UserIdentity | None) -> tuple[bool, bytes | None]: ...


class _Stopped(Exception):
    """The server is stopping."""


@dataclass
class _Store:
    """A store being received or answered."""

    request: StoreRequest
    plan: Plan
    sink: Sink
    file: StoreFile | None
    requested_at: float
    complete: bool = False
    decision: Decision | None = None
    payload: Payload | None = None


class Connection:
    """One connection, served by one thread (:meth:`run`)."""

    def __init__(self, port: ServerPort, sock: socket.socket, peer: Any) -> None:
        self.port = port
        self.config = port.config
        self.journal = port.journal
        self.sock = sock
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.machine = ConnectionMachine(
            max_pdu_length=self.config.max_pdu_length,
            plan_store=self._plan_store,
            strict=self.config.strict,
            max_dataset=self.config.max_dataset_size,
        )
        self.record: AssociationRecord | None = None
        self.counted = False  # holds one of max_associations
        self.store: _Store | None = None
        self._view = memoryview(bytearray(_RECV_SIZE))
        self._stall_view = memoryview(bytearray(16 * 1024))
        self._deadline: float | None = None
        self._deadline_kind = "acse"
        self._accepted_at = time.monotonic()
        #: When the association, idle since its last message, times out.
        self._idle_deadline: float | None = None

    # --- plumbing ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            if not self.port.stop_event.is_set():
                self._serve()
        except _Stopped:
            self._handle(self.machine.stop())
            self._flush()
        except Exception as exc:  # a bug of ours: recorded, reported by check()
            self.journal.error(exc)
            self._end("aborted", f"mock error: {exc!r}")
            self._send_quietly(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00")
        finally:
            self._close()
            if self.counted:
                self.port.release_slot()
                self.counted = False
            if self.record is not None and self.record.ended is not None:
                self.journal.notify(self.record)

    def _send(self, data: bytes) -> bool:
        if not data:
            return True
        try:
            self.sock.settimeout(self.config.network_timeout)
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _send_quietly(self, data: bytes) -> None:
        self._send(data)

    def _flush(self) -> None:
        self._send(self.machine.data_to_send())

    def _close(self) -> None:
        closing = self.machine.closing
        try:
            if closing is not None and closing.act is Act.RESET:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif closing is not None and closing.graceful:
                self._graceful_close()
            else:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def _graceful_close(self) -> None:
        """Half-close and read until the peer closes, so what we sent last (a reject, an
        abort, a release reply) is not destroyed by a reset from unread data."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _DRAIN_SECONDS
            while not self.port.stop_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                if self.sock.recv_into(self._view) == 0:
                    break
        except OSError:
            pass

    def _end(self, how: str, detail: str, by: str = "mock") -> None:
        if self.record is not None:
            self.journal.end_association(self.record, how, detail, by)

    # --- the clock ---------------------------------------------------------------------

    def _set_deadline(self) -> None:
        state = self.machine.state
        config = self.config
        now = time.monotonic()
        if state is ConnState.AWAITING_REQUEST:
            seconds, kind = config.acse_timeout, "acse"
            self._deadline = None if seconds is None else self._accepted_at + seconds
            self._deadline_kind = kind
            return
        busy = state is ConnState.RECEIVING or self.machine.in_pdu
        if busy:
            if self._deadline_kind != "dimse":
                self._deadline_kind = "dimse"
                seconds = config.dimse_timeout
                self._deadline = None if seconds is None else now + seconds
            return
        # Idle: the clock started when the last message was answered, not now. A PDU that
        # made the link busy for a while without carrying a message does not restart it.
        self._deadline_kind = "network"
        self._deadline = self._idle_deadline

    def _idle_from_now(self) -> None:
        """A message was dealt with (or the association accepted): the association is
        idle from now on, and the next message gets a DIMSE deadline of its own."""
        seconds = self.config.network_timeout
        self._idle_deadline = None if seconds is None else time.monotonic() + seconds
        self._deadline_kind = "network"
        self._deadline = self._idle_deadline

    def _deadline_detail(self) -> str:
        config = self.config
        if self._deadline_kind == "acse":
            return f"ACSE timeout: no A-ASSOCIATE-RQ within {config.acse_timeout} s"
        if self._deadline_kind == "dimse":
            return f"DIMSE timeout: the message did not arrive within {config.dimse_timeout} s"
        return f"network timeout: no message within {config.network_timeout} s"

    def _recv(self) -> int | None:
        """Read what is there within the current deadline; ``None`` when it passed."""
        limit = len(self._view)
        rate = self.machine.read_rate
        if rate is not None:
            limit = max(1, min(limit, int(rate / 20)))
        while True:
            if self.port.stop_event.is_set():
                raise _Stopped
            left = None if self._deadline is None else self._deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                return self.sock.recv_into(self._view[:limit])
            except TimeoutError:
                continue
            except ssl.SSLWantReadError:  # pragma: no cover - a TLS record cut short
                continue

    # --- serving -------------------------------------------------------------------------

    def _serve(self) -> None:
        if self.config.tls is not None and not self._handshake():
            return
        while not self.machine.ended:
            self._set_deadline()
            try:
                n = self._recv()
            except _Stopped:
                raise
            except OSError as exc:
                if self.port.stop_event.is_set():
                    raise _Stopped from None
                self._handle(self.machine.peer_closed(f"reset ({exc})"))
                break
            if n is None:
                self._timed_out()
                break
            if n == 0:
                if self.port.stop_event.is_set():
                    raise _Stopped
                self._handle(self.machine.peer_closed())
                break
            self._handle(self.machine.receive(self._view[:n]))
            self._flush()
            rate = self.machine.read_rate
            if rate is not None:
                self._throttle(n, rate)

    def _handshake(self) -> bool:
        assert self.config.tls is not None
        timeout = self.config.acse_timeout
        try:
            self.sock.settimeout(timeout)
            self.sock = self.config.tls.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.record = self._new_record(None)
            self.record.tls = True
            self._end("aborted", f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}")
            return False
        return True

    def _throttle(self, n: int, rate: float) -> None:
        pause = n / rate
        if self.port.stop_event.wait(pause):
            raise _Stopped
        if self._deadline is not None:
            self._deadline += pause  # our own slowness is not the SCU's

    def _timed_out(self) -> None:
        detail = self._deadline_detail()
        if self.machine.state is ConnState.AWAITING_REQUEST:
            self.record = self._new_record(None)
            self._end("aborted", detail)
            self.machine.deadline_passed(detail)
            return
        self._handle(self.machine.deadline_passed(detail))
        self._flush()

    # --- what the machine reports ------------------------------------------------------

    def _handle(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, DatasetData):
                self._dataset_data(out)
            elif isinstance(out, StoreComplete):
                self._store_complete()
                self._idle_from_now()
            elif isinstance(out, FaultCarriedOut):
                self._store_ended(None, "abort", False)
                self._end("aborted", "A-ABORT by the mock during the dataset (rule)")
            elif isinstance(out, StoreRequested):
                pass  # planned already (_plan_store)
            elif isinstance(out, AssociationRequested):
                self._association_requested(out.request)
            elif isinstance(out, MachineViolation):
                self._violation(out.kind, out.detail, out.message_id)
            elif isinstance(out, StoreInterrupted):
                if self.store is not None:
                    self._store_ended(None, "interrupted", self.store.complete)
            elif isinstance(out, ReleaseRequested):
                self._end("released", "A-RELEASE by the SCU", by="scu")
            elif isinstance(out, PeerAborted):
                self._end(
                    "aborted",
                    f"A-ABORT from the SCU (source {out.source}, reason {out.reason})",
                    by="scu",
                )
            elif isinstance(out, PeerClosed):
                how = "closed" if out.detail == "closed" else out.detail
                self._end("dropped", f"TCP connection {how} by the SCU", by="scu")
            elif isinstance(out, WeAborted):
                if self.record is None:
                    self.record = self._new_record(None)
                self._end("aborted", f"A-ABORT by the mock: {out.detail}")
            elif isinstance(out, OtherCommand):
                self._idle_from_now()  # answered by the machine; nothing to journal

    def _violation(self, kind: str, detail: str, message_id: int | None = None) -> None:
        record = self.record
        if record is None:  # before any association: the connection's own record
            record = self.record = self._new_record(None)
        self.journal.violation(Violation(kind, record.id, detail, message_id))

    def _new_record(self, request: AssociateRQ | None) -> AssociationRecord:
        return self.journal.new_association(
            calling_ae_title=request.calling_ae_title if request else "",
            called_ae_title=request.called_ae_title if request else "",
            proposed_contexts=_proposed(request) if request else [],
            accepted_contexts=[],
            max_pdu_length=request.max_pdu_length if request else 0,
            peer=self.peer,
            implementation_class_uid=request.implementation_class_uid if request else "",
            implementation_version_name=request.implementation_version_name if request else "",
            user_identity=request.user_identity if request else None,
            tls=self.config.tls is not None,
        )

    def _association_requested(self, request: AssociateRQ) -> None:
        port = self.port
        record = self.record = self._new_record(request)
        for note in request.anomalies:
            self._violation("negotiation", note)
        reject = port.admit(request)
        if reject is None:
            self.counted = True
            accepted, response = port.check_identity(request.user_identity)
            if not accepted:
                port.release_slot()
                self.counted = False
                # PS3.7 D.3.3.7: an authorisation failure is rejected-permanent by the
                # DICOM UL service-provider (ACSE related function), no reason given.
                reject = ((1, 2, 1), "user identity not accepted", False)
        if reject is not None:
            (result, source, reason), why, close_at_once = reject
            with self.journal.lock:
                record.rejection = (result, source, reason)
            self._end("rejected", why)
            sent = self._send(self.machine.reject(result, source, reason))
            if close_at_once or not sent:
                self.machine.closing = None  # close at once, as storescp and Orthanc do
            return
        if self.config.strict and unanswerable(request):
            self._handle(self.machine.refuse(unanswerable(request) or ""))
            return
        results = [
            ContextResult(cid, result, syntax)
            for cid, result, syntax in negotiate(request.contexts, port.config.policy)
        ]
        with self.journal.lock:
            record.accepted_contexts = [
                (r.context_id, _abstract(request, r.context_id), r.transfer_syntax or "")
                for r in results
                if r.accepted
            ]
        identity = request.user_identity
        answer = response if identity is not None and identity.positive_response_requested else None
        if answer is None and identity is not None and identity.positive_response_requested:
            answer = b""
        data = self.machine.accept(
            results,
            user_identity_response=answer,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        )
        if not self._send(data):
            self._end("dropped", "connection lost while sending A-ASSOCIATE-AC")
            self.machine.peer_closed()
            return
        self.journal.notify(record)
        self._idle_from_now()
        self._handle(self.machine.resume())
        self._flush()

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
        self.store = _Store(request, plan, self.port.payloads.open(), file, arrived)
        early = plan.decision.action if plan.decision is not None else None
        return StorePlan(
            abort_during_dataset=early is not None and early.name == "abort",
            read_rate=plan.bytes_per_second,
        )

    def _dataset_data(self, event: DatasetData) -> None:
        store = self.store
        if store is None:
            return
        store.sink.write_chunks(event.chunks)
        if store.file is not None:
            for chunk in event.chunks:
                store.file.write(chunk)

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
        self.store = None
        payload = store.payload if store.payload is not None else store.sink.close()
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
        payload = store.payload = store.sink.close()
        content = StoreContent(
            req,
            lambda: (
                payload.head if payload.path is None and not payload.in_memory else payload.read()
            ),
        )
        decision = store.decision = self.port.decide(store.plan, content)
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

    def _check_dataset(self, store: _Store) -> tuple[str | None, str | None]:
        """What the data set's first bytes say: a problem with its encoding (recorded as
        a violation), and the SOP Instance UID it holds (``None``: not in the head)."""
        payload = store.payload
        assert payload is not None
        req = store.request
        problem, uid = sniff(payload.head, req.transfer_syntax, payload.size)
        if problem is not None:
            self._violation("wrong-transfer-syntax", problem, req.message_id)
        return problem, uid

    def _answer(self, store: _Store, action: Action) -> None:
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
            problem, uid = self._check_dataset(store)
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
                raise _Stopped
            if left <= 0:
                return []
            if not self.machine.accepts_input:
                if self.port.stop_event.wait(min(left, 0.05)):
                    raise _Stopped
                continue
            self.sock.settimeout(min(left, 0.25))
            try:
                n = self.sock.recv_into(self._stall_view)
            except TimeoutError:
                continue
            except OSError as exc:
                if self.port.stop_event.is_set():
                    raise _Stopped from None
                return self.machine.peer_closed(f"reset ({exc})")
            if n == 0:
                if self.port.stop_event.is_set():
                    raise _Stopped
                return self.machine.peer_closed()
            outputs = self.machine.receive(self._stall_view[:n])
            if self.machine.ended:
                return outputs


def _proposed(request: AssociateRQ) -> list[tuple[int, str, tuple[str, ...]]]:
    """The proposed contexts for the journal, each distinct one held once: a request
    may repeat one context thousands of times, and the record lives as long as the
    journal."""
    seen: dict[tuple[int, str, tuple[str, ...]], tuple[int, str, tuple[str, ...]]] = {}
    out = []
    for c in request.contexts:
        key = (c.context_id, c.abstract_syntax, c.transfer_syntaxes)
        out.append(seen.setdefault(key, key))
    return out


def _abstract(request: AssociateRQ, context_id: int) -> str:
    return next((c.abstract_syntax for c in request.contexts if c.context_id == context_id), "")
