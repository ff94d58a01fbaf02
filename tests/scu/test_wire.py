"""Unit tests of scu.wire, cross-checked against independent codecs: pynetdicom's PDU
classes for the Upper Layer and pydicom's Implicit VR reader/writer for command sets."""

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

from scu import wire
from scu.errors import ProtocolError

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ELE, ILE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
J2K = "1.2.840.10008.1.2.4.90"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"


def _body(pdu: bytes) -> bytes:
    """The variable part of an encoded PDU, after checking its header's length."""
    _pdu_type, length = wire.parse_pdu_header(pdu[:6])
    assert length == len(pdu) - 6
    return pdu[6:]


# --- A-ASSOCIATE-RQ ---------------------------------------------------------------------


@pytest.mark.parametrize("max_pdu", [0, 4096, 16384, 131072])
@pytest.mark.parametrize(
    ("calling", "called"), [("STORE-SCU", "ANY-SCP"), ("A", "ABCDEFGHIJKLMNOP"), ("MY AE", "X")]
)
def test_associate_rq_decodes_with_pynetdicom(calling: str, called: str, max_pdu: int) -> None:
    contexts = [(1, CT, [J2K]), (3, CT, [ELE, ILE]), (255, MR, [ILE])]
    encoded = wire.encode_associate_rq(
        calling_ae_title=calling, called_ae_title=called, contexts=contexts, max_pdu_length=max_pdu
    )
    assert encoded[0] == 0x01
    _body(encoded)
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(encoded)
    assert pdu.protocol_version == 1
    assert pdu.calling_ae_title == calling
    assert pdu.called_ae_title == called
    assert pdu.application_context_name == APP_CONTEXT
    assert [
        (c.context_id, c.abstract_syntax, c.transfer_syntax) for c in pdu.presentation_context
    ] == [(cid, abstract, syntaxes) for cid, abstract, syntaxes in contexts]
    primitive = pdu.to_primitive()
    assert primitive.maximum_length_received == max_pdu
    assert primitive.implementation_class_uid == wire.IMPLEMENTATION_CLASS_UID
    versions = [
        item.implementation_version_name
        for item in primitive.user_information
        if isinstance(item, ImplementationVersionNameNotification)
    ]
    assert versions == [wire.IMPLEMENTATION_VERSION]
    # Re-encoding what pynetdicom understood gives back our bytes exactly.
    assert pdu.encode() == encoded


def test_associate_rq_pads_ae_titles_with_spaces_to_16_bytes() -> None:
    encoded = wire.encode_associate_rq(
        calling_ae_title="ME", called_ae_title="YOU", contexts=[(1, CT, [ELE])], max_pdu_length=0
    )
    assert encoded[6:8] == b"\x00\x01"  # protocol version
    assert encoded[10:26] == b"YOU" + b" " * 13  # called first (PS3.8 table 9-11)
    assert encoded[26:42] == b"ME" + b" " * 14
    assert encoded[42:74] == bytes(32)


@pytest.mark.parametrize("context_id", [0, 2, 256, -1])
def test_associate_rq_rejects_invalid_context_ids(context_id: int) -> None:
    with pytest.raises(ValueError, match=r"presentation context ID must be odd 1\.\.255"):
        wire.encode_associate_rq(
            calling_ae_title="A",
            called_ae_title="B",
            contexts=[(context_id, CT, [ELE])],
            max_pdu_length=16384,
        )


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
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


@pytest.mark.parametrize("max_pdu", [0, 4096, 28672, 131072])
def test_associate_ac_from_pynetdicom_decodes(max_pdu: int) -> None:
    encoded = _pynetdicom_ac(
        [(1, CT, J2K, 0), (3, CT, ELE, 0), (5, MR, ILE, 3), (7, MR, ELE, 4)], max_pdu
    )
    pdu_type, _ = wire.parse_pdu_header(encoded[:6])
    assert pdu_type == wire.PduType.ASSOCIATE_AC
    accept = wire.decode_associate_ac(_body(encoded))
    assert accept.called_ae_title == "PACS"
    assert accept.calling_ae_title == "STORE-SCU"
    assert accept.max_pdu_length == max_pdu
    assert accept.implementation_class_uid == "1.2.3.4.5"
    assert accept.implementation_version == "PEER_1"
    assert sorted(accept.contexts) == [1, 3, 5, 7]
    assert accept.contexts[1] == wire.ContextResult(1, 0, J2K)
    assert accept.contexts[3].accepted and accept.contexts[3].transfer_syntax == ELE
    assert accept.contexts[5].result == 3 and not accept.contexts[5].accepted
    assert accept.contexts[7].result == 4 and not accept.contexts[7].accepted


def test_associate_ac_too_short_or_with_overrunning_items_is_a_protocol_error() -> None:
    body = _body(_pynetdicom_ac([(1, CT, ELE, 0)], 16384))
    with pytest.raises(ProtocolError, match="too short"):
        wire.decode_associate_ac(body[:67])
    with pytest.raises(ProtocolError, match=r"runs past the end|truncated item"):
        wire.decode_associate_ac(body[:-3])
    # A presentation context item with a length shorter than its fixed part.
    broken = body[:68] + struct.pack(">BxH", 0x21, 2) + b"\x01\x00"
    with pytest.raises(ProtocolError, match="truncated presentation context item"):
        wire.decode_associate_ac(broken)


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
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(primitive)
    encoded = bytes(pdu.encode())
    pdu_type, _ = wire.parse_pdu_header(encoded[:6])
    assert pdu_type == wire.PduType.ASSOCIATE_RJ
    assert wire.decode_associate_rj(_body(encoded)) == (result, source, reason)
    text = wire.describe_rejection(result, source, reason)
    assert text.startswith(words)
    assert ("rejected-permanent" if result == 1 else "rejected-transient") in text


def test_describe_rejection_unknown_numbers_stay_readable() -> None:
    assert wire.describe_rejection(9, 8, 7) == "reason 7 (result 9, source: source 8)"


@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 0), (2, 1), (2, 2), (2, 6)])
def test_abort_from_pynetdicom_decodes(source: int, reason: int) -> None:
    pdu = A_ABORT_RQ()
    if source == 0:
        user = A_ABORT()
        user.abort_source = source
        pdu.from_primitive(user)
    else:
        provider = A_P_ABORT()
        provider.provider_reason = reason
        pdu.from_primitive(provider)
    encoded = bytes(pdu.encode())
    assert wire.parse_pdu_header(encoded[:6]) == (wire.PduType.ABORT, 4)
    assert wire.decode_abort(_body(encoded)) == (source, reason)


def test_describe_abort() -> None:
    assert wire.describe_abort(0, 0) == "source: service user"
    assert wire.describe_abort(2, 1) == "source: service provider, reason: unrecognised PDU"
    assert wire.describe_abort(2, 99) == "source: service provider, reason: 99"


def test_our_abort_and_release_decode_with_pynetdicom() -> None:
    abort = A_ABORT_RQ()
    abort.decode(wire.encode_abort(2, 6))
    assert (abort.source, abort.reason_diagnostic) == (2, 6)
    assert wire.encode_abort() == b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    release_rq = A_RELEASE_RQ()
    release_rq.decode(wire.encode_release_rq())
    assert release_rq.encode() == wire.encode_release_rq()
    release_rp = A_RELEASE_RP()
    release_rp.decode(wire.encode_release_rp())
    assert release_rp.encode() == wire.encode_release_rp()
    assert wire.parse_pdu_header(wire.encode_release_rp()[:6]) == (wire.PduType.RELEASE_RP, 4)


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x10, 0xFF])
def test_unknown_pdu_type_is_a_protocol_error(pdu_type: int) -> None:
    with pytest.raises(ProtocolError, match=f"unrecognised PDU type 0x{pdu_type:02X}"):
        wire.parse_pdu_header(bytes((pdu_type, 0, 0, 0, 0, 4)))


@pytest.mark.parametrize(
    ("decoder", "name"),
    [(wire.decode_associate_rj, "A-ASSOCIATE-RJ"), (wire.decode_abort, "A-ABORT")],
)
def test_short_reject_and_abort_bodies_are_protocol_errors(decoder: object, name: str) -> None:
    with pytest.raises(ProtocolError, match=f"{name} too short"):
        decoder(b"\x00\x01\x01")  # type: ignore[operator]


# --- P-DATA-TF ------------------------------------------------------------------------


def test_pdata_header_layout() -> None:
    header = wire.pdata_header(5, 1000, command=True, last=False)
    assert header == b"\x04\x00" + struct.pack(">L", 1006) + struct.pack(">L", 1002) + b"\x05\x01"
    assert wire.pdata_header(7, 0, command=False, last=True)[-2:] == b"\x07\x02"
    assert wire.pdata_header(7, 0, command=True, last=True)[-1] == 0x03
    assert wire.pdata_header(7, 0, command=False, last=False)[-1] == 0x00


@pytest.mark.parametrize(("command", "last"), [(True, True), (False, False), (False, True)])
def test_pdata_header_decodes_with_pynetdicom(command: bool, last: bool) -> None:
    data = bytes(range(256)) * 3
    encoded = wire.pdata_header(3, len(data), command=command, last=last) + data
    pdu = P_DATA_TF()
    pdu.decode(encoded)
    (item,) = pdu.presentation_data_value_items
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
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    encoded = bytes(pdu.encode())
    pdvs = [
        (cid, cmd, last, bytes(data)) for cid, cmd, last, data in wire.iter_pdvs(_body(encoded))
    ]
    assert pdvs == [
        (1, True, True, b"command"),
        (1, False, False, b"data-1"),
        (3, False, True, b"data-2!"),
        (5, True, False, b""),
    ]


def test_iter_pdvs_empty_body_yields_nothing() -> None:
    assert list(wire.iter_pdvs(b"")) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"\x00\x00\x00\x02\x01", "truncated PDV item"),
        (b"\x00\x00\x00\x01\x01\x03", "PDV item length 1 is invalid"),
        (b"\x00\x00\x00\x00\x01\x03", "PDV item length 0 is invalid"),
        (b"\x00\x00\x00\x09\x01\x03abc", "PDV item length 9 is invalid"),
        (b"\x00\x00\x00\x03\x01\x03a" + b"\x00\x00\x00\x05\x01\x03a", "PDV item length 5"),
        (b"\x00\x00\x00\x03\x01\x03a\x00\x00", "truncated PDV item"),
    ],
)
def test_iter_pdvs_rejects_bad_lengths(body: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        list(wire.iter_pdvs(body))


# --- DIMSE command sets -------------------------------------------------------------------


def _read_command(data: bytes) -> Dataset:
    return read_dataset(BytesIO(data), is_implicit_VR=True, is_little_endian=True)


def test_store_rq_decodes_with_pydicom() -> None:
    instance = "1.2.826.0.1.3680043.8.498.1"  # odd length: padded with a NUL
    encoded = wire.encode_store_rq(7, CT, instance, priority=2)
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
    command = wire.decode_command(encoded)
    assert command.command_field == 0x0001
    assert command.affected_sop_instance_uid == instance
    assert command.has_dataset


@pytest.mark.parametrize("message_id", [1, 0xFFFF])
def test_echo_rq_decodes_with_pydicom(message_id: int) -> None:
    encoded = wire.encode_echo_rq(message_id)
    ds = _read_command(encoded)
    assert ds.CommandGroupLength == len(encoded) - 12
    assert ds.AffectedSOPClassUID == "1.2.840.10008.1.1"
    assert ds.CommandField == 0x0030
    assert ds.MessageID == message_id
    assert ds.CommandDataSetType == 0x0101  # no data set
    assert not wire.decode_command(encoded).has_dataset


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
    command = wire.decode_command(_pydicom_command(**values))
    assert command.command_field == 0x8001
    assert command.message_id_responded == 42
    assert command.status == status
    assert command.error_comment == (comment.strip() if comment else None)
    assert command.affected_sop_instance_uid == "1.2.3.4.5"
    assert not command.has_dataset


def test_command_without_optional_fields() -> None:
    command = wire.decode_command(_pydicom_command(CommandField=0x8030))
    assert command == wire.Command(0x8030, None, None, None, None, has_dataset=False)


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
def test_malformed_command_sets_raise_protocol_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        wire.decode_command(data)


def test_command_truncated_anywhere_never_escapes_as_another_error() -> None:
    encoded = _pydicom_command(
        CommandField=0x8001, MessageIDBeingRespondedTo=1, Status=0xA700, ErrorComment="full"
    )
    for cut in range(len(encoded)):
        try:
            wire.decode_command(encoded[:cut])
        except ProtocolError:
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
    encoded = wire.encode_associate_rq(
        calling_ae_title=calling, called_ae_title=called, contexts=numbered, max_pdu_length=max_pdu
    )
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(encoded)
    assert (pdu.calling_ae_title, pdu.called_ae_title) == (calling, called)
    assert [
        (c.context_id, c.abstract_syntax, c.transfer_syntax) for c in pdu.presentation_context
    ] == numbered
    assert pdu.to_primitive().maximum_length_received == max_pdu
