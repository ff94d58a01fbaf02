"""Walking a DICOM data set's element structure in its transfer syntax, without
decoding it: the checks both sides need (PS3.5 section 7).

* :func:`walk` follows every element (explicit or implicit VR, little or big endian,
  sequences and items of undefined length) to the last byte, so a truncated or corrupt
  data set is found before it is sent;
* :func:`leading_uids` reads the SOP Class and SOP Instance UIDs from the first
  elements;
* :func:`looks_explicit` and :func:`encoding_problem` tell, from the first element,
  whether bytes can be in the transfer syntax they are said to be in.

Errors are :class:`DatasetError` (:class:`Truncated` when bytes are missing), with the
element and offset in words.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

from scu.protocol.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE

__all__ = [
    "BIG",
    "LITTLE",
    "LONG_VRS",
    "VRS",
    "Buffer",
    "DatasetError",
    "Layout",
    "Truncated",
    "element_header",
    "encoding_problem",
    "leading_uids",
    "looks_explicit",
    "walk",
]

Buffer = bytes | bytearray | memoryview | mmap.mmap
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
VRS = LONG_VRS | frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
_UNDEFINED = 0xFFFFFFFF
_SOP_CLASS = (0x0008, 0x0016)
_SOP_INSTANCE = (0x0008, 0x0018)
_MAX_DEPTH = 64


class DatasetError(ValueError):
    """A data set whose structure is broken; the message says where and how."""


class Truncated(DatasetError):
    """A data set that ends before its elements do."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The byte order of a data set: every number in it (tags included) follows it."""

    tag_len: struct.Struct
    tag_vr_short: struct.Struct
    u32: struct.Struct


LITTLE = Layout(struct.Struct("<HHL"), struct.Struct("<HH2sH"), struct.Struct("<L"))
BIG = Layout(struct.Struct(">HHL"), struct.Struct(">HH2sH"), struct.Struct(">L"))


def element_header(
    buf: Buffer, offset: int, end: int, explicit: bool, layout: Layout
) -> tuple[int, int, int, int, bool]:
    """(group, element, value length, header size, nested explicit) at ``offset``."""
    if explicit:
        group, element, vr, length = layout.tag_vr_short.unpack_from(buf, offset)
    else:
        group, element, length = layout.tag_len.unpack_from(buf, offset)
        return group, element, length, 8, False
    if group == 0xFFFE:  # item tags have no VR, whatever the syntax
        group, element, length = layout.tag_len.unpack_from(buf, offset)
        return group, element, length, 8, explicit
    if vr in LONG_VRS:
        if offset + 12 > end:
            raise Truncated(f"truncated: element ({group:04X},{element:04X}) header cut")
        (length,) = layout.u32.unpack_from(buf, offset + 8)
        # An undefined-length UN holds Implicit VR data (PS3.5 6.2.2).
        return group, element, length, 12, vr != b"UN"
    if vr not in VRS:
        raise DatasetError(
            f"malformed data set: element ({group:04X},{element:04X}) at offset {offset} "
            f"has invalid VR {vr!r} for explicit VR encoding"
        )
    return group, element, length, 8, True


def walk(
    buf: Buffer,
    offset: int,
    end: int,
    explicit: bool,
    depth: int,
    layout: Layout = LITTLE,
    uids: dict[tuple[int, int], str] | None = None,
) -> int:
    """Skip over data elements from ``offset``; return where they end.

    At depth 0 the elements must end exactly at ``end``; nested (inside an item of
    undefined length) the walk returns just after the item delimitation item. With
    ``uids``, the SOP Class and SOP Instance UIDs met among the leading top-level
    elements are put in it, as :func:`leading_uids` finds them, in the same pass.
    """
    if depth > _MAX_DEPTH:
        raise DatasetError("malformed data set: sequences nested more than 64 deep")
    # element_header() inlined: this loop runs for every element of every file sent.
    tag_vr_short = layout.tag_vr_short.unpack_from
    tag_len = layout.tag_len.unpack_from
    u32 = layout.u32.unpack_from
    long_vrs, vrs = LONG_VRS, VRS
    collect = uids is not None and depth == 0
    while offset < end:
        if offset + 8 > end:
            raise Truncated(
                f"truncated: {end - offset} stray bytes at offset {offset} where a data element "
                "should start"
            )
        if explicit:
            group, element, vr, length = tag_vr_short(buf, offset)
            if group == 0xFFFE:
                group, element, length = tag_len(buf, offset)
                header, nested_explicit = 8, True
            elif vr in long_vrs:
                if offset + 12 > end:
                    raise Truncated(f"truncated: element ({group:04X},{element:04X}) header cut")
                (length,) = u32(buf, offset + 8)
                # An undefined-length UN holds Implicit VR data (PS3.5 6.2.2).
                header, nested_explicit = 12, vr != b"UN"
            elif vr in vrs:
                header, nested_explicit = 8, True
            else:
                raise DatasetError(
                    f"malformed data set: element ({group:04X},{element:04X}) at offset "
                    f"{offset} has invalid VR {vr!r} for explicit VR encoding"
                )
        else:
            group, element, length = tag_len(buf, offset)
            header, nested_explicit = 8, False
        if group == 0xFFFE:
            if element == 0xE00D and depth > 0:
                return offset + 8
            raise DatasetError(
                f"malformed data set: unexpected delimiter (FFFE,{element:04X}) at offset {offset}"
            )
        offset += header
        if collect:
            if group > 0x0008 or (group == 0x0008 and element > 0x0018):
                collect = False
            elif group == 0x0008 and (element == 0x0016 or element == 0x0018):
                if length != _UNDEFINED and offset + length <= end:
                    value = bytes(buf[offset : offset + length]).rstrip(b"\x00 ")
                    uids[(group, element)] = value.decode("ascii", "replace")  # type: ignore[index]
        if length == _UNDEFINED:
            offset = _walk_items(
                buf, offset, end, nested_explicit, depth + 1, (group, element), layout
            )
        elif offset + length > end:
            raise Truncated(
                f"truncated: element ({group:04X},{element:04X}) declares {length} bytes but only "
                f"{end - offset} remain"
            )
        else:
            offset += length
    if depth > 0:
        raise Truncated("truncated: an item of undefined length is not closed")
    return offset


def _walk_items(
    buf: Buffer,
    offset: int,
    end: int,
    explicit: bool,
    depth: int,
    tag: tuple[int, int],
    layout: Layout,
) -> int:
    name = f"({tag[0]:04X},{tag[1]:04X})"
    while True:
        if offset + 8 > end:
            raise Truncated(f"truncated: element {name} of undefined length is not closed")
        group, element, length = layout.tag_len.unpack_from(buf, offset)
        offset += 8
        if (group, element) == (0xFFFE, 0xE0DD):
            return offset
        if (group, element) != (0xFFFE, 0xE000):
            raise DatasetError(
                f"malformed data set: element {name} of undefined length holds "
                f"({group:04X},{element:04X}) where an item should be"
            )
        if length == _UNDEFINED:
            offset = walk(buf, offset, end, explicit, depth, layout)
        elif offset + length > end:
            raise Truncated(
                f"truncated: an item of {name} declares {length} bytes but only "
                f"{end - offset} remain"
            )
        else:
            offset += length


def leading_uids(
    buf: Buffer, offset: int, end: int, explicit: bool, layout: Layout = LITTLE
) -> tuple[str | None, str | None]:
    """SOP Class and Instance UIDs among the first top-level elements (the structure
    has been checked by :func:`_walk` already)."""
    found: dict[tuple[int, int], str] = {}
    while offset + 8 <= end:
        group, element, length, header, nested_explicit = element_header(
            buf, offset, end, explicit, layout
        )
        if (group, element) > _SOP_INSTANCE:
            break
        offset += header
        if length == _UNDEFINED:
            offset = _walk_items(buf, offset, end, nested_explicit, 1, (group, element), layout)
            continue
        if (group, element) in (_SOP_CLASS, _SOP_INSTANCE):
            value = bytes(buf[offset : offset + length]).rstrip(b"\x00 ")
            found[(group, element)] = value.decode("ascii", "replace")
        offset += length
    return found.get(_SOP_CLASS), found.get(_SOP_INSTANCE)


def looks_explicit(buf: Buffer, offset: int) -> bool:
    """Whether the element at ``offset`` carries a VR (explicit VR encoding)."""
    return bool(bytes(buf[offset + 4 : offset + 6]) in VRS)


def encoding_problem(data: Buffer, transfer_syntax: str) -> str | None:
    """Why the first element of ``data`` cannot be in ``transfer_syntax`` (explicit vs
    implicit VR, byte order), or ``None``. Deflated data is not looked at."""
    if len(data) < 8 or transfer_syntax == DEFLATED_EXPLICIT_VR_LE:
        return None if len(data) == 0 or len(data) >= 8 else "data set shorter than one element"
    big_endian = transfer_syntax == EXPLICIT_VR_BE
    explicit = transfer_syntax != IMPLICIT_VR_LE
    group_le = data[0] | (data[1] << 8)
    group_be = (data[0] << 8) | data[1]
    if big_endian and group_le < group_be and group_be > 0xFF:
        return "data set is little endian, but Explicit VR Big Endian was accepted"
    if not big_endian and group_be < group_le and group_le > 0xFF and group_be <= 0xFF:
        return f"data set is big endian, but {transfer_syntax} was accepted"
    if explicit and not looks_explicit(data, 0):
        return f"data set is implicit VR, but explicit VR {transfer_syntax} was accepted"
    if not explicit and looks_explicit(data, 0):
        # In implicit VR bytes 4..8 are a length; when they spell a VR they make a length
        # that cannot fit in the data set, which settles it.
        (length,) = LITTLE.u32.unpack_from(data, 4)
        if length != _UNDEFINED and length > len(data) - 8:
            return "data set is explicit VR, but Implicit VR Little Endian was accepted"
    return None
