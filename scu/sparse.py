"""The header check on a source that is not in memory: its first bytes held, the rest
fetched block by block as the structure walk asks for it. Used for large local files
(read with ``pread``, never memory-mapped: a file cut short by another process while it
is walked must fail its entry, not kill the sender with SIGBUS) and for objects in
object storage (ranged reads)."""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from scu.protocol.dataset import Layout
from scu.protocol.uids import DEFLATED_EXPLICIT_VR_LE
from scu.source import EntryError, Header, header_of

__all__ = ["HEAD", "MAX_HEAD", "SparseBuffer", "check_in_steps"]

#: The check reads this much first, and the structure block by block after it.
HEAD = 64 * 1024
_BLOCK = 64 * 1024
_BLOCKS_KEPT = 8
#: The most the check reads before the data set's first elements, whatever the
#: source's size: beyond it the source is refused instead of read whole.
MAX_HEAD = 64 * 1024 * 1024

#: ``read(start, stop)`` -> exactly the bytes ``[start, stop)`` (or raise EntryError).
Read = Callable[[int, int], bytes]


def check_in_steps(size: int, read: Read, name: str) -> Header:
    """:func:`scu.source.header_of` on a source of ``size`` bytes read through ``read``,
    on as few bytes as it needs: the first :data:`HEAD` bytes, then the element headers
    the walk asks for; a longer head when the file meta or the first elements do not
    fit; the whole source (at most :data:`MAX_HEAD`) for a deflated data set."""
    head_length = HEAD
    while True:
        head = read(0, min(head_length, size))
        if DEFLATED_EXPLICIT_VR_LE.encode() in head:
            # Inflating needs the whole stream.
            return header_of(_whole(size, read, name, "a deflated data set"))
        sparse = SparseBuffer(head, size, read)
        try:
            return header_of(sparse, layouts=sparse.layouts)
        except struct.error:
            pass  # the file meta or the first elements go beyond the head
        if head_length >= size:
            raise EntryError(f"cannot check {name}: its structure could not be read")
        head_length *= 4
        if head_length >= size:
            return header_of(_whole(size, read, name, "the file meta and first elements"))


def _whole(size: int, read: Read, name: str, what: str) -> bytes:
    if size > MAX_HEAD:
        raise EntryError(
            f"cannot check {name}: {what} of a {size}-byte source would have to be read "
            f"whole (more than {MAX_HEAD >> 20} MiB); not sent"
        )
    return read(0, size)


class SparseBuffer(bytearray):
    """A source's head held in memory, presented with the source's full length: slices
    past the head and numbers read through :attr:`layouts` are fetched block by block;
    anything else that reads past the head (``struct`` straight on the buffer) raises
    ``struct.error``, and the check starts again with a longer head."""

    def __init__(self, head: bytes, size: int, read: Read) -> None:
        super().__init__(head)
        self._head = len(head)
        self._size = size
        self._read = read
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        little = [_Fetching(fmt, self) for fmt in ("<HHL", "<HH2sH", "<L")]
        big = [_Fetching(fmt, self) for fmt in (">HHL", ">HH2sH", ">L")]
        self.layouts = (Layout(*little), Layout(*big))

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._size)
            if step != 1:
                raise ValueError("a sparse buffer is sliced with step 1 only")
            return self.bytes_at(start, max(0, stop - start))
        position = index + self._size if index < 0 else index
        if not 0 <= position < self._size:
            raise IndexError("index out of range")
        return self.bytes_at(position, 1)[0]

    def bytes_at(self, offset: int, length: int) -> bytes:
        stop = min(offset + length, self._size)
        if stop <= self._head:
            return bytes(memoryview(self)[offset:stop])
        parts: list[bytes] = []
        position = offset
        while position < stop:
            number = position // _BLOCK
            block = self._block(number)
            begin = position - number * _BLOCK
            piece = block[begin : begin + (stop - position)]
            if not piece:
                break
            parts.append(piece)
            position += len(piece)
        return b"".join(parts)

    def _block(self, number: int) -> bytes:
        block = self._blocks.get(number)
        if block is None:
            start = number * _BLOCK
            block = self._read(start, min(start + _BLOCK, self._size))
            self._blocks[number] = block
            if len(self._blocks) > _BLOCKS_KEPT:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(number)
        return block


class _Fetching(struct.Struct):
    """A ``struct.Struct`` that reads a :class:`SparseBuffer` through its fetches."""

    def __init__(self, fmt: str, source: SparseBuffer) -> None:
        super().__init__(fmt)
        self._source = source

    def unpack_from(self, buffer: Any, offset: int = 0) -> tuple[Any, ...]:
        if buffer is self._source:
            return super().unpack_from(self._source.bytes_at(offset, self.size))
        return super().unpack_from(buffer, offset)
