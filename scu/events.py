"""The five transfer events, as frozen dataclasses.

Field names are the seed's (``sopInstanceUid`` -> ``sop_instance_uid``). The seed's
error-first ``(err, event)`` callbacks become ``(event)``: ``err`` was always null.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class TransferCompleted:
    message: str
    total_files: int
    successful: int
    failed: int
    duration_seconds: float


Event = TransferStarted | FileSending | FileSent | FileError | TransferCompleted
