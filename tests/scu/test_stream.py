"""Unit tests of the incremental stream decoder (scu.protocol.stream.Decoder).

The contract under test is the module's: any split of the input decodes the same,
data set bytes are streamed as views and never buffered, every buffer is bounded by
:class:`Limits` and grows only with bytes that actually arrived, and a peer that breaks
the framing or a limit gets one :class:`StreamError` after which nothing more is read.
Streams are built by pynetdicom and pydicom as well as by scu.protocol's own encoders."""

from __future__ import annotations

import itertools
import struct
import tracemalloc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scu.protocol import dimse, pdu
from scu.protocol.dimse import NO_DATASET
from scu.protocol.pdu import AssociateRQ, ContextProposal, PduType
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
from tests.support import peer_pdus as peer

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)

CT = peer.CT_IMAGE
DATA = bytes(range(256)) * 3 + b"tail"  # 772 bytes, an even length like any data set

# --- feeding and reading back ------------------------------------------------------------

#: An event as compared: ("control", type, body), ("oversized", length, limit),
#: ("command", context, raw), ("data", context, bytes), ("complete", context, size),
#: ("error", abort reason, detail). Consecutive data of one context are merged.
Seen = tuple[str, int, object]


def pieces_at(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def feed(decoder: Decoder, pieces: Sequence[bytes]) -> list[Seen]:
    """Feed ``pieces`` one after the other through one reused buffer, as a socket
    driver does: data set views die at the next feed, so they are copied at once."""
    seen: list[Seen] = []
    size = max((len(p) for p in pieces), default=0)
    buffer = bytearray(size)
    view = memoryview(buffer)
    for piece in pieces:
        buffer[: len(piece)] = piece
        for event in decoder.feed(view[: len(piece)]):
            seen.append(_seen(event))
            if isinstance(event, DatasetChunk):
                assert len(event.data) > 0, "an empty data set chunk"
                assert event.data.obj is buffer, "a data set chunk is not a view of the input"
    return _merge(seen)


def _seen(event: StreamEvent) -> Seen:
    if isinstance(event, ControlPdu):
        return ("control", int(event.pdu_type), event.body)
    if isinstance(event, OversizedPData):
        return ("oversized", event.length, event.limit)
    if isinstance(event, CommandReceived):
        return ("command", event.context_id, event.raw)
    if isinstance(event, DatasetChunk):
        return ("data", event.context_id, bytes(event.data))
    if isinstance(event, DatasetComplete):
        return ("complete", event.context_id, event.size)
    return ("error", event.abort_reason, event.detail)


def _merge(seen: list[Seen]) -> list[Seen]:
    out: list[Seen] = []
    for item in seen:
        if item[0] == "data" and out and out[-1][0] == "data" and out[-1][1] == item[1]:
            previous = out[-1][2]
            assert isinstance(previous, bytes) and isinstance(item[2], bytes)
            out[-1] = ("data", item[1], previous + item[2])
        else:
            out.append(item)
    return out


def decode(stream: bytes, limits: Limits | None = None, cuts: Iterable[int] = ()) -> list[Seen]:
    return feed(Decoder(limits), pieces_at(stream, cuts))


def control(pdu_type: int, encoded: bytes) -> Seen:
    assert encoded[0] == pdu_type
    return ("control", pdu_type, encoded[6:])


def command_raw(stream: bytes) -> bytes:
    """The command set of a one-message stream, as pynetdicom reads its PDVs."""
    return b"".join(d for _c, control, d in peer.p_data_items(stream) if control & 1)


def p_data_pdv(context_id: int, control: int, data: bytes) -> bytes:
    """One P-DATA-TF with one PDV, framed by hand."""
    return struct.pack(">BxLLBB", 4, len(data) + 6, len(data) + 2, context_id, control) + data


def header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BxL", pdu_type, length)


# --- the corpus: well-formed streams and what they decode to ----------------------------

ECHO_RQ = dimse.encode_echo_rq(5)
STORE_RQ = dimse.encode_store_rq(9, CT, "1.2.3.4.5")
OUR_RQ = pdu.encode_associate_rq(
    AssociateRQ(
        called_ae_title="PACS",
        calling_ae_title="STORE-SCU",
        contexts=(ContextProposal(1, CT, (peer.EXPLICIT_LE, peer.IMPLICIT_LE)),),
        max_pdu_length=16384,
    )
)


@dataclass(frozen=True)
class Case:
    name: str
    stream: bytes
    expected: list[Seen]
    limits: Limits = field(default_factory=Limits)


def _cases() -> list[Case]:
    cases: list[Case] = []
    ac = peer.associate_ac([(1, CT, peer.EXPLICIT_LE, 0), (3, CT, peer.IMPLICIT_LE, 3)])
    their_rq = peer.associate_rq([(1, CT, [peer.EXPLICIT_LE])])
    for name, pdu_type, encoded in [
        ("A-ASSOCIATE-RQ (ours)", 1, OUR_RQ),
        ("A-ASSOCIATE-RQ (pynetdicom)", 1, their_rq),
        ("A-ASSOCIATE-AC (pynetdicom)", 2, ac),
        ("A-ASSOCIATE-RJ (pynetdicom)", 3, peer.associate_rj(1, 1, 7)),
        ("A-RELEASE-RQ (pynetdicom)", 5, peer.release_rq()),
        ("A-RELEASE-RP (pynetdicom)", 6, peer.release_rp()),
        ("A-ABORT (pynetdicom)", 7, peer.abort(2, 6)),
        ("A-ABORT (ours)", 7, pdu.encode_abort(0, 0)),
        ("A-RELEASE-RQ with an empty body", 5, header(5, 0)),
    ]:
        cases.append(Case(name, encoded, [control(pdu_type, encoded)]))

    echo = peer.echo_rsp_message(5, context_id=3)
    cases.append(Case("C-ECHO-RSP, no data set", echo, [("command", 3, command_raw(echo))]))

    for max_pdu in (0, 16384, 64, 32):
        store = peer.store_rq_message(7, DATA, max_pdu=max_pdu)
        cases.append(
            Case(
                f"C-STORE-RQ (pynetdicom, max PDU {max_pdu})",
                store,
                [("command", 1, command_raw(store)), ("data", 1, DATA), ("complete", 1, len(DATA))],
            )
        )

    ours = pdu.encode_p_data(5, STORE_RQ, command=True, max_pdu_length=40) + pdu.encode_p_data(
        5, DATA, command=False, max_pdu_length=100
    )
    cases.append(
        Case(
            "C-STORE-RQ (ours, fragmented)",
            ours,
            [("command", 5, STORE_RQ), ("data", 5, DATA), ("complete", 5, len(DATA))],
        )
    )

    several = peer.p_data(
        [
            (1, 0x01, STORE_RQ[:10]),
            (1, 0x01, STORE_RQ[10:31]),
            (1, 0x03, STORE_RQ[31:]),
            (1, 0x00, DATA[:100]),
            (1, 0x00, DATA[100:101]),
            (1, 0x02, DATA[101:]),
        ]
    )
    cases.append(
        Case(
            "several PDVs in one P-DATA-TF",
            several,
            [("command", 1, STORE_RQ), ("data", 1, DATA), ("complete", 1, len(DATA))],
        )
    )

    empty_set = peer.p_data([(3, 0x03, STORE_RQ), (3, 0x02, b"")])
    cases.append(
        Case(
            "zero-length data set",
            empty_set,
            [("command", 3, STORE_RQ), ("complete", 3, 0)],
        )
    )

    zero_fragments = (
        peer.p_data([(1, 0x01, b""), (1, 0x01, ECHO_RQ[:7])])
        + peer.p_data([(1, 0x03, ECHO_RQ[7:])])
        + peer.p_data([(1, 0x03, STORE_RQ), (1, 0x00, b""), (1, 0x00, DATA[:2])])
        + peer.p_data([(1, 0x00, b""), (1, 0x02, DATA[2:])])
    )
    cases.append(
        Case(
            "zero-length PDVs among the fragments",
            zero_fragments,
            [
                ("command", 1, ECHO_RQ),
                ("command", 1, STORE_RQ),
                ("data", 1, DATA),
                ("complete", 1, len(DATA)),
            ],
        )
    )

    cases.append(
        Case(
            "a P-DATA-TF without PDVs",
            header(4, 0) + peer.release_rq(),
            [control(5, peer.release_rq())],
        )
    )

    interleaved = (
        peer.p_data([(1, 0x01, STORE_RQ[:20])])
        + peer.abort(0)
        + peer.p_data([(1, 0x03, STORE_RQ[20:])])
        + peer.release_rq()
        + peer.p_data([(1, 0x02, DATA)])
    )
    cases.append(
        Case(
            "control PDUs between the fragments of a message",
            interleaved,
            [
                control(7, peer.abort(0)),
                ("command", 1, STORE_RQ),
                control(5, peer.release_rq()),
                ("data", 1, DATA),
                ("complete", 1, len(DATA)),
            ],
        )
    )

    two = peer.echo_rsp_message(5, context_id=3) + peer.store_rq_message(
        8, DATA[:10], context_id=5, max_pdu=0
    )
    cases.append(
        Case(
            "two messages on two contexts",
            two,
            [
                ("command", 3, command_raw(peer.echo_rsp_message(5, context_id=3))),
                ("command", 5, command_raw(peer.store_rq_message(8, DATA[:10], max_pdu=0))),
                ("data", 5, DATA[:10]),
                ("complete", 5, 10),
            ],
        )
    )

    big = peer.store_rq_message(7, DATA, max_pdu=0)
    pdata_lengths = [len(p) - 6 for p in peer.split_pdus(big)]
    cases.append(
        Case(
            "P-DATA-TF above the announced maximum: reported, then decoded",
            big,
            [
                ("oversized", pdata_lengths[0], 60),
                ("command", 1, command_raw(big)),
                ("oversized", pdata_lengths[1], 60),
                ("data", 1, DATA),
                ("complete", 1, len(DATA)),
            ],
            Limits(max_pdata_length=60),
        )
    )

    conversation = b"".join(c.stream for c in cases if c.limits == Limits())
    cases.append(
        Case(
            "all of the above in one stream",
            conversation,
            _merge([s for c in cases if c.limits == Limits() for s in c.expected]),
        )
    )
    return cases


CASES = _cases()
CASE_IDS = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_decodes_all_at_once(case: Case) -> None:
    decoder = Decoder(case.limits)
    assert feed(decoder, [case.stream]) == case.expected
    assert decoder.offset == len(case.stream)
    assert not decoder.failed and not decoder.in_pdu and not decoder.in_message


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_decodes_one_byte_per_feed(case: Case) -> None:
    decoder = Decoder(case.limits)
    pieces = [case.stream[i : i + 1] for i in range(len(case.stream))]
    assert feed(decoder, pieces) == case.expected
    assert decoder.offset == len(case.stream)
    assert not decoder.failed and not decoder.in_pdu and not decoder.in_message


@PROPERTY
@given(st.data())
def test_decodes_the_same_whatever_the_split(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(CASES), label="case")
    n = len(case.stream)
    cuts = data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=60), label="cuts")
    assert decode(case.stream, case.limits, cuts) == case.expected


def test_empty_feeds_change_nothing() -> None:
    decoder = Decoder()
    stream = peer.release_rq()
    assert decoder.feed(b"") == []
    assert decoder.feed(stream[:3]) == []
    assert decoder.feed(memoryview(b"")) == []
    assert decoder.in_pdu and decoder.offset == 3
    assert [_seen(e) for e in decoder.feed(bytearray(stream[3:]))] == [control(5, stream)]


def test_dataset_chunks_are_views_of_the_fed_bytes_valid_until_reused() -> None:
    stream = peer.p_data([(1, 0x03, STORE_RQ), (1, 0x02, DATA)])
    buffer = bytearray(stream)
    events = Decoder().feed(buffer)
    (chunk,) = [e for e in events if isinstance(e, DatasetChunk)]
    assert isinstance(chunk.data, memoryview) and chunk.data.obj is buffer
    assert bytes(chunk.data) == DATA
    buffer[len(stream) - len(DATA)] ^= 0xFF  # the caller reuses its buffer
    assert bytes(chunk.data) != DATA  # a view: a caller must copy what it keeps


# --- message shapes ---------------------------------------------------------------------


def test_command_with_data_set_type_0101_announces_no_data_set() -> None:
    rsp = peer.command_set(
        CommandField=0x8001,
        MessageIDBeingRespondedTo=3,
        CommandDataSetType=NO_DATASET,
        Status=0,
    )
    decoder = Decoder()
    (event,) = decoder.feed(p_data_pdv(1, 0x03, rsp))
    assert isinstance(event, CommandReceived)
    assert event.raw == rsp and not event.command.has_dataset
    assert event.command.message_id_responded == 3 and event.command.status == 0
    assert not decoder.in_message
    (error,) = decoder.feed(p_data_pdv(1, 0x02, b"xx"))
    assert error == StreamError("a data set fragment without a command announcing one", 2)


@pytest.mark.parametrize("data_set_type", [0x0000, 0x0001, 0xFFFE])
def test_command_with_any_other_data_set_type_announces_a_data_set(data_set_type: int) -> None:
    rq = peer.command_set(
        AffectedSOPClassUID=CT,
        CommandField=0x0001,
        MessageID=3,
        Priority=0,
        CommandDataSetType=data_set_type,
        AffectedSOPInstanceUID="1.2.3",
    )
    decoder = Decoder()
    (event,) = decoder.feed(p_data_pdv(1, 0x03, rq))
    assert isinstance(event, CommandReceived) and event.command.has_dataset
    assert decoder.in_message
    assert [_seen(e) for e in decoder.feed(p_data_pdv(1, 0x00, b"ab"))] == [("data", 1, b"ab")]
    assert decoder.in_message
    assert [_seen(e) for e in decoder.feed(p_data_pdv(1, 0x02, b"cd"))] == [
        ("data", 1, b"cd"),
        ("complete", 1, 4),
    ]
    assert not decoder.in_message


def test_last_fragment_bit_ends_commands_and_data_sets() -> None:
    decoder = Decoder()
    assert decoder.feed(p_data_pdv(1, 0x01, STORE_RQ[:30])) == []
    assert decoder.in_message and not decoder.in_pdu
    assert decoder.feed(p_data_pdv(1, 0x01, STORE_RQ[30:])) == []  # all there, but not last
    (event,) = decoder.feed(p_data_pdv(1, 0x03, b""))
    assert isinstance(event, CommandReceived) and event.raw == STORE_RQ
    assert event.command.message_id == 9 and event.command.affected_sop_instance_uid == "1.2.3.4.5"
    assert [_seen(e) for e in decoder.feed(p_data_pdv(1, 0x00, DATA))] == [("data", 1, DATA)]
    assert decoder.in_message
    assert [_seen(e) for e in decoder.feed(p_data_pdv(1, 0x02, b""))] == [
        ("complete", 1, len(DATA))
    ]
    assert not decoder.in_message


def test_expect_dataset_overrides_what_the_command_announced() -> None:
    echo = p_data_pdv(1, 0x03, ECHO_RQ)
    decoder = Decoder()
    decoder.feed(echo)
    decoder.expect_dataset(1)  # the caller knows a data set follows after all
    assert decoder.in_message
    assert [_seen(e) for e in decoder.feed(p_data_pdv(1, 0x02, b"ab"))] == [
        ("data", 1, b"ab"),
        ("complete", 1, 2),
    ]
    decoder.feed(p_data_pdv(1, 0x03, STORE_RQ))
    decoder.expect_dataset(None)  # ... or that none does
    assert not decoder.in_message
    (event,) = decoder.feed(echo)
    assert isinstance(event, CommandReceived)


def test_data_set_size_counts_from_zero_for_each_message() -> None:
    one = p_data_pdv(1, 0x03, STORE_RQ) + p_data_pdv(1, 0x02, DATA[:10])
    two = p_data_pdv(1, 0x03, STORE_RQ) + p_data_pdv(1, 0x02, DATA[:4])
    seen = decode(one + two, Limits(max_dataset=10))
    assert [s for s in seen if s[0] == "complete"] == [("complete", 1, 10), ("complete", 1, 4)]


def test_in_pdu_follows_the_bytes_of_an_unfinished_pdu() -> None:
    decoder = Decoder()
    release = peer.release_rq()
    decoder.feed(release[:2])
    assert decoder.in_pdu  # a cut header
    decoder.feed(release[2:8])
    assert decoder.in_pdu  # a cut body
    decoder.feed(release[8:])
    assert not decoder.in_pdu
    store = p_data_pdv(1, 0x03, STORE_RQ)
    decoder.feed(store[:9])
    assert decoder.in_pdu and not decoder.in_message  # a cut PDV header
    decoder.feed(store[9:20])
    assert decoder.in_pdu and decoder.in_message  # a cut command
    decoder.feed(store[20:])
    assert not decoder.in_pdu and decoder.in_message  # the data set is awaited


def test_in_message_after_a_zero_length_first_command_fragment() -> None:
    decoder = Decoder()
    assert decoder.feed(p_data_pdv(1, 0x01, b"")) == []
    assert decoder.in_message  # a command has started: its first fragment came


# --- limits -------------------------------------------------------------------------------


def assert_dead(decoder: Decoder) -> None:
    """A failed decoder takes no more bytes, whatever they are."""
    offset = decoder.offset
    assert decoder.failed
    for more in (peer.release_rq(), p_data_pdv(1, 0x03, ECHO_RQ), b"\x00" * 100):
        assert decoder.feed(more) == []
    assert decoder.offset == offset


CONTROL_TYPES = [PduType.ASSOCIATE_RQ, PduType.ASSOCIATE_AC, PduType.ASSOCIATE_RJ]
CONTROL_TYPES += [PduType.RELEASE_RQ, PduType.RELEASE_RP, PduType.ABORT]


@pytest.mark.parametrize("limits", [Limits(), Limits(max_associate_pdu=300, max_other_pdu=10)])
@pytest.mark.parametrize("pdu_type", CONTROL_TYPES, ids=lambda t: t.label)
def test_control_pdu_caps(pdu_type: PduType, limits: Limits) -> None:
    associate = pdu_type in (PduType.ASSOCIATE_RQ, PduType.ASSOCIATE_AC)
    cap = limits.max_associate_pdu if associate else limits.max_other_pdu
    body = bytes(range(256)) * (cap // 256) + bytes(cap % 256)
    at_cap = header(pdu_type, cap) + body
    assert decode(at_cap, limits) == [("control", int(pdu_type), body)]
    decoder = Decoder(limits)
    # Refused on its header alone: the body is neither awaited nor kept.
    (error,) = decoder.feed(header(pdu_type, cap + 1))
    assert error == StreamError(
        f"a {cap + 1}-byte PDU ({pdu_type.label}) exceeds the {cap}-byte limit", 6
    )
    assert_dead(decoder)


@pytest.mark.parametrize("cuts", [(), (8, 30, 31), tuple(range(1, 200, 3))])
def test_command_set_above_max_command(cuts: tuple[int, ...]) -> None:
    cap = len(STORE_RQ)
    fragmented = pdu.encode_p_data(1, STORE_RQ, command=True, max_pdu_length=30)
    assert decode(fragmented, Limits(max_command=cap), cuts) == [("command", 1, STORE_RQ)]
    assert decode(fragmented, Limits(max_command=cap - 1), cuts) == [
        ("error", 6, f"a command set longer than {cap - 1} bytes")
    ]


def test_command_set_limit_is_checked_as_bytes_arrive() -> None:
    decoder = Decoder(Limits(max_command=100))
    claim = 50_000  # a PDV that claims far more than the limit
    assert decoder.feed(struct.pack(">BxLLBB", 4, claim + 6, claim + 2, 1, 0x03)) == []
    assert decoder.feed(bytes(100)) == []
    (error,) = decoder.feed(bytes(1))
    assert error == StreamError("a command set longer than 100 bytes", 6)
    assert_dead(decoder)


@pytest.mark.parametrize("cuts", [(), tuple(range(1, 2000, 7))])
def test_data_set_above_max_dataset(cuts: tuple[int, ...]) -> None:
    stream = pdu.encode_p_data(1, STORE_RQ, command=True, max_pdu_length=0)
    stream += pdu.encode_p_data(1, DATA, command=False, max_pdu_length=100)
    at_cap = decode(stream, Limits(max_dataset=len(DATA)), cuts)
    assert at_cap == [("command", 1, STORE_RQ), ("data", 1, DATA), ("complete", 1, len(DATA))]
    over = decode(stream, Limits(max_dataset=len(DATA) - 1), cuts)
    assert over[0] == ("command", 1, STORE_RQ)
    assert over[-1] == ("error", 6, f"a data set larger than the {len(DATA) - 1}-byte limit")
    # What came before the failure is a prefix of the data set, within the limit.
    streamed = b"".join(s[2] for s in over if s[0] == "data" and isinstance(s[2], bytes))
    assert DATA.startswith(streamed) and len(streamed) < len(DATA)


def test_max_dataset_zero_allows_only_an_empty_data_set() -> None:
    limits = Limits(max_dataset=0)
    assert decode(p_data_pdv(1, 0x03, STORE_RQ) + p_data_pdv(1, 0x02, b""), limits) == [
        ("command", 1, STORE_RQ),
        ("complete", 1, 0),
    ]
    assert decode(p_data_pdv(1, 0x03, STORE_RQ) + p_data_pdv(1, 0x02, b"\x00"), limits) == [
        ("command", 1, STORE_RQ),
        ("error", 6, "a data set larger than the 0-byte limit"),
    ]


def test_p_data_above_the_hard_limit_fails_on_its_header() -> None:
    limits = Limits(max_pdata_hard=1000)
    decoder = Decoder(limits)
    assert decoder.feed(header(4, 1000)) == []  # at the limit: fine
    decoder = Decoder(limits)
    (error,) = decoder.feed(header(4, 1001))
    assert error == StreamError("a 1001-byte PDU (P-DATA-TF) is beyond the 1000-byte limit", 6)
    assert_dead(decoder)


def test_p_data_hard_limit_wins_over_the_announced_maximum() -> None:
    (error,) = Decoder(Limits(max_pdata_length=10, max_pdata_hard=20)).feed(header(4, 21))
    assert isinstance(error, StreamError) and "beyond the 20-byte limit" in error.detail


def test_p_data_above_the_announced_maximum_is_reported_and_decoded() -> None:
    message = p_data_pdv(1, 0x03, ECHO_RQ)
    length = len(message) - 6
    assert decode(message, Limits(max_pdata_length=length)) == [("command", 1, ECHO_RQ)]
    assert decode(message, Limits(max_pdata_length=length - 1)) == [
        ("oversized", length, length - 1),
        ("command", 1, ECHO_RQ),
    ]
    assert decode(message, Limits(max_pdata_length=0)) == [("command", 1, ECHO_RQ)]


def _peak_while_feeding(decoder: Decoder, data: Sequence[bytes]) -> int:
    """The most memory allocated, beyond what was already, while ``data`` is fed."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for piece in data:
            decoder.feed(piece)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


CLAIM = 200 * 1024


def test_a_control_pdu_body_grows_only_as_bytes_arrive() -> None:
    decoder = Decoder()
    peak = _peak_while_feeding(decoder, [header(PduType.ASSOCIATE_AC, CLAIM) + bytes(10)])
    assert peak < 16 * 1024, f"{peak} bytes allocated for 10 bytes of a {CLAIM}-byte PDU"
    assert len(decoder._control) == 10 and decoder.in_pdu


def test_a_command_grows_only_as_bytes_arrive() -> None:
    decoder = Decoder(Limits(max_command=CLAIM))
    pdv = struct.pack(">BxLLBB", 4, CLAIM, CLAIM - 4, 1, 0x03)
    peak = _peak_while_feeding(decoder, [pdv + bytes(10)])
    assert peak < 16 * 1024, f"{peak} bytes allocated for 10 bytes of a {CLAIM}-byte command"
    assert len(decoder._command) == 10 and decoder.in_message


def test_a_data_set_is_streamed_not_buffered() -> None:
    size = 1 << 20
    stream = p_data_pdv(1, 0x03, STORE_RQ) + p_data_pdv(1, 0x02, bytes(size))
    pieces = pieces_at(stream, range(0, len(stream), 64 * 1024))
    decoder = Decoder()
    peak = _peak_while_feeding(decoder, pieces)
    assert peak < 32 * 1024, f"{peak} bytes allocated to stream a {size}-byte data set"
    assert not decoder._command and not decoder._control and not decoder._partial
    assert decoder.offset == len(stream) and not decoder.in_message


# --- framing errors -----------------------------------------------------------------------

COMMAND_THEN_DATA = p_data_pdv(1, 0x03, STORE_RQ)

#: (name, stream, abort reason, detail); every stream but its last PDU is well-formed.
FRAMING: list[tuple[str, bytes, int, str]] = [
    ("PDU type 0x00", header(0x00, 4) + bytes(4), 1, "unrecognised PDU type 0x00"),
    ("PDU type 0x08", header(0x08, 4) + bytes(4), 1, "unrecognised PDU type 0x08"),
    ("PDU type 0xFF", header(0xFF, 0), 1, "unrecognised PDU type 0xFF"),
    (
        "PDU type 0x08 after a good PDU",
        peer.release_rq() + header(0x08, 0),
        1,
        "unrecognised PDU type 0x08",
    ),
    (
        "PDV length 0",
        struct.pack(">BxLLBB", 4, 6, 0, 1, 3),
        6,
        "PDV item length 0 does not fit its P-DATA-TF",
    ),
    (
        "PDV length 1",
        struct.pack(">BxLLBB", 4, 7, 1, 1, 3) + b"x",
        6,
        "PDV item length 1 does not fit its P-DATA-TF",
    ),
    (
        "PDV past its PDU",
        struct.pack(">BxLLBB", 4, 10, 7, 1, 3) + b"abcd" + b"e",
        6,
        "PDV item length 7 does not fit its P-DATA-TF",
    ),
    (
        "PDV header cut by the PDU end",
        header(4, 4) + b"\x00\x00\x00\x02",
        6,
        "a PDV item header runs past the end of its P-DATA-TF",
    ),
    (
        "PDV header cut after a whole PDV",
        struct.pack(">BxLLBB", 4, 6 + len(ECHO_RQ) + 5, len(ECHO_RQ) + 2, 1, 3)
        + ECHO_RQ
        + b"\x00\x00\x00\x02\x01",
        6,
        "a PDV item header runs past the end of its P-DATA-TF",
    ),
    (
        "data set fragment without a command",
        p_data_pdv(1, 0x02, b"ab"),
        2,
        "a data set fragment without a command announcing one",
    ),
    (
        "data set fragment while a command is incomplete",
        p_data_pdv(1, 0x01, STORE_RQ[:10]) + p_data_pdv(1, 0x02, b"ab"),
        2,
        "a data set fragment without a command announcing one",
    ),
    (
        "data set fragment after the data set ended",
        COMMAND_THEN_DATA + p_data_pdv(1, 0x02, b"ab") + p_data_pdv(1, 0x00, b"cd"),
        2,
        "a data set fragment without a command announcing one",
    ),
    (
        "command fragment where a data set was expected",
        COMMAND_THEN_DATA + p_data_pdv(1, 0x00, b"ab") + p_data_pdv(1, 0x03, ECHO_RQ),
        2,
        "a command fragment where a data set fragment was expected",
    ),
    (
        "data set on another context",
        COMMAND_THEN_DATA + p_data_pdv(3, 0x02, b"ab"),
        6,
        "data set fragment on presentation context 3, its command came on 1",
    ),
    (
        "command fragments on two contexts",
        p_data_pdv(1, 0x01, ECHO_RQ[:8]) + p_data_pdv(3, 0x03, ECHO_RQ[8:]),
        6,
        "command fragments of one message on two presentation contexts",
    ),
    (
        "command set element outside group 0000",
        p_data_pdv(1, 0x03, ECHO_RQ + struct.pack("<HHL", 8, 0x16, 2) + b"1\x00"),
        6,
        "malformed DIMSE command set: element (0008,0016) length 2",
    ),
    (
        "command set element cut short",
        p_data_pdv(1, 0x03, ECHO_RQ[:-1]),
        6,
        "malformed DIMSE command set: element (0000,0800) length 2",
    ),
    (
        "command set with a truncated element header",
        p_data_pdv(1, 0x03, ECHO_RQ + b"\x00\x00\x00\x09"),
        6,
        "truncated element in DIMSE command set",
    ),
    (
        "command set without a Command Field",
        p_data_pdv(1, 0x03, peer.command_set(MessageIDBeingRespondedTo=1, Status=0)),
        6,
        "DIMSE command set without a Command Field (0000,0100)",
    ),
    ("empty command set", p_data_pdv(1, 0x03, b""), 6, "without a Command Field"),
]


@pytest.mark.parametrize(
    ("stream", "reason", "detail"), [f[1:] for f in FRAMING], ids=[f[0] for f in FRAMING]
)
def test_framing_errors(stream: bytes, reason: int, detail: str) -> None:
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        decoder = Decoder()
        seen = feed(decoder, pieces)
        assert seen[-1][:2] == ("error", reason)
        assert detail in str(seen[-1][2])
        assert all(s[0] != "error" for s in seen[:-1])
        assert_dead(decoder)


@PROPERTY
@given(st.data())
def test_framing_errors_are_the_same_whatever_the_split(data: st.DataObject) -> None:
    _name, stream, reason, detail = data.draw(st.sampled_from(FRAMING))
    cuts = data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=30))
    seen = decode(stream, cuts=cuts)
    assert seen == decode(stream)
    assert seen[-1][:2] == ("error", reason) and detail in str(seen[-1][2])


_PDU_ISH = st.tuples(
    st.sampled_from([1, 2, 3, 4, 4, 4, 5, 6, 7, 9]),
    st.integers(0, 80),
    st.binary(max_size=80),
)


@PROPERTY
@given(st.lists(_PDU_ISH, max_size=6), st.lists(st.integers(1, 500), max_size=20))
def test_any_bytes_give_events_never_exceptions(
    pdus: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    """Headers with lengths that may lie, bodies of anything, P-DATA-TF most often."""
    stream = b"".join(header(t, n) + body for t, n, body in pdus)
    limits = Limits(max_associate_pdu=64, max_other_pdu=32, max_command=48, max_dataset=40)
    seen = decode(stream, limits, [c for c in cuts if c < len(stream)])
    errors = [i for i, s in enumerate(seen) if s[0] == "error"]
    assert errors in ([], [len(seen) - 1]), "events after a StreamError"
    if not any("data set larger" in str(s[2]) for s in seen):
        assert seen == decode(stream, limits)


# --- cross-checks with pynetdicom -----------------------------------------------------------


@pytest.mark.parametrize("max_pdu", [0, 4096, 100, 40])
@pytest.mark.parametrize("size", [0, 1, 2, 77, 4096])
def test_pynetdicom_store_rq_decodes_to_what_pynetdicom_was_given(max_pdu: int, size: int) -> None:
    data_set = bytes(i % 251 for i in range(size))
    stream = peer.store_rq_message(11, data_set, sop_instance="1.2.826.0.9", max_pdu=max_pdu)
    decoder = Decoder()
    events = decoder.feed(stream)
    command = events[0]
    assert isinstance(command, CommandReceived) and command.context_id == 1
    assert command.command.command_field == dimse.C_STORE_RQ
    assert command.command.message_id == 11
    assert command.command.affected_sop_class_uid == CT
    assert command.command.affected_sop_instance_uid == "1.2.826.0.9"
    assert command.raw == command_raw(stream)
    chunks = b"".join(bytes(e.data) for e in events if isinstance(e, DatasetChunk))
    assert chunks == data_set
    completes = [e for e in events if isinstance(e, DatasetComplete)]
    # pynetdicom sends no data set PDV at all for an empty data set: still awaited.
    assert completes == ([DatasetComplete(1, size)] if size else [])
    assert decoder.in_message is (size == 0)


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xC001])
def test_pynetdicom_responses_decode(status: int) -> None:
    stream = peer.store_rsp_message(4, status, context_id=7, max_pdu=50)
    stream += peer.echo_rsp_message(5, status, context_id=9)
    first, second = Decoder().feed(stream)
    assert isinstance(first, CommandReceived) and isinstance(second, CommandReceived)
    assert (first.context_id, second.context_id) == (7, 9)
    assert first.command.command_field == dimse.C_STORE_RSP
    assert second.command.command_field == dimse.C_ECHO_RSP
    assert [c.command.message_id_responded for c in (first, second)] == [4, 5]
    assert [c.command.status for c in (first, second)] == [status, status]
    assert not first.command.has_dataset and not second.command.has_dataset


def test_pynetdicom_control_pdus_decode_to_their_fields() -> None:
    ac = peer.associate_ac([(1, CT, peer.EXPLICIT_LE, 0), (3, CT, peer.IMPLICIT_LE, 4)])
    stream = ac + peer.associate_rj(2, 3, 1) + peer.abort(2, 6) + peer.release_rp()
    events = Decoder().feed(stream)
    assert [e.pdu_type for e in events if isinstance(e, ControlPdu)] == [
        PduType.ASSOCIATE_AC,
        PduType.ASSOCIATE_RJ,
        PduType.ABORT,
        PduType.RELEASE_RP,
    ]
    bodies = [e.body for e in events if isinstance(e, ControlPdu)]
    accept = pdu.decode_associate_ac(bodies[0])
    assert accept.max_pdu_length == 16384 and accept.implementation_version_name == "PEER_1"
    assert [(c.context_id, c.result, c.transfer_syntax) for c in accept.contexts] == [
        (1, 0, peer.EXPLICIT_LE),
        (3, 4, None),
    ]
    rj = pdu.decode_associate_rj(bodies[1])
    assert (rj.result, rj.source, rj.reason) == (2, 3, 1)
    assert pdu.decode_abort(bodies[2]) == (2, 6)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 3, 255]),
            st.integers(0, 600),
            st.sampled_from([0, 12, 13, 64, 1000]),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(1, 3000), max_size=12),
)
def test_our_framing_and_pynetdicom_read_the_same_pdvs(
    messages: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    """C-STORE-RQs framed by scu.protocol.pdu at various peer maxima: the decoder and
    pynetdicom's P-DATA-TF reader agree on every command and data set."""
    stream = b""
    expected: list[Seen] = []
    for n, (context_id, size, max_pdu) in enumerate(messages):
        command = dimse.encode_store_rq(n + 1, CT, f"1.2.3.{n}")
        data_set = bytes(range(256))[:size] if size <= 256 else bytes(size)
        stream += pdu.encode_p_data(context_id, command, command=True, max_pdu_length=max_pdu)
        stream += pdu.encode_p_data(context_id, data_set, command=False, max_pdu_length=max_pdu)
        expected += [("command", context_id, command)]
        expected += [("data", context_id, data_set)] if size else []
        expected += [("complete", context_id, size)]
    # pynetdicom's reading of the same bytes, reassembled by the last-fragment bits.
    theirs: list[Seen] = []
    command_part = data_part = b""
    for context_id, control, chunk in peer.p_data_items(stream):
        if control & 1:
            command_part += chunk
            if control & 2:
                theirs.append(("command", context_id, command_part))
                command_part = b""
        else:
            data_part += chunk
            if control & 2:
                theirs += [("data", context_id, data_part)] if data_part else []
                theirs.append(("complete", context_id, len(data_part)))
                data_part = b""
    assert theirs == expected
    assert decode(stream, cuts=[c for c in cuts if c < len(stream)]) == expected
