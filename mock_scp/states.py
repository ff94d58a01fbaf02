"""The states of a mock SCP connection, what moves it between them, and the faults a
rule can inject, as data: :data:`TABLE` maps ``(state, trigger)`` to ``(next state,
action)``; :data:`FAULT_STATES` says where each fault acts. The machine that follows
the table is :class:`mock_scp.machine.ConnectionMachine`."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

__all__ = [
    "DEFERRABLE_STATES",
    "FAULT_STATES",
    "TABLE",
    "TERMINAL",
    "Act",
    "ConnState",
    "Fault",
    "Trigger",
]


class ConnState(str, Enum):
    AWAITING_REQUEST = "awaiting-request"  # transport open, A-ASSOCIATE-RQ awaited
    NEGOTIATING = "negotiating"  # the request is in; accept or reject is being decided
    ESTABLISHED = "established"  # idle between messages
    RECEIVING = "receiving"  # a DIMSE message is arriving
    ANSWERING = "answering"  # a C-STORE is complete; its answer is being decided
    RELEASED = "released"
    ABORTED = "aborted"
    DROPPED = "dropped"  # TCP closed without A-RELEASE or A-ABORT (by either side)
    REJECTED = "rejected"
    CLOSED = "closed"  # a connection that never asked for an association


TERMINAL = frozenset(
    {ConnState.RELEASED, ConnState.ABORTED, ConnState.DROPPED, ConnState.REJECTED, ConnState.CLOSED}
)


class Trigger(str, Enum):
    # the SCU's doing
    ASSOCIATE_RQ = "A-ASSOCIATE-RQ"
    MESSAGE_START = "message-start"
    STORE_COMPLETE = "store-complete"
    OTHER_COMPLETE = "other-command-complete"
    RELEASE_RQ = "A-RELEASE-RQ"
    PEER_ABORT = "A-ABORT"
    PEER_CLOSED = "peer-closed"
    UNEXPECTED = "unexpected"  # a well-formed PDU the state does not allow
    INVALID = "invalid"  # broken framing, a limit, or (strict) a refused violation
    # the server's doing
    ACCEPT = "accept"
    REJECT = "reject"
    ANSWER = "answer"
    FAULT_ABORT = "fault-abort"
    FAULT_CLOSE = "fault-close"
    FAULT_RESET = "fault-reset"
    FAULT_GARBAGE = "fault-garbage"
    DEADLINE = "deadline"
    STOP = "stop"


class Act(str, Enum):
    NONE = "none"
    SEND = "send"  # write what the local call produced
    SEND_RELEASE_RP = "send-release-rp"  # then close gracefully
    SEND_ABORT = "send-abort"  # A-ABORT (provider, with a reason), then close gracefully
    CLOSE = "close"
    RESET = "reset"
    SEND_AND_CLOSE = "send-and-close"  # garbage, then close


class Fault(str, Enum):
    """What a rule may make the mock do instead of (or on the way to) answering."""

    STALL = "stall"
    SLOW_READ = "slow_read"
    ABORT = "abort"
    ABORT_DURING_DATASET = "abort-during-dataset"
    DISCONNECT = "disconnect"
    RESET = "reset"
    GARBAGE = "garbage"


#: Where each fault acts, and the trigger it fires there (``None``: it only delays).
FAULT_STATES: Mapping[Fault, tuple[ConnState, Trigger | None]] = MappingProxyType(
    {
        Fault.SLOW_READ: (ConnState.RECEIVING, None),
        Fault.ABORT_DURING_DATASET: (ConnState.RECEIVING, Trigger.FAULT_ABORT),
        Fault.STALL: (ConnState.ANSWERING, None),
        Fault.ABORT: (ConnState.ANSWERING, Trigger.FAULT_ABORT),
        Fault.DISCONNECT: (ConnState.ANSWERING, Trigger.FAULT_CLOSE),
        Fault.RESET: (ConnState.ANSWERING, Trigger.FAULT_RESET),
        Fault.GARBAGE: (ConnState.ANSWERING, Trigger.FAULT_GARBAGE),
    }
)

S, T, A = ConnState, Trigger, Act


def _build() -> dict[tuple[ConnState, Trigger], tuple[ConnState, Act]]:
    table: dict[tuple[ConnState, Trigger], tuple[ConnState, Act]] = {
        (S.AWAITING_REQUEST, T.ASSOCIATE_RQ): (S.NEGOTIATING, A.NONE),
        (S.AWAITING_REQUEST, T.PEER_CLOSED): (S.CLOSED, A.CLOSE),
        (S.AWAITING_REQUEST, T.STOP): (S.CLOSED, A.CLOSE),
        (S.AWAITING_REQUEST, T.DEADLINE): (S.ABORTED, A.CLOSE),
        (S.AWAITING_REQUEST, T.UNEXPECTED): (S.ABORTED, A.SEND_ABORT),
        (S.AWAITING_REQUEST, T.INVALID): (S.ABORTED, A.SEND_ABORT),
        (S.AWAITING_REQUEST, T.PEER_ABORT): (S.CLOSED, A.CLOSE),
        (S.NEGOTIATING, T.ACCEPT): (S.ESTABLISHED, A.SEND),
        (S.NEGOTIATING, T.REJECT): (S.REJECTED, A.SEND),
        (S.NEGOTIATING, T.INVALID): (S.ABORTED, A.SEND_ABORT),
        (S.ESTABLISHED, T.MESSAGE_START): (S.RECEIVING, A.NONE),
        (S.ESTABLISHED, T.RELEASE_RQ): (S.RELEASED, A.SEND_RELEASE_RP),
        (S.RECEIVING, T.STORE_COMPLETE): (S.ANSWERING, A.NONE),
        (S.RECEIVING, T.OTHER_COMPLETE): (S.ESTABLISHED, A.SEND),
        # An A-RELEASE-RQ in the middle of a message: a violation, but released.
        (S.RECEIVING, T.RELEASE_RQ): (S.RELEASED, A.SEND_RELEASE_RP),
        (S.RECEIVING, T.FAULT_ABORT): (S.ABORTED, A.SEND),
        (S.ANSWERING, T.ANSWER): (S.ESTABLISHED, A.SEND),
        (S.ANSWERING, T.FAULT_ABORT): (S.ABORTED, A.SEND),
        (S.ANSWERING, T.FAULT_CLOSE): (S.DROPPED, A.CLOSE),
        (S.ANSWERING, T.FAULT_RESET): (S.DROPPED, A.RESET),
        (S.ANSWERING, T.FAULT_GARBAGE): (S.DROPPED, A.SEND_AND_CLOSE),
    }
    live = (S.NEGOTIATING, S.ESTABLISHED, S.RECEIVING, S.ANSWERING)
    for state in live:
        table.setdefault((state, T.PEER_ABORT), (S.ABORTED, A.CLOSE))
        table.setdefault((state, T.PEER_CLOSED), (S.DROPPED, A.CLOSE))
        table.setdefault((state, T.STOP), (S.ABORTED, A.SEND_ABORT))
    for state in (S.ESTABLISHED, S.RECEIVING):
        table.setdefault((state, T.UNEXPECTED), (S.ABORTED, A.SEND_ABORT))
        table.setdefault((state, T.INVALID), (S.ABORTED, A.SEND_ABORT))
        table.setdefault((state, T.DEADLINE), (S.ABORTED, A.SEND_ABORT))
    for state in TERMINAL:
        for trigger in T:
            table[(state, trigger)] = (state, A.NONE)
    return table


#: ``(state, trigger) -> (next state, action)``. A pair not in the table is a bug in
#: the server (:class:`LocalProtocolError`), never something the SCU can cause.
TABLE: Mapping[tuple[ConnState, Trigger], tuple[ConnState, Act]] = MappingProxyType(_build())

#: States in which what the SCU sends is kept for later (the server is deciding).
DEFERRABLE_STATES = frozenset({ConnState.NEGOTIATING, ConnState.ANSWERING})
