"""The progress bar of ``scukit send``: one line on a terminal, redrawn in place."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import TextIO

from scu import FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from scu.protocol.text import printable
from scu.worker import INTERRUPTED

__all__ = ["ProgressBar", "format_duration", "format_rate"]


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``."""
    total = max(0, int(seconds + 0.5))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(bytes_per_second: float) -> str:
    """``820 kB/s``, ``20.6 MB/s``, ``1.2 GB/s`` (powers of 1000)."""
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_second >= scale:
            value = bytes_per_second / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{bytes_per_second:.0f} B/s"


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal (stderr).

    Hooks into the five transfer events; shows the counts, files/s and MB/s since the
    start, the elapsed time and an estimate of the time left, and the file being sent.
    Draws at most every ``interval`` seconds, plus once at the start and once at the
    end; :meth:`finish` ends the line (once) so that any other message starts on a
    fresh one.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = 0.1,
        width: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.width = width
        self.clock = clock
        self.total = 0
        self.successful = 0
        self.failed = 0
        #: Entries accounted without being tried (an interruption): not in the rates.
        self.not_sent = 0
        self.bytes_sent = 0
        self.current = ""
        self.started_at: float | None = None
        self._last_draw = 0.0
        self._open = False  # a line is drawn and not yet ended

    # the transfer events
    def started(self, event: TransferStarted) -> None:
        self.total = event.total_files
        self.started_at = self.clock()
        self._draw(force=True)

    def sending(self, event: FileSending) -> None:
        self.current = printable(os.path.basename(event.file), ascii_only=False)
        self._draw()

    def sent(self, event: FileSent) -> None:
        self.successful += 1
        self.bytes_sent += event.size
        self._draw()

    def error(self, event: FileError) -> None:
        if event.error == INTERRUPTED:
            self.not_sent += 1
        else:
            self.failed += 1
        self._draw()

    def completed(self, event: TransferCompleted) -> None:
        self.successful, self.failed = event.successful, event.failed - self.not_sent
        self.current = ""
        self._draw(force=True)
        self.finish()

    def finish(self) -> None:
        """End the line, if one is drawn (idempotent)."""
        if self._open:
            self._open = False
            self.stream.write("\n")
            self.stream.flush()

    # drawing
    def render(self, columns: int, now: float | None = None) -> str:
        """The line for a terminal ``columns`` wide (never wider): what does not fit is
        left out, the file name first, then the rates and times."""
        done = self.successful + self.failed
        counts = f" {done}/{self.total} ok {self.successful} failed {self.failed}"
        if self.not_sent:
            counts += f" not sent {self.not_sent}"
        extras = self._figures(done, self.clock() if now is None else now)
        tail = f"  {self.current}" if self.current else ""
        for optional in (extras + tail, extras, ""):
            bar_width = max(10, min(40, columns - len(counts) - len(optional) - 3))
            if 2 + bar_width + len(counts) + len(optional) < columns or not optional:
                break
        filled = bar_width * done // self.total if self.total else bar_width
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}]{counts}{optional}"
        return line[: max(columns - 1, 1)]

    def _figures(self, done: int, now: float) -> str:
        if self.started_at is None:
            return ""
        elapsed = max(now - self.started_at, 0.0)
        text = f"  {format_duration(elapsed)}"
        if elapsed > 0 and done:
            per_second = done / elapsed
            text = (
                f"  {per_second:.1f} files/s {format_rate(self.bytes_sent / elapsed)}"
                f"  {format_duration(elapsed)}"
            )
            left = self.total - done - self.not_sent
            if left > 0:
                text += f" ETA {format_duration(left / per_second)}"
        return text

    def _draw(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        columns = self.width or shutil.get_terminal_size((80, 24)).columns
        line = self.render(columns, now)
        self.stream.write("\r" + line.ljust(max(columns - 1, 1)))
        self.stream.flush()
        self._open = True
