"""The DICOM Upper Layer and DIMSE command encodings the SCU needs, sans-IO.

Pure functions from values to bytes and back (PS3.8 section 9 for PDUs, PS3.7 for
command sets), with no sockets and no threads, so that each one is unit-tested on its
own and cross-checked against pynetdicom's independent codec in the tests. The socket
side lives in :mod:`scu.association`.

Only what a Storage SCU uses is here: A-ASSOCIATE-RQ out, A-ASSOCIATE-AC/RJ in,
A-RELEASE, A-ABORT, P-DATA-TF both ways, C-STORE-RQ and C-ECHO-RQ out, their responses in.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from scu.errors import ProtocolError

__all__ = [
    "ABORT_REASONS",
    "ABORT_SOURCES",
    "APPLICATION_CONTEXT",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION",
    "REJECT_REASONS",
    "AssociateAccept",
    "Command",
    "ContextResult",
    "PduType",
    "decode_abort",
    "decode_associate_ac",
    "decode_associate_rj",
    "decode_command",
    "describe_abort",
    "describe_rejection",
    "encode_abort",
    "encode_associate_rq",
    "encode_echo_rq",
    "encode_release_rp",
    "encode_release_rq",
    "encode_store_rq",
    "iter_pdvs",
    "parse_pdu_header",
    "pdata_header",
    "pdu_header",
]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1399.1"
IMPLEMENTATION_VERSION = "SCUKIT_010"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


class PduType:
    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07

    NAMES: ClassVar[dict[int, str]] = {
        0x01: "A-ASSOCIATE-RQ",
        0x02: "A-ASSOCIATE-AC",
        0x03: "A-ASSOCIATE-RJ",
        0x04: "P-DATA-TF",
        0x05: "A-RELEASE-RQ",
        0x06: "A-RELEASE-RP",
        0x07: "A-ABORT",
    }


_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">BxLLBB")  # PDU type, length, PDV length, context id, control


def pdu_header(pdu_type: int, length: int) -> bytes:
    return _HEADER.pack(pdu_type, length)


def parse_pdu_header(header: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(type, length) of a 6-byte PDU header."""
    pdu_type, length = _HEADER.unpack(header)
    if pdu_type not in PduType.NAMES:
        raise ProtocolError(f"unrecognised PDU type 0x{pdu_type:02X}")
    return pdu_type, length


def pdata_header(context_id: int, length: int, *, command: bool, last: bool) -> bytes:
    """The 12 bytes before ``length`` bytes of data in a one-PDV P-DATA-TF PDU."""
    control = (0x01 if command else 0x00) | (0x02 if last else 0x00)
    return _PDV_HEADER.pack(PduType.P_DATA_TF, length + 6, length + 2, context_id, control)


# --- association negotiation -------------------------------------------------------


def _uid_bytes(uid: str) -> bytes:
    return uid.encode("ascii")


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(value)) + value


def _ae_field(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")


def encode_associate_rq(
    *,
    calling_ae_title: str,
    called_ae_title: str,
    contexts: Sequence[tuple[int, str, Sequence[str]]],
    max_pdu_length: int,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version: str = IMPLEMENTATION_VERSION,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU; ``contexts`` are ``(id, abstract syntax, transfer syntaxes)``."""
    items = [_item(0x10, _uid_bytes(APPLICATION_CONTEXT))]
    for context_id, abstract, syntaxes in contexts:
        if not 1 <= context_id <= 255 or context_id % 2 == 0:
            raise ValueError(f"presentation context ID must be odd 1..255, got {context_id}")
        sub = _item(0x30, _uid_bytes(abstract)) + b"".join(
            _item(0x40, _uid_bytes(ts)) for ts in syntaxes
        )
        items.append(_item(0x20, bytes((context_id, 0, 0, 0)) + sub))
    user = (
        _item(0x51, struct.pack(">L", max_pdu_length))
        + _item(0x52, _uid_bytes(implementation_class_uid))
        + _item(0x55, implementation_version.encode("ascii"))
    )
    items.append(_item(0x50, user))
    body = (
        struct.pack(">H2x", 1)
        + _ae_field(called_ae_title)
        + _ae_field(calling_ae_title)
        + bytes(32)
        + b"".join(items)
    )
    return pdu_header(PduType.ASSOCIATE_RQ, len(body)) + body


@dataclass(frozen=True)
class ContextResult:
    """One presentation context in an A-ASSOCIATE-AC: result 0 means accepted."""

    context_id: int
    result: int
    transfer_syntax: str | None

    @property
    def accepted(self) -> bool:
        return self.result == 0


CONTEXT_RESULTS = {
    0: "acceptance",
    1: "user rejection",
    2: "no reason (provider rejection)",
    3: "abstract syntax not supported (provider rejection)",
    4: "transfer syntaxes not supported (provider rejection)",
}


@dataclass(frozen=True)
class AssociateAccept:
    called_ae_title: str
    calling_ae_title: str
    #: The peer's Maximum Length Received; 0 means no limit.
    max_pdu_length: int
    contexts: dict[int, ContextResult] = field(default_factory=dict)
    implementation_class_uid: str | None = None
    implementation_version: str | None = None


def _iter_items(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    offset = start
    while offset < end:
        if offset + 4 > end:
            raise ProtocolError("truncated item in association PDU")
        item_type, length = struct.unpack_from(">BxH", data, offset)
        offset += 4
        if offset + length > end:
            raise ProtocolError(f"item 0x{item_type:02X} runs past the end of its PDU")
        yield item_type, data[offset : offset + length]
        offset += length


def _uid_text(value: bytes) -> str:
    return value.rstrip(b"\x00 ").decode("ascii", "replace")


def decode_associate_ac(body: bytes) -> AssociateAccept:
    """Decode the variable part (after the 6-byte header) of an A-ASSOCIATE-AC."""
    if len(body) < 68:
        raise ProtocolError(f"A-ASSOCIATE-AC too short ({len(body)} bytes)")
    called = body[4:20].decode("ascii", "replace").strip()
    calling = body[20:36].decode("ascii", "replace").strip()
    contexts: dict[int, ContextResult] = {}
    max_pdu = 0
    impl_uid: str | None = None
    impl_version: str | None = None
    for item_type, value in _iter_items(body, 68, len(body)):
        if item_type == 0x21:
            if len(value) < 4:
                raise ProtocolError("truncated presentation context item in A-ASSOCIATE-AC")
            context_id, result = value[0], value[2]
            syntax: str | None = None
            for sub_type, sub_value in _iter_items(value, 4, len(value)):
                if sub_type == 0x40:
                    syntax = _uid_text(sub_value)
            contexts[context_id] = ContextResult(context_id, result, syntax)
        elif item_type == 0x50:
            for sub_type, sub_value in _iter_items(value, 0, len(value)):
                if sub_type == 0x51 and len(sub_value) == 4:
                    (max_pdu,) = struct.unpack(">L", sub_value)
                elif sub_type == 0x52:
                    impl_uid = _uid_text(sub_value)
                elif sub_type == 0x55:
                    impl_version = sub_value.decode("ascii", "replace").strip()
    return AssociateAccept(called, calling, max_pdu, contexts, impl_uid, impl_version)


#: A-ASSOCIATE-RJ words, keyed by (source, reason) (PS3.8 table 9-21).
REJECT_REASONS: dict[tuple[int, int], str] = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 0): "reserved",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
REJECT_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCES = {
    1: "service user",
    2: "service provider (ACSE)",
    3: "service provider (presentation)",
}


def decode_associate_rj(body: bytes) -> tuple[int, int, int]:
    """(result, source, reason) of an A-ASSOCIATE-RJ body."""
    if len(body) < 4:
        raise ProtocolError(f"A-ASSOCIATE-RJ too short ({len(body)} bytes)")
    return body[1], body[2], body[3]


def describe_rejection(result: int, source: int, reason: int) -> str:
    words = REJECT_REASONS.get((source, reason), f"reason {reason}")
    return (
        f"{words} ({REJECT_RESULTS.get(result, f'result {result}')}, "
        f"source: {REJECT_SOURCES.get(source, f'source {source}')})"
    )


ABORT_SOURCES = {0: "service user", 1: "reserved", 2: "service provider"}
ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognised PDU",
    2: "unexpected PDU",
    4: "unrecognised PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


def decode_abort(body: bytes) -> tuple[int, int]:
    """(source, reason) of an A-ABORT body."""
    if len(body) < 4:
        raise ProtocolError(f"A-ABORT too short ({len(body)} bytes)")
    return body[2], body[3]


def describe_abort(source: int, reason: int) -> str:
    text = f"source: {ABORT_SOURCES.get(source, source)}"
    if source == 2:
        text += f", reason: {ABORT_REASONS.get(reason, reason)}"
    return text


def encode_abort(source: int = 0, reason: int = 0) -> bytes:
    return pdu_header(PduType.ABORT, 4) + bytes((0, 0, source, reason))


def encode_release_rq() -> bytes:
    return pdu_header(PduType.RELEASE_RQ, 4) + bytes(4)


def encode_release_rp() -> bytes:
    return pdu_header(PduType.RELEASE_RP, 4) + bytes(4)


# --- P-DATA-TF ---------------------------------------------------------------------


def iter_pdvs(body: bytes | memoryview) -> Iterator[tuple[int, bool, bool, memoryview]]:
    """(context id, is command, is last, data) for each PDV in a P-DATA-TF body."""
    view = memoryview(body)
    offset, end = 0, len(view)
    while offset < end:
        if offset + 6 > end:
            raise ProtocolError("truncated PDV item in P-DATA-TF")
        (length,) = struct.unpack_from(">L", view, offset)
        if length < 2 or offset + 4 + length > end:
            raise ProtocolError(f"PDV item length {length} is invalid for its P-DATA-TF")
        context_id, control = view[offset + 4], view[offset + 5]
        yield (
            context_id,
            bool(control & 1),
            bool(control & 2),
            view[offset + 6 : offset + 4 + length],
        )
        offset += 4 + length


# --- DIMSE command sets (always Implicit VR Little Endian, PS3.7 6.3.1) -------------

_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")


def _ui(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def _us(element: int, value: int) -> bytes:
    return _ELEMENT.pack(0x0000, element, 2) + _US.pack(value)


def _command(elements: bytes) -> bytes:
    return _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<L", len(elements)) + elements


C_STORE_RQ, C_STORE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0001, 0x8001, 0x0030, 0x8030
NO_DATASET = 0x0101


def encode_store_rq(
    message_id: int, sop_class_uid: str, sop_instance_uid: str, priority: int = 0
) -> bytes:
    """A C-STORE-RQ command set (a data set follows)."""
    return _command(
        _ui(0x0002, sop_class_uid)
        + _us(0x0100, C_STORE_RQ)
        + _us(0x0110, message_id)
        + _us(0x0700, priority)
        + _us(0x0800, 0x0000)
        + _ui(0x1000, sop_instance_uid)
    )


def encode_echo_rq(message_id: int) -> bytes:
    return _command(
        _ui(0x0002, VERIFICATION_SOP_CLASS)
        + _us(0x0100, C_ECHO_RQ)
        + _us(0x0110, message_id)
        + _us(0x0800, NO_DATASET)
    )


@dataclass(frozen=True)
class Command:
    """The fields of a DIMSE response command set the SCU acts on."""

    command_field: int
    message_id_responded: int | None
    status: int | None
    error_comment: str | None
    affected_sop_instance_uid: str | None
    has_dataset: bool


def decode_command(data: bytes | memoryview) -> Command:
    """Decode a command set; raises :class:`ProtocolError` when it is malformed."""
    view = memoryview(data)
    values: dict[int, bytes] = {}
    offset, end = 0, len(view)
    while offset < end:
        if offset + 8 > end:
            raise ProtocolError("truncated element in DIMSE command set")
        group, element, length = _ELEMENT.unpack_from(view, offset)
        offset += 8
        if group != 0x0000 or length == 0xFFFFFFFF or offset + length > end:
            raise ProtocolError(
                f"malformed DIMSE command set: element ({group:04X},{element:04X}) length {length}"
            )
        values[element] = bytes(view[offset : offset + length])
        offset += length

    def us(element: int) -> int | None:
        raw = values.get(element)
        return _US.unpack(raw)[0] if raw is not None and len(raw) == 2 else None

    def text(element: int) -> str | None:
        raw = values.get(element)
        return raw.rstrip(b"\x00 ").decode("ascii", "replace") if raw is not None else None

    command_field = us(0x0100)
    if command_field is None:
        raise ProtocolError("DIMSE command set without a Command Field (0000,0100)")
    return Command(
        command_field=command_field,
        message_id_responded=us(0x0120),
        status=us(0x0900),
        error_comment=text(0x0902),
        affected_sop_instance_uid=text(0x1000),
        has_dataset=us(0x0800) not in (None, NO_DATASET),
    )
