"""Unit tests of the protocol codec (scu.protocol.pdu and scu.protocol.dimse),
cross-checked against independent codecs: pynetdicom's PDU classes for the Upper Layer
and pydicom's Implicit VR reader/writer for command sets."""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
)
from pynetdicom.pdu_primitives import (
    A_ABORT,
    A_ASSOCIATE,
    A_P_ABORT,
    P_DATA,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from scu.protocol import acse, dimse, pdu
from scu.protocol.dimse import CommandError
from scu.protocol.pdu import (
    AssociateRQ,
    ContextProposal,
    ContextResult,
    PduError,
    PduType,
    UserIdentity,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ELE, ILE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
J2K = "1.2.840.10008.1.2.4.90"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"


def _header(encoded: bytes) -> tuple[int, int]:
    pdu_type, length = struct.unpack(">BxL", encoded[:6])
    return pdu_type, length


def _body(encoded: bytes) -> bytes:
    """The variable part of an encoded PDU, after checking its header's length."""
    _pdu_type, length = _header(encoded)
    assert length == len(encoded) - 6
    return encoded[6:]


def _rq(
    contexts: list[tuple[int, str, list[str]]],
    *,
    calling: str = "STORE-SCU",
    called: str = "ANY-SCP",
    max_pdu: int = 16384,
    **extra: Any,
) -> bytes:
    return pdu.encode_associate_rq(
        AssociateRQ(
            called_ae_title=called,
            calling_ae_title=calling,
            contexts=tuple(ContextProposal(c, a, tuple(ts)) for c, a, ts in contexts),
            max_pdu_length=max_pdu,
            **extra,
        )
    )


# --- A-ASSOCIATE-RQ ---------------------------------------------------------------------


@pytest.mark.parametrize("max_pdu", [0, 4096, 16384, 131072])
@pytest.mark.parametrize(
    ("calling", "called"), [("STORE-SCU", "ANY-SCP"), ("A", "ABCDEFGHIJKLMNOP"), ("MY AE", "X")]
)
def test_associate_rq_decodes_with_pynetdicom(calling: str, called: str, max_pdu: int) -> None:
    contexts = [(1, CT, [J2K]), (3, CT, [ELE, ILE]), (255, MR, [ILE])]
    encoded = _rq(contexts, calling=calling, called=called, max_pdu=max_pdu)
    assert encoded[0] == 0x01
    _body(encoded)
    theirs = A_ASSOCIATE_RQ()
    theirs.decode(encoded)
    assert theirs.protocol_version == 1
    assert theirs.calling_ae_title == calling
    assert theirs.called_ae_title == called
    assert theirs.application_context_name == APP_CONTEXT
    assert [
        (c.context_id, c.abstract_syntax, c.transfer_syntax) for c in theirs.presentation_context
    ] == [(cid, abstract, syntaxes) for cid, abstract, syntaxes in contexts]
    primitive = theirs.to_primitive()
    assert primitive.maximum_length_received == max_pdu
    assert primitive.implementation_class_uid == pdu.IMPLEMENTATION_CLASS_UID
    versions = [
        item.implementation_version_name
        for item in primitive.user_information
        if isinstance(item, ImplementationVersionNameNotification)
    ]
    assert versions == [pdu.IMPLEMENTATION_VERSION_NAME]
    # Re-encoding what pynetdicom understood gives back our bytes exactly.
    assert theirs.encode() == encoded
    # And our own decoder reads it back as it was, with nothing to forgive.
    mine = pdu.decode_associate_rq(_body(encoded))
    assert (mine.calling_ae_title, mine.called_ae_title) == (calling.strip(), called)
    assert [
        (c.context_id, c.abstract_syntax, list(c.transfer_syntaxes)) for c in mine.contexts
    ] == contexts
    assert mine.max_pdu_length == max_pdu
    assert mine.anomalies == ()


def test_associate_rq_pads_ae_titles_with_spaces_to_16_bytes() -> None:
    encoded = _rq([(1, CT, [ELE])], calling="ME", called="YOU", max_pdu=0)
    assert encoded[6:8] == b"\x00\x01"  # protocol version
    assert encoded[10:26] == b"YOU" + b" " * 13  # called first (PS3.8 table 9-11)
    assert encoded[26:42] == b"ME" + b" " * 14
    assert encoded[42:74] == bytes(32)


@pytest.mark.parametrize("context_id", [0, 2, 256, -1])
def test_associate_rq_rejects_invalid_context_ids(context_id: int) -> None:
    with pytest.raises(ValueError, match=r"presentation context ID must be odd 1\.\.255"):
        _rq([(context_id, CT, [ELE])], calling="A", called="B")


# --- A-ASSOCIATE-AC / RJ, A-ABORT, A-RELEASE built by pynetdicom -------------------------


def _pynetdicom_ac(results: list[tuple[int, str, str, int]], max_pdu: int) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APP_CONTEXT
    primitive.calling_ae_title = "STORE-SCU"
    primitive.called_ae_title = "PACS"
    primitive.result = 0
    contexts = []
    for context_id, abstract, syntax, result in results:
        context = PresentationContext()
        context.context_id = context_id
        context.abstract_syntax = abstract
        context.add_transfer_syntax(syntax)
        context.result = result
        contexts.append(context)
    primitive.presentation_context_definition_results_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.3.4.5"
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "PEER_1"
    primitive.user_information = [length, impl, version]
    theirs = A_ASSOCIATE_AC()
    theirs.from_primitive(primitive)
    return bytes(theirs.encode())


@pytest.mark.parametrize("max_pdu", [0, 4096, 28672, 131072])
def test_associate_ac_from_pynetdicom_decodes(max_pdu: int) -> None:
    encoded = _pynetdicom_ac(
        [(1, CT, J2K, 0), (3, CT, ELE, 0), (5, MR, ILE, 3), (7, MR, ELE, 4)], max_pdu
    )
    pdu_type, _ = _header(encoded)
    assert pdu_type == PduType.ASSOCIATE_AC
    accept = pdu.decode_associate_ac(_body(encoded))
    assert accept.called_ae_title == "PACS"
    assert accept.calling_ae_title == "STORE-SCU"
    assert accept.max_pdu_length == max_pdu
    assert accept.implementation_class_uid == "1.2.3.4.5"
    assert accept.implementation_version_name == "PEER_1"
    assert [c.context_id for c in accept.contexts] == [1, 3, 5, 7]
    assert accept.context(1) == ContextResult(1, 0, J2K)
    three = accept.context(3)
    assert three is not None and three.accepted and three.transfer_syntax == ELE
    five, seven = accept.context(5), accept.context(7)
    assert five is not None and five.result == 3 and not five.accepted
    assert seven is not None and seven.result == 4 and not seven.accepted


def test_associate_ac_too_short_or_with_overrunning_items_is_a_pdu_error() -> None:
    body = _body(_pynetdicom_ac([(1, CT, ELE, 0)], 16384))
    with pytest.raises(PduError, match="too short"):
        pdu.decode_associate_ac(body[:67])
    with pytest.raises(PduError, match=r"runs past the end|cut short"):
        pdu.decode_associate_ac(body[:-3])
    # A presentation context item with a length shorter than its fixed part.
    broken = body[:68] + struct.pack(">BxH", 0x21, 2) + b"\x01\x00"
    with pytest.raises(PduError, match="presentation context item in A-ASSOCIATE-AC is cut short"):
        pdu.decode_associate_ac(broken)


@pytest.mark.parametrize(
    ("result", "source", "reason", "words"),
    [
        (1, 1, 7, "called AE title not recognised"),
        (1, 1, 3, "calling AE title not recognised"),
        (1, 1, 1, "no reason given"),
        (1, 1, 2, "application context name not supported"),
        (1, 2, 2, "protocol version not supported"),
        (2, 3, 1, "temporary congestion"),
        (2, 3, 2, "local limit exceeded"),
    ],
)
def test_associate_rj_from_pynetdicom_decodes_and_is_described(
    result: int, source: int, reason: int, words: str
) -> None:
    primitive = A_ASSOCIATE()
    primitive.result = result
    primitive.result_source = source
    primitive.diagnostic = reason
    theirs = A_ASSOCIATE_RJ()
    theirs.from_primitive(primitive)
    encoded = bytes(theirs.encode())
    pdu_type, _ = _header(encoded)
    assert pdu_type == PduType.ASSOCIATE_RJ
    rj = pdu.decode_associate_rj(_body(encoded))
    assert (rj.result, rj.source, rj.reason) == (result, source, reason)
    assert pdu.encode_associate_rj(result, source, reason) == encoded
    text = acse.describe_rejection(result, source, reason)
    assert text.startswith(words)
    assert ("rejected-permanent" if result == 1 else "rejected-transient") in text


def test_describe_rejection_unknown_numbers_stay_readable() -> None:
    assert acse.describe_rejection(9, 8, 7) == "reason 7 (result 9, source: source 8)"


@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 0), (2, 1), (2, 2), (2, 6)])
def test_abort_from_pynetdicom_decodes(source: int, reason: int) -> None:
    theirs = A_ABORT_RQ()
    if source == 0:
        user = A_ABORT()
        user.abort_source = source
        theirs.from_primitive(user)
    else:
        provider = A_P_ABORT()
        provider.provider_reason = reason
        theirs.from_primitive(provider)
    encoded = bytes(theirs.encode())
    assert _header(encoded) == (PduType.ABORT, 4)
    assert pdu.decode_abort(_body(encoded)) == (source, reason)


def test_describe_abort() -> None:
    assert acse.describe_abort(0, 0) == "source: service user"
    assert acse.describe_abort(2, 1) == "source: service provider, reason: unrecognised PDU"
    assert acse.describe_abort(2, 99) == "source: service provider, reason: 99"


def test_our_abort_and_release_decode_with_pynetdicom() -> None:
    abort = A_ABORT_RQ()
    abort.decode(pdu.encode_abort(2, 6))
    assert (abort.source, abort.reason_diagnostic) == (2, 6)
    assert pdu.encode_abort() == b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    release_rq = A_RELEASE_RQ()
    release_rq.decode(pdu.encode_release_rq())
    assert release_rq.encode() == pdu.encode_release_rq()
    release_rp = A_RELEASE_RP()
    release_rp.decode(pdu.encode_release_rp())
    assert release_rp.encode() == pdu.encode_release_rp()
    assert _header(pdu.encode_release_rp()) == (PduType.RELEASE_RP, 4)


@pytest.mark.parametrize(
    ("decoder", "name"),
    [(pdu.decode_associate_rj, "A-ASSOCIATE-RJ"), (pdu.decode_abort, "A-ABORT")],
)
def test_short_reject_and_abort_bodies_are_pdu_errors(decoder: object, name: str) -> None:
    with pytest.raises(PduError, match=f"{name} too short"):
        decoder(b"\x00\x01\x01")  # type: ignore[operator]


# --- P-DATA-TF ------------------------------------------------------------------------


def test_pdata_header_layout() -> None:
    header = pdu.pdv_header(5, 1000, command=True, last=False)
    assert header == b"\x04\x00" + struct.pack(">L", 1006) + struct.pack(">L", 1002) + b"\x05\x01"
    assert pdu.pdv_header(7, 0, command=False, last=True)[-2:] == b"\x07\x02"
    assert pdu.pdv_header(7, 0, command=True, last=True)[-1] == 0x03
    assert pdu.pdv_header(7, 0, command=False, last=False)[-1] == 0x00


@pytest.mark.parametrize(("command", "last"), [(True, True), (False, False), (False, True)])
def test_pdata_header_decodes_with_pynetdicom(command: bool, last: bool) -> None:
    data = bytes(range(256)) * 3
    encoded = pdu.pdv_header(3, len(data), command=command, last=last) + data
    theirs = P_DATA_TF()
    theirs.decode(encoded)
    (item,) = theirs.presentation_data_value_items
    assert item.presentation_context_id == 3
    value = item.presentation_data_value
    assert value is not None
    assert bool(value[0] & 1) is command and bool(value[0] & 2) is last
    assert value[1:] == data


def test_iter_pdvs_splits_a_multi_pdv_body_from_pynetdicom() -> None:
    primitive = P_DATA()
    # Each value starts with its message control header (bit 0 command, bit 1 last).
    # pynetdicom wants [ID, value] lists (its annotation says tuples); each value starts
    # with its message control header (bit 0 command, bit 1 last).
    values: list[Any] = [
        [1, b"\x03" + b"command"],
        [1, b"\x00" + b"data-1"],
        [3, b"\x02" + b"data-2!"],
        [5, b"\x01" + b""],
    ]
    primitive.presentation_data_value_list = values
    theirs = P_DATA_TF()
    theirs.from_primitive(primitive)
    encoded = bytes(theirs.encode())
    pdvs = [(cid, cmd, last, bytes(data)) for cid, cmd, last, data in pdu.iter_pdvs(_body(encoded))]
    assert pdvs == [
        (1, True, True, b"command"),
        (1, False, False, b"data-1"),
        (3, False, True, b"data-2!"),
        (5, True, False, b""),
    ]


def test_iter_pdvs_empty_body_yields_nothing() -> None:
    assert list(pdu.iter_pdvs(b"")) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"\x00\x00\x00\x02\x01", "header is cut short"),
        (b"\x00\x00\x00\x01\x01\x03", "PDV item length 1 does not fit"),
        (b"\x00\x00\x00\x00\x01\x03", "PDV item length 0 does not fit"),
        (b"\x00\x00\x00\x09\x01\x03abc", "PDV item length 9 does not fit"),
        (b"\x00\x00\x00\x03\x01\x03a" + b"\x00\x00\x00\x05\x01\x03a", "PDV item length 5"),
        (b"\x00\x00\x00\x03\x01\x03a\x00\x00", "header is cut short"),
    ],
)
def test_iter_pdvs_rejects_bad_lengths(body: bytes, fragment: str) -> None:
    with pytest.raises(PduError, match=fragment):
        list(pdu.iter_pdvs(body))


# --- DIMSE command sets -------------------------------------------------------------------


def _read_command(data: bytes) -> Dataset:
    return read_dataset(BytesIO(data), is_implicit_VR=True, is_little_endian=True)


def test_store_rq_decodes_with_pydicom() -> None:
    instance = "1.2.826.0.1.3680043.8.498.1"  # odd length: padded with a NUL
    encoded = dimse.encode_store_rq(7, CT, instance, priority=2)
    ds = _read_command(encoded)
    assert ds.CommandGroupLength == len(encoded) - 12
    assert ds.AffectedSOPClassUID == CT
    assert ds.CommandField == 0x0001
    assert ds.MessageID == 7
    assert ds.Priority == 2
    assert ds.CommandDataSetType == 0x0000  # a data set follows
    assert ds.AffectedSOPInstanceUID == instance
    assert [t for t in ds.keys()] == sorted(ds.keys())  # ascending tags
    assert len(encoded) % 2 == 0
    # decode_command reads its own request back.
    command = dimse.decode_command(encoded)
    assert command.command_field == 0x0001
    assert command.affected_sop_instance_uid == instance
    assert command.has_dataset


@pytest.mark.parametrize("message_id", [1, 0xFFFF])
def test_echo_rq_decodes_with_pydicom(message_id: int) -> None:
    encoded = dimse.encode_echo_rq(message_id)
    ds = _read_command(encoded)
    assert ds.CommandGroupLength == len(encoded) - 12
    assert ds.AffectedSOPClassUID == "1.2.840.10008.1.1"
    assert ds.CommandField == 0x0030
    assert ds.MessageID == message_id
    assert ds.CommandDataSetType == 0x0101  # no data set
    assert not dimse.decode_command(encoded).has_dataset


def _pydicom_command(**values: object) -> bytes:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, ds)
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    group = Dataset()
    group.CommandGroupLength = len(body.getvalue())
    write_dataset(out, group)
    return bytes(out.getvalue() + body.getvalue())


@pytest.mark.parametrize(
    ("status", "comment"),
    [(0x0000, None), (0xB000, "coerced"), (0xA700, "disk full "), (0xC123, "odd")],
)
def test_store_rsp_from_pydicom_decodes(status: int, comment: str | None) -> None:
    values: dict[str, object] = {
        "AffectedSOPClassUID": CT,
        "CommandField": 0x8001,
        "MessageIDBeingRespondedTo": 42,
        "CommandDataSetType": 0x0101,
        "Status": status,
        "AffectedSOPInstanceUID": "1.2.3.4.5",
    }
    if comment is not None:
        values["ErrorComment"] = comment
    command = dimse.decode_command(_pydicom_command(**values))
    assert command.command_field == 0x8001
    assert command.message_id_responded == 42
    assert command.status == status
    assert command.error_comment == (comment.strip() if comment else None)
    assert command.affected_sop_instance_uid == "1.2.3.4.5"
    assert not command.has_dataset


def test_command_without_optional_fields() -> None:
    command = dimse.decode_command(_pydicom_command(CommandField=0x8030))
    assert command.command_field == 0x8030
    assert (command.message_id_responded, command.status, command.error_comment) == (None,) * 3
    assert command.affected_sop_instance_uid is None
    assert not command.has_dataset


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "without a Command Field"),
        (_pydicom_command(Status=0), "without a Command Field"),
        (b"\x00\x00\x00\x01\x02\x00", "truncated element"),
        (struct.pack("<HHL", 0, 0x0100, 4) + b"\x01\x80", "length 4"),
        (struct.pack("<HHL", 8, 0x0016, 2) + b"1\x00", r"element \(0008,0016\)"),
        (struct.pack("<HHL", 0, 0x0100, 0xFFFFFFFF), "length 4294967295"),
    ],
)
def test_malformed_command_sets_raise_command_error(data: bytes, fragment: str) -> None:
    with pytest.raises(CommandError, match=fragment):
        dimse.decode_command(data)


def test_command_truncated_anywhere_never_escapes_as_another_error() -> None:
    encoded = _pydicom_command(
        CommandField=0x8001, MessageIDBeingRespondedTo=1, Status=0xA700, ErrorComment="full"
    )
    for cut in range(len(encoded)):
        try:
            dimse.decode_command(encoded[:cut])
        except CommandError:
            pass


_AE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\"),
    min_size=1,
    max_size=16,
)
_UIDS = st.sampled_from([CT, MR, ELE, ILE, J2K, "1.2.840.10008.1.2.5", "1.2.3.4.5.6.7.8.9.10"])


@settings(max_examples=50, derandomize=True, database=None, deadline=None)
@given(
    calling=_AE_TEXT,
    called=_AE_TEXT,
    max_pdu=st.sampled_from([0, 4096, 16384, 131072]),
    contexts=st.lists(
        st.tuples(_UIDS, st.lists(_UIDS, min_size=1, max_size=4)), min_size=1, max_size=128
    ),
)
def test_any_associate_rq_decodes_with_pynetdicom(
    calling: str, called: str, max_pdu: int, contexts: list[tuple[str, list[str]]]
) -> None:
    numbered = [(2 * i + 1, abstract, syntaxes) for i, (abstract, syntaxes) in enumerate(contexts)]
    encoded = _rq(numbered, calling=calling, called=called, max_pdu=max_pdu)
    theirs = A_ASSOCIATE_RQ()
    theirs.decode(encoded)
    assert (theirs.calling_ae_title, theirs.called_ae_title) == (calling, called)
    assert [
        (c.context_id, c.abstract_syntax, c.transfer_syntax) for c in theirs.presentation_context
    ] == numbered
    assert theirs.to_primitive().maximum_length_received == max_pdu


# --- both sides of negotiation, and what the decoder forgives ------------------------------


def _items(body: bytes, start: int = 68) -> list[tuple[int, bytes]]:
    out, offset = [], start
    while offset < len(body):
        item_type, length = struct.unpack_from(">BxH", body, offset)
        out.append((item_type, body[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return out


def test_our_associate_ac_never_pads_uids_and_decodes_with_pynetdicom() -> None:
    odd = "1.2.840.10008.1.2.1"  # 19 characters: a padding NUL would make it 20
    rq = pdu.decode_associate_rq(_body(_rq([(1, CT, [odd]), (3, MR, [J2K])])))
    encoded = pdu.encode_associate_ac(
        rq, [ContextResult(1, 0, odd), ContextResult(3, 3, J2K)], max_pdu_length=16384
    )
    contexts = [v for t, v in _items(_body(encoded)) if t == 0x21]
    sub = _items(contexts[0], 4)
    assert sub == [(0x40, odd.encode())]
    user = next(v for t, v in _items(_body(encoded)) if t == 0x50)
    impl = next(v for t, v in _items(user, 0) if t == 0x52)
    assert impl == pdu.IMPLEMENTATION_CLASS_UID.encode()
    theirs = A_ASSOCIATE_AC()
    theirs.decode(encoded)
    results = {
        c.context_id: (c.result, str(c.transfer_syntax)) for c in theirs.presentation_context
    }
    assert results[1] == (0, odd)
    assert results[3][0] == 3
    assert theirs.to_primitive().maximum_length_received == 16384
    # The AE title fields echo the request's bytes.
    assert _body(encoded)[4:36] == _body(_rq([(1, CT, [odd])]))[4:36]


def test_trailing_nul_or_space_after_a_uid_is_tolerated_and_noted() -> None:
    body = bytearray(_body(_rq([(1, CT, [ELE])])))
    # Pad the abstract syntax with a NUL and the transfer syntax with a space, as some
    # peers do, fixing up the item lengths.
    padded = (
        bytes(body[:68])
        + struct.pack(">BxH", 0x10, len(APP_CONTEXT) + 1)
        + APP_CONTEXT.encode()
        + b"\x00"
    )
    ctx = (
        b"\x01\x00\x00\x00"
        + struct.pack(">BxH", 0x30, len(CT) + 1)
        + CT.encode()
        + b"\x00"
        + struct.pack(">BxH", 0x40, len(ELE) + 1)
        + ELE.encode()
        + b" "
    )
    padded += struct.pack(">BxH", 0x20, len(ctx)) + ctx
    decoded = pdu.decode_associate_rq(padded)
    assert decoded.application_context == APP_CONTEXT
    assert decoded.contexts == (ContextProposal(1, CT, (ELE,)),)
    assert any("padded with a NUL" in note for note in decoded.anomalies), decoded.anomalies
    assert any("padded with a space" in note for note in decoded.anomalies), decoded.anomalies


def test_a_nul_padded_accepted_syntax_from_a_peer_is_read_without_the_nul() -> None:
    body = bytearray(_body(_pynetdicom_ac([(1, CT, ELE, 0)], 16384)))
    index = body.index(ELE.encode())
    padded = body[: index - 4] + struct.pack(">BxH", 0x40, len(ELE) + 1) + ELE.encode() + b"\x00"
    rest = body[index + len(ELE) :]
    # fix the presentation context item's length (it grew by one)
    start = body.index(b"\x21\x00")
    fixed = padded + rest
    item_length = struct.unpack_from(">H", fixed, start + 2)[0]
    struct.pack_into(">H", fixed, start + 2, item_length + 1)
    accept = pdu.decode_associate_ac(bytes(fixed))
    assert accept.context(1) == ContextResult(1, 0, ELE)
    assert accept.anomalies


def test_duplicate_even_and_too_many_context_ids_are_noted() -> None:
    many = [(2 * i + 1, CT, [ELE]) for i in range(128)]
    body = _body(_rq(many))
    extra = b"\x01\x00\x00\x00" + struct.pack(">BxH", 0x30, len(MR)) + MR.encode()
    extra += struct.pack(">BxH", 0x40, len(ELE)) + ELE.encode()
    even = b"\x02" + extra[1:]
    decoded = pdu.decode_associate_rq(
        body
        + struct.pack(">BxH", 0x20, len(extra))
        + extra
        + struct.pack(">BxH", 0x20, len(even))
        + even
    )
    assert len(decoded.contexts) == 130
    notes = " | ".join(decoded.anomalies)
    assert "presentation context ID 1 is proposed twice" in notes
    assert "presentation context ID 2 is not an odd number" in notes
    assert "130 presentation contexts proposed; the standard allows 128" in notes


def test_non_ascii_bytes_in_a_uid_stay_visible_and_are_noted() -> None:
    body = _body(_rq([(1, CT, [ELE])]))
    mangled = body.replace(ELE.encode(), b"1.2.840.10008.1.2.\xc1")
    decoded = pdu.decode_associate_rq(mangled)
    (context,) = decoded.contexts
    assert context.transfer_syntaxes == ("1.2.840.10008.1.2.\\xc1",)
    assert any("not a valid UID" in note for note in decoded.anomalies)


def test_associate_rq_from_pynetdicom_decodes() -> None:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APP_CONTEXT
    primitive.calling_ae_title = "THEIR-SCU"
    primitive.called_ae_title = "OUR-SCP"
    contexts = []
    for context_id, abstract, syntaxes in [(1, CT, [J2K, ELE]), (3, MR, [ILE])]:
        context = PresentationContext()
        context.context_id = context_id
        context.abstract_syntax = abstract
        for syntax in syntaxes:
            context.add_transfer_syntax(syntax)
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = 28672
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.3.4.5"
    primitive.user_information = [length, impl]
    theirs = A_ASSOCIATE_RQ()
    theirs.from_primitive(primitive)
    decoded = pdu.decode_associate_rq(_body(bytes(theirs.encode())))
    assert (decoded.calling_ae_title, decoded.called_ae_title) == ("THEIR-SCU", "OUR-SCP")
    assert decoded.contexts == (
        ContextProposal(1, CT, (J2K, ELE)),
        ContextProposal(3, MR, (ILE,)),
    )
    assert decoded.max_pdu_length == 28672
    assert decoded.implementation_class_uid == "1.2.3.4.5"
    assert decoded.anomalies == ()


@pytest.mark.parametrize(
    ("kind", "primary", "secondary", "positive"),
    [
        (1, b"alice", b"", False),
        (2, b"alice", b"s3cret", True),
        (3, b"\x01\x02kerberos-ticket", b"", True),
        (5, b"eyJhbGciOi.jwt.sig", b"", False),
    ],
)
def test_user_identity_round_trips_through_pynetdicom(
    kind: int, primary: bytes, secondary: bytes, positive: bool
) -> None:
    identity = UserIdentity(kind, primary, secondary, positive)
    encoded = _rq([(1, CT, [ELE])], user_identity=identity)
    theirs = A_ASSOCIATE_RQ()
    theirs.decode(encoded)
    (item,) = [
        i
        for i in theirs.to_primitive().user_information
        if type(i).__name__ == "UserIdentityNegotiation"
    ]
    assert item.user_identity_type == kind
    assert item.primary_field == primary
    assert (item.secondary_field or b"") == secondary
    assert bool(item.positive_response_requested) is positive
    assert pdu.decode_associate_rq(_body(encoded)).user_identity == identity
    if secondary:
        assert secondary.decode() not in repr(identity)


def test_user_identity_server_response_in_an_ac() -> None:
    rq = pdu.decode_associate_rq(_body(_rq([(1, CT, [ELE])])))
    encoded = pdu.encode_associate_ac(
        rq, [ContextResult(1, 0, ELE)], max_pdu_length=0, user_identity_response=b"granted"
    )
    theirs = A_ASSOCIATE_AC()
    theirs.decode(encoded)
    (item,) = [
        i
        for i in theirs.to_primitive().user_information
        if type(i).__name__ == "UserIdentityNegotiation"
    ]
    assert item.server_response == b"granted"
    assert pdu.decode_associate_ac(_body(encoded)).user_identity_response == b"granted"


def test_encode_p_data_fragments_to_the_peer_maximum_with_even_sizes() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    encoded = pdu.encode_p_data(3, data, command=False, max_pdu_length=4097)
    pieces, offset = [], 0
    while offset < len(encoded):
        pdu_type, length = struct.unpack_from(">BxL", encoded, offset)
        assert pdu_type == 0x04 and length <= 4097
        (pdv,) = list(pdu.iter_pdvs(encoded[offset + 6 : offset + 6 + length]))
        pieces.append(pdv)
        offset += 6 + length
    assert b"".join(bytes(p[3]) for p in pieces) == data
    assert all(len(p[3]) % 2 == 0 for p in pieces)
    assert [p[2] for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pdu.max_pdv_data(16383) == 16376 and pdu.max_pdv_data(16384) == 16378


def test_response_command_echoes_raw_uid_bytes_and_pads_text_with_a_space() -> None:
    encoded = dimse.encode_store_rsp(
        9, 0xA700, sop_class_uid=CT, sop_instance_uid=b"1.2.\xc1", error_comment="full"
    )
    ds = _read_command(encoded)
    assert ds.Status == 0xA700
    assert ds.ErrorComment == "full"
    command = dimse.decode_command(encoded)
    assert command.elements[0x1000] == b"1.2.\xc1\x00"
    assert command.affected_sop_instance_uid == "1.2.\\xc1"
