"""Token buckets shared by the workers of a transfer: at most so many files and so many
bytes per second, across all associations (``max_rate``, ``max_bandwidth``).

Files are paced evenly (a bucket of one file: ``max_rate=20`` sends one every 50 ms, no
burst); bytes may burst up to one second's worth, and a file larger than that goes when
the bucket is full and leaves a debt the next ones pay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter", "SharedRateLimiter"]


class _Bucket:
    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` may go (0: now); refills first."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # An amount larger than the bucket goes when the bucket is full, and leaves a
        # debt the next ones pay.
        needed = min(amount, self.capacity)
        return 0.0 if self.tokens >= needed else (needed - self.tokens) / self.rate


class RateLimiter:
    """Blocks until a file of ``size`` bytes may go; ``None`` rates mean no limit."""

    def __init__(self, files_per_second: float | None, bytes_per_second: float | None) -> None:
        self._lock = threading.Lock()
        self._files = None if files_per_second is None else _Bucket(files_per_second, 1.0)
        self._bytes = (
            None
            if bytes_per_second is None
            else _Bucket(bytes_per_second, max(bytes_per_second, 1.0))
        )

    @property
    def active(self) -> bool:
        return self._files is not None or self._bytes is not None

    @property
    def rates(self) -> tuple[float | None, float | None]:
        """``(files per second, bytes per second)``; ``None`` for no limit."""
        return (
            None if self._files is None else self._files.rate,
            None if self._bytes is None else self._bytes.rate,
        )

    def acquire(self, size: int, stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a file of ``size`` bytes; ``False`` if ``stop()`` came true first."""
        while True:
            with self._lock:
                waits = [
                    bucket.wait_time(amount)
                    for bucket, amount in ((self._files, 1.0), (self._bytes, float(size)))
                    if bucket is not None
                ]
                wait = max(waits, default=0.0)
                if wait == 0.0:
                    if self._files is not None:
                        self._files.tokens -= 1.0
                    if self._bytes is not None:
                        self._bytes.tokens -= size
                    return True
            if stop():
                return False
            time.sleep(min(wait, 0.1))


class SharedRateLimiter(RateLimiter):
    """The same limits, their buckets in shared memory under a process-shared lock, so
    that forked worker processes draw from one budget (see :mod:`scu.processes`)."""

    def __init__(self, files_per_second: float | None, bytes_per_second: float | None) -> None:
        import math
        import mmap
        import multiprocessing

        super().__init__(files_per_second, bytes_per_second)
        self._shared_lock = multiprocessing.get_context("fork").Lock()
        self._map = mmap.mmap(-1, 8 * 4)
        self._state = memoryview(self._map).cast("d")  # files: tokens, stamp; bytes: same
        for i, bucket in enumerate((self._files, self._bytes)):
            self._state[2 * i] = bucket.tokens if bucket is not None else math.nan
            self._state[2 * i + 1] = bucket.stamp if bucket is not None else math.nan

    def acquire(self, size: int, stop: Callable[[], bool] = lambda: False) -> bool:
        while True:
            with self._shared_lock:
                for i, bucket in enumerate((self._files, self._bytes)):
                    if bucket is not None:  # this process's copy takes the shared state
                        bucket.tokens, bucket.stamp = self._state[2 * i], self._state[2 * i + 1]
                waits = [
                    bucket.wait_time(amount)
                    for bucket, amount in ((self._files, 1.0), (self._bytes, float(size)))
                    if bucket is not None
                ]
                wait = max(waits, default=0.0)
                if wait == 0.0:
                    if self._files is not None:
                        self._files.tokens -= 1.0
                    if self._bytes is not None:
                        self._bytes.tokens -= size
                for i, bucket in enumerate((self._files, self._bytes)):
                    if bucket is not None:
                        self._state[2 * i], self._state[2 * i + 1] = bucket.tokens, bucket.stamp
                if wait == 0.0:
                    return True
            if stop():
                return False
            time.sleep(min(wait, 0.1))
