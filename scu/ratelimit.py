"""A limiter shared by the workers of a transfer: at most so many files and so many
bytes per second, across all associations (``max_rate``, ``max_bandwidth``).

Each limit spaces what goes out: a file may go once the files before it are paid for
(one file is ``1 / max_rate`` seconds, ``size / max_bandwidth`` seconds of bytes), and
no credit is saved up while idle, so neither the start of a transfer nor a pause (a
stalled store, a retry's back-off) is followed by a burst above the limit. Over any
stretch of ``T`` seconds at most ``T * rate`` go, plus the file that opened it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter", "SharedRateLimiter"]


class _Limit:
    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.free_at = now  # when the next amount may go

    def wait_time(self, now: float) -> float:
        """Seconds until the next amount may go (0: now)."""
        return max(0.0, self.free_at - now)

    def take(self, amount: float, now: float) -> None:
        self.free_at = max(self.free_at, now) + amount / self.rate


class RateLimiter:
    """Blocks until a file of ``size`` bytes may go; ``None`` rates mean no limit.

    ``clock`` and ``sleep`` (``time.monotonic`` and ``time.sleep``) can be replaced, so
    that the spacing can be checked without waiting for it."""

    #: The longest single sleep, so that ``stop()`` is looked at now and then.
    POLL = 0.1

    def __init__(
        self,
        files_per_second: float | None,
        bytes_per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._files = None if files_per_second is None else _Limit(files_per_second, now)
        self._bytes = None if bytes_per_second is None else _Limit(bytes_per_second, now)

    @property
    def rates(self) -> tuple[float | None, float | None]:
        """``(files_per_second, bytes_per_second)`` as given."""
        return (
            None if self._files is None else self._files.rate,
            None if self._bytes is None else self._bytes.rate,
        )

    @property
    def active(self) -> bool:
        return self._files is not None or self._bytes is not None

    def acquire(self, size: int, stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a file of ``size`` bytes; ``False`` if ``stop()`` came true first."""
        while True:
            with self._lock:
                self._load()
                now = self._clock()
                limits = [limit for limit in (self._files, self._bytes) if limit is not None]
                wait = max((limit.wait_time(now) for limit in limits), default=0.0)
                if wait <= 0.0:
                    if self._files is not None:
                        self._files.take(1.0, now)
                    if self._bytes is not None:
                        self._bytes.take(float(size), now)
                    self._store()
                    return True
            if stop():
                return False
            self._sleep(min(wait, self.POLL))

    def _load(self) -> None:
        """(Under the lock) take the limits' state from where it is shared, if it is."""

    def _store(self) -> None:
        """(Under the lock) put the limits' state where it is shared, if it is."""


class SharedRateLimiter(RateLimiter):
    """The same limits, their state in shared memory under a lock between processes
    that dies with its holder (:class:`scu.proclock.ProcessLock`), so
    that forked worker processes draw from one budget (see :mod:`scu.processes`). The
    clock is ``time.monotonic``, which is the same for every process on the machine."""

    def __init__(self, files_per_second: float | None, bytes_per_second: float | None) -> None:
        import mmap

        from scu.proclock import ProcessLock

        super().__init__(files_per_second, bytes_per_second)
        self._lock = ProcessLock()  # type: ignore[assignment]
        self._map = mmap.mmap(-1, 8 * 2)
        self._state = memoryview(self._map).cast("d")  # files' free_at, bytes' free_at
        self._store()

    def _load(self) -> None:
        for i, limit in enumerate((self._files, self._bytes)):
            if limit is not None:
                limit.free_at = self._state[i]

    def _store(self) -> None:
        for i, limit in enumerate((self._files, self._bytes)):
            if limit is not None:
                self._state[i] = limit.free_at
