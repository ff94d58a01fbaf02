"""DIMSE command sets (PS3.7 section 9 and annex E), encoded and decoded in one place.

A command set is always Implicit VR Little Endian (PS3.7 6.3.1): group 0000 elements,
the first being Command Group Length. UIDs are padded to even length with a NUL, text
(Error Comment) with a space, as PS3.5 requires of values in a data set. Decoding is
tolerant of trailing padding and keeps a non-ASCII byte visible (``\\xNN``) for the
caller to judge; a structurally broken command set raises :class:`CommandError`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from scu.protocol.uids import VERIFICATION_SOP_CLASS

__all__ = [
    "C_CANCEL_RQ",
    "C_ECHO_RQ",
    "C_ECHO_RSP",
    "C_STORE_RQ",
    "C_STORE_RSP",
    "NO_DATASET",
    "Command",
    "CommandError",
    "command_name",
    "decode_command",
    "encode_command",
    "encode_echo_rq",
    "encode_echo_rsp",
    "encode_response",
    "encode_store_rq",
    "encode_store_rsp",
]

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
#: Command Data Set Type value meaning "no data set follows".
NO_DATASET = 0x0101

_COMMAND_NAMES = MappingProxyType(
    {
        0x0001: "C-STORE-RQ",
        0x8001: "C-STORE-RSP",
        0x0010: "C-GET-RQ",
        0x8010: "C-GET-RSP",
        0x0020: "C-FIND-RQ",
        0x8020: "C-FIND-RSP",
        0x0021: "C-MOVE-RQ",
        0x8021: "C-MOVE-RSP",
        0x0030: "C-ECHO-RQ",
        0x8030: "C-ECHO-RSP",
        0x0FFF: "C-CANCEL-RQ",
    }
)


def command_name(command_field: int) -> str:
    return _COMMAND_NAMES.get(command_field, f"command 0x{command_field:04X}")


class Tag:
    """Elements of group 0000 used here, by element number."""

    GROUP_LENGTH = 0x0000
    AFFECTED_SOP_CLASS_UID = 0x0002
    COMMAND_FIELD = 0x0100
    MESSAGE_ID = 0x0110
    MESSAGE_ID_RESPONDED = 0x0120
    PRIORITY = 0x0700
    DATA_SET_TYPE = 0x0800
    STATUS = 0x0900
    ERROR_COMMENT = 0x0902
    AFFECTED_SOP_INSTANCE_UID = 0x1000
    MOVE_ORIGINATOR_AE_TITLE = 0x1030
    MOVE_ORIGINATOR_MESSAGE_ID = 0x1031


#: Elements whose value is text (UI, AE, LO); the others used here are US.
_TEXT = frozenset(
    {
        Tag.AFFECTED_SOP_CLASS_UID,
        0x0003,
        Tag.ERROR_COMMENT,
        0x0901,
        Tag.AFFECTED_SOP_INSTANCE_UID,
        0x1001,
        Tag.MOVE_ORIGINATOR_AE_TITLE,
    }
)
_UID_ELEMENTS = frozenset(
    {Tag.AFFECTED_SOP_CLASS_UID, 0x0003, Tag.AFFECTED_SOP_INSTANCE_UID, 0x1001}
)
_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")
_UL = struct.Struct("<L")


class CommandError(ValueError):
    """A command set that does not decode."""


@dataclass(frozen=True)
class Command:
    """A decoded command set. ``elements`` holds every value as raw bytes; the
    properties read the ones the Storage and Verification services use."""

    elements: Mapping[int, bytes] = field(repr=False)

    def _us(self, element: int) -> int | None:
        raw = self.elements.get(element)
        return _US.unpack(raw)[0] if raw is not None and len(raw) == 2 else None

    def _text(self, element: int) -> str | None:
        raw = self.elements.get(element)
        if raw is None:
            return None
        return raw.decode("ascii", "backslashreplace").rstrip("\x00 ")

    @property
    def command_field(self) -> int | None:
        return self._us(Tag.COMMAND_FIELD)

    @property
    def message_id(self) -> int | None:
        return self._us(Tag.MESSAGE_ID)

    @property
    def message_id_responded(self) -> int | None:
        return self._us(Tag.MESSAGE_ID_RESPONDED)

    @property
    def affected_sop_class_uid(self) -> str | None:
        return self._text(Tag.AFFECTED_SOP_CLASS_UID)

    @property
    def affected_sop_instance_uid(self) -> str | None:
        return self._text(Tag.AFFECTED_SOP_INSTANCE_UID)

    @property
    def priority(self) -> int | None:
        return self._us(Tag.PRIORITY)

    @property
    def status(self) -> int | None:
        return self._us(Tag.STATUS)

    @property
    def error_comment(self) -> str | None:
        return self._text(Tag.ERROR_COMMENT)

    @property
    def move_originator_ae_title(self) -> str | None:
        text = self._text(Tag.MOVE_ORIGINATOR_AE_TITLE)
        return None if text is None else text.strip()

    @property
    def has_dataset(self) -> bool:
        """Whether a data set follows (Command Data Set Type present and not 0x0101)."""
        kind = self._us(Tag.DATA_SET_TYPE)
        return kind is not None and kind != NO_DATASET

    @property
    def name(self) -> str:
        field_ = self.command_field
        return "command without a Command Field" if field_ is None else command_name(field_)


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode a command set; raises :class:`CommandError` when it is malformed."""
    raw = bytes(data)  # one copy; the values are slices of it
    unpack = _ELEMENT.unpack_from
    values: dict[int, bytes] = {}
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 8 > end:
            raise CommandError("truncated element in DIMSE command set")
        group, element, length = unpack(raw, offset)
        offset += 8
        if group != 0x0000 or length == 0xFFFFFFFF or offset + length > end:
            raise CommandError(
                f"malformed DIMSE command set: element ({group:04X},{element:04X}) length {length}"
            )
        values[element] = raw[offset : offset + length]
        offset += length
    command = Command(MappingProxyType(values))
    if command.command_field is None:
        raise CommandError("DIMSE command set without a Command Field (0000,0100)")
    return command


def encode_command(elements: Sequence[tuple[int, int | str | bytes]]) -> bytes:
    """A command set from ``(element, value)`` pairs in ascending order: ints are US,
    strings are UIDs (NUL-padded) or text (space-padded); bytes go as they are (an
    answer echoing a peer's value exactly), padded likewise."""
    body = bytearray()
    for element, value in elements:
        if isinstance(value, int):
            raw = _US.pack(value)
        else:
            raw = value if isinstance(value, bytes) else value.encode("ascii")
            if len(raw) % 2:
                raw += b"\x00" if element in _UID_ELEMENTS else b" "
        body += _ELEMENT.pack(0x0000, element, len(raw)) + raw
    return _ELEMENT.pack(0x0000, Tag.GROUP_LENGTH, 4) + _UL.pack(len(body)) + bytes(body)


def encode_store_rq(
    message_id: int, sop_class_uid: str, sop_instance_uid: str, priority: int = 0
) -> bytes:
    """A C-STORE-RQ command set (a data set follows): what :func:`encode_command` makes
    of its six elements, put together directly (one is written per file sent)."""
    head = _store_head(sop_class_uid, C_STORE_RQ)
    instance = sop_instance_uid.encode("ascii")
    if len(instance) % 2:
        instance += b"\x00"
    body_length = len(head) + _THREE_US_ELEMENTS.size + 8 + len(instance)
    middle = _THREE_US_ELEMENTS.pack(
        0x0000, Tag.MESSAGE_ID, 2, message_id,
        0x0000, Tag.PRIORITY, 2, priority,
        0x0000, Tag.DATA_SET_TYPE, 2, 0x0000,
    )  # fmt: skip
    return b"".join(
        (
            _GROUP_LENGTH_HEAD,
            _UL.pack(body_length),
            head,
            middle,
            _ELEMENT.pack(0x0000, Tag.AFFECTED_SOP_INSTANCE_UID, len(instance)),
            instance,
        )
    )


_GROUP_LENGTH_HEAD = _ELEMENT.pack(0x0000, Tag.GROUP_LENGTH, 4)
_THREE_US_ELEMENTS = struct.Struct("<" + "HHLH" * 3)


@lru_cache(maxsize=256)
def _store_head(sop_class_uid: str | bytes, command_field: int) -> bytes:
    """Affected SOP Class UID and Command Field of a C-STORE-RQ or -RSP (the same for a
    class; the UID as text, or echoed as the peer's bytes)."""
    uid = sop_class_uid if isinstance(sop_class_uid, bytes) else sop_class_uid.encode("ascii")
    if len(uid) % 2:
        uid += b"\x00"
    return (
        _ELEMENT.pack(0x0000, Tag.AFFECTED_SOP_CLASS_UID, len(uid))
        + uid
        + _ELEMENT.pack(0x0000, Tag.COMMAND_FIELD, 2)
        + _US.pack(command_field)
    )


def encode_echo_rq(message_id: int) -> bytes:
    return encode_command(
        [
            (Tag.AFFECTED_SOP_CLASS_UID, VERIFICATION_SOP_CLASS),
            (Tag.COMMAND_FIELD, C_ECHO_RQ),
            (Tag.MESSAGE_ID, message_id),
            (Tag.DATA_SET_TYPE, NO_DATASET),
        ]
    )


def encode_response(
    command_field: int,
    message_id_responded: int,
    status: int,
    *,
    sop_class_uid: str | bytes | None = None,
    sop_instance_uid: str | bytes | None = None,
    error_comment: str | None = None,
) -> bytes:
    """A response command set without a data set."""
    elements: list[tuple[int, int | str | bytes]] = []
    if sop_class_uid:
        elements.append((Tag.AFFECTED_SOP_CLASS_UID, sop_class_uid))
    elements += [
        (Tag.COMMAND_FIELD, command_field),
        (Tag.MESSAGE_ID_RESPONDED, message_id_responded),
        (Tag.DATA_SET_TYPE, NO_DATASET),
        (Tag.STATUS, status),
    ]
    if error_comment:
        elements.append((Tag.ERROR_COMMENT, error_comment))
    if sop_instance_uid:
        elements.append((Tag.AFFECTED_SOP_INSTANCE_UID, sop_instance_uid))
    return encode_command(elements)


def encode_store_rsp(
    message_id_responded: int,
    status: int,
    *,
    sop_class_uid: str | bytes,
    sop_instance_uid: str | bytes,
    error_comment: str | None = None,
) -> bytes:
    """A C-STORE-RSP command set. Without an Error Comment (one is written per store
    answered) it is put together directly: what :func:`encode_response` makes of it."""
    if not error_comment and sop_class_uid and sop_instance_uid:
        head = _store_head(sop_class_uid, C_STORE_RSP)
        instance = (
            sop_instance_uid if isinstance(sop_instance_uid, bytes)
            else sop_instance_uid.encode("ascii")
        )  # fmt: skip
        if len(instance) % 2:
            instance += b"\x00"
        middle = _THREE_US_ELEMENTS.pack(
            0x0000, Tag.MESSAGE_ID_RESPONDED, 2, message_id_responded,
            0x0000, Tag.DATA_SET_TYPE, 2, NO_DATASET,
            0x0000, Tag.STATUS, 2, status,
        )  # fmt: skip
        tail = _ELEMENT.pack(0x0000, Tag.AFFECTED_SOP_INSTANCE_UID, len(instance))
        body_length = len(head) + len(middle) + len(tail) + len(instance)
        return b"".join((_GROUP_LENGTH_HEAD, _UL.pack(body_length), head, middle, tail, instance))
    return encode_response(
        C_STORE_RSP,
        message_id_responded,
        status,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        error_comment=error_comment,
    )


def encode_echo_rsp(message_id_responded: int, status: int = 0x0000) -> bytes:
    return encode_response(
        C_ECHO_RSP, message_id_responded, status, sop_class_uid=VERIFICATION_SOP_CLASS
    )
