"""Checking the queue while it is being sent, and planning presentation contexts from
what has been checked so far.

Every entry is still checked before it is sent (:func:`scu.source.read_header`: file
meta, SOP UIDs, the data set's structure to the last byte), but no longer all of them
before the first store: :class:`Headers` checks an entry when a worker needs it, and
*ahead* of need while the worker waits for a C-STORE-RSP (the association calls
:meth:`Headers.idle` between writing a request and reading its answer, as long as no
answer has arrived). The check of entry *i + 1* then costs nothing on the wire: it
happens while the SCP is busy with entry *i*.

Contexts are planned by :class:`Planner` from the (SOP class, file syntax) pairs of the
entries checked so far, never from more:

* before the first association, the first :data:`FIRST_PLAN_ENTRIES` entries are
  checked (all of them in a shorter queue), so that a queue of that size is planned
  exactly as a whole-queue plan would be and the first store leaves after a few
  milliseconds whatever the length of the queue;
* a worker keeps its association while it *carries* the next entry (one of its contexts
  has the entry's SOP class and, in auto mode, the entry's own transfer syntax; with a
  forced syntax, that syntax). An entry it cannot carry (a SOP class or a file syntax
  first seen late in the queue) makes the worker check :data:`REPLAN_AHEAD` more entries,
  re-plan from everything seen by then, release the association and open one planned
  for that entry's class. With ``concurrency=1`` entries therefore still go out strictly
  in queue order; a queue whose SOP classes and syntaxes all appear early is sent on one
  association, and each late newcomer costs one more association at most;
* the plan follows :func:`scu.planning.plan_associations`: per SOP class its file
  syntaxes on contexts of their own plus, in auto mode without ``never_transcode``, the
  fallback context; more than 128 contexts are split across associations with a class's
  contexts on one of them. A file only ever goes out on a context of its own SOP class:
  the selection (:meth:`scu.planning.SyntaxPolicy.select`) only looks at those.

Headers are dropped once their entry has its outcome, so holding a long queue costs the
entries and their outcomes, not a header per entry on top.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

from scu.planning import AssociationPlan, SyntaxPolicy, plan_associations
from scu.source import Entry, EntryError, Header, read_header

__all__ = [
    "FIRST_PLAN_ENTRIES",
    "LOOKAHEAD",
    "REPLAN_AHEAD",
    "Headers",
    "Planner",
    "need_of",
    "own_contexts",
    "safe_header",
]

#: Entries checked before the first association is planned (all, when fewer are queued).
FIRST_PLAN_ENTRIES = 256
#: Entries checked beyond an entry the open association cannot carry, before re-planning.
REPLAN_AHEAD = 256
#: How far ahead of the next entry to send the idle time may check.
LOOKAHEAD = 2048
#: Checked files are read whole when small (see :mod:`scu.source`); their bytes are kept
#: for sending, up to this many at a time, so that such a file is read once.
KEEP_BYTES = 8 << 20


def safe_header(
    entry: Entry, keep: list[tuple[bytes, os.stat_result]] | None = None
) -> Header | EntryError:
    """The entry's header, or why it cannot be sent (a reader bug included); ``keep``
    as in :func:`scu.source.read_header`."""
    try:
        return read_header(entry, keep)
    except EntryError as exc:
        return exc
    except Exception as exc:  # a reader bug must not lose the entry
        return EntryError(f"cannot read: {type(exc).__name__}: {exc}")


class Planner:
    """Association plans from the (SOP class, file syntax) pairs noted so far.

    :meth:`note` is called for every checked header; :meth:`plan_for` gives the plan an
    association must be opened with to carry a header, computed again only when a pair
    that changes the proposal was noted since. Thread-safe.
    """

    def __init__(self, policy: SyntaxPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._needs: dict[str, list[str]] = {}
        self._stale = False
        self._plan_of: dict[str, AssociationPlan] = {}
        #: How many times the plans were computed (tests and the benchmark read it).
        self.replans = 0

    def note(self, header: Header) -> None:
        syntaxes = self._needs.get(header.sop_class_uid)
        if syntaxes is None:
            with self._lock:
                self._needs.setdefault(header.sop_class_uid, []).append(header.transfer_syntax)
                self._stale = True
        elif header.transfer_syntax not in syntaxes:
            with self._lock:
                if header.transfer_syntax not in syntaxes:
                    syntaxes.append(header.transfer_syntax)
                    # A forced syntax is proposed whatever the files are in.
                    self._stale = self._stale or self.policy.forced is None

    def plan_for(self, header: Header) -> AssociationPlan:
        """The plan of the association that carries ``header`` (noted already)."""
        with self._lock:
            if self._stale or header.sop_class_uid not in self._plan_of:
                needs = [(c, ts) for c, syntaxes in self._needs.items() for ts in syntaxes]
                self._plan_of = {
                    sop_class: plan
                    for plan in plan_associations(needs, self.policy)
                    for sop_class in plan.sop_classes
                }
                self._stale = False
                self.replans += 1
            return self._plan_of[header.sop_class_uid]


def own_contexts(plan: AssociationPlan) -> frozenset[tuple[str, str]]:
    """The (SOP class, transfer syntax) pairs ``plan`` proposes on a context of their
    own: what an association opened with it can carry (see :func:`need_of`)."""
    return frozenset(
        (c.abstract_syntax, c.transfer_syntaxes[0])
        for c in plan.contexts
        if len(c.transfer_syntaxes) == 1
    )


def need_of(policy: SyntaxPolicy, header: Header) -> tuple[str, str]:
    """What an association must have proposed to carry ``header``: a context of its SOP
    class in its own syntax (auto mode) or in the forced one."""
    return header.sop_class_uid, policy.forced or header.transfer_syntax


class Headers:
    """The checked headers of a transfer's entries, checked on demand or ahead of need.

    ``upcoming()`` says which entries this reader's worker(s) will ask for next (a
    ``(start, stop)`` range); :meth:`idle` checks the next one of them not yet checked.
    Every checked header is noted by the planner. Thread-safe (workers of one process
    share one).
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        planner: Planner,
        upcoming: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.entries = entries
        self.planner = planner
        self._got: dict[int, Header | EntryError] = {}
        self._kept: dict[int, tuple[bytes, os.stat_result]] = {}
        self._kept_bytes = 0
        self._lock = threading.Lock()
        self._ahead = 0
        self._upcoming = upcoming or (lambda: (0, 0))
        #: Entries checked so far, and how many of them while waiting for an answer.
        self.checked = 0
        self.checked_idle = 0

    def after_fork(self, upcoming: Callable[[], tuple[int, int]]) -> None:
        """In a worker process just forked: fresh locks (another thread of the parent
        may have held them), and the entries this process will ask for next."""
        self._lock = threading.Lock()
        self.planner._lock = threading.Lock()
        self._upcoming = upcoming

    def _check(self, index: int) -> Header | EntryError:
        entry = self.entries[index]
        keep: list[tuple[bytes, os.stat_result]] | None = (
            [] if entry.path is not None and self._kept_bytes < KEEP_BYTES else None
        )
        header = safe_header(entry, keep)
        self._got[index] = header
        if keep and isinstance(header, Header):
            self._kept[index] = keep[0]
            self._kept_bytes += len(keep[0][0])
        self.checked += 1
        if isinstance(header, Header):
            self.planner.note(header)
        return header

    def get(self, index: int) -> Header | EntryError:
        """The header of entry ``index``, checked now if it was not yet."""
        header = self._got.get(index)
        if header is None:
            with self._lock:
                header = self._got.get(index)
                if header is None:
                    header = self._check(index)
        return header

    def peek(self, index: int) -> Header | EntryError | None:
        """The header if it has been checked (and not forgotten), else ``None``."""
        return self._got.get(index)

    def forget(self, index: int) -> None:
        """Entry ``index`` has its outcome: its header is no longer needed."""
        self._got.pop(index, None)
        if index in self._kept:
            with self._lock:
                kept = self._kept.pop(index, None)
                if kept is not None:
                    self._kept_bytes -= len(kept[0])

    def unchanged_bytes(self, index: int) -> bytes | None:
        """The bytes of file ``index`` as they were checked, if they were kept and the
        file has not changed since (same file, size and modification time): what the
        SCU checked is then what it sends, without reading the file again. ``None``:
        read the file (a file removed or cut short meanwhile fails as such)."""
        kept = self._kept.get(index)
        path = self.entries[index].path
        if kept is None or path is None:
            return None
        data, then = kept
        try:
            now = os.stat(path)
        except OSError:
            return None
        if (now.st_ino, now.st_dev, now.st_size, now.st_mtime_ns) != (
            then.st_ino, then.st_dev, then.st_size, then.st_mtime_ns
        ):  # fmt: skip
            return None
        return data

    def check_range(self, start: int, stop: int) -> None:
        """Check entries ``start`` to ``stop`` (excluded) that are not checked yet."""
        for index in range(max(0, start), min(stop, len(self.entries))):
            if index not in self._got:
                self.get(index)
        self._ahead = max(self._ahead, stop)

    def check_ahead(self, count: int) -> None:
        """Check the next ``count`` upcoming entries (before planning an association)."""
        start, stop = self._upcoming()
        self.check_range(start, min(stop, start + count))

    def idle(self) -> bool:
        """Check one entry ahead of need; ``False`` when there is none to check."""
        start, stop = self._upcoming()
        stop = min(stop, start + LOOKAHEAD, len(self.entries))
        with self._lock:
            index = max(self._ahead, start)
            got = self._got
            while index < stop and index in got:
                index += 1
            if index >= stop:
                return False
            self._ahead = index + 1
            self._check(index)
            self.checked_idle += 1
        return True
