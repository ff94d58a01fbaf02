"""What ``send()`` returns: counts, warnings and one outcome per queued entry."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Attempt", "FileOutcome", "PreflightItem", "TransferResult"]


@dataclass(frozen=True, slots=True)  # one or more per entry: kept small
class Attempt:
    """One try at sending an entry: its status (when answered) or what went wrong."""

    number: int
    ok: bool
    status: int | None = None
    error: str | None = None
    duration_seconds: float = 0.0


@dataclass(frozen=True, slots=True)  # one per entry: kept small
class FileOutcome:
    """How one queued entry ended, so a caller can retry the failed ones."""

    file: str
    status: int | None
    ok: bool
    error: str | None = None
    transfer_syntax: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    warning: str | None = None
    #: Every try, in order (empty when it could not be sent at all).
    attempts: tuple[Attempt, ...] = ()
    #: Bytes of data set on the wire (when sent).
    size: int = 0


@dataclass(frozen=True)
class TransferResult:
    """Counts, warnings (one line per file answered with a warning status) and
    ``files``: one :class:`FileOutcome` per queued entry, in queue order."""

    successful: int
    failed: int
    warnings: list[str]
    total_files: int
    files: list[FileOutcome] = field(default_factory=list)
    duration_seconds: float = 0.0
    #: Whether the transfer was interrupted (the entries not sent say so).
    interrupted: bool = False
    #: Entries left out because the transfer journal says this destination has them.
    already_sent: list[str] = field(default_factory=list)

    @property
    def bytes_sent(self) -> int:
        """Bytes of data set acknowledged with success or warning."""
        return sum(o.size for o in self.files if o.ok)

    @property
    def failed_files(self) -> list[str]:
        return [outcome.file for outcome in self.files if not outcome.ok]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (same field names)."""
        data = asdict(self)
        data["files"] = [asdict(outcome) for outcome in self.files]
        data["bytes_sent"] = self.bytes_sent
        return data


@dataclass(frozen=True)
class PreflightItem:
    """What would happen to one queued entry, from a negotiation without sending.

    ``verdict`` is ``"accept"`` (goes out in its own syntax), ``"convert"`` (goes out
    in ``transfer_syntax`` after conversion), ``"refuse"`` (the SCP accepts no usable
    context for it) or ``"unreadable"`` (the file cannot be sent at all).
    """

    file: str
    verdict: str
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    file_transfer_syntax: str | None = None
    transfer_syntax: str | None = None
    reason: str | None = None
