"""The association requestor's state machine (the SCU side), sans-IO.

One table, :data:`TABLE`, maps ``(state, trigger)`` to ``(next state, action)``; every
state change goes through it, as in h11 and pynetdicom's ``fsm``. Local calls
(:meth:`Requestor.associate`, :meth:`~Requestor.request`, :meth:`~Requestor.release`,
:meth:`~Requestor.abort`) return the bytes to write; bytes from the peer go into
:meth:`Requestor.receive`, which returns what happened (:class:`Accepted`,
:class:`ResponseReceived`, ...) and leaves in :meth:`Requestor.data_to_send` what the
table says must be answered (an A-ABORT to a peer that broke the protocol, an
A-RELEASE-RP). Deadlines are the driver's (it owns the clock): it calls
:meth:`Requestor.deadline_passed` and the table decides.

A local call the table does not allow in the current state is a bug in the caller and
raises :class:`LocalProtocolError`; anything the peer does once the association has
been requested is in the table (before :meth:`Requestor.associate` there is no peer, and
feeding the machine peer input is a bug too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from scu.protocol import pdu
from scu.protocol.dimse import Command
from scu.protocol.pdu import AssociateAC, AssociateRJ, AssociateRQ, PduError, PduType
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

__all__ = [
    "MIN_PEER_PDU",
    "TABLE",
    "Accepted",
    "Act",
    "ConnectionLost",
    "LocalProtocolError",
    "PeerAborted",
    "PeerViolation",
    "Rejected",
    "Released",
    "Requestor",
    "ResponseReceived",
    "ScuEvent",
    "ScuState",
    "TimedOut",
    "Trigger",
]


class ScuState(str, Enum):
    IDLE = "idle"
    ASSOCIATING = "associating"  # A-ASSOCIATE-RQ sent, awaiting AC or RJ
    ESTABLISHED = "established"
    AWAITING_RESPONSE = "awaiting-response"  # a request sent, its response awaited
    RELEASING = "releasing"  # A-RELEASE-RQ sent, awaiting RP
    CLOSED = "closed"  # released, rejected, or closed by the peer while releasing
    ABORTED = "aborted"


class Trigger(str, Enum):
    # local calls
    ASSOCIATE = "associate"
    REQUEST = "request"
    RELEASE = "release"
    ABORT = "abort"
    # what the peer sent or did
    ACCEPTED = "A-ASSOCIATE-AC"
    REJECTED = "A-ASSOCIATE-RJ"
    RESPONSE = "response"  # a command set answering the outstanding request
    PEER_ABORT = "A-ABORT"
    RELEASE_REPLY = "A-RELEASE-RP"
    RELEASE_REQUEST = "A-RELEASE-RQ"
    UNEXPECTED = "unexpected"  # a well-formed PDU or message the state does not allow
    INVALID = "invalid"  # something that does not decode or breaks a limit
    PEER_CLOSED = "peer-closed"  # TCP closed or reset
    # the driver's clock
    DEADLINE = "deadline"


class Act(str, Enum):
    NONE = "none"
    SEND = "send"  # write what the local call produced
    SEND_ABORT = "send-abort"  # answer the peer with A-ABORT, then close
    SEND_RELEASE_RP = "send-release-rp"
    CLOSE = "close"


S, T, A = ScuState, Trigger, Act

_LOCAL = frozenset({T.ASSOCIATE, T.REQUEST, T.RELEASE, T.ABORT})
_PEER = frozenset(T) - _LOCAL - {T.DEADLINE}


def _build() -> dict[tuple[ScuState, Trigger], tuple[ScuState, Act]]:
    table: dict[tuple[ScuState, Trigger], tuple[ScuState, Act]] = {
        (S.IDLE, T.ASSOCIATE): (S.ASSOCIATING, A.SEND),
        (S.ASSOCIATING, T.ACCEPTED): (S.ESTABLISHED, A.NONE),
        (S.ASSOCIATING, T.REJECTED): (S.CLOSED, A.CLOSE),
        (S.ESTABLISHED, T.REQUEST): (S.AWAITING_RESPONSE, A.SEND),
        (S.ESTABLISHED, T.RELEASE): (S.RELEASING, A.SEND),
        # The SCP may ask to release an idle association (PS3.8 Sta6, AA-?): answer it.
        (S.ESTABLISHED, T.RELEASE_REQUEST): (S.CLOSED, A.SEND_RELEASE_RP),
        (S.AWAITING_RESPONSE, T.RESPONSE): (S.ESTABLISHED, A.NONE),
        (S.RELEASING, T.RELEASE_REPLY): (S.CLOSED, A.CLOSE),
        # Release collision: answer the peer's request, keep waiting for our reply.
        (S.RELEASING, T.RELEASE_REQUEST): (S.RELEASING, A.SEND_RELEASE_RP),
        # Data may still arrive after our A-RELEASE-RQ (PS3.8 Sta7); the deadline bounds it.
        (S.RELEASING, T.RESPONSE): (S.RELEASING, A.NONE),
        (S.RELEASING, T.PEER_CLOSED): (S.CLOSED, A.CLOSE),
    }
    for state in (S.ASSOCIATING, S.ESTABLISHED, S.AWAITING_RESPONSE, S.RELEASING):
        table[(state, T.ABORT)] = (S.ABORTED, A.SEND)
        table[(state, T.PEER_ABORT)] = (S.ABORTED, A.CLOSE)
        table[(state, T.DEADLINE)] = (S.ABORTED, A.SEND_ABORT)
        table.setdefault((state, T.PEER_CLOSED), (S.ABORTED, A.CLOSE))
        for trigger in _PEER:
            table.setdefault((state, trigger), (S.ABORTED, A.SEND_ABORT))
    for state in (S.CLOSED, S.ABORTED):
        table[(state, T.ABORT)] = (state, A.NONE)
        for trigger in (*_PEER, T.DEADLINE):
            table[(state, trigger)] = (state, A.NONE)
    return table


#: ``(state, trigger) -> (next state, action)``. Pairs not in the table are local
#: misuse (:class:`LocalProtocolError`).
TABLE: Mapping[tuple[ScuState, Trigger], tuple[ScuState, Act]] = MappingProxyType(_build())


class LocalProtocolError(RuntimeError):
    """The caller asked for something the association's state does not allow (a bug)."""


# --- what the machine reports -----------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    accept: AssociateAC


@dataclass(frozen=True)
class Rejected:
    rejection: AssociateRJ


@dataclass(frozen=True)
class ResponseReceived:
    context_id: int
    command: Command


@dataclass(frozen=True)
class PeerAborted:
    source: int
    reason: int


@dataclass(frozen=True)
class Released:
    """The release completed (an A-RELEASE-RP, or our reply to the peer's request)."""


@dataclass(frozen=True)
class ConnectionLost:
    """The peer closed or reset the connection (``detail`` says what was going on)."""

    detail: str


@dataclass(frozen=True)
class PeerViolation:
    """The peer sent what the standard does not allow here; we answered A-ABORT."""

    detail: str


@dataclass(frozen=True)
class TimedOut:
    """A deadline passed; we answered A-ABORT."""

    what: str


ScuEvent = (
    Accepted
    | Rejected
    | ResponseReceived
    | PeerAborted
    | Released
    | ConnectionLost
    | PeerViolation
    | TimedOut
)

#: The smallest peer Maximum Length worth working with: room for a PDV header and some
#: data (PS3.8 sets no minimum; below this a command set cannot be carried sensibly).
MIN_PEER_PDU = 64

_CONTROL_TRIGGERS = {
    PduType.ASSOCIATE_AC: Trigger.ACCEPTED,
    PduType.ASSOCIATE_RJ: Trigger.REJECTED,
    PduType.ABORT: Trigger.PEER_ABORT,
    PduType.RELEASE_RP: Trigger.RELEASE_REPLY,
    PduType.RELEASE_RQ: Trigger.RELEASE_REQUEST,
    PduType.ASSOCIATE_RQ: Trigger.UNEXPECTED,
}
#: Where an A-ASSOCIATE-AC or -RJ is worth decoding (anywhere else it is refused unread).
_DECODED = frozenset(
    {(Trigger.ACCEPTED, ScuState.ASSOCIATING), (Trigger.REJECTED, ScuState.ASSOCIATING)}
)

#: What the SCU is prepared to receive: small control PDUs, response command sets.
SCU_LIMITS = Limits(max_associate_pdu=256 * 1024, max_command=64 * 1024, max_dataset=0)


#: Transitions :attr:`Requestor.history` keeps at least (the most recent ones).
_HISTORY = 512


class Requestor:
    """One association, requestor side; see the module doc."""

    def __init__(self, *, limits: Limits = SCU_LIMITS) -> None:
        self.state = ScuState.IDLE
        self.accept: AssociateAC | None = None
        self._decoder = Decoder(limits)
        self._outbox: list[bytes] = []
        self._expected: tuple[int, int, int] | None = None  # context, message ID, field
        self.history: list[tuple[ScuState, Trigger, ScuState]] = []

    # -- the table

    def _fire(self, trigger: Trigger) -> Act:
        key = (self.state, trigger)
        if key not in TABLE:
            raise LocalProtocolError(
                f"{trigger.value} is not allowed while the association is {self.state.value}"
            )
        new, act = TABLE[key]
        history = self.history
        history.append((self.state, trigger, new))
        if len(history) > 2 * _HISTORY:  # a long association: the recent past is enough
            del history[:_HISTORY]
        self.state = new
        return act

    @property
    def peer_max_pdu(self) -> int:
        """The SCP's Maximum Length Received (0: no limit)."""
        return self.accept.max_pdu_length if self.accept else 0

    # -- local calls

    def associate(self, rq: AssociateRQ) -> bytes:
        self._fire(Trigger.ASSOCIATE)
        return pdu.encode_associate_rq(rq)

    def request(
        self, context_id: int, message_id: int, command: bytes, response_field: int
    ) -> bytes:
        """The P-DATA-TF PDUs carrying a request's command set (its data set, if any,
        follows in :func:`pdu.pdv_header` framing, written by the driver)."""
        self._fire(Trigger.REQUEST)
        self._expected = (context_id, message_id, response_field)
        return pdu.encode_p_data(
            context_id, command, command=True, max_pdu_length=self.peer_max_pdu
        )

    def release(self) -> bytes:
        self._fire(Trigger.RELEASE)
        return pdu.encode_release_rq()

    def abort(self) -> bytes:
        """An A-ABORT (service user) to write, or nothing when the association is over."""
        return pdu.encode_abort(0, 0) if self._fire(Trigger.ABORT) is Act.SEND else b""

    def data_to_send(self) -> bytes:
        """What the table decided to answer the peer with since the last call."""
        out = b"".join(self._outbox)
        self._outbox.clear()
        return out

    # -- the peer and the clock

    def receive(self, data: bytes | bytearray | memoryview) -> list[ScuEvent]:
        """Bytes from the peer: what they complete, in order."""
        out: list[ScuEvent] = []
        if self.state is ScuState.AWAITING_RESPONSE:  # most often the answer, whole
            whole = self._decoder.whole_command(data)
            if whole is not None:
                self._on_command(whole, out)
                return out
        for event in self._decoder.feed(data):
            self._on_stream_event(event, out)
            if self.state in (ScuState.CLOSED, ScuState.ABORTED):
                break
        return out

    def peer_closed(self, how: str = "closed the connection") -> list[ScuEvent]:
        """The peer closed (or, ``how``, reset) the connection."""
        before = self.state
        act = self._fire(Trigger.PEER_CLOSED)
        if act is Act.NONE:
            return []
        if before is ScuState.RELEASING:
            return [ConnectionLost(f"the SCP {how} without A-RELEASE-RP")]
        middle = " in the middle of a PDU" if self._decoder.in_pdu else ""
        return [ConnectionLost(f"the SCP {how}{middle} without A-RELEASE or A-ABORT")]

    def deadline_passed(self, what: str) -> list[ScuEvent]:
        """The driver's deadline for the current exchange passed."""
        act = self._fire(Trigger.DEADLINE)
        if act is Act.SEND_ABORT:
            self._outbox.append(pdu.encode_abort(0, 0))
            return [TimedOut(what)]
        return []

    def _violation(self, detail: str, reason: int, out: list[ScuEvent]) -> None:
        act = self._fire(Trigger.INVALID)
        if act is Act.SEND_ABORT:
            self._outbox.append(pdu.encode_abort(2, reason))
            out.append(PeerViolation(detail))

    def _peer(self, trigger: Trigger, what: str, out: list[ScuEvent]) -> Act:
        """Fire a trigger the peer caused; when the table answers it with an A-ABORT, the
        peer sent what the state does not allow."""
        state = self.state
        act = self._fire(trigger)
        if act is Act.SEND_ABORT:
            self._outbox.append(pdu.encode_abort(2, 2))
            out.append(
                PeerViolation(f"the SCP sent {what} while the association was {state.value}")
            )
        return act

    def _on_stream_event(self, event: StreamEvent, out: list[ScuEvent]) -> None:
        if isinstance(event, ControlPdu):
            self._on_control(event, out)
        elif isinstance(event, CommandReceived):
            self._on_command(event, out)
        elif isinstance(event, StreamError):
            self._violation(event.detail, event.abort_reason, out)
        elif isinstance(event, OversizedPData):
            self._violation(
                f"the SCP sent a P-DATA-TF of {event.length} bytes, above the "
                f"{event.limit} bytes we accept",
                6,
                out,
            )
        elif isinstance(event, DatasetChunk | DatasetComplete):  # pragma: no cover
            self._violation("the SCP sent a data set", 2, out)  # the decoder refuses it first

    def _on_control(self, event: ControlPdu, out: list[ScuEvent]) -> None:
        kind = event.pdu_type
        trigger = _CONTROL_TRIGGERS[kind]
        # Only what the state can use is decoded; the table judges the rest.
        usable = (trigger, self.state) in _DECODED
        try:
            if kind is PduType.ASSOCIATE_AC and usable:
                accept = pdu.decode_associate_ac(event.body)
                if 0 < accept.max_pdu_length < MIN_PEER_PDU:
                    self._violation(
                        f"the SCP announced a maximum PDU length of {accept.max_pdu_length} "
                        f"bytes, too small to carry a C-STORE (at least {MIN_PEER_PDU} needed)",
                        6,
                        out,
                    )
                    return
                self._fire(trigger)
                self.accept = accept
                out.append(Accepted(accept))
            elif kind is PduType.ASSOCIATE_RJ and usable:
                rejection = pdu.decode_associate_rj(event.body)
                self._fire(trigger)
                out.append(Rejected(rejection))
            elif kind is PduType.ABORT:
                source, reason = pdu.decode_abort(event.body) if len(event.body) >= 4 else (2, 0)
                if self._fire(trigger) is not Act.NONE:
                    out.append(PeerAborted(source, reason))
            else:
                was = self.state
                act = self._peer(trigger, kind.label, out)
                if act is Act.SEND_RELEASE_RP:
                    self._outbox.append(pdu.encode_release_rp())
                    if was is not ScuState.RELEASING:
                        out.append(Released())
                elif act is Act.CLOSE and trigger is Trigger.RELEASE_REPLY:
                    out.append(Released())
        except PduError as exc:
            self._violation(f"malformed {kind.label}: {exc}", 6, out)

    def _on_command(self, event: CommandReceived, out: list[ScuEvent]) -> None:
        command = event.command
        if self.state is not ScuState.AWAITING_RESPONSE or self._expected is None:
            self._peer(Trigger.RESPONSE, command.name, out)  # late data in release: ignored
            return
        context_id, message_id, response_field = self._expected
        problem = None
        if command.command_field != response_field or command.message_id_responded != message_id:
            problem = (
                f"the SCP answered {command.name} (0x{command.command_field or 0:04X}) for "
                f"message {command.message_id_responded} where 0x{response_field:04X} for "
                f"message {message_id} was expected"
            )
        elif event.context_id != context_id:
            problem = (
                f"the SCP answered on presentation context {event.context_id}, the request "
                f"went on {context_id}"
            )
        elif command.status is None:
            problem = "the SCP's response has no Status (0000,0900)"
        elif command.has_dataset:
            problem = "the SCP's response announces a data set"
        if problem is not None:
            self._violation(problem, 6, out)
            return
        self._fire(Trigger.RESPONSE)
        self._expected = None
        out.append(ResponseReceived(event.context_id, command))
