"""Upper-layer PDUs and DIMSE command sets, encoded and decoded by hand (sans-IO).

The mock controls its own socket (see :mod:`mock_scp.server`), so it needs exact,
cheap codecs rather than pynetdicom's reactor: an A-ASSOCIATE-RQ decoder, encoders
for A-ASSOCIATE-AC/RJ, A-ABORT, A-RELEASE-RP and P-DATA-TF, and an Implicit VR
Little Endian codec for command sets (PS3.7 6.3.1, always implicit VR LE). Datasets
are never decoded here; :func:`sniff_dataset` only peeks at the first elements.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "PDU_ABORT",
    "PDU_ASSOCIATE_AC",
    "PDU_ASSOCIATE_RJ",
    "PDU_ASSOCIATE_RQ",
    "PDU_DATA",
    "PDU_RELEASE_RP",
    "PDU_RELEASE_RQ",
    "AssociateRequest",
    "ProposedContext",
    "WireError",
    "decode_associate_rq",
    "decode_command",
    "encode_abort",
    "encode_associate_ac",
    "encode_associate_rj",
    "encode_command",
    "encode_p_data",
    "encode_release_rp",
    "sniff_dataset",
]

PDU_ASSOCIATE_RQ = 0x01
PDU_ASSOCIATE_AC = 0x02
PDU_ASSOCIATE_RJ = 0x03
PDU_DATA = 0x04
PDU_RELEASE_RQ = 0x05
PDU_RELEASE_RP = 0x06
PDU_ABORT = 0x07

APPLICATION_CONTEXT_BYTES = b"1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1473.1.1"
IMPLEMENTATION_VERSION_NAME = "SCUKIT_MOCK_01"

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HDR = struct.Struct(">BxI")
_ITEM = struct.Struct(">BxH")
_PDV = struct.Struct(">IBB")
_ELEM = struct.Struct("<HHI")


class WireError(Exception):
    """The peer sent bytes that do not decode as the PDU or command set they claim to be."""


@dataclass(frozen=True)
class ProposedContext:
    """One presentation context of an A-ASSOCIATE-RQ."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class AssociateRequest:
    """The parts of an A-ASSOCIATE-RQ the mock uses."""

    protocol_version: int
    called_ae_title: str
    calling_ae_title: str
    application_context: str
    contexts: tuple[ProposedContext, ...]
    max_pdu_length: int  # 0: no limit, or no User Information item sent
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    extra_user_items: tuple[int, ...] = field(default=())


def _uid(raw: bytes | memoryview) -> str:
    return bytes(raw).rstrip(b"\x00 ").decode("ascii", "replace")


def _ae(raw: bytes | memoryview) -> str:
    return bytes(raw).decode("ascii", "replace").strip(" \x00")


def decode_associate_rq(body: bytes | memoryview) -> AssociateRequest:
    """Decode the body (after the 6-byte header) of an A-ASSOCIATE-RQ."""
    b = bytes(body)
    if len(b) < 68:
        raise WireError(f"A-ASSOCIATE-RQ too short: {len(b)} bytes")
    version = _U16.unpack_from(b, 0)[0]
    called, calling = _ae(b[4:20]), _ae(b[20:36])
    app_ctx = ""
    contexts: list[ProposedContext] = []
    max_pdu = 0
    impl_uid = impl_name = ""
    extra: list[int] = []
    pos = 68
    while pos < len(b):
        if pos + 4 > len(b):
            raise WireError("A-ASSOCIATE-RQ item header truncated")
        item_type, length = _ITEM.unpack_from(b, pos)
        value = b[pos + 4 : pos + 4 + length]
        if len(value) != length:
            raise WireError(f"A-ASSOCIATE-RQ item {item_type:#x} truncated")
        pos += 4 + length
        if item_type == 0x10:
            app_ctx = _uid(value)
        elif item_type == 0x20:
            contexts.append(_decode_context(value))
        elif item_type == 0x50:
            sub = 0
            while sub + 4 <= len(value):
                sub_type, sub_len = _ITEM.unpack_from(value, sub)
                sv = value[sub + 4 : sub + 4 + sub_len]
                sub += 4 + sub_len
                if sub_type == 0x51 and len(sv) >= 4:
                    max_pdu = _U32.unpack_from(sv, 0)[0]
                elif sub_type == 0x52:
                    impl_uid = _uid(sv)
                elif sub_type == 0x55:
                    impl_name = _ae(sv)
                else:
                    extra.append(sub_type)
    return AssociateRequest(
        protocol_version=version,
        called_ae_title=called,
        calling_ae_title=calling,
        application_context=app_ctx,
        contexts=tuple(contexts),
        max_pdu_length=max_pdu,
        implementation_class_uid=impl_uid,
        implementation_version_name=impl_name,
        extra_user_items=tuple(extra),
    )


def _decode_context(value: bytes) -> ProposedContext:
    if len(value) < 4:
        raise WireError("presentation context item truncated")
    context_id = value[0]
    abstract = ""
    syntaxes: list[str] = []
    pos = 4
    while pos + 4 <= len(value):
        sub_type, sub_len = _ITEM.unpack_from(value, pos)
        sv = value[pos + 4 : pos + 4 + sub_len]
        pos += 4 + sub_len
        if sub_type == 0x30:
            abstract = _uid(sv)
        elif sub_type == 0x40:
            syntaxes.append(_uid(sv))
    return ProposedContext(context_id, abstract, tuple(syntaxes))


def _pad_uid(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _item(item_type: int, value: bytes) -> bytes:
    return _ITEM.pack(item_type, len(value)) + value


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return _HDR.pack(pdu_type, len(body)) + body


def encode_associate_ac(
    request: AssociateRequest,
    results: list[tuple[int, int, str]],
    max_pdu_length: int,
) -> bytes:
    """An A-ASSOCIATE-AC answering ``request``; ``results`` holds, per proposed
    context, ``(context_id, result, transfer_syntax)`` (result 0 = acceptance)."""
    items = [_item(0x10, APPLICATION_CONTEXT_BYTES)]
    for context_id, result, syntax in results:
        # A refused context still carries a transfer-syntax sub-item (value ignored).
        sub = _item(0x40, syntax.encode("ascii") if syntax else b"")
        items.append(_item(0x21, bytes((context_id, 0, result, 0)) + sub))
    user = (
        _item(0x51, _U32.pack(max_pdu_length))
        + _item(0x52, IMPLEMENTATION_CLASS_UID.encode("ascii"))
        + _item(0x55, IMPLEMENTATION_VERSION_NAME.encode("ascii"))
    )
    items.append(_item(0x50, user))
    fixed = (
        _U16.pack(1)
        + b"\x00\x00"
        + request.called_ae_title.encode("ascii", "replace").ljust(16)[:16]
        + request.calling_ae_title.encode("ascii", "replace").ljust(16)[:16]
        + b"\x00" * 32
    )
    return _pdu(PDU_ASSOCIATE_AC, fixed + b"".join(items))


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ."""
    return _pdu(PDU_ASSOCIATE_RJ, bytes((0, result, source, reason)))


def encode_abort(source: int = 2, reason: int = 0) -> bytes:
    """An A-ABORT; source 0 = service user, 2 = service provider."""
    return _pdu(PDU_ABORT, bytes((0, 0, source, reason)))


def encode_release_rp() -> bytes:
    """An A-RELEASE-RP."""
    return _pdu(PDU_RELEASE_RP, b"\x00\x00\x00\x00")


def encode_p_data(context_id: int, data: bytes, *, command: bool, max_pdu_length: int) -> bytes:
    """One or more P-DATA-TF PDUs carrying ``data`` as fragments no larger than the
    peer's maximum (0 = no limit); the last fragment has its "last" bit set."""
    flags = 0x01 if command else 0x00
    # PDV item: 4-byte length + context id + control header; max applies to the PDU body.
    room = len(data) if max_pdu_length == 0 else max(1, max_pdu_length - 6)
    out = bytearray()
    pos = 0
    while True:
        chunk = data[pos : pos + room]
        pos += len(chunk)
        last = pos >= len(data)
        header = flags | (0x02 if last else 0x00)
        pdv = _PDV.pack(len(chunk) + 2, context_id, header) + chunk
        out += _HDR.pack(PDU_DATA, len(pdv)) + pdv
        if last:
            return bytes(out)


# --- command sets (implicit VR little endian) --------------------------------------

# Tags whose value is text (UI, AE, LO); others are US/UL integers by length.
_TEXT_TAGS = frozenset({0x0002, 0x0003, 0x1000, 0x1001, 0x1030, 0x0902, 0x0901})
_US = struct.Struct("<H")
_UL = struct.Struct("<I")


def decode_command(raw: bytes | bytearray | memoryview) -> dict[int, int | str | bytes]:
    """Elements of a command set keyed by element number (group 0000): integers for
    US/UL values, ``str`` for UID/text values, raw bytes for anything else."""
    out: dict[int, int | str | bytes] = {}
    mv = memoryview(raw)
    pos, end = 0, len(mv)
    while pos + 8 <= end:
        group, elem, length = _ELEM.unpack_from(mv, pos)
        pos += 8
        if group != 0 or length == 0xFFFFFFFF or pos + length > end:
            raise WireError(f"malformed command set at offset {pos - 8}")
        value = mv[pos : pos + length]
        pos += length
        if elem in _TEXT_TAGS:
            out[elem] = bytes(value).rstrip(b"\x00 ").decode("ascii", "replace")
        elif length == 2:
            out[elem] = _US.unpack(value)[0]
        elif length == 4:
            out[elem] = _UL.unpack(value)[0]
        else:
            out[elem] = bytes(value)
    if pos != end:
        raise WireError("command set has trailing bytes")
    return out


def encode_command(elements: list[tuple[int, int | str]]) -> bytes:
    """A command set from ``(element, value)`` pairs in ascending order: ints are US,
    strings are UIDs (NUL-padded) or text (space-padded, for Error Comment)."""
    body = bytearray()
    for elem, value in elements:
        if isinstance(value, int):
            raw = _US.pack(value)
        elif elem in (0x0902, 0x0901):
            raw = value.encode("ascii", "replace")
            raw = raw + b" " if len(raw) % 2 else raw
        else:
            raw = _pad_uid(value)
        body += _ELEM.pack(0, elem, len(raw)) + raw
    return _ELEM.pack(0, 0, 4) + _UL.pack(len(body)) + bytes(body)


# --- dataset sniffing --------------------------------------------------------------

_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    b"UL UN UR US UT UV".split()
)
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ UC UN UR UT SV UV".split())


def sniff_dataset(data: bytes | bytearray, transfer_syntax: str) -> tuple[str | None, str | None]:
    """Cheap checks on a received dataset: ``(problem, sop_instance_uid)``.

    ``problem`` says why the first element cannot be in ``transfer_syntax`` (explicit
    vs implicit VR, byte order) or is ``None``. ``sop_instance_uid`` is (0008,0018)
    when it could be found by walking the leading elements without decoding; ``None``
    means "not found cheaply" (the caller may decode the dataset later).
    """
    if len(data) < 8:
        return (None, None) if not data else ("dataset shorter than one element", None)
    if transfer_syntax == "1.2.840.10008.1.2.1.99":
        return None, None  # deflated: checked on decode
    big_endian = transfer_syntax == "1.2.840.10008.1.2.2"
    explicit = transfer_syntax != "1.2.840.10008.1.2"
    group_le = data[0] | (data[1] << 8)
    group_be = (data[0] << 8) | data[1]
    if big_endian and group_le < group_be and group_be > 0xFF:
        return "dataset is little endian, but Explicit VR Big Endian was accepted", None
    if not big_endian and group_be < group_le and group_le > 0xFF and group_be <= 0xFF:
        return f"dataset is big endian, but {transfer_syntax} was accepted", None
    looks_explicit = bytes(data[4:6]) in _VRS
    if explicit and not looks_explicit:
        return f"dataset is implicit VR, but explicit VR {transfer_syntax} was accepted", None
    if not explicit and looks_explicit and _implicit_length_absurd(data):
        return "dataset is explicit VR, but Implicit VR Little Endian was accepted", None
    if big_endian:
        return None, None
    return None, _find_instance_uid(data, explicit)


def _implicit_length_absurd(data: bytes | bytearray) -> bool:
    # In implicit VR the bytes 4-8 are a length; when they spell a VR they make a
    # huge length that cannot fit in the dataset, which settles the question.
    length: int = _UL.unpack_from(data, 4)[0]
    return length != 0xFFFFFFFF and length > len(data) - 8


def _find_instance_uid(data: bytes | bytearray, explicit: bool) -> str | None:
    pos, end = 0, len(data)
    for _ in range(64):  # leading elements only; give up rather than walk the dataset
        if pos + 8 > end:
            return None
        group, elem = struct.unpack_from("<HH", data, pos)
        if explicit:
            vr = bytes(data[pos + 4 : pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    return None
                length = _UL.unpack_from(data, pos + 8)[0]
                header = 12
            else:
                length = _US.unpack_from(data, pos + 6)[0]
                header = 8
        else:
            length = _UL.unpack_from(data, pos + 4)[0]
            header = 8
        if length == 0xFFFFFFFF:
            return None
        if (group, elem) == (0x0008, 0x0018):
            value = data[pos + header : pos + header + length]
            return bytes(value).rstrip(b"\x00 ").decode("ascii", "replace")
        if (group, elem) > (0x0008, 0x0018):
            return ""  # walked past it: the dataset has no SOP Instance UID
        pos += header + length
    return None
