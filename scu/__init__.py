"""scu: a DICOM Storage SCU that keeps the promises of its documentation.

>>> from scu import StoreScu
>>> sender = StoreScu("127.0.0.1:11112", calling_ae_title="MY-SCU", called_ae_title="PACS")
>>> sender.add_directory("study/")                         # doctest: +SKIP
>>> result = sender.send(on_file_sent=lambda ev: print(ev.sop_instance_uid))  # doctest: +SKIP
"""

from scu.echo import EchoResult, echo
from scu.errors import (
    AssociationError,
    AssociationRejected,
    CallbackError,
    ConnectionFailed,
    Interrupted,
    ProtocolError,
    Rejection,
    ScuError,
    TransportError,
)
from scu.events import FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from scu.journal import TransferJournal
from scu.protocol.identity import UserIdentity
from scu.protocol.status import StatusCategory, classify, describe
from scu.protocol.uids import resolve_transfer_syntax
from scu.remote import s3_options
from scu.result import Attempt, FileOutcome, PreflightItem, TransferResult
from scu.store import Skipped, StoreScu

__all__ = [
    "AssociationError",
    "AssociationRejected",
    "Attempt",
    "CallbackError",
    "ConnectionFailed",
    "EchoResult",
    "FileError",
    "FileOutcome",
    "FileSending",
    "FileSent",
    "Interrupted",
    "PreflightItem",
    "ProtocolError",
    "Rejection",
    "ScuError",
    "Skipped",
    "StatusCategory",
    "StoreScu",
    "TransferCompleted",
    "TransferJournal",
    "TransferResult",
    "TransferStarted",
    "TransportError",
    "UserIdentity",
    "classify",
    "describe",
    "echo",
    "resolve_transfer_syntax",
    "s3_options",
]
