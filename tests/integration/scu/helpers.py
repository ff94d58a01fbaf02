"""Helpers for the StoreScu integration tests: a callback recorder that checks SPEC's
invariants, an SCU factory with short timeouts, and small synthetic files."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from integration.scu.scp_harness import HarnessScp
from pydicom.data import get_testdata_file

from mock_scp import datagen
from scu import (
    FileError,
    FileSending,
    FileSent,
    StoreScu,
    TransferCompleted,
    TransferResult,
    TransferStarted,
)

SCP_AE = "TEST-SCP"
#: Short timeouts keep fault tests fast; dimse 0.5 s is the stall threshold.
FAST: dict[str, Any] = {
    "connect_timeout": 2.0,
    "acse_timeout": 2.0,
    "dimse_timeout": 2.0,
    "network_timeout": 2.0,
}


def pydicom_file(name: str) -> str:
    """A pydicom test file that ships with the installed package (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    assert Path(path).is_relative_to(Path(pydicom.__file__).parent)
    return str(path)


def make_scu(scp: HarnessScp, **options: Any) -> StoreScu:
    """A StoreScu pointed at ``scp`` with short timeouts (overridable)."""
    settings: dict[str, Any] = {"called_ae_title": SCP_AE, **FAST, **options}
    return StoreScu(scp.addr, **settings)


def write_series(
    folder: Path, count: int, *, prefix: str = "img", seed: int = 0, **options: Any
) -> list[str]:
    """``count`` small synthetic files (64x64 CT, Explicit VR LE unless told)."""
    options.setdefault("sop_class", "CTImageStorage")
    paths = datagen.write_files(
        folder, count=count, name=f"{prefix}-{{index:03d}}.dcm", seed=seed, **options
    )
    return [os.fspath(p) for p in paths]


def instance_uid(path: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)


@dataclass
class Recorder:
    """The five callbacks, recording events with the thread they ran on, and checking
    that no two callbacks ever overlap."""

    events: list[Any] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    overlaps: int = 0
    hold: float = 0.0
    raise_in: type | None = None
    _inside: bool = False

    def _record(self, event: Any) -> None:
        if self._inside:
            self.overlaps += 1
        self._inside = True
        try:
            self.threads.add(threading.get_ident())
            self.events.append(event)
            if self.hold:
                time.sleep(self.hold)  # widens the window in which an overlap would show
            if self.raise_in is not None and isinstance(event, self.raise_in):
                raise RuntimeError(f"callback failure on {type(event).__name__}")
        finally:
            self._inside = False

    @property
    def callbacks(self) -> dict[str, Callable[[Any], None]]:
        return {
            "on_transfer_started": self._record,
            "on_file_sending": self._record,
            "on_file_sent": self._record,
            "on_file_error": self._record,
            "on_transfer_completed": self._record,
        }

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def terminal(self) -> list[FileSent | FileError]:
        return [e for e in self.events if isinstance(e, FileSent | FileError)]

    def errors_by_file(self) -> dict[str, str]:
        return {e.file: e.error for e in self.of(FileError)}

    def check_invariants(self, result: TransferResult, queue: list[str]) -> None:
        """SPEC invariants 1-3 (and 5's "one at a time") for one finished send."""
        events = self.events
        # 1: started once, first; completed once, last, with the result's counts.
        assert isinstance(events[0], TransferStarted)
        assert len(self.of(TransferStarted)) == 1
        assert events[0].total_files == len(queue)
        assert isinstance(events[-1], TransferCompleted)
        assert len(self.of(TransferCompleted)) == 1
        done = events[-1]
        assert (done.total_files, done.successful, done.failed) == (
            result.total_files,
            result.successful,
            result.failed,
        )
        # 2: every entry exactly one terminal event; counts add up.
        assert result.successful + result.failed == result.total_files == len(result.files)
        assert result.total_files == len(queue)
        assert sorted(e.file for e in self.terminal()) == sorted(queue)
        assert [o.file for o in result.files] == queue
        assert result.successful == sum(o.ok for o in result.files) == len(self.of(FileSent))
        # 3: sending at most once per entry, before that entry's terminal event; a
        # success always had its sending event.
        open_sends: dict[str, int] = {}
        for event in events:
            if isinstance(event, FileSending):
                open_sends[event.file] = open_sends.get(event.file, 0) + 1
            elif isinstance(event, FileSent | FileError):
                if open_sends.get(event.file, 0):
                    open_sends[event.file] -= 1
                else:
                    assert isinstance(event, FileError), f"{event.file} sent without FileSending"
        assert not any(open_sends.values()), f"FileSending without an outcome: {open_sends}"
        # 5: never two callbacks at once.
        assert self.overlaps == 0
