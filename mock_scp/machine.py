"""The mock SCP's connection, as a sans-IO state machine.

One table, :data:`TABLE`, maps ``(state, trigger)`` to ``(next state, action)``, and
every state change goes through it. Bytes from the SCU go into
:meth:`ConnectionMachine.receive`, which returns what happened (:class:`StoreRequested`,
:class:`DatasetData`, :class:`Violation`...); the decisions that are the server's (accept
or reject the association, how to answer a store) are local calls that return the
bytes to write. What the table says to do to the connection itself (close it, reset
it) is :attr:`ConnectionMachine.closing`.

The mock's faults are actions at named states, selected by :class:`Fault`
(:data:`FAULT_STATES`): a stall, an A-ABORT instead of the answer, a TCP close or reset,
garbage bytes happen while a store is being *answered*; a slow read or an A-ABORT in
the middle of the data set happen while it is being *received*.

What arrives while the server is deciding (negotiating, or answering a store) is kept
until the decision is carried out, up to :data:`MAX_DEFERRED` bytes, except an A-ABORT
or a closed connection, which end the wait at once (a stall ends as soon as the SCU
gives up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from scu.protocol import dimse, pdu
from scu.protocol.dimse import Command
from scu.protocol.pdu import AssociateRQ, ContextResult, PduError, PduType
from scu.protocol.stream import (
    CommandReceived,
    ControlPdu,
    DatasetChunk,
    DatasetComplete,
    Decoder,
    Limits,
    OversizedPData,
    StreamError,
    StreamEvent,
)
from scu.protocol.uids import uid_problem

from .outputs import (
    AssociationRequested,
    Close,
    DatasetData,
    FaultCarriedOut,
    LocalProtocolError,
    OtherCommand,
    Output,
    PeerAborted,
    PeerClosed,
    ReleaseRequested,
    StoreComplete,
    StoreInterrupted,
    StorePlan,
    StoreRequested,
    Violation,
    WeAborted,
)
from .states import DEFERRABLE_STATES, FAULT_STATES, TABLE, TERMINAL, Act, ConnState, Fault, Trigger

__all__ = [
    "FAULT_STATES",
    "MAX_DEFERRED",
    "TABLE",
    "Act",
    "AssociationRequested",
    "Close",
    "ConnState",
    "ConnectionMachine",
    "DatasetData",
    "Fault",
    "FaultCarriedOut",
    "LocalProtocolError",
    "OtherCommand",
    "Output",
    "PeerAborted",
    "PeerClosed",
    "ReleaseRequested",
    "StoreComplete",
    "StoreInterrupted",
    "StorePlan",
    "StoreRequested",
    "Trigger",
    "Violation",
    "WeAborted",
]

#: Bytes kept from the SCU while the server decides (a pipelined request).
MAX_DEFERRED = 256 * 1024


class ConnectionMachine:
    """One connection of the mock SCP; see the module doc.

    ``max_pdu_length`` is what the mock announces (0: none); ``strict`` makes it abort
    an SCU that sends a PDU above it, uses a context that was not accepted, or proposes
    what no A-ASSOCIATE-AC can answer (duplicate context IDs, more than 128 contexts),
    as DCMTK does; otherwise these are only reported.
    """

    def __init__(
        self,
        *,
        max_pdu_length: int,
        plan_store: Callable[[StoreRequested], StorePlan] | None = None,
        strict: bool = True,
        max_associate_pdu: int = 128 * 1024,
        max_command: int = 64 * 1024,
        max_dataset: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = ConnState.AWAITING_REQUEST
        self._clock = clock
        self.strict = strict
        self._plan_store = plan_store
        self._plan = StorePlan()
        self.max_pdu_length = max_pdu_length
        self._decoder = Decoder(
            Limits(
                max_pdata_length=max_pdu_length,
                max_associate_pdu=max_associate_pdu,
                max_command=max_command,
                max_dataset=max_dataset,
            )
        )
        self._outbox: list[bytes] = []
        # What the SCU sent while the mock was answering, with when it arrived.
        self._deferred: list[tuple[StreamEvent, float]] = []
        self._deferred_size = 0
        self._arrived_at = 0.0  # when the event being processed arrived
        self.closing: Close | None = None
        self.request: AssociateRQ | None = None
        #: context ID -> (abstract syntax, accepted transfer syntax)
        self.contexts: dict[int, tuple[str, str]] = {}
        self.peer_max_pdu = 0
        self._current: Command | None = None  # the C-STORE-RQ being received or answered
        self._current_context = 0
        self._other: Command | None = None  # another command (C-ECHO...) being received
        self._other_context = 0
        self._outstanding_id: int | None = None  # message ID of a request not yet answered
        self.history: list[tuple[ConnState, Trigger, ConnState]] = []

    # -- the table

    def _fire(self, trigger: Trigger) -> Act:
        key = (self.state, trigger)
        if key not in TABLE:
            raise LocalProtocolError(f"{trigger.value} is not allowed while {self.state.value}")
        new, act = TABLE[key]
        self.history.append((self.state, trigger, new))
        self.state = new
        if act in (Act.CLOSE, Act.RESET, Act.SEND_AND_CLOSE):
            self.closing = Close(act, graceful=False)
        elif act in (Act.SEND_ABORT, Act.SEND_RELEASE_RP) or (act is Act.SEND and new in TERMINAL):
            self.closing = Close(act, graceful=True)
        return act

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL

    @property
    def accepts_input(self) -> bool:
        """Whether the driver should keep reading (not while too much is kept back)."""
        return not self.ended and self._deferred_size < MAX_DEFERRED

    @property
    def read_rate(self) -> float | None:
        """Bytes per second to read at while receiving a throttled data set."""
        if self.state is ConnState.RECEIVING and self._current is not None:
            return self._plan.read_rate
        return None

    @property
    def in_message(self) -> bool:
        return self.state is ConnState.RECEIVING or self._decoder.in_message

    @property
    def in_pdu(self) -> bool:
        return self._decoder.in_pdu

    def data_to_send(self) -> bytes:
        out = b"".join(self._outbox)
        self._outbox.clear()
        return out

    def _abort(self, trigger: Trigger, detail: str, reason: int, out: list[Output]) -> None:
        interrupted = self._current is not None
        if self._fire(trigger) is Act.SEND_ABORT:
            self._outbox.append(pdu.encode_abort(2, reason))
            if interrupted:
                out.append(StoreInterrupted(detail))
            self._current = None
            out.append(WeAborted(detail))

    # -- the server's decisions

    def accept(
        self,
        results: Sequence[ContextResult],
        *,
        user_identity_response: bytes | None = None,
        implementation_class_uid: str = pdu.IMPLEMENTATION_CLASS_UID,
        implementation_version_name: str = pdu.IMPLEMENTATION_VERSION_NAME,
    ) -> bytes:
        """Accept the association with one result per proposed context."""
        assert self.request is not None
        self._fire(Trigger.ACCEPT)
        abstract = {c.context_id: c.abstract_syntax for c in self.request.contexts}
        self.contexts = {
            r.context_id: (abstract[r.context_id], r.transfer_syntax or "")
            for r in results
            if r.accepted
        }
        self.peer_max_pdu = self.request.max_pdu_length
        return pdu.encode_associate_ac(
            self.request,
            results,
            max_pdu_length=self.max_pdu_length,
            implementation_class_uid=implementation_class_uid,
            implementation_version_name=implementation_version_name,
            user_identity_response=user_identity_response,
        )

    def reject(self, result: int, source: int, reason: int) -> bytes:
        self._fire(Trigger.REJECT)
        return pdu.encode_associate_rj(result, source, reason)

    def refuse(self, detail: str) -> list[Output]:
        """Abort a request that no A-ASSOCIATE-AC can answer (strict)."""
        out: list[Output] = []
        self._abort(Trigger.INVALID, detail, 6, out)
        return out

    def answer(self, status: int, comment: str | None = None) -> bytes:
        """The C-STORE-RSP for the store being answered."""
        command = self._current
        assert command is not None
        self._fire(Trigger.ANSWER)
        self._current = None
        rsp = dimse.encode_store_rsp(
            command.message_id or 0,
            status,
            sop_class_uid=command.elements.get(dimse.Tag.AFFECTED_SOP_CLASS_UID, b""),
            sop_instance_uid=command.elements.get(dimse.Tag.AFFECTED_SOP_INSTANCE_UID, b""),
            error_comment=comment,
        )
        data = pdu.encode_p_data(
            self._current_context, rsp, command=True, max_pdu_length=self.peer_max_pdu
        )
        self._outstanding_id = command.message_id if self._deferred else None
        return data

    def fault(self, fault: Fault, *, garbage: bytes = b"") -> bytes:
        """Carry out a fault at its state; the bytes to write (A-ABORT or garbage)."""
        state, trigger = FAULT_STATES[fault]
        if self.state is not state:
            raise LocalProtocolError(
                f"{fault.value} acts while {state.value}, not {self.state.value}"
            )
        if trigger is None:
            return b""  # a delay: the driver waits or throttles; the state stays
        self._fire(trigger)
        self._current = None
        if trigger is Trigger.FAULT_ABORT:
            return pdu.encode_abort(0, 0)
        if trigger is Trigger.FAULT_GARBAGE:
            return garbage
        return b""

    def stop(self) -> list[Output]:
        """The server is stopping."""
        out: list[Output] = []
        self._abort(Trigger.STOP, "server stopped", 0, out)
        return out

    def deadline_passed(self, what: str) -> list[Output]:
        out: list[Output] = []
        self._abort(Trigger.DEADLINE, what, 0, out)
        return out

    def resume(self) -> list[Output]:
        """After an answer: what the SCU sent meanwhile, now processed."""
        events, self._deferred, self._deferred_size = self._deferred, [], 0
        out: list[Output] = []
        for i, (event, arrived_at) in enumerate(events):
            if self.ended:
                break
            if self.state in DEFERRABLE_STATES and not self._ends_the_wait(event):
                # A later request completed in the meantime: what follows it waits for
                # that one's answer, in order.
                for rest, when in events[i:]:
                    self._defer(rest, when)
                break
            self._arrived_at = arrived_at
            self._on_event(event, out)
        return out

    # -- the SCU's bytes

    def receive(self, data: bytes | bytearray | memoryview) -> list[Output]:
        out: list[Output] = []
        now = self._clock()
        for event in self._decoder.feed(data):
            if self.ended:
                break
            if self.state in DEFERRABLE_STATES and not self._ends_the_wait(event):
                self._defer(event, now)
                continue
            self._arrived_at = now
            self._on_event(event, out)
        return out

    def peer_closed(self, how: str = "closed") -> list[Output]:
        out: list[Output] = []
        state = self.state
        interrupted = self._current is not None
        if self._fire(Trigger.PEER_CLOSED) is Act.NONE:
            return out
        if interrupted:
            out.append(StoreInterrupted(f"TCP connection {how} by the SCU"))
            self._current = None
        if state is not ConnState.AWAITING_REQUEST:
            released = any(
                isinstance(event, ControlPdu) and event.pdu_type is PduType.RELEASE_RQ
                for event, _ in self._deferred
            )
            detail = (
                f"TCP connection {how} after an A-RELEASE-RQ sent while a request was "
                "outstanding, without waiting for the A-RELEASE-RP or sending an A-ABORT"
                if released
                else f"TCP connection {how} without A-RELEASE or A-ABORT"
            )
            out.append(Violation("dropped-connection", detail))
        out.append(PeerClosed(how))
        return out

    def _ends_the_wait(self, event: StreamEvent) -> bool:
        return isinstance(event, ControlPdu) and event.pdu_type is PduType.ABORT

    def _defer(self, event: StreamEvent, arrived_at: float) -> None:
        if isinstance(event, DatasetChunk):  # its view dies with the caller's buffer
            if not isinstance(event.data.obj, bytes):
                event = DatasetChunk(event.context_id, memoryview(bytes(event.data)))
            self._deferred_size += len(event.data)
        else:
            self._deferred_size += 64
        self._deferred.append((event, arrived_at))

    def _on_event(self, event: StreamEvent, out: list[Output]) -> None:
        if isinstance(event, DatasetChunk):
            if self._current is not None:
                last = out[-1] if out else None
                if isinstance(last, DatasetData):
                    last.chunks.append(event.data)  # one output for the whole feed
                else:
                    out.append(DatasetData([event.data]))
                if self._plan.abort_during_dataset:
                    self._fire(Trigger.FAULT_ABORT)
                    self._current = None
                    self._outbox.append(pdu.encode_abort(0, 0))
                    out.append(FaultCarriedOut(Fault.ABORT_DURING_DATASET))
        elif isinstance(event, CommandReceived):
            self._on_command(event, out)
        elif isinstance(event, DatasetComplete):
            if self._current is not None:
                self._fire(Trigger.STORE_COMPLETE)
                self._plan = StorePlan()
                out.append(StoreComplete(event.size))
            else:  # the data set of a command we only answer: read and dropped
                self._answer_other(out)
        elif isinstance(event, ControlPdu):
            self._on_control(event, out)
        elif isinstance(event, OversizedPData):
            detail = (
                f"P-DATA-TF of {event.length} bytes exceeds the negotiated maximum {event.limit}"
            )
            out.append(Violation("pdu-too-large", detail))
            if self.strict:
                self._abort(
                    Trigger.INVALID, f"PDU of {event.length} bytes > max {event.limit}", 6, out
                )
        elif isinstance(event, StreamError):
            out.append(Violation("protocol", event.detail))
            self._abort(Trigger.INVALID, event.detail, event.abort_reason, out)

    def _on_control(self, event: ControlPdu, out: list[Output]) -> None:
        kind = event.pdu_type
        if kind is PduType.ABORT:
            source, reason = pdu.decode_abort(event.body) if len(event.body) >= 4 else (-1, -1)
            interrupted = self._current is not None
            if self._fire(Trigger.PEER_ABORT) is not Act.NONE:
                if interrupted:
                    out.append(StoreInterrupted("A-ABORT from the SCU"))
                self._current = None
                out.append(PeerAborted(source, reason))
            return
        if kind is PduType.ASSOCIATE_RQ and self.state is ConnState.AWAITING_REQUEST:
            try:
                request = pdu.decode_associate_rq(event.body)
            except PduError as exc:
                out.append(Violation("protocol", f"malformed A-ASSOCIATE-RQ: {exc}"))
                self._abort(Trigger.INVALID, "malformed A-ASSOCIATE-RQ", 6, out)
                return
            self._fire(Trigger.ASSOCIATE_RQ)
            self.request = request
            out.append(AssociationRequested(request))
            return
        if kind is PduType.RELEASE_RQ and self.state in (
            ConnState.ESTABLISHED,
            ConnState.RECEIVING,
        ):
            interrupted = self._current is not None or self.state is ConnState.RECEIVING
            if interrupted:
                out.append(Violation("protocol", "A-RELEASE-RQ in the middle of a DIMSE message"))
                if self._current is not None:
                    out.append(StoreInterrupted("A-RELEASE-RQ in the middle of the data set"))
            self._current = None
            self._fire(Trigger.RELEASE_RQ)
            self._outbox.append(pdu.encode_release_rp())
            out.append(ReleaseRequested())
            return
        where = (
            "before association"
            if self.state is ConnState.AWAITING_REQUEST
            else "on an association"
        )
        detail = f"unexpected PDU type 0x{int(kind):02x} {where}"
        out.append(Violation("protocol", f"expected A-ASSOCIATE-RQ, got PDU type 0x{int(kind):02x}"
                             if self.state is ConnState.AWAITING_REQUEST else detail))  # fmt: skip
        self._abort(Trigger.UNEXPECTED, detail, 2, out)

    def _on_command(self, event: CommandReceived, out: list[Output]) -> None:
        command = event.command
        context_id = event.context_id
        message_id = command.message_id
        if self.state is ConnState.ESTABLISHED:
            self._fire(Trigger.MESSAGE_START)
        elif self.state is not ConnState.RECEIVING:  # a P-DATA-TF before the association
            out.append(Violation("protocol", f"{command.name} before the association"))
            self._abort(Trigger.UNEXPECTED, f"{command.name} before the association", 2, out)
            return
        if self._outstanding_id is not None:
            # Without an Asynchronous Operations Window (the mock never grants one) an
            # association carries one operation at a time (PS3.7 D.3.3.3).
            out.append(
                Violation(
                    "operations-window",
                    f"{command.name} (message ID {message_id}) sent while message ID "
                    f"{self._outstanding_id} was still outstanding, without a negotiated "
                    "Asynchronous Operations Window",
                    message_id,
                )
            )
        if message_id is not None and message_id == self._outstanding_id:
            out.append(
                Violation(
                    "duplicate-message-id",
                    f"message ID {message_id} reused while the operation with that ID was "
                    "still outstanding",
                    message_id,
                )
            )
        self._outstanding_id = None
        if context_id not in self.contexts:
            out.append(
                Violation(
                    "unknown-context",
                    f"PDV on presentation context {context_id}, which was not accepted",
                    message_id,
                )
            )
            if self.strict:
                self._abort(Trigger.INVALID, f"context {context_id} not accepted", 6, out)
                return
        abstract, syntax = self.contexts.get(context_id, ("", ""))
        if command.command_field != dimse.C_STORE_RQ:
            self._current = None
            self._other = command
            self._other_context = context_id
            if not command.has_dataset:
                self._answer_other(out)
            return
        self._current = command
        self._current_context = context_id
        for element, label in (
            (dimse.Tag.AFFECTED_SOP_CLASS_UID, "Affected SOP Class UID"),
            (dimse.Tag.AFFECTED_SOP_INSTANCE_UID, "Affected SOP Instance UID"),
        ):
            raw = command.elements.get(element)
            text = "" if raw is None else raw.decode("ascii", "backslashreplace")
            value = text[:-1] if text.endswith("\x00") and len(raw or b"") % 2 == 0 else text
            problem = uid_problem(value)
            if problem is not None:
                out.append(
                    Violation("invalid-uid", f"C-STORE-RQ {label} {value!r}: {problem}", message_id)
                )
        sop_class = command.affected_sop_class_uid or ""
        if abstract and sop_class != abstract:
            out.append(
                Violation(
                    "context-mismatch",
                    f"C-STORE of SOP class {sop_class} on context {context_id}, "
                    f"negotiated for {abstract}",
                    message_id,
                )
            )
        requested = StoreRequested(context_id, command, syntax, abstract, self._arrived_at)
        self._plan = self._plan_store(requested) if self._plan_store else StorePlan()
        out.append(requested)
        if not command.has_dataset:
            out.append(Violation("protocol", "C-STORE-RQ without a data set", message_id))
            self._fire(Trigger.STORE_COMPLETE)
            out.append(StoreComplete(0))

    def _answer_other(self, out: list[Output]) -> None:
        command = self._other
        assert command is not None
        self._other = None
        field_ = command.command_field or 0
        if field_ == dimse.C_CANCEL_RQ:
            self._fire(Trigger.OTHER_COMPLETE)
            out.append(OtherCommand(command, None))
            return
        status = 0x0000 if field_ == dimse.C_ECHO_RQ else 0x0211
        rsp = dimse.encode_response(
            field_ | 0x8000,
            command.message_id or 0,
            status,
            sop_class_uid=command.elements.get(dimse.Tag.AFFECTED_SOP_CLASS_UID),
        )
        self._fire(Trigger.OTHER_COMPLETE)
        self._outbox.append(
            pdu.encode_p_data(
                self._other_context, rsp, command=True, max_pdu_length=self.peer_max_pdu
            )
        )
        out.append(OtherCommand(command, status))
