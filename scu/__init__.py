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
    ProtocolError,
    Rejection,
    ScuError,
    TransportError,
)
from scu.events import FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from scu.protocol.status import StatusCategory, classify, describe
from scu.protocol.uids import resolve_transfer_syntax
from scu.result import FileOutcome, PreflightItem, TransferResult
from scu.store import StoreScu

__all__ = [
    "AssociationError",
    "AssociationRejected",
    "CallbackError",
    "ConnectionFailed",
    "EchoResult",
    "FileError",
    "FileOutcome",
    "FileSending",
    "FileSent",
    "PreflightItem",
    "ProtocolError",
    "Rejection",
    "ScuError",
    "StatusCategory",
    "StoreScu",
    "TransferCompleted",
    "TransferResult",
    "TransferStarted",
    "TransportError",
    "classify",
    "describe",
    "echo",
    "resolve_transfer_syntax",
]
