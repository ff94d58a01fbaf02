"""Memory for the data sets the mock keeps: one anonymous mapping the size of the
memory budget, populated ahead of use by a thread that needs no GIL."""

from __future__ import annotations

import ctypes
import mmap
import threading
from collections.abc import Callable

__all__ = ["Arena"]


class Arena:
    """The memory budget as one anonymous mapping that data sets are copied into.

    Fresh memory costs the kernel a page fault and zeroing per 4 KiB page on first touch
    (about 0.5 ms for a 512 KB CT image here, more than the store itself): a thread keeps
    the next :attr:`AHEAD` bytes populated (``MADV_POPULATE_WRITE``, which runs without
    the GIL), so a store is copied into memory that is ready. Space is handed out from
    the end (a bump pointer, in :attr:`BLOCK` pieces); a sink gives back what it did not
    use, and everything at the end when its data set goes to a spill file, so one
    connection's data sets are packed back to back. Without the populate call (an older
    kernel) the pages fault in as they are written, as any memory does.
    """

    BLOCK = 256 * 1024
    AHEAD = 8 * 1024 * 1024
    _STEP = 2 * 1024 * 1024
    _IDLE = 5.0  # seconds without a data set before the populating thread ends

    def __init__(self, size: int) -> None:
        self.size = size - size % self.BLOCK
        self.map = mmap.mmap(-1, max(self.size, mmap.PAGESIZE))
        self._lock = threading.Lock()
        self.end = 0  # bytes handed out
        self._populated = 0
        self._wake = threading.Event()
        self._closed = False
        self._address = _address_of(self.map)
        self._populating = self._address is not None and _madvise is not None
        self._thread: threading.Thread | None = None

    def take(self) -> int | None:
        """The offset of a fresh :attr:`BLOCK`, or ``None`` when the budget is used up."""
        with self._lock:
            if self.end + self.BLOCK > self.size:
                return None
            offset = self.end
            self.end += self.BLOCK
            if not self._populating:
                return offset
            if self._thread is None or not self._thread.is_alive():
                # (Again after a while without data sets: the thread ends when idle.)
                self._thread = threading.Thread(
                    target=self._populate, name="mock-scp-arena", daemon=True
                )
                self._thread.start()
            # Woken when less than AHEAD minus a step is ready (a store of small data
            # sets takes a block each: waking the thread for each costs more than it).
            low = self._populated < min(self.end + self.AHEAD - self._STEP, self.size)
        if low:
            self._wake.set()
        return offset

    def give_back(self, start: int, stop: int) -> bool:
        """Return ``[start, stop)`` if it is the last piece handed out (it then is free
        again); whether it was."""
        with self._lock:
            if stop != self.end:
                return False
            self.end = start
            return True

    def _populate(self) -> None:
        assert self._address is not None and _madvise is not None
        while not self._closed:
            with self._lock:
                want = min(self.end + self.AHEAD, self.size)
                start = self._populated
            if start >= want:
                if not self._wake.wait(self._IDLE):
                    return  # nothing asked for a while; take() starts it again
                self._wake.clear()
                continue
            length = min(self._STEP, want - start)
            if _madvise(self._address + start, length, _MADV_POPULATE_WRITE) != 0:
                self._populating = False  # not supported here: pages fault in as written
                return
            with self._lock:
                self._populated = max(self._populated, start + length)

    def reset(self) -> None:
        """Forget everything handed out, and give its memory back to the system."""
        with self._lock:
            used, self.end = self.end, 0
            self._populated = 0
        if used:
            try:
                self.map.madvise(mmap.MADV_DONTNEED, 0, min(used + self.AHEAD, self.size))
            except (AttributeError, OSError, ValueError):
                pass

    def close(self) -> None:
        self._closed = True
        self._wake.set()


_MADV_POPULATE_WRITE = 23  # Linux 5.14


def _libc_madvise() -> Callable[[int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


# ctypes releases the GIL around the call: the pages are populated in parallel.
_madvise = _libc_madvise()


def _address_of(mapping: mmap.mmap) -> int | None:
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(mapping))
    except (TypeError, ValueError):
        return None
