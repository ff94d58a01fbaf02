"""What the mock SCP's connection machine reports (:class:`StoreRequested`,
:class:`DatasetData`, :class:`Violation`...) and what it tells the driver to do with
the connection (:class:`Close`): frozen records, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from scu.protocol.dimse import Command
from scu.protocol.pdu import AssociateRQ

from .states import Act, Fault

__all__ = [
    "AssociationRequested",
    "Close",
    "DatasetData",
    "FaultCarriedOut",
    "LocalProtocolError",
    "OtherCommand",
    "Output",
    "PeerAborted",
    "PeerClosed",
    "ReleaseRequested",
    "StoreComplete",
    "StoreInterrupted",
    "StorePlan",
    "StoreRequested",
    "Violation",
    "WeAborted",
]


class LocalProtocolError(RuntimeError):
    """The server asked the machine for something its state does not allow (a bug)."""


# --- what the machine reports ---------------------------------------------------------


@dataclass(frozen=True)
class AssociationRequested:
    request: AssociateRQ


@dataclass(frozen=True)
class StoreRequested:
    """A C-STORE-RQ command arrived; its data set follows."""

    context_id: int
    command: Command
    #: The syntax its context was accepted in ("" when the context was not accepted).
    transfer_syntax: str
    abstract_syntax: str
    #: When its bytes arrived (the machine's clock): earlier than when it is processed
    #: if it came while the mock was still answering an earlier request.
    arrived_at: float = 0.0


@dataclass(frozen=True)
class StorePlan:
    """What the server decided, when a C-STORE-RQ arrived, about receiving its data set:
    abort at its first fragment, or read it at most ``read_rate`` bytes per second."""

    abort_during_dataset: bool = False
    read_rate: float | None = None


@dataclass(frozen=True)
class FaultCarriedOut:
    """The machine carried out a fault the plan armed (an A-ABORT is queued)."""

    fault: Fault


@dataclass(frozen=True)
class DatasetData:
    """Data set bytes of the store being received, as the PDVs of one feed brought them
    (consecutive ones in one output): views valid until the next feed."""

    chunks: list[memoryview]


@dataclass(frozen=True)
class StoreComplete:
    size: int


@dataclass(frozen=True)
class StoreInterrupted:
    """The store being received or answered ended without an answer."""

    why: str


@dataclass(frozen=True)
class OtherCommand:
    """A command other than C-STORE-RQ, answered by the machine (C-ECHO: success;
    anything else: 0x0211 unrecognized operation; C-CANCEL: no answer)."""

    command: Command
    status: int | None


@dataclass(frozen=True)
class ReleaseRequested:
    pass


@dataclass(frozen=True)
class PeerAborted:
    source: int
    reason: int


@dataclass(frozen=True)
class PeerClosed:
    detail: str


@dataclass(frozen=True)
class Violation:
    """Something the SCU did against the standard (see the journal's kinds)."""

    kind: str
    detail: str
    message_id: int | None = None


@dataclass(frozen=True)
class WeAborted:
    """We answered the SCU with an A-ABORT (queued in :meth:`~ConnectionMachine.data_to_send`)."""

    detail: str


Output = (
    AssociationRequested
    | StoreRequested
    | FaultCarriedOut
    | DatasetData
    | StoreComplete
    | StoreInterrupted
    | OtherCommand
    | ReleaseRequested
    | PeerAborted
    | PeerClosed
    | Violation
    | WeAborted
)


@dataclass(frozen=True)
class Close:
    """How the connection must end once what is queued has been written."""

    act: Act  # CLOSE, RESET, SEND_AND_CLOSE (already written), or a graceful drain
    graceful: bool
