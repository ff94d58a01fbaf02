"""``scukit serve`` as a process: started, read line by line on a thread, stopped with
a signal. Shared by the CLI tests and the interop tests that point other senders at it."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["WAIT", "Serve", "scukit", "serve"]

WAIT = 30.0  # generous upper bounds for a loaded CI machine, never asserted as timings


def scukit() -> list[str]:
    """The installed console script, next to this interpreter when possible."""
    beside = Path(sys.executable).with_name("scukit")
    found = str(beside) if beside.exists() else shutil.which("scukit")
    assert found, "the scukit console script is not installed (pip install -e .)"
    return [found]


class Serve:
    """A running ``serve`` process whose stdout lines are read on a thread."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self.next_line()
        assert first.startswith("listening on "), (first, self.proc.stderr)
        self.first_line = first
        self.host, _, port = first.removeprefix("listening on ").rpartition(":")
        self.port = int(port)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self) -> str:
        line = self.lines.get(timeout=WAIT)
        if line is None:
            assert self.proc.stderr is not None
            self.proc.wait(timeout=WAIT)
            pytest.fail(f"serve ended early ({self.proc.returncode}): {self.proc.stderr.read()}")
        self.seen.append(line)
        return line

    def wait_for(self, fragment: str) -> str:
        """Read lines until one contains ``fragment`` (the live journal is asynchronous)."""
        while True:
            line = self.next_line()
            if fragment in line:
                return line

    def stop(self, sig: int) -> tuple[int, list[str], str]:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=WAIT)
        self._reader.join(WAIT)
        rest = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        assert self.proc.stderr is not None
        return code, self.seen + rest, self.proc.stderr.read()


@contextmanager
def serve(*args: str, command: list[str] | None = None) -> Iterator[Serve]:
    server = Serve([*(command or [*scukit(), "serve"]), *args])
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=WAIT)
