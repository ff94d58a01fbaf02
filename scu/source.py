"""Queued entries and the cheap, strict reading of what the SCU needs from each one.

Before anything is sent, each entry is checked in one pass over its bytes (a file is
memory-mapped, so a 1 GB file costs a few pages): the file meta (when present), the
data set's SOP Class and SOP Instance UIDs, and the data set's element structure down
to the last byte, so that a truncated or corrupt file fails with a clear reason instead
of reaching the SCP half-sent. Files in Deflated Explicit VR Little Endian or Big Endian
and files this fast path cannot follow are read with pydicom instead.

Nothing here touches the network; :mod:`scu.store` streams the data set from
``dataset_offset`` to the end of the entry.
"""

from __future__ import annotations

import functools
import os
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scu.protocol.dataset import (
    BIG,
    LITTLE,
    LONG_VRS,
    VRS,
    Buffer,
    DatasetError,
    Layout,
    Truncated,
    leading_uids,
    looks_explicit,
    walk,
)
from scu.protocol.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    uid_problem,
)

if TYPE_CHECKING:
    from scu.remote import RemoteObject

__all__ = [
    "DICOMDIR_SOP_CLASS",
    "MAX_INFLATED",
    "SNIFF_BYTES",
    "Entry",
    "EntryError",
    "Header",
    "file_kind",
    "header_of",
    "read_header",
    "sniff",
    "sniff_head",
]

_TAG_VR_SHORT = struct.Struct("<HH2sH")
_U32 = struct.Struct("<L")
_UNDEFINED = 0xFFFFFFFF
#: Files up to this size are read into memory; larger ones are memory-mapped.
_READ_WHOLE = 256 * 1024


class EntryError(Exception):
    """An entry cannot be sent; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Header:
    """What the SCU needs to know about an entry before sending it."""

    sop_class_uid: str
    sop_instance_uid: str
    #: The transfer syntax the data set is encoded in.
    transfer_syntax: str
    #: Where the data set starts in the entry's bytes (after preamble and file meta).
    dataset_offset: int
    size: int
    has_meta: bool


@dataclass(slots=True)
class Entry:
    """One queued item: a path on disk, bytes given in memory, or an object in object
    storage (``remote``, see :mod:`scu.remote`)."""

    name: str
    path: str | None = None
    data: bytes | None = None
    remote: RemoteObject | None = None

    @contextmanager
    def buffer(self) -> Iterator[bytes]:
        """The entry's bytes, whole: the data itself, the file read, or the object read
        (only conversions need an entry whole; the header check of a large file or an
        object reads only what it needs, see :func:`read_header`)."""
        if self.data is not None:
            yield self.data
            return
        if self.remote is not None:
            yield self.remote.read_all()
            return
        with self._opened() as (fd, info):
            try:
                yield _read_all(fd, info.st_size)
            except IsADirectoryError:
                raise EntryError(f"is a directory, not a file: {self.path}") from None
            except OSError as exc:
                raise EntryError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    @contextmanager
    def _opened(self) -> Iterator[tuple[int, os.stat_result]]:
        """The file opened for reading, if it is a regular file, and its status."""
        assert self.path is not None
        try:
            # O_NONBLOCK: a FIFO put where a file was queued must not hang the open.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise EntryError(f"file not found: {self.path}") from None
        except IsADirectoryError:
            raise EntryError(f"is a directory, not a file: {self.path}") from None
        except OSError as exc:
            raise EntryError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise EntryError(f"is a directory, not a file: {self.path}")
            if not stat.S_ISREG(info.st_mode):
                raise EntryError(f"{self.path} is not a regular file ({file_kind(info.st_mode)})")
            yield fd, info
        finally:
            os.close(fd)


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    want = max(size + 1, 65536)
    while True:  # to the end, whatever fstat said: the file may have grown
        chunk = os.read(fd, want)
        if not chunk:  # not a short read: FUSE and network file systems read short
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.append(chunk)


def _parse_meta(buf: Buffer, offset: int, end: int) -> tuple[dict[int, str], int]:
    """File meta elements (always Explicit VR LE): {element: text}, end offset."""
    values: dict[int, str] = {}
    while offset + 8 <= end:
        group, element, vr, short = _TAG_VR_SHORT.unpack_from(buf, offset)
        if group != 0x0002:
            break
        if vr in LONG_VRS:
            if offset + 12 > end:
                raise Truncated("truncated: file meta header cut short")
            (length,) = _U32.unpack_from(buf, offset + 8)
            offset += 12
        elif vr in VRS:
            length = short
            offset += 8
        else:
            raise EntryError(f"malformed file meta: element (0002,{element:04X}) has VR {vr!r}")
        if length == _UNDEFINED or offset + length > end:
            raise Truncated(f"truncated: file meta element (0002,{element:04X}) cut short")
        if vr == b"UI":
            values[element] = (
                bytes(buf[offset : offset + length]).rstrip(b"\x00 ").decode("ascii", "replace")
            )
        offset += length
    if offset < end and offset + 8 > end and bytes(buf[offset : offset + 2]) == b"\x02\x00":
        raise Truncated("truncated: the file ends inside a file meta element header")
    return values, offset


def read_header(entry: Entry, keep: list[tuple[bytes, os.stat_result]] | None = None) -> Header:
    """Read and check an entry; :class:`EntryError` names what is wrong with it. With
    ``keep``, a file read whole into memory leaves there its bytes and its status as it
    was opened (the sender may send those bytes if the file has not changed since).

    The error is raised afresh, with no traceback into the reader and no context: the
    caller keeps it until the transfer ends, and the reader's frames hold the entry's
    bytes (a deflated data set inflated up to :data:`MAX_INFLATED`)."""
    if entry.remote is not None:
        return entry.remote.read_header()  # ranged reads, through header_of
    found = _header_or_problem(entry, keep)
    if isinstance(found, Header):
        return found
    raise EntryError(found)


def _header_or_problem(
    entry: Entry, keep: list[tuple[bytes, os.stat_result]] | None
) -> Header | str:
    try:
        if entry.path is None:
            with entry.buffer() as buf:
                return header_of(buf)
        with entry._opened() as (fd, info):
            size = info.st_size
            if size <= _READ_WHOLE:
                try:
                    data = _read_all(fd, size)
                except OSError as exc:
                    raise EntryError(f"cannot read {entry.path}: {exc.strerror or exc}") from None
                header = header_of(data)
                if keep is not None:
                    keep.append((data, info))
                return header
            from scu.sparse import check_in_steps

            return check_in_steps(size, _pread_exactly(fd, entry.path, size), entry.path)
    except EntryError as exc:
        return str(exc)


def _pread_exactly(fd: int, path: str, size: int) -> Callable[[int, int], bytes]:
    """Reads of ``[start, stop)`` of an open file that fail the entry, naming the file,
    when it has been cut short since it was opened."""

    def read(start: int, stop: int) -> bytes:
        try:
            data = os.pread(fd, stop - start, start)
        except OSError as exc:
            raise EntryError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) != stop - start:
            now = os.fstat(fd).st_size
            raise EntryError(
                f"truncated while it was read: {path} was {size} bytes, now {now} "
                "(changed after it was queued?)"
            )
        return data

    return read


def header_of(buf: Buffer, *, layouts: tuple[Layout, Layout] = (LITTLE, BIG)) -> Header:
    """Check an entry's bytes. The data set's structure is read only through
    ``layouts`` (little, big endian), so a source that is not in memory can supply the
    bytes the walk asks for as it asks (:mod:`scu.remote`)."""
    try:
        return _read_header(buf, layouts)
    except DatasetError as exc:
        raise EntryError(str(exc)) from None


def _read_header(buf: Buffer, layouts: tuple[Layout, Layout] = (LITTLE, BIG)) -> Header:
    size = len(buf)
    if size == 0:
        raise EntryError("empty file (0 bytes)")
    has_meta = False
    meta: dict[int, str] = {}
    if size >= 132 and buf[128:132] == b"DICM":
        meta, offset = _parse_meta(buf, 132, size)
        has_meta = True
    elif size >= 8 and buf[0:2] == b"\x02\x00" and looks_explicit(buf, 0):
        meta, offset = _parse_meta(buf, 0, size)  # meta without the 128-byte preamble
        has_meta = True
    else:
        offset = 0
    if has_meta:
        syntax = meta.get(0x0010)
        if not syntax:
            raise EntryError("file meta has no Transfer Syntax UID (0002,0010)")
        if _class_uid_problem(syntax) is not None:
            raise EntryError(
                f"file meta Transfer Syntax UID (0002,0010) {syntax!r} is not a UID: "
                f"{uid_problem(syntax)}"
            )
    else:
        if size < 8 or buf[0:2] in (b"\x00\x00",) or not _plausible_dataset_start(buf):
            raise EntryError(
                "not a DICOM file: no 'DICM' marker at offset 128 and no recognisable data set"
            )
        if buf[0:2] == b"\x00\x08" and looks_explicit(buf, 0):
            syntax = EXPLICIT_VR_BE  # group 0008 written big endian
        else:
            syntax = EXPLICIT_VR_LE if looks_explicit(buf, 0) else IMPLICIT_VR_LE
    if offset < size and size - offset < 8:
        raise Truncated(
            f"truncated: {size - offset} stray bytes at offset {offset} where the data set "
            "should start"
        )
    body: Buffer = buf
    start, stop = offset, size
    if syntax == DEFLATED_EXPLICIT_VR_LE:
        body, start = _inflate(buf, offset), 0
        stop = len(body)
    layout = layouts[1] if syntax == EXPLICIT_VR_BE else layouts[0]
    explicit = syntax != IMPLICIT_VR_LE
    if start < stop and explicit != looks_explicit(body, start) and has_meta:
        raise EntryError(
            f"data set is not encoded as its file meta says ({syntax}): "
            f"{'implicit' if explicit else 'explicit'} VR found at offset {offset}"
        )
    uids: dict[tuple[int, int], str] = {}
    walk(body, start, stop, explicit, 0, layout, uids)  # finds the leading UIDs on its way
    sop_class, sop_instance = uids.get((0x0008, 0x0016)), uids.get((0x0008, 0x0018))
    if not sop_class:
        raise EntryError("missing SOP Class UID (0008,0016) in the data set")
    if not sop_instance:
        raise EntryError("missing SOP Instance UID (0008,0018) in the data set")
    for label, uid, check in (
        ("SOP Class UID", sop_class, _class_uid_problem),
        ("SOP Instance UID", sop_instance, uid_problem),
    ):
        problem = check(uid)
        if problem is not None:
            raise EntryError(f"invalid {label} {uid!r} in the data set: {problem}")
    # A queue repeats a few classes and syntaxes: one string each, not one per file.
    return Header(sys.intern(sop_class), sop_instance, sys.intern(syntax), offset, size, has_meta)


#: uid_problem for the few values a queue repeats (transfer syntaxes, SOP classes).
_class_uid_problem = functools.lru_cache(maxsize=1024)(uid_problem)


def _plausible_dataset_start(buf: Buffer) -> bool:
    """A data set without meta starts with a low group number (0008 usually)."""
    group_le: int = struct.unpack_from("<H", buf, 0)[0]
    group_be: int = struct.unpack_from(">H", buf, 0)[0]
    return 0x0002 < group_le <= 0x0010 or 0x0002 < group_be <= 0x0010


#: The largest inflated data set accepted: beyond it a deflated file is refused as a
#: deflate bomb instead of filling the memory.
MAX_INFLATED = 256 << 20


#: Bytes inflated per call: what one call may add to the memory beside the result.
_INFLATE_STEP = 1 << 20


def _inflate(buf: Buffer, offset: int) -> bytes:
    """Inflate in steps of at most :data:`_INFLATE_STEP` bytes of output, never beyond
    :data:`MAX_INFLATED` (a megabyte of deflated zeros inflates to a gigabyte: bounding
    the input read per step bounds nothing)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    view = memoryview(buf)[offset:]
    try:
        for start in range(0, len(view), 1 << 20):
            pending: bytes | memoryview = view[start : start + (1 << 20)]
            while pending:
                out += inflater.decompress(pending, _INFLATE_STEP)
                if len(out) > MAX_INFLATED:
                    raise EntryError(
                        f"deflated data set inflates beyond {MAX_INFLATED >> 20} MiB from "
                        f"{len(view)} bytes: refused as a deflate bomb"
                    )
                pending = inflater.unconsumed_tail
        out += inflater.flush()
    except zlib.error as exc:
        raise EntryError(f"corrupt deflated data set: {exc}") from None
    finally:
        view.release()
    return bytes(out)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
SNIFF_BYTES = 8192


def sniff(path: str) -> str:
    """What a file looks like from its first bytes: ``"dicom"`` (a Part-10 file or a
    plausible bare data set), ``"dicomdir"`` (a media directory, never sent) or
    ``"other"``. Reads at most a few KB; the full check happens when it is sent."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return "other"
    return sniff_head(head)


def sniff_head(head: bytes) -> str:
    """:func:`sniff` on the first bytes of a file (a few KB are enough)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        try:
            meta, _ = _parse_meta(head, 132, len(head))
        except (EntryError, struct.error):
            return "dicom"  # a Part-10 marker; what is wrong is said when it is sent
        return "dicomdir" if meta.get(0x0002) == DICOMDIR_SOP_CLASS else "dicom"
    if len(head) < 16 or not _plausible_dataset_start(head):
        return "other"
    big = head[0:2] == b"\x00\x08" and looks_explicit(head, 0)
    explicit = big or looks_explicit(head, 0)
    try:
        sop_class, _instance = leading_uids(head, 0, len(head), explicit, BIG if big else LITTLE)
    except (DatasetError, struct.error):
        return "other"
    if sop_class is None or uid_problem(sop_class) is not None:
        return "other"
    return "dicomdir" if sop_class == DICOMDIR_SOP_CLASS else "dicom"
