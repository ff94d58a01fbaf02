"""One callback recorder for every suite that sends with StoreScu, and the check of the
transfer invariants from what it recorded.

The invariants are the ones StoreScu documents: ``on_transfer_started`` once and first,
``on_transfer_completed`` once and last with the result's counts; exactly one terminal
event per queued entry; ``on_file_sending`` at most once per entry and before its
terminal event; queue order with one association; callbacks on the caller's thread,
never two at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scu import (
    FileError,
    FileSending,
    FileSent,
    TransferCompleted,
    TransferResult,
    TransferStarted,
)

__all__ = ["CALLBACK_KINDS", "EVENT_KINDS", "Recorder"]

#: Callback names, as in ``send(on_transfer_started=..., on_file_sending=..., ...)``.
CALLBACK_KINDS = ("started", "sending", "sent", "error", "completed")
EVENT_KINDS: dict[type, str] = {
    TransferStarted: "started",
    FileSending: "sending",
    FileSent: "sent",
    FileError: "error",
    TransferCompleted: "completed",
}


@dataclass
class Recorder:
    """The five callbacks, recording each event and the thread it ran on, and noticing a
    callback that starts while another is still running.

    ``raise_in`` (an event class or a kind name such as ``"sent"``) makes that callback
    raise after recording; ``raised`` counts how often. ``hold`` sleeps inside every
    callback, which widens the window in which an overlap would show.
    """

    raise_in: type | str | None = None
    hold: float = 0.0
    caller: int = field(default_factory=threading.get_ident)
    events: list[Any] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    overlaps: int = 0
    raised: int = 0
    _inside: bool = False

    def _record(self, event: Any) -> None:
        if self._inside:
            self.overlaps += 1
        self._inside = True
        try:
            self.threads.add(threading.get_ident())
            self.events.append(event)
            if self.hold:
                time.sleep(self.hold)
        finally:
            self._inside = False
        if self.raise_in is not None and (
            self.raise_in is type(event) or self.raise_in == EVENT_KINDS[type(event)]
        ):
            self.raised += 1
            raise RuntimeError(f"callback failure on {type(event).__name__}")

    @property
    def callbacks(self) -> dict[str, Callable[[Any], None]]:
        """Keyword arguments for ``send()``/``send_async()``."""

        def name(kind: str) -> str:
            return f"on_transfer_{kind}" if kind in ("started", "completed") else f"on_file_{kind}"

        return {name(kind): self._record for kind in CALLBACK_KINDS}

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def terminal(self) -> list[FileSent | FileError]:
        return [e for e in self.events if isinstance(e, FileSent | FileError)]

    def errors_by_file(self) -> dict[str, str]:
        return {e.file: e.error for e in self.of(FileError)}

    def check_invariants(
        self,
        result: TransferResult,
        queue: Sequence[str],
        *,
        in_order: bool = False,
        same_thread: bool = True,
    ) -> None:
        """The transfer invariants for one finished send of ``queue`` (entry names in
        queue order); ``in_order`` also requires terminal events in queue order."""
        events = self.events
        if same_thread:
            assert self.threads <= {self.caller}, "a callback ran on another thread than send()'s"
        assert self.overlaps == 0, "two callbacks ran at the same time"
        assert events and isinstance(events[0], TransferStarted), f"first event: {events[:1]}"
        assert isinstance(events[-1], TransferCompleted), f"last event: {events[-1:]}"
        assert len(self.of(TransferStarted)) == 1
        assert len(self.of(TransferCompleted)) == 1
        started, completed = events[0], events[-1]
        assert started.total_files == completed.total_files == result.total_files == len(queue)
        assert (completed.successful, completed.failed) == (result.successful, result.failed)
        assert result.successful + result.failed == result.total_files == len(result.files)
        assert [o.file for o in result.files] == list(queue), "not one outcome per entry in order"
        terminal = self.terminal()
        assert Counter(e.file for e in terminal) == Counter(queue), (
            "not exactly one terminal event per entry"
        )
        assert result.successful == sum(o.ok for o in result.files) == len(self.of(FileSent))
        queued = Counter(queue)
        open_sends: dict[str, int] = {}
        for event in events:
            if isinstance(event, FileSending):
                open_sends[event.file] = open_sends.get(event.file, 0) + 1
                assert open_sends[event.file] <= queued[event.file], (
                    f"{event.file}: on_file_sending twice"
                )
            elif isinstance(event, FileSent | FileError):
                if open_sends.get(event.file, 0):
                    open_sends[event.file] -= 1
                else:
                    assert isinstance(event, FileError), f"{event.file} sent without FileSending"
        assert not any(open_sends.values()), f"FileSending without an outcome: {open_sends}"
        for outcome in result.files:
            event = next(e for e in terminal if e.file == outcome.file)
            assert isinstance(event, FileSent) == outcome.ok
        if in_order:
            assert [e.file for e in terminal] == list(queue), "concurrency 1 left queue order"
            sending = [e.file for e in self.of(FileSending)]
            assert sending == [n for n in queue if n in set(sending)]
