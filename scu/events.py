"""The five transfer events, as frozen dataclasses.

Field names are those of the node-dicom StoreScu documentation, in snake_case
(``sopInstanceUid`` -> ``sop_instance_uid``). Its error-first ``(err, event)`` callbacks
become ``(event)``: ``err`` was always null. ``attempts`` and ``size`` are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from scu.result import Attempt

__all__ = ["Event", "FileError", "FileSending", "FileSent", "TransferCompleted", "TransferStarted"]


@dataclass(frozen=True)
class TransferStarted:
    message: str
    total_files: int


@dataclass(frozen=True)
class FileSending:
    message: str
    file: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class FileSent:
    message: str
    file: str
    sop_instance_uid: str
    sop_class_uid: str
    #: The transfer syntax UID the dataset went out in (on the wire).
    transfer_syntax: str
    duration_seconds: float
    status: int
    #: ``None`` on plain success; for warning statuses the code, meaning and comment.
    warning: str | None = None
    #: Every try, the last one being this success (more than one after retries).
    attempts: tuple[Attempt, ...] = ()
    #: Bytes of data set on the wire.
    size: int = 0


@dataclass(frozen=True)
class FileError:
    message: str
    file: str
    error: str
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    file_transfer_syntax: str | None = None
    #: The status the SCP answered, when it answered.
    status: int | None = None
    #: Every try (none when it could not be sent at all).
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class TransferCompleted:
    message: str
    total_files: int
    successful: int
    failed: int
    duration_seconds: float


Event = TransferStarted | FileSending | FileSent | FileError | TransferCompleted
