"""One TCP connection of the mock SCP: the socket, the clock and the server's decisions
around :class:`mock_scp.machine.ConnectionMachine`, which decides every state change.

Deadlines, each for the whole exchange it guards (like the ARTIM timer of PS3.8):

* ``acse_timeout``: the TLS handshake and the whole A-ASSOCIATE-RQ, from the TCP accept;
* ``network_timeout``: the idle time between messages, from the answer to one (or the
  A-ASSOCIATE-AC) to the first byte of the next; bytes that carry no message (an empty
  P-DATA-TF) do not make an association busy;
* ``dimse_timeout``: a whole DIMSE message (command and data set), from its first byte;
  time the mock itself spends throttling a slow read is not counted.

When one passes, the connection is aborted (A-ABORT) and the association slot freed,
whatever the SCU is dripping. The connection reaches the server only through
:class:`ServerPort`.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from typing import Any, Protocol

from scu.protocol.identity import UserIdentity
from scu.protocol.pdu import AssociateRQ, ContextResult

from .checks import unanswerable
from .config import ScpConfig
from .journal import AssociationRecord, Journal, Violation
from .machine import (
    Act,
    AssociationRequested,
    ConnectionMachine,
    ConnState,
    DatasetData,
    FaultCarriedOut,
    OtherCommand,
    Output,
    PeerAborted,
    PeerClosed,
    ReleaseRequested,
    StoreComplete,
    StoreInterrupted,
    StoreRequested,
    WeAborted,
)
from .machine import Violation as MachineViolation
from .matching import Plan
from .negotiation import negotiate
from .receiving import Receiving, Stopped, Store
from .rules import Decision, StoreContent, StoreRequest
from .storage import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    PayloadStore,
    StoreWriter,
)

__all__ = ["Connection", "ServerPort"]

_RECV_SIZE = 128 * 1024
_DRAIN_SECONDS = 1.0
#: Which rule action is which fault of the machine.


class ServerPort(Protocol):
    """What a connection may ask of its server, and nothing else."""

    config: ScpConfig
    journal: Journal
    stop_event: threading.Event
    payloads: PayloadStore
    writer: StoreWriter | None

    def admit(self, request: AssociateRQ) -> tuple[tuple[int, int, int], str, bool] | None: ...

    def release_slot(self) -> None: ...

    def next_nth(self) -> int: ...

    def plan(self, request: StoreRequest) -> Plan: ...

    def decide(self, plan: Plan, content: StoreContent) -> Decision: ...

    def check_identity(self, identity: UserIdentity | None) -> tuple[bool, bytes | None]: ...


class Connection(Receiving):
    """One connection, served by one thread (:meth:`run`); how stores are received and
    answered is :class:`mock_scp.receiving.Receiving`."""

    def __init__(self, port: ServerPort, sock: socket.socket, peer: Any) -> None:
        self.port = port
        self.config = port.config
        self.journal = port.journal
        self.sock = sock
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.machine = ConnectionMachine(
            max_pdu_length=self.config.max_pdu_length,
            plan_store=self._plan_store,
            strict=self.config.strict,
            max_dataset=self.config.max_dataset_size,
        )
        self.record: AssociationRecord | None = None
        self.counted = False  # holds one of max_associations
        self.store: Store | None = None
        self._view = memoryview(bytearray(_RECV_SIZE))
        self._stall_view = memoryview(bytearray(16 * 1024))
        self._deadline: float | None = None
        self._deadline_kind = "acse"
        self._accepted_at = time.monotonic()
        #: When the association, idle since its last message, times out.
        self._idle_deadline: float | None = None

    # --- plumbing ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            if not self.port.stop_event.is_set():
                self._serve()
        except Stopped:
            self._handle(self.machine.stop())
            self._flush()
        except Exception as exc:  # a bug of ours: recorded, reported by check()
            self.journal.error(exc)
            self._end("aborted", f"mock error: {exc!r}")
            self._send_quietly(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x00")
        finally:
            self._close()
            if self.counted:
                self.port.release_slot()
                self.counted = False
            if self.record is not None and self.record.ended is not None:
                self.journal.notify(self.record)

    def _send(self, data: bytes) -> bool:
        if not data:
            return True
        try:
            self._timeout(self.config.network_timeout)
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _timeout(self, seconds: float | None) -> None:
        """``settimeout``, skipped while the socket's timeout is within 10 ms of
        ``seconds``: each call is a system call, and a send and a read alternate their
        timeouts once per message (a deadline met 10 ms late is no deadline missed)."""
        current = self.sock.gettimeout()
        if seconds is None or current is None:
            if seconds != current:
                self.sock.settimeout(seconds)
        elif abs(current - seconds) > 0.01:
            self.sock.settimeout(seconds)

    def _send_quietly(self, data: bytes) -> None:
        self._send(data)

    def _flush(self) -> None:
        self._send(self.machine.data_to_send())

    def _close(self) -> None:
        closing = self.machine.closing
        try:
            if closing is not None and closing.act is Act.RESET:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif closing is not None and closing.graceful:
                self._graceful_close()
            else:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def _graceful_close(self) -> None:
        """Half-close and read until the peer closes, so what we sent last (a reject, an
        abort, a release reply) is not destroyed by a reset from unread data."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _DRAIN_SECONDS
            while not self.port.stop_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                if self.sock.recv_into(self._view) == 0:
                    break
        except OSError:
            pass

    def _end(self, how: str, detail: str, by: str = "mock") -> None:
        if self.record is not None:
            self.journal.end_association(self.record, how, detail, by)

    # --- the clock ---------------------------------------------------------------------

    def _set_deadline(self) -> None:
        state = self.machine.state
        config = self.config
        now = time.monotonic()
        if state is ConnState.AWAITING_REQUEST:
            seconds, kind = config.acse_timeout, "acse"
            self._deadline = None if seconds is None else self._accepted_at + seconds
            self._deadline_kind = kind
            return
        busy = state is ConnState.RECEIVING or self.machine.in_pdu
        if busy:
            if self._deadline_kind != "dimse":
                self._deadline_kind = "dimse"
                seconds = config.dimse_timeout
                self._deadline = None if seconds is None else now + seconds
            return
        # Idle: the clock started when the last message was answered, not now. A PDU that
        # made the link busy for a while without carrying a message does not restart it.
        self._deadline_kind = "network"
        self._deadline = self._idle_deadline

    def _idle_from_now(self) -> None:
        """A message was dealt with (or the association accepted): the association is
        idle from now on, and the next message gets a DIMSE deadline of its own."""
        seconds = self.config.network_timeout
        self._idle_deadline = None if seconds is None else time.monotonic() + seconds
        self._deadline_kind = "network"
        self._deadline = self._idle_deadline

    def _deadline_detail(self) -> str:
        config = self.config
        if self._deadline_kind == "acse":
            return f"ACSE timeout: no A-ASSOCIATE-RQ within {config.acse_timeout} s"
        if self._deadline_kind == "dimse":
            return f"DIMSE timeout: the message did not arrive within {config.dimse_timeout} s"
        return f"network timeout: no message within {config.network_timeout} s"

    def _recv(self) -> int | None:
        """Read what is there within the current deadline; ``None`` when it passed."""
        limit = len(self._view)
        rate = self.machine.read_rate
        if rate is not None:
            limit = max(1, min(limit, int(rate / 20)))
        while True:
            if self.port.stop_event.is_set():
                raise Stopped
            left = None if self._deadline is None else self._deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._timeout(left)
            try:
                return self.sock.recv_into(self._view[:limit])
            except TimeoutError:
                continue
            except ssl.SSLWantReadError:  # pragma: no cover - a TLS record cut short
                continue

    # --- serving -------------------------------------------------------------------------

    def _serve(self) -> None:
        if self.config.tls is not None and not self._handshake():
            return
        while not self.machine.ended:
            self._set_deadline()
            try:
                n = self._recv()
            except Stopped:
                raise
            except OSError as exc:
                if self.port.stop_event.is_set():
                    raise Stopped from None
                self._handle(self.machine.peer_closed(f"reset ({exc})"))
                break
            if n is None:
                self._timed_out()
                break
            if n == 0:
                if self.port.stop_event.is_set():
                    raise Stopped
                self._handle(self.machine.peer_closed())
                break
            self._handle(self.machine.receive(self._view[:n]))
            self._flush_data()  # the next read reuses the buffer
            self._flush()
            rate = self.machine.read_rate
            if rate is not None:
                self._throttle(n, rate)

    def _handshake(self) -> bool:
        assert self.config.tls is not None
        timeout = self.config.acse_timeout
        try:
            self.sock.settimeout(timeout)
            self.sock = self.config.tls.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.record = self._new_record(None)
            self.record.tls = True
            self._end("aborted", f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}")
            return False
        return True

    def _throttle(self, n: int, rate: float) -> None:
        pause = n / rate
        if self.port.stop_event.wait(pause):
            raise Stopped
        if self._deadline is not None:
            self._deadline += pause  # our own slowness is not the SCU's

    def _timed_out(self) -> None:
        detail = self._deadline_detail()
        if self.machine.state is ConnState.AWAITING_REQUEST:
            self.record = self._new_record(None)
            self._end("aborted", detail)
            self.machine.deadline_passed(detail)
            return
        self._handle(self.machine.deadline_passed(detail))
        self._flush()

    # --- what the machine reports ------------------------------------------------------

    def _handle(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, DatasetData):
                self._dataset_data(out)
            elif isinstance(out, StoreComplete):
                self._store_complete()
                self._idle_from_now()
            elif isinstance(out, FaultCarriedOut):
                self._store_ended(None, "abort", False)
                self._end("aborted", "A-ABORT by the mock during the dataset (rule)")
            elif isinstance(out, StoreRequested):
                pass  # planned already (_plan_store)
            elif isinstance(out, AssociationRequested):
                self._association_requested(out.request)
            elif isinstance(out, MachineViolation):
                self._violation(out.kind, out.detail, out.message_id)
            elif isinstance(out, StoreInterrupted):
                if self.store is not None:
                    self._store_ended(None, "interrupted", self.store.complete)
            elif isinstance(out, ReleaseRequested):
                self._end("released", "A-RELEASE by the SCU", by="scu")
            elif isinstance(out, PeerAborted):
                self._end(
                    "aborted",
                    f"A-ABORT from the SCU (source {out.source}, reason {out.reason})",
                    by="scu",
                )
            elif isinstance(out, PeerClosed):
                how = "closed" if out.detail == "closed" else out.detail
                self._end("dropped", f"TCP connection {how} by the SCU", by="scu")
            elif isinstance(out, WeAborted):
                if self.record is None:
                    self.record = self._new_record(None)
                self._end("aborted", f"A-ABORT by the mock: {out.detail}")
            elif isinstance(out, OtherCommand):
                self._idle_from_now()  # answered by the machine; nothing to journal

    def _violation(self, kind: str, detail: str, message_id: int | None = None) -> None:
        record = self.record
        if record is None:  # before any association: the connection's own record
            record = self.record = self._new_record(None)
        self.journal.violation(Violation(kind, record.id, detail, message_id))

    def _new_record(self, request: AssociateRQ | None) -> AssociationRecord:
        return self.journal.new_association(
            calling_ae_title=request.calling_ae_title if request else "",
            called_ae_title=request.called_ae_title if request else "",
            proposed_contexts=_proposed(request) if request else [],
            accepted_contexts=[],
            max_pdu_length=request.max_pdu_length if request else 0,
            peer=self.peer,
            implementation_class_uid=request.implementation_class_uid if request else "",
            implementation_version_name=request.implementation_version_name if request else "",
            user_identity=request.user_identity if request else None,
            tls=self.config.tls is not None,
        )

    def _association_requested(self, request: AssociateRQ) -> None:
        port = self.port
        record = self.record = self._new_record(request)
        for note in request.anomalies:
            self._violation("negotiation", note)
        reject = port.admit(request)
        if reject is None:
            self.counted = True
            accepted, response = port.check_identity(request.user_identity)
            if not accepted:
                port.release_slot()
                self.counted = False
                # PS3.7 D.3.3.7: an authorisation failure is rejected-permanent by the
                # DICOM UL service-provider (ACSE related function), no reason given.
                reject = ((1, 2, 1), "user identity not accepted", False)
        if reject is not None:
            (result, source, reason), why, close_at_once = reject
            with self.journal.lock:
                record.rejection = (result, source, reason)
            self._end("rejected", why)
            sent = self._send(self.machine.reject(result, source, reason))
            if close_at_once or not sent:
                self.machine.closing = None  # close at once, as storescp and Orthanc do
            return
        if self.config.strict and unanswerable(request):
            self._handle(self.machine.refuse(unanswerable(request) or ""))
            return
        results = [
            ContextResult(cid, result, syntax)
            for cid, result, syntax in negotiate(request.contexts, port.config.policy)
        ]
        with self.journal.lock:
            record.accepted_contexts = [
                (r.context_id, _abstract(request, r.context_id), r.transfer_syntax or "")
                for r in results
                if r.accepted
            ]
        identity = request.user_identity
        answer = response if identity is not None and identity.positive_response_requested else None
        if answer is None and identity is not None and identity.positive_response_requested:
            answer = b""
        data = self.machine.accept(
            results,
            user_identity_response=answer,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        )
        if not self._send(data):
            self._end("dropped", "connection lost while sending A-ASSOCIATE-AC")
            self.machine.peer_closed()
            return
        self.journal.notify(record)
        self._idle_from_now()
        self._handle(self.machine.resume())
        self._flush()


def _proposed(request: AssociateRQ) -> list[tuple[int, str, tuple[str, ...]]]:
    """The proposed contexts for the journal, each distinct one held once: a request
    may repeat one context thousands of times, and the record lives as long as the
    journal."""
    seen: dict[tuple[int, str, tuple[str, ...]], tuple[int, str, tuple[str, ...]]] = {}
    out = []
    for c in request.contexts:
        key = (c.context_id, c.abstract_syntax, c.transfer_syntaxes)
        out.append(seen.setdefault(key, key))
    return out


def _abstract(request: AssociateRQ, context_id: int) -> str:
    return next((c.abstract_syntax for c in request.contexts if c.context_id == context_id), "")
