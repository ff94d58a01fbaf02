"""The transfer journal: each entry's outcome per destination, recorded durably as it
happens, in SQLite (standard library), so that a transfer cut short by a crash, a
``kill -9`` or Ctrl-C can be resumed without sending again what the SCP acknowledged.

An entry is known by its source (a file's path with its size and modification time, an
object's URL with its size and ETag, or the SHA-256 of an entry given in memory) and its
destination (the SCP's address and called AE title); its SOP Instance UID is kept
beside. Each acknowledgement is committed as soon as the caller's thread accounts it, so
a ``kill -9`` loses at most the acknowledgements still in flight: those files are sent
again on resume, and no acknowledged file is ever missing from the journal.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scu.result import FileOutcome
from scu.source import Entry

__all__ = ["JournalSummary", "TransferJournal", "entry_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    name TEXT NOT NULL,
    sop_instance_uid TEXT,
    ok INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    attempts INTEGER NOT NULL,
    transfer_syntax TEXT,
    size INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (source, destination)
);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    interrupted INTEGER,
    summary TEXT
);
"""
#: The tables of a journal and their columns, in order; SQLite adds sqlite_sequence.
_TABLES = {
    "outcomes": ("source", "destination", "name", "sop_instance_uid", "ok", "status", "error",
                 "attempts", "transfer_syntax", "size", "updated_at"),
    "transfers": ("id", "destination", "started_at", "ended_at", "interrupted", "summary"),
}  # fmt: skip


def _foreign_tables(db: sqlite3.Connection) -> str | None:
    """Why an SQLite database is not a journal (another program's tables), if it is not."""
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for name in names:
        if name == "sqlite_sequence":
            continue
        if name not in _TABLES:
            return f"it holds a table {name!r}"
        columns = tuple(row[1] for row in db.execute(f"PRAGMA table_info({name})"))
        if columns != _TABLES[name]:
            return f"its table {name!r} has the columns {', '.join(columns)}"
    return None


def entry_key(entry: Entry) -> str:
    """What identifies an entry's source across runs."""
    if entry.data is not None:
        return "sha256:" + hashlib.sha256(entry.data).hexdigest()
    if entry.remote is not None:
        return entry.remote.journal_key
    assert entry.path is not None
    try:
        info = os.stat(entry.path)
    except OSError:
        return f"path:{os.path.abspath(entry.path)}"
    return f"path:{os.path.abspath(entry.path)}|{info.st_size}|{info.st_mtime_ns}"


@dataclass(frozen=True)
class JournalSummary:
    """What a journal holds, per destination."""

    path: str
    #: destination -> {"acknowledged": n, "failed": n}
    destinations: dict[str, dict[str, int]]
    failed: list[tuple[str, str, str]]  # destination, name, error
    transfers: int
    last_update: float | None
    #: The runs, oldest first: destination, started_at, ended_at (None: never ended,
    #: e.g. killed), interrupted, and the counts it ended with.
    runs: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "destinations": self.destinations,
            "failed": [{"destination": d, "file": n, "error": e} for d, n, e in self.failed],
            "transfers": self.transfers,
            "last_update": self.last_update,
            "runs": self.runs,
        }


class TransferJournal:
    """One SQLite file; safe to use from one thread at a time (the caller's)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            foreign = _foreign_tables(db)  # before anything is written to it
            if foreign is not None:
                db.close()
                raise ValueError(
                    f"journal: {path}: an SQLite database but not a transfer journal ({foreign})"
                )
            db.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL: a committed row survives the process being
            # killed (only a power cut can lose the last ones).
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            if db is not None:  # opened, but not a journal: do not keep the file open
                db.close()
            raise ValueError(f"journal: {path}: not a usable transfer journal ({exc})") from None
        self._db = db
        self._lock = threading.Lock()
        self._transfer: int | None = None

    def close(self) -> None:
        self._db.close()

    def acknowledged(self, keys: Iterable[str], destination: str) -> set[str]:
        """Which of ``keys`` this destination acknowledged (success or warning)."""
        wanted = list(keys)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT source FROM outcomes WHERE ok = 1 AND destination = ? "
                    f"AND source IN ({marks})",
                    [destination, *chunk],
                )
                found.update(row[0] for row in rows)
        return found

    def begin(self, destination: str) -> None:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO transfers (destination, started_at) VALUES (?, ?)",
                (destination, time.time()),
            )
            self._transfer = cursor.lastrowid

    def record(self, key: str, destination: str, outcome: FileOutcome) -> None:
        """Record an outcome (committed at once). A later failure never overwrites an
        acknowledgement of the same source to the same destination."""
        with self._lock:
            self._db.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source, destination) DO UPDATE SET "
                "name = excluded.name, sop_instance_uid = excluded.sop_instance_uid, "
                "ok = excluded.ok, status = excluded.status, error = excluded.error, "
                "attempts = outcomes.attempts + excluded.attempts, "
                "transfer_syntax = excluded.transfer_syntax, size = excluded.size, "
                "updated_at = excluded.updated_at WHERE outcomes.ok = 0",
                (
                    key,
                    destination,
                    outcome.file,
                    outcome.sop_instance_uid,
                    int(outcome.ok),
                    outcome.status,
                    outcome.error,
                    len(outcome.attempts),
                    outcome.transfer_syntax,
                    outcome.size,
                    time.time(),
                ),
            )

    def end(self, *, interrupted: bool, summary: dict[str, object]) -> None:
        with self._lock:
            if self._transfer is not None:
                self._db.execute(
                    "UPDATE transfers SET ended_at = ?, interrupted = ?, summary = ? WHERE id = ?",
                    (time.time(), int(interrupted), json.dumps(summary), self._transfer),
                )

    def summary(self) -> JournalSummary:
        with self._lock:
            per: dict[str, dict[str, int]] = {}
            for destination, ok, count in self._db.execute(
                "SELECT destination, ok, COUNT(*) FROM outcomes GROUP BY destination, ok"
            ):
                counts = per.setdefault(destination, {"acknowledged": 0, "failed": 0})
                counts["acknowledged" if ok else "failed"] += count
            failed = [
                (d, n, e or "")
                for d, n, e in self._db.execute(
                    "SELECT destination, name, error FROM outcomes WHERE ok = 0 ORDER BY name"
                )
            ]
            runs: list[dict[str, object]] = [
                {
                    "destination": destination,
                    "started_at": started,
                    "ended_at": ended,
                    "interrupted": None if interrupted is None else bool(interrupted),
                    "counts": json.loads(summary) if summary else None,
                }
                for destination, started, ended, interrupted, summary in self._db.execute(
                    "SELECT destination, started_at, ended_at, interrupted, summary "
                    "FROM transfers ORDER BY id"
                )
            ]
            (last,) = self._db.execute("SELECT MAX(updated_at) FROM outcomes").fetchone()
        return JournalSummary(str(self.path), per, failed, len(runs), last, runs)
