"""A data set to send: bytes in memory or a byte range of a file (on disk, or an object
in object storage), read in fixed-size chunks while its PDUs are written, so memory does
not grow with the file."""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from io import FileIO
from typing import TYPE_CHECKING

from scu.source import file_kind

if TYPE_CHECKING:
    from scu.remote import RemoteObject

__all__ = ["Payload", "SourceError"]


@dataclass(frozen=True)
class Payload:
    """A data set to send: bytes in memory, or bytes of a file from ``offset``;
    ``length`` counts every byte that goes on the wire, ``padding`` (sent last) included.
    With ``remote``, the file is that object (``path`` is its URL, for messages)."""

    data: bytes | memoryview | None = None
    path: str | None = None
    offset: int = 0
    length: int = 0
    padding: bytes = b""
    remote: RemoteObject | None = None

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Payload:
        return cls(data=data, length=len(data))

    def padded(self, padding: bytes) -> Payload:
        """The same data set with ``padding`` appended on the wire."""
        return replace(self, length=self.length + len(padding), padding=self.padding + padding)

    def chunks(self, buffer: bytearray, *, mapped: bool = False) -> Iterator[memoryview]:
        """The bytes to send, in chunks of ``len(buffer)`` (the last one shorter), the
        padding inside the last chunk: chunk sizes never depend on how the kernel
        happened to split a read, so PDV fragments stay even-sized.

        ``mapped``: a file's chunks are views of the file mapped into memory instead of
        copies read into ``buffer`` (see :meth:`_mapped_chunks`)."""
        if mapped and self.data is None and self.remote is None and not self.padding:
            yield from self._mapped_chunks(len(buffer))
            return
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, len(view), len(buffer)):
                piece = view[start : start + len(buffer)]
                if self.padding and start + len(buffer) >= len(view):
                    piece = memoryview(bytes(piece) + self.padding)
                yield piece
            if not view and self.padding:
                yield memoryview(self.padding)
            return
        assert self.path is not None
        remaining = self.length - len(self.padding)
        view = memoryview(buffer)
        handle = self.remote.open() if self.remote else _open_regular(self.path)
        padded = not self.padding
        with handle:
            handle.seek(self.offset)
            while remaining > 0:
                last = remaining <= len(view) - len(self.padding)
                want = remaining if last else len(view)
                filled = 0
                while filled < want:
                    try:
                        got = handle.readinto(view[filled:want])
                    except OSError as exc:
                        message = f"cannot read {self.path}: {exc.strerror or exc}"
                        raise SourceError(message) from exc
                    if not got:
                        raise SourceError(
                            f"{self.path} ended {remaining - filled} bytes early "
                            "(changed after it was queued?)"
                        )
                    filled += got
                remaining -= filled
                if last and not padded:
                    view[filled : filled + len(self.padding)] = self.padding
                    filled += len(self.padding)
                    padded = True
                yield view[:filled]
        if not padded:  # the data filled its last chunk exactly
            yield memoryview(self.padding)

    def _mapped_chunks(self, size: int) -> Iterator[memoryview]:
        """A file's chunks as read-only views of it mapped into memory, one mapping per
        chunk, gone once the caller drops the view: sent with sendmsg, the bytes are
        copied once (page cache to socket) instead of twice. The views must only ever
        be handed to the kernel: a file cut short under a mapping makes the kernel
        answer EFAULT, which the sender reports as a source error, where Python reading
        the same bytes would die of SIGBUS."""
        assert self.path is not None
        fd = _open_regular_fd(self.path)
        try:
            end = self.offset + self.length
            available = os.fstat(fd).st_size
            if available < end:
                raise SourceError(
                    f"{self.path} ended {end - available} bytes early "
                    "(changed after it was queued?)"
                )
            for start in range(self.offset, end, size):
                length = min(size, end - start)
                base = start - start % mmap.ALLOCATIONGRANULARITY
                try:
                    mapping = mmap.mmap(
                        fd, length + start - base, access=mmap.ACCESS_READ, offset=base
                    )
                except (OSError, ValueError) as exc:
                    if os.fstat(fd).st_size < start + length:
                        raise SourceError(
                            f"{self.path} was cut short while it was being sent (changed "
                            "after it was queued?)"
                        ) from exc
                    raise SourceError(f"cannot read {self.path}: {exc}") from exc
                yield memoryview(mapping)[start - base :]
                del mapping  # unmapped when the caller drops the view
        finally:
            os.close(fd)


def _open_regular(path: str) -> FileIO:
    """The file at ``path`` opened for reading, if it is still a regular file."""
    return FileIO(_open_regular_fd(path), "rb", closefd=True)


def _open_regular_fd(path: str) -> int:
    """The file at ``path`` opened for reading, if it is still a regular file: a FIFO
    put in its place since it was queued must not block the sender (no writer may ever
    come), nor a device feed it endless bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceError(
                f"{path} is {file_kind(mode)} now, not a regular file (changed after it was "
                "queued?)"
            )
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


class SourceError(Exception):
    """The data set could not be read while it was being sent (the file changed or
    vanished after it was queued). The association is aborted: the SCP holds half a
    data set. ``transient``: reading it again may work (a network error on the way
    from object storage), so ``retries`` apply."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
