"""Unit tests of the association requestor's state machine (scu.protocol.requestor).

Every row of :data:`TABLE` is exercised here with its expected outcome written out
independently (:data:`EXPECTED`); a row without one fails
``test_every_table_row_is_accounted_for``. Peer bytes are built by pynetdicom and
pydicom, and what the machine writes is read back by pynetdicom."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
)

from scu.protocol import dimse, pdu
from scu.protocol.pdu import AssociateRJ, AssociateRQ, ContextProposal, ContextResult
from scu.protocol.requestor import (
    TABLE,
    Accepted,
    ConnectionLost,
    LocalProtocolError,
    PeerAborted,
    PeerViolation,
    Rejected,
    Released,
    Requestor,
    ResponseReceived,
    ScuEvent,
    ScuState,
    TimedOut,
    Trigger,
)
from scu.protocol.stream import Limits
from tests.support import peer_pdus as peer

S, T = ScuState, Trigger
ACTIVE = (S.ASSOCIATING, S.ESTABLISHED, S.AWAITING_RESPONSE, S.RELEASING)
ENDED = (S.CLOSED, S.ABORTED)
LOCAL = (T.ASSOCIATE, T.REQUEST, T.RELEASE, T.ABORT)

VERIFICATION, CT = peer.VERIFICATION, peer.CT_IMAGE
ILE, ELE = peer.IMPLICIT_LE, peer.EXPLICIT_LE
RQ = AssociateRQ(
    called_ae_title="PACS",
    calling_ae_title="STORE-SCU",
    contexts=(ContextProposal(1, VERIFICATION, (ILE,)), ContextProposal(3, CT, (ELE, ILE))),
    max_pdu_length=16384,
)
AC = peer.associate_ac([(1, VERIFICATION, ILE, 0), (3, CT, ELE, 0)], max_pdu=32768)
MESSAGE_ID = 7
ECHO_RQ = dimse.encode_echo_rq(MESSAGE_ID)
GOOD_RSP = peer.echo_rsp_message(MESSAGE_ID, context_id=1)
UNKNOWN_PDU = b"\x09\x00\x00\x00\x00\x00"
THEIR_RQ = peer.associate_rq([(1, VERIFICATION, [ILE])])

# --- reading what the machine writes, with pynetdicom -------------------------------------

_LABELS = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
}


def wire(stream: bytes) -> list[str]:
    """The PDUs of ``stream`` as pynetdicom reads them, in words."""
    out = []
    for item in peer.read_pdus(stream):
        if isinstance(item, A_ABORT_RQ):
            out.append(f"A-ABORT source {item.source} reason {item.reason_diagnostic}")
        else:
            out.append(_LABELS[type(item)])
    return out


ABORT_USER = "A-ABORT source 0 reason 0"


def abort_provider(reason: int) -> str:
    return f"A-ABORT source 2 reason {reason}"


# --- driving the machine ----------------------------------------------------------------


def make(state: ScuState, **options: Any) -> Requestor:
    """A requestor brought to ``state`` by the shortest ordinary path, nothing queued."""
    machine = Requestor(**options)
    if state is S.IDLE:
        return machine
    machine.associate(RQ)
    if state is not S.ASSOCIATING:
        assert [type(e) for e in machine.receive(AC)] == [Accepted]
    if state is S.AWAITING_RESPONSE:
        machine.request(1, MESSAGE_ID, ECHO_RQ, dimse.C_ECHO_RSP)
    elif state in (S.RELEASING, S.CLOSED):
        machine.release()
        if state is S.CLOSED:
            assert machine.receive(peer.release_rp()) == [Released()]
    elif state is S.ABORTED:
        machine.abort()
    assert machine.state is state
    assert machine.data_to_send() == b""
    return machine


@dataclass
class Outcome:
    events: list[ScuEvent]
    returned: bytes
    queued: bytes


def outcome(events: list[ScuEvent], returned: bytes, machine: Requestor) -> Outcome:
    return Outcome(events, returned, machine.data_to_send())


Stimulus = Callable[[Requestor], Outcome]


def _received(data: bytes) -> Stimulus:
    return lambda m: outcome(m.receive(data), b"", m)


#: One canonical input per trigger: the local call, or what the peer sends or does.
STIMULI: dict[Trigger, Stimulus] = {
    T.ASSOCIATE: lambda m: outcome([], m.associate(RQ), m),
    T.REQUEST: lambda m: outcome([], m.request(1, MESSAGE_ID, ECHO_RQ, dimse.C_ECHO_RSP), m),
    T.RELEASE: lambda m: outcome([], m.release(), m),
    T.ABORT: lambda m: outcome([], m.abort(), m),
    T.ACCEPTED: _received(AC),
    T.REJECTED: _received(peer.associate_rj(1, 1, 7)),
    T.RESPONSE: _received(GOOD_RSP),
    T.PEER_ABORT: _received(peer.abort(2, 6)),
    T.RELEASE_REPLY: _received(peer.release_rp()),
    T.RELEASE_REQUEST: _received(peer.release_rq()),
    T.UNEXPECTED: _received(THEIR_RQ),
    T.INVALID: _received(UNKNOWN_PDU),
    T.PEER_CLOSED: lambda m: outcome(m.peer_closed(), b"", m),
    T.DEADLINE: lambda m: outcome(m.deadline_passed("acse_timeout=30s"), b"", m),
}


@dataclass(frozen=True)
class Expect:
    next_state: ScuState
    events: tuple[type, ...] = ()
    returned: tuple[str, ...] = ()
    queued: tuple[str, ...] = ()


def _expected() -> dict[tuple[ScuState, Trigger], Expect]:
    rows = {
        (S.IDLE, T.ASSOCIATE): Expect(S.ASSOCIATING, returned=("A-ASSOCIATE-RQ",)),
        (S.ASSOCIATING, T.ACCEPTED): Expect(S.ESTABLISHED, (Accepted,)),
        (S.ASSOCIATING, T.REJECTED): Expect(S.CLOSED, (Rejected,)),
        (S.ESTABLISHED, T.REQUEST): Expect(S.AWAITING_RESPONSE, returned=("P-DATA-TF",)),
        (S.ESTABLISHED, T.RELEASE): Expect(S.RELEASING, returned=("A-RELEASE-RQ",)),
        (S.ESTABLISHED, T.RELEASE_REQUEST): Expect(S.CLOSED, (Released,), queued=("A-RELEASE-RP",)),
        (S.AWAITING_RESPONSE, T.RESPONSE): Expect(S.ESTABLISHED, (ResponseReceived,)),
        (S.RELEASING, T.RELEASE_REPLY): Expect(S.CLOSED, (Released,)),
        (S.RELEASING, T.RELEASE_REQUEST): Expect(S.RELEASING, queued=("A-RELEASE-RP",)),
        (S.RELEASING, T.RESPONSE): Expect(S.RELEASING),
        (S.RELEASING, T.PEER_CLOSED): Expect(S.CLOSED, (ConnectionLost,)),
    }
    for state in ACTIVE:
        rows[(state, T.ABORT)] = Expect(S.ABORTED, returned=(ABORT_USER,))
        rows[(state, T.PEER_ABORT)] = Expect(S.ABORTED, (PeerAborted,))
        rows[(state, T.DEADLINE)] = Expect(S.ABORTED, (TimedOut,), queued=(ABORT_USER,))
        rows.setdefault((state, T.PEER_CLOSED), Expect(S.ABORTED, (ConnectionLost,)))
        rows[(state, T.UNEXPECTED)] = Expect(S.ABORTED, (PeerViolation,), (), (abort_provider(2),))
        rows[(state, T.INVALID)] = Expect(S.ABORTED, (PeerViolation,), (), (abort_provider(1),))
    # What the state does not allow is answered with an A-ABORT (unexpected PDU)...
    misplaced = {
        T.ACCEPTED: ACTIVE[1:],
        T.REJECTED: ACTIVE[1:],
        T.RESPONSE: (S.ASSOCIATING, S.ESTABLISHED),
        T.RELEASE_REPLY: ACTIVE[:3],
        T.RELEASE_REQUEST: (S.ASSOCIATING, S.AWAITING_RESPONSE),
    }
    for trigger, states in misplaced.items():
        for state in states:
            rows[(state, trigger)] = Expect(S.ABORTED, (PeerViolation,), (), (abort_provider(2),))
    # ...and once the association is over, nothing the peer does changes anything.
    for state in ENDED:
        for trigger in T:
            if trigger not in (T.ASSOCIATE, T.REQUEST, T.RELEASE):
                rows[(state, trigger)] = Expect(state)
    return rows


#: Rows exercised, with what they must do.
EXPECTED = _expected()


def _row_id(key: tuple[ScuState, Trigger]) -> str:
    return f"{key[0].value}+{key[1].value}"


# --- the table, row by row --------------------------------------------------------------


def test_every_table_row_is_accounted_for() -> None:
    missing = set(TABLE) - set(EXPECTED)
    assert not missing, f"rows without a test: {sorted(map(_row_id, missing))}"
    stale = set(EXPECTED) - set(TABLE)
    assert not stale, f"tests of rows not in TABLE: {sorted(map(_row_id, stale))}"


ROWS = sorted(TABLE, key=_row_id)


@pytest.mark.parametrize("key", ROWS, ids=[_row_id(k) for k in ROWS])
def test_table_row(key: tuple[ScuState, Trigger]) -> None:
    state, trigger = key
    machine = make(state)
    before = len(machine.history)
    result = STIMULI[trigger](machine)
    fired = machine.history[before:]
    expect = EXPECTED[key]
    assert fired == [(state, trigger, expect.next_state)]
    assert machine.state is expect.next_state
    assert tuple(type(e) for e in result.events) == expect.events
    assert tuple(wire(result.returned)) == expect.returned
    assert tuple(wire(result.queued)) == expect.queued
    assert machine.data_to_send() == b""  # data_to_send() empties the queue


#: Inputs beyond the canonical ones, to explore with.
EXTRA_STIMULI: list[Stimulus] = [
    _received(peer.abort(0)),
    _received(b"\x07\x00\x00\x00\x00\x00"),  # an A-ABORT without its body
    _received(peer.echo_rsp_message(MESSAGE_ID + 1)),
    _received(peer.store_rsp_message(MESSAGE_ID)),
    _received(peer.echo_rsp_message(MESSAGE_ID, context_id=3)),
    _received(peer.p_data([(1, 0x03, peer.command_set(CommandField=0x0030, MessageID=1))])),
    _received(peer.p_data([(1, 0x02, b"data")])),
    _received(GOOD_RSP[:20]),
    _received(AC[:-4] + b"\x00\x00\x00\x00"),
    _received(peer.release_rq() + peer.release_rp()),
    lambda m: outcome(m.peer_closed("reset the connection"), b"", m),
]


def _explore() -> tuple[set[ScuState], set[tuple[ScuState, Trigger]]]:
    """Every state reachable from IDLE, and every row fired, by any known input."""
    stimuli = [*STIMULI.values(), *EXTRA_STIMULI]
    paths: dict[ScuState, list[Stimulus]] = {S.IDLE: []}
    fired: set[tuple[ScuState, Trigger]] = set()
    queue = deque([S.IDLE])
    while queue:
        path = paths[queue.popleft()]
        for stimulus in stimuli:
            machine = Requestor()
            for step in path:
                step(machine)
            try:
                stimulus(machine)
            except LocalProtocolError:
                continue
            fired.update((s, t) for s, t, _ in machine.history)
            if machine.state not in paths:
                paths[machine.state] = [*path, stimulus]
                queue.append(machine.state)
    return set(paths), fired


def test_every_state_is_reachable_and_routed_rows_never_fire() -> None:
    reached, fired = _explore()
    assert reached == set(ScuState)
    assert fired == set(EXPECTED)


@pytest.mark.parametrize(
    ("state", "trigger"),
    [(s, t) for s in ScuState for t in LOCAL if (s, t) not in TABLE],
    ids=lambda v: v.value,
)
def test_local_call_not_allowed_raises_and_changes_nothing(
    state: ScuState, trigger: Trigger
) -> None:
    machine = make(state)
    history = list(machine.history)
    message = f"{trigger.value} is not allowed while the association is {state.value}"
    with pytest.raises(LocalProtocolError, match=message):
        STIMULI[trigger](machine)
    assert machine.state is state and machine.history == history
    assert machine.data_to_send() == b""


@pytest.mark.parametrize("trigger", [t for t in STIMULI if t not in LOCAL], ids=lambda t: t.value)
def test_peer_input_before_associate_is_local_misuse(trigger: Trigger) -> None:
    """The module doc says anything the peer does is in the table, yet no IDLE row takes
    a peer trigger: input before associate() is treated as the caller's bug."""
    machine = Requestor()
    with pytest.raises(LocalProtocolError, match="while the association is idle"):
        STIMULI[trigger](machine)
    assert machine.state is S.IDLE and machine.history == []


_ANY_STEP = st.sampled_from([*STIMULI.values(), *EXTRA_STIMULI])


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(st.lists(_ANY_STEP, max_size=14))
def test_history_explains_every_state_change(steps: list[Stimulus]) -> None:
    machine = Requestor()
    for step in steps:
        history = list(machine.history)
        try:
            step(machine)
        except LocalProtocolError:
            assert machine.history == history, "a refused call left a trace"
        assert machine.history[: len(history)] == history, "history was rewritten"
        expected_state = machine.history[-1][2] if machine.history else S.IDLE
        assert machine.state is expected_state, "state changed outside _fire"
    previous = S.IDLE
    for before, trigger, after in machine.history:
        assert before is previous, "a state change that history does not show"
        assert TABLE[(before, trigger)][0] is after
        previous = after


# --- the peer ------------------------------------------------------------------------------


def test_accept_is_decoded() -> None:
    machine = make(S.ASSOCIATING)
    ac = peer.associate_ac(
        [(1, VERIFICATION, ILE, 0), (3, CT, ELE, 4)],
        max_pdu=28672,
        calling="STORE-SCU",
        called="PACS",
        impl_uid="1.2.826.0.1.99",
        impl_version="THEIR_SCP_2",
    )
    (event,) = machine.receive(ac)
    assert isinstance(event, Accepted)
    accept = event.accept
    assert (accept.called_ae_title, accept.calling_ae_title) == ("PACS", "STORE-SCU")
    assert accept.contexts == (ContextResult(1, 0, ILE), ContextResult(3, 4, None))
    assert accept.max_pdu_length == 28672
    assert accept.implementation_class_uid == "1.2.826.0.1.99"
    assert accept.implementation_version_name == "THEIR_SCP_2"
    assert machine.accept == accept and machine.peer_max_pdu == 28672
    assert machine.state is S.ESTABLISHED and machine.data_to_send() == b""


def test_accept_without_a_maximum_means_no_limit() -> None:
    machine = make(S.ASSOCIATING)
    machine.receive(peer.associate_ac([(1, VERIFICATION, ILE, 0)], max_pdu=0))
    assert machine.peer_max_pdu == 0
    assert Requestor().peer_max_pdu == 0  # nothing accepted yet


def test_accept_cut_into_single_bytes_is_reported_once_complete() -> None:
    machine = make(S.ASSOCIATING)
    for i in range(len(AC) - 1):
        assert machine.receive(AC[i : i + 1]) == []
    assert [type(e) for e in machine.receive(AC[-1:])] == [Accepted]


@pytest.mark.parametrize(("result", "source", "reason"), [(1, 1, 7), (2, 3, 1), (1, 2, 2)])
def test_reject(result: int, source: int, reason: int) -> None:
    machine = make(S.ASSOCIATING)
    assert machine.receive(peer.associate_rj(result, source, reason)) == [
        Rejected(AssociateRJ(result, source, reason))
    ]
    assert machine.state is S.CLOSED and machine.accept is None
    assert machine.data_to_send() == b"" and machine.abort() == b""
    with pytest.raises(LocalProtocolError):
        machine.request(1, 1, ECHO_RQ, dimse.C_ECHO_RSP)


@pytest.mark.parametrize("state", ACTIVE, ids=lambda s: s.value)
@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 2), (2, 6)])
def test_peer_abort_in_every_non_terminal_state(state: ScuState, source: int, reason: int) -> None:
    machine = make(state)
    assert machine.receive(peer.abort(source, reason)) == [PeerAborted(source, reason)]
    assert machine.state is S.ABORTED and machine.data_to_send() == b""


def test_peer_abort_without_a_body_reads_as_provider_reason_0() -> None:
    machine = make(S.ESTABLISHED)
    assert machine.receive(b"\x07\x00\x00\x00\x00\x00") == [PeerAborted(2, 0)]


def test_release_request_while_established_is_answered() -> None:
    machine = make(S.ESTABLISHED)
    assert machine.receive(peer.release_rq()) == [Released()]
    assert machine.state is S.CLOSED
    assert wire(machine.data_to_send()) == ["A-RELEASE-RP"]
    assert machine.data_to_send() == b""


@pytest.mark.parametrize("together", [False, True])
def test_release_collision(together: bool) -> None:
    machine = make(S.RELEASING)
    if together:
        assert machine.receive(peer.release_rq() + peer.release_rp()) == [Released()]
    else:
        assert machine.receive(peer.release_rq()) == []
        assert machine.state is S.RELEASING
        assert machine.receive(peer.release_rp()) == [Released()]
    assert wire(machine.data_to_send()) == ["A-RELEASE-RP"]
    assert machine.state is S.CLOSED
    assert [t for _, t, _ in machine.history[-2:]] == [T.RELEASE_REQUEST, T.RELEASE_REPLY]


@pytest.mark.parametrize(
    "late",
    [
        GOOD_RSP,
        peer.echo_rsp_message(MESSAGE_ID + 5),
        peer.store_rsp_message(1, 0xA700, context_id=3, max_pdu=24),
    ],
    ids=["the response", "a wrong response", "a fragmented C-STORE-RSP"],
)
def test_p_data_during_release_is_ignored(late: bytes) -> None:
    machine = make(S.RELEASING)
    assert machine.receive(late) == []
    assert machine.state is S.RELEASING and machine.data_to_send() == b""
    assert machine.receive(peer.release_rp()) == [Released()]


def test_response_is_reported_and_another_request_may_follow() -> None:
    machine = make(S.AWAITING_RESPONSE)
    (event,) = machine.receive(GOOD_RSP)
    assert isinstance(event, ResponseReceived) and event.context_id == 1
    assert event.command.command_field == dimse.C_ECHO_RSP
    assert event.command.message_id_responded == MESSAGE_ID
    assert event.command.status == 0x0000
    assert machine.state is S.ESTABLISHED and machine.data_to_send() == b""
    machine.request(3, 8, dimse.encode_store_rq(8, CT, "1.2.3"), dimse.C_STORE_RSP)
    (event,) = machine.receive(peer.store_rsp_message(8, 0xB000, context_id=3))
    assert isinstance(event, ResponseReceived) and event.command.status == 0xB000


def test_fragmented_response_fed_byte_by_byte() -> None:
    machine = make(S.AWAITING_RESPONSE)
    fragmented = peer.echo_rsp_message(MESSAGE_ID, 0x0110, max_pdu=20)
    assert len(peer.split_pdus(fragmented)) > 3
    for i in range(len(fragmented) - 1):
        assert machine.receive(fragmented[i : i + 1]) == []
    (event,) = machine.receive(fragmented[-1:])
    assert isinstance(event, ResponseReceived) and event.command.status == 0x0110


def _response(context_id: int = 1, **values: object) -> bytes:
    fields: dict[str, object] = {
        "AffectedSOPClassUID": VERIFICATION,
        "CommandField": 0x8030,
        "MessageIDBeingRespondedTo": MESSAGE_ID,
        "CommandDataSetType": 0x0101,
        "Status": 0x0000,
    }
    fields.update(values)
    command = peer.command_set(**{k: v for k, v in fields.items() if v is not None})
    return peer.p_data([(context_id, 0x03, command)])


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (
            _response(MessageIDBeingRespondedTo=MESSAGE_ID + 1),
            "the SCP answered C-ECHO-RSP (0x8030) for message 8 where 0x8030 for message 7 "
            "was expected",
        ),
        (
            _response(MessageIDBeingRespondedTo=None),
            "for message None where 0x8030 for message 7",
        ),
        (_response(CommandField=0x8001), "the SCP answered C-STORE-RSP (0x8001) for message 7"),
        (_response(CommandField=0x0030), "the SCP answered C-ECHO-RQ (0x0030)"),
        (
            _response(context_id=3),
            "the SCP answered on presentation context 3, the request went on 1",
        ),
        (_response(Status=None), "the SCP's response has no Status (0000,0900)"),
        (_response(CommandDataSetType=0x0000), "the SCP's response announces a data set"),
    ],
    ids=[
        "message ID",
        "no message ID",
        "command field",
        "a request",
        "context",
        "no Status",
        "data set",
    ],
)
def test_wrong_response_is_a_violation_answered_with_a_provider_abort(
    answer: bytes, detail: str
) -> None:
    machine = make(S.AWAITING_RESPONSE)
    (event,) = machine.receive(answer)
    assert isinstance(event, PeerViolation) and detail in event.detail
    assert wire(machine.data_to_send()) == [abort_provider(6)]
    assert machine.state is S.ABORTED
    assert machine.history[-1] == (S.AWAITING_RESPONSE, T.INVALID, S.ABORTED)


UNEXPECTED_INPUTS = [
    (S.ASSOCIATING, THEIR_RQ, "A-ASSOCIATE-RQ"),
    (S.ESTABLISHED, THEIR_RQ, "A-ASSOCIATE-RQ"),
    (S.AWAITING_RESPONSE, THEIR_RQ, "A-ASSOCIATE-RQ"),
    (S.RELEASING, THEIR_RQ, "A-ASSOCIATE-RQ"),
    (S.ESTABLISHED, AC, "A-ASSOCIATE-AC"),
    (S.AWAITING_RESPONSE, peer.associate_rj(1, 1, 1), "A-ASSOCIATE-RJ"),
    (S.ASSOCIATING, peer.release_rq(), "A-RELEASE-RQ"),
    (S.AWAITING_RESPONSE, peer.release_rq(), "A-RELEASE-RQ"),
    (S.ESTABLISHED, peer.release_rp(), "A-RELEASE-RP"),
    (S.ASSOCIATING, GOOD_RSP, "C-ECHO-RSP"),
    (S.ESTABLISHED, GOOD_RSP, "C-ECHO-RSP"),
    (
        S.ESTABLISHED,
        peer.p_data([(1, 0x03, peer.command_set(CommandField=0x0030, MessageID=2))]),
        "C-ECHO-RQ",
    ),
]


@pytest.mark.parametrize(
    ("state", "data", "what"),
    UNEXPECTED_INPUTS,
    ids=[f"{state.value}-{what}" for state, _, what in UNEXPECTED_INPUTS],
)
def test_unexpected_pdu_is_answered_with_abort_reason_2(
    state: ScuState, data: bytes, what: str
) -> None:
    machine = make(state)
    assert machine.receive(data) == [
        PeerViolation(f"the SCP sent {what} while the association was {state.value}")
    ]
    assert wire(machine.data_to_send()) == [abort_provider(2)]
    assert machine.state is S.ABORTED


@pytest.mark.parametrize(
    ("state", "data", "reason", "detail"),
    [
        (S.ESTABLISHED, UNKNOWN_PDU, 1, "unrecognised PDU type 0x09"),
        (
            S.AWAITING_RESPONSE,
            peer.p_data([(1, 0x02, b"xx")]),
            2,
            "a data set fragment without a command announcing one",
        ),
        (
            S.AWAITING_RESPONSE,
            b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x01\x01\x03",
            6,
            "PDV item length 1 does not fit its P-DATA-TF",
        ),
        (
            S.ASSOCIATING,
            b"\x02\x00\x00\x00\x00\x05hello",
            6,
            "malformed A-ASSOCIATE-AC: A-ASSOCIATE-AC too short (5 bytes)",
        ),
        (
            S.ASSOCIATING,
            b"\x03\x00\x00\x00\x00\x02\x00\x01",
            6,
            "malformed A-ASSOCIATE-RJ: A-ASSOCIATE-RJ too short (2 bytes)",
        ),
        (
            S.ESTABLISHED,
            b"\x05\x00\x00\x00\x10\x00",
            6,
            "a 4096-byte PDU (A-RELEASE-RQ) exceeds the 1024-byte limit",
        ),
    ],
    ids=["unknown PDU", "data set", "PDV length", "short AC", "short RJ", "huge release"],
)
def test_invalid_input_is_answered_with_the_decoders_reason(
    state: ScuState, data: bytes, reason: int, detail: str
) -> None:
    machine = make(state)
    assert machine.receive(data) == [PeerViolation(detail)]
    assert wire(machine.data_to_send()) == [abort_provider(reason)]
    assert machine.state is S.ABORTED
    assert machine.history[-1] == (state, T.INVALID, S.ABORTED)


def test_p_data_above_our_maximum_is_a_violation() -> None:
    machine = make(S.AWAITING_RESPONSE, limits=Limits(max_pdata_length=40, max_dataset=0))
    length = len(GOOD_RSP) - 6
    assert machine.receive(GOOD_RSP) == [
        PeerViolation(f"the SCP sent a P-DATA-TF of {length} bytes, above the 40 bytes we accept")
    ]
    assert wire(machine.data_to_send()) == [abort_provider(6)]
    assert machine.state is S.ABORTED


@pytest.mark.parametrize("state", ACTIVE[:3], ids=lambda s: s.value)
@pytest.mark.parametrize("how", [None, "reset the connection"])
def test_peer_close(state: ScuState, how: str | None) -> None:
    machine = make(state)
    events = machine.peer_closed() if how is None else machine.peer_closed(how)
    said = how or "closed the connection"
    assert events == [ConnectionLost(f"the SCP {said} without A-RELEASE or A-ABORT")]
    assert machine.state is S.ABORTED and machine.data_to_send() == b""


@pytest.mark.parametrize(
    ("state", "partial"),
    [
        (S.ASSOCIATING, AC[:3]),
        (S.ASSOCIATING, AC[:40]),
        (S.AWAITING_RESPONSE, GOOD_RSP[:-1]),
        (S.AWAITING_RESPONSE, GOOD_RSP[:9]),
    ],
    ids=["AC header", "AC body", "response body", "PDV header"],
)
def test_peer_close_in_the_middle_of_a_pdu(state: ScuState, partial: bytes) -> None:
    machine = make(state)
    assert machine.receive(partial) == []
    assert machine.peer_closed() == [
        ConnectionLost(
            "the SCP closed the connection in the middle of a PDU without A-RELEASE or A-ABORT"
        )
    ]


def test_peer_close_between_pdus_of_a_fragmented_message_is_not_mid_pdu() -> None:
    machine = make(S.AWAITING_RESPONSE)
    first = peer.split_pdus(peer.echo_rsp_message(MESSAGE_ID, max_pdu=20))[0]
    assert machine.receive(first) == []
    (event,) = machine.peer_closed()
    assert isinstance(event, ConnectionLost) and "middle" not in event.detail


def test_peer_close_while_releasing_closes() -> None:
    machine = make(S.RELEASING)
    assert machine.peer_closed("reset the connection") == [
        ConnectionLost("the SCP reset the connection without A-RELEASE-RP")
    ]
    assert machine.state is S.CLOSED and machine.data_to_send() == b""


@pytest.mark.parametrize("state", list(ScuState), ids=lambda s: s.value)
def test_deadline_passed(state: ScuState) -> None:
    machine = make(state)
    if state is S.IDLE:
        with pytest.raises(LocalProtocolError):
            machine.deadline_passed("acse_timeout=1s")
        return
    events = machine.deadline_passed("dimse_timeout=5s")
    if state in ENDED:
        assert events == [] and machine.state is state
        assert machine.data_to_send() == b""
    else:
        assert events == [TimedOut("dimse_timeout=5s")]
        assert wire(machine.data_to_send()) == [ABORT_USER]
        assert machine.state is S.ABORTED


def _ended_by(path: list[Stimulus]) -> Requestor:
    machine = make(S.IDLE)
    for step in path:
        step(machine)
    machine.data_to_send()
    return machine


_ASSOCIATED = [STIMULI[T.ASSOCIATE], STIMULI[T.ACCEPTED]]
ENDINGS: dict[str, list[Stimulus]] = {
    "released": [*_ASSOCIATED, STIMULI[T.RELEASE], STIMULI[T.RELEASE_REPLY]],
    "rejected": [STIMULI[T.ASSOCIATE], STIMULI[T.REJECTED]],
    "released by the SCP": [*_ASSOCIATED, STIMULI[T.RELEASE_REQUEST]],
    "closed while releasing": [*_ASSOCIATED, STIMULI[T.RELEASE], STIMULI[T.PEER_CLOSED]],
    "aborted": [STIMULI[T.ASSOCIATE], STIMULI[T.ABORT]],
    "aborted by the SCP": [STIMULI[T.ASSOCIATE], STIMULI[T.PEER_ABORT]],
    "timed out": [*_ASSOCIATED, STIMULI[T.DEADLINE]],
    "violation": [*_ASSOCIATED, STIMULI[T.UNEXPECTED]],
    "closed": [STIMULI[T.ASSOCIATE], STIMULI[T.PEER_CLOSED]],
}


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize(
    "trigger", [t for t in STIMULI if t not in (T.ASSOCIATE, T.REQUEST, T.RELEASE)]
)
def test_events_after_the_end_are_ignored(ending: str, trigger: Trigger) -> None:
    machine = _ended_by(ENDINGS[ending])
    state = machine.state
    assert state in ENDED
    result = STIMULI[trigger](machine)
    assert (result.events, result.returned, result.queued) == ([], b"", b"")
    assert machine.state is state


def test_the_rest_of_a_receive_after_the_end_is_ignored() -> None:
    machine = make(S.RELEASING)
    tail = peer.abort(2, 6) + GOOD_RSP + UNKNOWN_PDU
    assert machine.receive(peer.release_rp() + tail) == [Released()]
    assert machine.history[-1] == (S.RELEASING, T.RELEASE_REPLY, S.CLOSED)
    assert machine.data_to_send() == b""


def test_the_rest_of_a_receive_after_a_violation_is_ignored() -> None:
    machine = make(S.ESTABLISHED)
    assert [type(e) for e in machine.receive(THEIR_RQ + peer.release_rq() + AC)] == [PeerViolation]
    assert wire(machine.data_to_send()) == [abort_provider(2)]


# --- what the machine writes, read by pynetdicom --------------------------------------------


def test_associate_rq_decodes_with_pynetdicom() -> None:
    (theirs,) = peer.read_pdus(make(S.IDLE).associate(RQ))
    assert isinstance(theirs, A_ASSOCIATE_RQ)
    assert (theirs.called_ae_title, theirs.calling_ae_title) == ("PACS", "STORE-SCU")
    assert [
        (c.context_id, c.abstract_syntax, c.transfer_syntax) for c in theirs.presentation_context
    ] == [(1, VERIFICATION, [ILE]), (3, CT, [ELE, ILE])]
    primitive = theirs.to_primitive()
    assert primitive.maximum_length_received == 16384
    assert primitive.implementation_class_uid == pdu.IMPLEMENTATION_CLASS_UID


@pytest.mark.parametrize("peer_max", [0, 16384, 4096, 65, 64])
def test_request_decodes_with_pynetdicom_within_the_peer_maximum(peer_max: int) -> None:
    machine = make(S.ASSOCIATING)
    machine.receive(peer.associate_ac([(1, VERIFICATION, ILE, 0)], max_pdu=peer_max))
    command = dimse.encode_store_rq(MESSAGE_ID, CT, "1.2.826.0.1.5")
    sent = machine.request(1, MESSAGE_ID, command, dimse.C_STORE_RSP)
    pdus = peer.split_pdus(sent)
    if peer_max:
        assert all(len(p) - 6 <= peer_max for p in pdus)
    items = peer.p_data_items(sent)
    assert len(items) == len(pdus)  # one PDV per PDU
    assert b"".join(data for _, _, data in items) == command
    assert [(c, control) for c, control, _ in items] == [(1, 0x01)] * (len(items) - 1) + [(1, 0x03)]
    assert all(len(data) % 2 == 0 for _, _, data in items)


def test_release_and_abort_decode_with_pynetdicom() -> None:
    assert wire(make(S.ESTABLISHED).release()) == ["A-RELEASE-RQ"]
    for state in ACTIVE:
        assert wire(make(state).abort()) == [ABORT_USER]


class _Runaway(Exception):
    pass


@contextmanager
def _call_budget(calls: int) -> Iterator[None]:
    """Raise :class:`_Runaway` in the code under test once it has made ``calls``
    Python function calls: a loop that never ends fails instead of hanging."""
    previous = sys.gettrace()
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        count += 1
        if count > calls:
            raise _Runaway(f"more than {calls} calls")

    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)


@pytest.mark.parametrize("peer_max", [1, 6, 7, 63])
def test_request_ends_whatever_maximum_the_peer_announced(peer_max: int) -> None:
    machine = make(S.ASSOCIATING)
    events = machine.receive(peer.associate_ac([(1, VERIFICATION, ILE, 0)], max_pdu=peer_max))
    # Below 64 bytes nothing useful fits: the accept is refused, never framed forever.
    assert [type(e) for e in events] == [PeerViolation]
    assert machine.state is S.ABORTED
    assert "too small to carry a C-STORE" in events[0].detail  # type: ignore[union-attr]
    if machine.state is not S.ESTABLISHED:
        return
    with _call_budget(20_000):
        try:
            sent = machine.request(1, MESSAGE_ID, ECHO_RQ, dimse.C_ECHO_RSP)
        except (ValueError, LocalProtocolError):
            return  # refusing to frame is a fine answer too
    assert b"".join(data for _, _, data in peer.p_data_items(sent)) == ECHO_RQ
