"""Where received data sets go: bounded retention in memory or spill files
(:class:`PayloadStore`), and Part-10 files under ``store_dir`` (:class:`StoreWriter`),
created without following links and renamed into place only when complete."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from scu.protocol.uids import is_valid_uid

from .arena import Arena

if TYPE_CHECKING:
    from mock_scp.journal import ReceivedStore

__all__ = [
    "HEAD_SIZE",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "KEPT_HEAD",
    "Payload",
    "PayloadStore",
    "Sink",
    "StoreFile",
    "StoreWriter",
    "part10_bytes",
    "payload_store",
    "safe_file_name",
]

#: The mock's own Implementation Class UID and Version Name (in its A-ASSOCIATE-AC and
#: the file meta of what it writes).
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1399.2"
IMPLEMENTATION_VERSION_NAME = "SCUKIT_MOCK_02"
#: Bytes of each data set looked at by the cheap checks while it arrives.
HEAD_SIZE = 64 * 1024
#: Bytes of a data set that is not kept (``keep_data=False``) kept all the same: the
#: journal keeps a record of every store for as long as it lives.
KEPT_HEAD = 1024


class Payload:
    """Where one data set's bytes are: in memory (the budget's arena, or bytes given),
    in a spill file, or not kept."""

    __slots__ = ("_arena", "_head", "_memory", "_segments", "path", "size", "store")

    def __init__(self) -> None:
        self._memory: bytes | bytearray | None = None
        self._segments: list[tuple[int, int]] | None = None  # in ``_arena``
        self._arena: Arena | None = None
        self.path: str | None = None
        self.size = 0
        self._head = b""
        self.store: PayloadStore | None = None

    @classmethod
    def of(cls, data: bytes) -> Payload:
        """A payload held in memory (for a store made by hand)."""
        payload = cls()
        payload._memory = bytes(data)
        payload.size = len(data)
        return payload

    @property
    def in_memory(self) -> bool:
        return self._memory is not None or self._segments is not None

    @property
    def memory(self) -> bytes | bytearray | None:
        """The data set, when it is held in memory (a copy of it, from the arena)."""
        if self._memory is not None:
            return self._memory
        if self._segments is not None and self._arena is not None:
            view = memoryview(self._arena.map)
            return b"".join(view[start:stop] for start, stop in self._segments)
        return None

    @property
    def head(self) -> bytes:
        """The first bytes of the data set: up to :data:`HEAD_SIZE` of a data set that is
        kept (read from where it is, never held twice), :data:`KEPT_HEAD` of one that is
        not."""
        if self._memory is not None:
            return bytes(self._memory[:HEAD_SIZE])
        if self._segments is not None and self._arena is not None:
            view = memoryview(self._arena.map)
            parts: list[bytes] = []
            left = HEAD_SIZE
            for start, stop in self._segments:
                if left <= 0:
                    break
                piece = view[start : min(stop, start + left)]
                parts.append(bytes(piece))
                left -= len(piece)
            return b"".join(parts)
        if self.path is not None:
            try:
                with open(self.path, "rb") as handle:
                    return handle.read(HEAD_SIZE)
            except OSError:
                return b""
        return self._head

    @head.setter
    def head(self, value: bytes) -> None:
        self._head = value

    def read(self) -> bytes | bytearray:
        memory = self.memory
        if memory is not None:
            return memory
        if self.path is not None:
            with open(self.path, "rb") as handle:
                return handle.read()
        raise ValueError("the data set was not kept (keep_data=False)")


class PayloadStore:
    """Keeps received data sets within a memory budget (see the module doc).

    ``keep_data`` False keeps none (only the first bytes, for the checks);
    ``memory_budget`` is the total bytes of data sets held in memory (0: spill every
    one), an arena mapped when the first data set arrives (see :class:`Arena`); beyond
    it data sets go to files in ``spool_dir`` (a fresh temporary directory by
    default), removed when the store is reset or collected.
    """

    def __init__(
        self,
        *,
        keep_data: bool = True,
        memory_budget: int = 128 << 20,
        spool_dir: Path | None = None,
    ) -> None:
        self.keep_data = keep_data
        self.memory_budget = memory_budget
        self._spool_parent = spool_dir
        self._lock = threading.Lock()
        self._arena: Arena | None = None
        self._spool: tempfile.TemporaryDirectory[str] | None = None
        self._count = 0

    @property
    def in_memory(self) -> int:
        """Bytes of memory given to data sets now (in whole blocks)."""
        arena = self._arena
        return 0 if arena is None else arena.end

    def arena(self) -> Arena | None:
        """The arena (mapped on first use), or ``None`` when nothing is kept in memory."""
        if not self.keep_data or self.memory_budget < Arena.BLOCK:
            return None
        with self._lock:
            if self._arena is None:
                self._arena = Arena(self.memory_budget)
            return self._arena

    def _spool_path(self) -> str:
        with self._lock:
            if self._spool is None:
                self._spool = tempfile.TemporaryDirectory(
                    prefix="mock-scp-spool-", dir=self._spool_parent
                )
            self._count += 1
            return os.path.join(self._spool.name, f"{self._count:08d}.bin")

    def open(self) -> Sink:
        return Sink(self)

    def reset(self) -> None:
        """Forget every kept data set (their files go, their memory too)."""
        with self._lock:
            spool, self._spool = self._spool, None
            arena = self._arena
        if arena is not None:
            arena.reset()
        if spool is not None:
            spool.cleanup()

    def close(self) -> None:
        with self._lock:
            arena, self._arena = self._arena, None
        if arena is not None:
            arena.close()


class Sink:
    """Receives one data set's bytes as they arrive: into the arena while there is room,
    then into a spill file (what was in the arena first); only the first bytes without
    ``keep_data``."""

    def __init__(self, store: PayloadStore) -> None:
        self.payload = Payload()
        self.payload.store = store
        self._store = store
        self._head = bytearray()
        self._file: io.BufferedWriter | None = None
        self._arena = store.arena()
        self._segments: list[tuple[int, int]] = []
        self._pos = 0  # where the next byte goes in the current block
        self._limit = 0  # the current block's end
        self._spilled = not store.keep_data or self._arena is None

    @property
    def head(self) -> bytes:
        """The first bytes received so far (kept only without ``keep_data``)."""
        return bytes(self._head)

    def write_chunks(self, chunks: list[memoryview]) -> None:
        """Several consecutive pieces at once (what one read brought)."""
        for chunk in chunks:
            self.write(chunk)

    def write(self, data: memoryview | bytes) -> None:
        payload = self.payload
        n = len(data)
        payload.size += n
        if not self._store.keep_data:
            if len(self._head) < HEAD_SIZE:
                self._head += data[: HEAD_SIZE - len(self._head)]
            return
        if not self._spilled:
            arena = self._arena
            assert arena is not None
            pos, done = self._pos, 0
            while done < n:
                if pos >= self._limit:
                    self._end_segment(pos)
                    block = arena.take()
                    if block is None:
                        self._spill()
                        break
                    pos, self._limit = block, block + arena.BLOCK
                    self._segments.append((pos, pos))
                step = min(n - done, self._limit - pos)
                arena.map[pos : pos + step] = data[done : done + step]
                pos += step
                done += step
            else:
                self._pos = pos
                return
            data = data[done:]
        if self._file is None:
            self._spill()
        assert self._file is not None
        self._file.write(data)

    def _end_segment(self, pos: int) -> None:
        if self._segments:
            start, _ = self._segments[-1]
            self._segments[-1] = (start, pos)

    def _spill(self) -> None:
        """From now on into a file, with what the arena held first; its space goes back."""
        self._end_segment(self._pos)
        payload = self.payload
        path = self._store._spool_path()
        self._file = open(path, "wb")
        arena = self._arena
        if arena is not None and self._segments:
            view = memoryview(arena.map)
            for start, stop in self._segments:
                self._file.write(view[start:stop])
            self._give_back()
        self._segments = []
        self._spilled = True
        payload.path = path

    def _give_back(self) -> None:
        """Return this sink's blocks that are at the arena's end (all of them when no
        other connection took one meanwhile), newest first."""
        arena = self._arena
        assert arena is not None
        for start, _stop in reversed(self._segments):
            # Each segment fills the block it starts (all are whole before close()).
            if not arena.give_back(start, start + arena.BLOCK):
                break

    def close(self) -> Payload:
        payload = self.payload
        if self._file is not None:
            self._file.close()
        elif self._segments:
            self._end_segment(self._pos)
            arena = self._arena
            assert arena is not None
            # What the last block did not use goes back (data sets packed back to back).
            if arena.give_back(self._pos, self._limit):
                self._limit = self._pos
            payload._segments = self._segments
            payload._arena = arena
        elif self._store.keep_data:
            payload._memory = b""  # an empty data set, kept
        if not self._store.keep_data:
            payload.head = bytes(self._head[:KEPT_HEAD])
        self._head = bytearray()
        return payload


_ELEM_SHORT = struct.Struct("<HH2sH")
_ELEM_LONG = struct.Struct("<HH2s2xI")


def _meta_element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return _ELEM_LONG.pack(0x0002, elem, vr, len(value)) + value
    return _ELEM_SHORT.pack(0x0002, elem, vr, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def part10_bytes(
    dataset: bytes | bytearray,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae_title: str = "",
) -> bytes:
    """A Part-10 file around raw data set bytes (file meta built by hand: no decoding)."""
    meta = (
        _meta_element(0x0001, b"OB", b"\x00\x01")
        + _meta_element(0x0002, b"UI", _ui(sop_class_uid))
        + _meta_element(0x0003, b"UI", _ui(sop_instance_uid))
        + _meta_element(0x0010, b"UI", _ui(transfer_syntax))
        + _meta_element(0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID))
        + _meta_element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME))
    )
    if source_ae_title:
        meta += _meta_element(0x0016, b"AE", _text(source_ae_title))
    group_length = _meta_element(0x0000, b"UL", struct.pack("<I", len(meta)))
    return b"\x00" * 128 + b"DICM" + group_length + meta + bytes(dataset)


def safe_file_name(sop_instance_uid: str, nth: int, copy: int = 1) -> str:
    """A file name for a store that cannot escape its directory or be mistaken for
    another UID's: ``<uid>.dcm`` for a well-formed UID (``<uid>_<copy>.dcm`` for a
    second store of it: ``_`` is never part of a UID), else ``store-<nth>.dcm``."""
    stem = (
        sop_instance_uid
        if sop_instance_uid and is_valid_uid(sop_instance_uid)
        else f"store-{nth:06d}"
    )
    return f"{stem}.dcm" if copy == 1 else f"{stem}_{copy}.dcm"


_CREATE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class StoreFile:
    """One store being written: a hidden temporary file in the directory, renamed into
    place by :meth:`commit`, removed by :meth:`discard`. Write errors are kept, not
    raised: the store is then answered with a failure."""

    def __init__(self, writer: StoreWriter, header: bytes) -> None:
        self._writer = writer
        self.error: str | None = None
        self._fd: int | None = None
        self._tmp: str | None = None
        try:
            directory = writer.directory
            directory.mkdir(parents=True, exist_ok=True)
            for attempt in range(100):
                tmp = os.path.join(
                    directory, f".incoming-{os.getpid()}-{id(self):x}-{attempt}.part"
                )
                try:
                    self._fd = os.open(tmp, _CREATE, 0o644)
                    self._tmp = tmp
                    break
                except FileExistsError:
                    continue
            else:
                raise OSError("no free temporary name in the store directory")
            self._write(header)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        # The reason first: an Error Comment holds 64 characters, and a path can be long.
        self.error = f"cannot write: {exc.strerror or exc} (in {self._writer.directory})"
        self.discard()

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def write(self, data: memoryview | bytes | bytearray) -> None:
        if self.error is not None or self._fd is None:
            return
        try:
            self._write(data)
        except OSError as exc:
            self._fail(exc)

    def commit(self, sop_instance_uid: str, nth: int) -> Path | None:
        """Close and rename into place; the final path, or ``None`` with :attr:`error`."""
        if self.error is not None or self._fd is None or self._tmp is None:
            return None
        try:
            os.close(self._fd)
            self._fd = None
            path = self._writer.claim(sop_instance_uid, nth)
            os.replace(self._tmp, path)
            self._tmp = None
            return path
        except OSError as exc:
            self._fail(exc)
            return None

    def discard(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


class StoreWriter:
    """Writes stores as Part-10 files under one directory; a second store with the same
    SOP Instance UID gets ``<uid>_2.dcm`` rather than overwriting the first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.absolute()
        self._lock = threading.Lock()
        self._taken: set[str] = set()

    def open(self, header: bytes) -> StoreFile:
        return StoreFile(self, header)

    def claim(self, sop_instance_uid: str, nth: int) -> Path:
        """A free name for a store (never an existing file, link or dangling link)."""
        with self._lock:
            copy = 1
            while True:
                name = safe_file_name(sop_instance_uid, nth, copy)
                path = self.directory / name
                if name not in self._taken and not os.path.lexists(path):
                    self._taken.add(name)
                    return path
                copy += 1

    def write(self, store: ReceivedStore) -> Path:
        """Write a store received whole (its data kept); raises ``OSError`` on failure."""
        handle = self.open(store.part10_header())
        handle.write(store.data)
        path = handle.commit(store.sop_instance_uid, store.nth)
        if path is None:
            raise OSError(handle.error)
        return path


def _finalize_payloads(store: PayloadStore) -> None:
    store.reset()
    store.close()


def payload_store(owner: object, **options: object) -> PayloadStore:
    """A :class:`PayloadStore` whose spill files go when ``owner`` is collected."""
    store = PayloadStore(**options)  # type: ignore[arg-type]
    weakref.finalize(owner, _finalize_payloads, store)
    return store
