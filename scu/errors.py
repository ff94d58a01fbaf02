"""The exception hierarchy of :mod:`scu`, in one place.

Errors are split by who is at fault:

* :class:`ValueError` / :class:`FileNotFoundError` (built-ins): local misuse, raised at
  construction or when a file is queued;
* :class:`AssociationError` and its subclasses: no association could be established at
  all, raised by ``send()`` after every queued entry has been accounted as failed;
* :class:`CallbackError`: a user callback raised; the transfer itself completed;
* :class:`ProtocolError` and :class:`TransportError` (internal to a transfer, never
  escape ``send()``): the peer misbehaved or the link broke while a file was in flight;
  they end that file as failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scu.result import TransferResult

__all__ = [
    "AssociationError",
    "AssociationRejected",
    "CallbackError",
    "ConnectionFailed",
    "Interrupted",
    "ProtocolError",
    "Rejection",
    "ScuError",
    "TransportError",
]


class ScuError(Exception):
    """Base class of every error raised by :mod:`scu`."""


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ as the standard numbers it (PS3.8 9.3.4) plus words."""

    result: int
    source: int
    reason: int
    description: str


class AssociationError(ScuError):
    """No association could be established; ``.result`` accounts every entry as failed.

    ``transient`` says whether trying again later may succeed (retries apply only then):
    a transient rejection, an A-ABORT or a dropped connection during negotiation, a
    timeout; not a refused connection, an unknown host or a permanent rejection."""

    transient = False

    def __init__(self, message: str, *, result: TransferResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class ConnectionFailed(AssociationError):
    """The TCP connection or the association negotiation failed (refused, timeout, abort)."""

    def __init__(
        self, message: str, *, transient: bool = False, result: TransferResult | None = None
    ) -> None:
        super().__init__(message, result=result)
        self.transient = transient


class AssociationRejected(AssociationError):
    """The SCP answered A-ASSOCIATE-RJ; ``.rejection`` holds its numbers and meaning."""

    def __init__(
        self, message: str, *, rejection: Rejection, result: TransferResult | None = None
    ) -> None:
        super().__init__(message, result=result)
        self.rejection = rejection
        self.transient = rejection.result == 2


class CallbackError(ScuError):
    """A callback raised. The transfer went on and ``.result`` is complete and correct;
    the first exception a callback raised is the ``__cause__``."""

    def __init__(self, message: str, *, result: TransferResult) -> None:
        super().__init__(message)
        self.result = result


class TransportError(ScuError):
    """The connection broke, timed out or was aborted while an association was open:
    always transient (worth a retry)."""

    transient = True


class Interrupted(KeyboardInterrupt):
    """``send()`` was interrupted (Ctrl-C, SIGTERM in the command, a cancelled
    ``send_async``): raised after every entry has been accounted for (the store in
    flight was given a moment to be answered, the rest are "not sent: interrupted");
    ``.result`` is the complete result."""

    def __init__(self, message: str, *, result: TransferResult) -> None:
        super().__init__(message)
        self.result = result


class ProtocolError(ScuError):
    """The peer sent something the standard does not allow at this point."""
