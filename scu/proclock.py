"""A lock between forked processes that dies with its holder.

The worker processes of a transfer (:mod:`scu.processes`) share counters and the rate
limits' state in shared memory, each guarded for a few microseconds at a time. A
process-shared semaphore (``multiprocessing.Lock``) stays taken forever when the
process holding it is killed (SIGKILL, the OOM killer): every other process, and the
caller waiting for them, would then hang. A POSIX record lock (``fcntl.lockf``) on an
unlinked temporary file is released by the kernel when its holder dies, whatever kills
it. It excludes processes, not threads of one process: each process of a transfer
uses it from one thread.
"""

from __future__ import annotations

import fcntl
import tempfile
from types import TracebackType

__all__ = ["ProcessLock"]


class ProcessLock:
    """``with lock:`` between processes forked after it was made; released by the
    kernel if its holder dies. Its file is closed when the lock is collected."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="scukit-lock-")  # unlinked at once

    def acquire(self) -> None:
        fcntl.lockf(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.lockf(self._file, fcntl.LOCK_UN)

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
