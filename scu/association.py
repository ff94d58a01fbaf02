"""One association on one socket, driven by one thread: the I/O around
:class:`scu.protocol.requestor.Requestor`, which decides every state change.

pynetdicom's SCU runs a DUL thread and an association reactor beside the caller and
hands messages between them through queues; the reactor can take a C-STORE-RSP off the
queue between the send handshake and ``get_msg``, so that the SCU waits out the whole
DIMSE timeout (pynetdicom issues 435 and 842). Here the thread that writes a request is
the thread that reads its response, with blocking socket calls, so that race cannot
exist; and the caller waits in ``recv``, not in a 1 ms sleep loop.

Timeouts (seconds, ``None`` for none):

* ``connect``: the TCP connection must be made within it;
* ``acse``: a deadline for each whole association exchange: the TLS handshake and
  the A-ASSOCIATE-RQ/AC (or RJ), and the A-RELEASE-RQ/RP. A release that gets no
  A-RELEASE-RP by then ends in an A-ABORT; a peer that drips its answer a byte at a
  time, or keeps sending P-DATA instead, gains nothing;
* ``dimse``: a deadline for the whole response to a request, from when the request
  has been written;
* ``network``: the longest any write may make no progress at all.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scu.errors import (
    AssociationRejected,
    ConnectionFailed,
    ProtocolError,
    Rejection,
    TransportError,
)
from scu.options import Address
from scu.payload import Payload, SourceError
from scu.planning import AssociationPlan, NegotiatedContext
from scu.protocol import acse, dimse, pdu
from scu.protocol.identity import UserIdentity
from scu.protocol.pdu import AssociateAC, AssociateRQ, ContextProposal
from scu.protocol.requestor import (
    Accepted,
    ConnectionLost,
    PeerAborted,
    PeerViolation,
    Rejected,
    Released,
    Requestor,
    ResponseReceived,
    ScuEvent,
    ScuState,
    TimedOut,
)
from scu.protocol.stream import Limits
from scu.protocol.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION_SOP_CLASS
from scu.waiting import (
    INTERRUPTED,
    Interruption,
    describe_os_error,
    ms,
    pending_abort,
    send_quietly,
    wait,
)

__all__ = ["Association", "Endpoint", "InterruptedStore", "Timeouts"]

log = logging.getLogger("scu.association")

#: Bytes of data set read and written per system call when streaming from disk.
CHUNK_SIZE = 1 << 20
#: PDV size used when the SCP announces no limit (Maximum Length 0).
UNLIMITED_PDV = 1 << 20
#: The largest P-DATA-TF we read from the SCP: a response is a few hundred bytes.
MAX_INCOMING_PDU = 64 << 20
_RECV_SIZE = 64 * 1024


@dataclass(frozen=True)
class Timeouts:
    connect: float | None = 10.0
    acse: float | None = 30.0
    dimse: float | None = 30.0
    network: float | None = 60.0


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to open associations with one SCP, as one party."""

    address: Address
    calling_ae_title: str
    called_ae_title: str
    max_pdu_length: int
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: ssl.SSLContext | None = None
    user_identity: UserIdentity | None = None
    log: logging.Logger = log

    @property
    def where(self) -> str:
        return f"{self.called_ae_title}@{self.address}"

    def open(
        self,
        plan: AssociationPlan | None,
        *,
        verification: bool = False,
        interruption: Interruption | None = None,
    ) -> Association:
        """Connect and negotiate; :class:`ConnectionFailed` or :class:`AssociationRejected`."""
        return Association.open(self, plan, verification=verification, interruption=interruption)


def _deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


class Association:
    """An established association; use :meth:`Endpoint.open` to make one."""

    def __init__(
        self,
        sock: socket.socket,
        machine: Requestor,
        *,
        endpoint: Endpoint,
        negotiated: Sequence[NegotiatedContext],
        interruption: Interruption | None = None,
    ) -> None:
        assert machine.accept is not None
        self.interruption = interruption
        self._sock = sock
        self._machine = machine
        self.endpoint = endpoint
        self.address = endpoint.address
        self.timeouts = endpoint.timeouts
        self._log = endpoint.log
        self.accept: AssociateAC = machine.accept
        self.negotiated = tuple(negotiated)
        self.max_pdv_data = pdu.max_pdv_data(self.accept.max_pdu_length, UNLIMITED_PDV)
        self._next_message_id = 1
        self._chunk = bytearray(CHUNK_SIZE)
        self._recv_buffer = bytearray(_RECV_SIZE)
        self._scatter = hasattr(sock, "sendmsg") and not isinstance(sock, ssl.SSLSocket)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._out_poller: select.poll | None = None

    @property
    def state(self) -> ScuState:
        return self._machine.state

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        endpoint: Endpoint,
        plan: AssociationPlan | None,
        *,
        verification: bool = False,
        interruption: Interruption | None = None,
    ) -> Association:
        where = endpoint.where
        timeouts = endpoint.timeouts
        contexts = [] if plan is None else list(plan.contexts)
        if verification:
            contexts.append(
                ContextProposal(
                    2 * len(contexts) + 1,
                    VERIFICATION_SOP_CLASS,
                    (EXPLICIT_VR_LE, IMPLICIT_VR_LE),
                )
            )

        def failed(cause: str, *, transient: bool = False) -> ConnectionFailed:
            return ConnectionFailed(
                f"could not establish association with {where}: {cause}", transient=transient
            )

        try:
            sock = socket.create_connection(
                (endpoint.address.host, endpoint.address.port), timeout=timeouts.connect
            )
        except (OSError, UnicodeError) as exc:  # UnicodeError: the idna codec on odd names
            cause = describe_os_error(exc)
            timed_out = isinstance(exc, socket.timeout | TimeoutError)
            if timed_out:
                cause = f"no TCP connection within connect_timeout={timeouts.connect}s"
            raise failed(cause, transient=timed_out) from exc
        deadline = _deadline(timeouts.acse)
        limits = Limits(
            max_pdata_length=endpoint.max_pdu_length, max_pdata_hard=MAX_INCOMING_PDU, max_dataset=0
        )
        machine = Requestor(limits=limits)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.tls is not None:
                sock.settimeout(timeouts.acse)
                sock = endpoint.tls.wrap_socket(sock, server_hostname=endpoint.address.host)
            rq = AssociateRQ(
                called_ae_title=endpoint.called_ae_title,
                calling_ae_title=endpoint.calling_ae_title,
                contexts=tuple(contexts),
                max_pdu_length=endpoint.max_pdu_length,
                user_identity=endpoint.user_identity,
            )
            endpoint.log.debug(
                "-> A-ASSOCIATE-RQ %s -> %s, %d contexts, max PDU %d",
                endpoint.calling_ae_title, where, len(contexts), endpoint.max_pdu_length,
            )  # fmt: skip
            sock.settimeout(timeouts.network)
            sock.sendall(machine.associate(rq))
            events = wait(sock, machine, deadline, f"acse_timeout={timeouts.acse}s",
                           bytearray(_RECV_SIZE), interruption)  # fmt: skip
        except (OSError, UnicodeError) as exc:
            sock.close()
            cause = describe_os_error(exc)
            if isinstance(exc, socket.timeout | TimeoutError):
                cause = f"no answer to A-ASSOCIATE-RQ within acse_timeout={timeouts.acse}s"
            tls_refused = isinstance(exc, ssl.SSLError)
            raise failed(cause, transient=not tls_refused) from exc
        event = events[0]
        if isinstance(event, Rejected):
            sock.close()
            rj = event.rejection
            description = acse.describe_rejection(rj.result, rj.source, rj.reason)
            endpoint.log.debug("<- A-ASSOCIATE-RJ %s", description)
            raise AssociationRejected(
                f"association rejected by {where}: {description}",
                rejection=Rejection(rj.result, rj.source, rj.reason, description),
            )
        if not isinstance(event, Accepted):
            sock.close()
            transient = isinstance(event, PeerAborted | ConnectionLost | TimedOut)
            raise failed(_why_not(event, "A-ASSOCIATE-RQ"), transient=transient)
        accept = event.accept
        negotiated = _negotiated(contexts, accept)
        endpoint.log.debug(
            "<- A-ASSOCIATE-AC max PDU %d, %d of %d contexts accepted",
            accept.max_pdu_length, sum(c.accepted for c in negotiated), len(negotiated),
        )  # fmt: skip
        sock.settimeout(timeouts.network)
        return cls(
            sock, machine, endpoint=endpoint, negotiated=negotiated, interruption=interruption
        )

    # --- ending ------------------------------------------------------------------------

    def release(self) -> None:
        """A-RELEASE within the ACSE deadline; an A-ABORT when it does not complete."""
        if self.state is not ScuState.ESTABLISHED:
            self.close()
            return
        try:
            self._sock.settimeout(self.timeouts.network)
            self._sock.sendall(self._machine.release())
            events = wait(
                self._sock,
                self._machine,
                _deadline(self.timeouts.acse),
                f"acse_timeout={self.timeouts.acse}s",
                self._recv_buffer,
                self.interruption,
            )
            if isinstance(events[0], Released):
                self._log.debug("<- A-RELEASE-RP")
            else:
                self._log.debug("release did not complete: %s", _why_not(events[0], "A-RELEASE-RQ"))
        except OSError as exc:
            self._log.debug("release did not complete: %s", describe_os_error(exc))
            send_quietly(self._sock, self._machine.abort())
        self.close()

    def abort(self) -> None:
        send_quietly(self._sock, self._machine.abort())
        self._log.debug("-> A-ABORT")
        self.close()

    def close(self) -> None:
        if self.state not in (ScuState.CLOSED, ScuState.ABORTED):
            send_quietly(self._sock, self._machine.abort())
        try:
            self._sock.close()
        except OSError:
            pass

    @property
    def usable(self) -> bool:
        """Established, and the SCP has not ended it while we were idle (an idle timeout
        on the SCP side): checked before each request, so that a file is never sent on
        an association the SCP already gave up."""
        if self.state is not ScuState.ESTABLISHED:
            return False
        if not self._poller.poll(0):
            return True
        try:  # the SCP sent something unasked: an A-ABORT, an A-RELEASE-RQ, or it closed
            self._sock.settimeout(0)
            n = self._sock.recv_into(self._recv_buffer)
            events = (
                self._machine.peer_closed()
                if n == 0
                else self._machine.receive(memoryview(self._recv_buffer)[:n])
            )
        except BlockingIOError:
            events = []
        except (OSError, ValueError) as exc:
            events = self._machine.peer_closed(describe_os_error(exc))
        finally:
            if self.state is ScuState.ESTABLISHED:
                self._sock.settimeout(self.timeouts.network)
        send_quietly(self._sock, self._machine.data_to_send())
        if self.state is not ScuState.ESTABLISHED:
            self._log.debug("the SCP ended the association while it was idle: %s", events)
            self.close()
            return False
        return True

    def readable(self, timeout: float = 0.0) -> bool:
        """Whether the SCP has sent something, waiting at most ``timeout`` seconds."""
        return bool(self._poller.poll(int(timeout * 1000)))

    # --- DIMSE -------------------------------------------------------------------------

    def _message_id(self) -> int:
        message_id = self._next_message_id
        self._next_message_id = message_id % 0xFFFF + 1
        return message_id

    def store(
        self,
        context_id: int,
        sop_class_uid: str,
        sop_instance_uid: str,
        payload: Payload,
        idle: Callable[[], bool] | None = None,
    ) -> dimse.Command:
        """C-STORE one data set; returns the response command. A broken link, an
        A-ABORT or a timeout raises :class:`TransportError`; a malformed answer raises
        :class:`ProtocolError`. Either way the association is over.

        ``idle`` is called once the request is written, again and again while no answer
        has arrived, until it returns ``False``: other work (checking the next entries)
        done in the time the SCP takes to answer. The DIMSE deadline starts after it."""
        message_id = self._message_id()
        command = dimse.encode_store_rq(message_id, sop_class_uid, sop_instance_uid)
        self._log.debug(
            "-> C-STORE-RQ id=%d %s (%d bytes, context %d)",
            message_id, sop_instance_uid, payload.length, context_id,
        )  # fmt: skip
        return self._exchange(
            context_id, message_id, command, payload, dimse.C_STORE_RSP, "the data set", idle
        )

    def echo(self) -> dimse.Command:
        context = next(
            (
                c
                for c in self.negotiated
                if c.abstract_syntax == VERIFICATION_SOP_CLASS and c.accepted
            ),
            None,
        )
        if context is None:
            raise ProtocolError("the SCP did not accept the Verification SOP Class")
        message_id = self._message_id()
        command = dimse.encode_echo_rq(message_id)
        return self._exchange(
            context.context_id, message_id, command, None, dimse.C_ECHO_RSP, "C-ECHO-RQ"
        )

    def _exchange(
        self,
        context_id: int,
        message_id: int,
        command: bytes,
        payload: Payload | None,
        expected: int,
        what: str,
        idle: Callable[[], bool] | None = None,
    ) -> dimse.Command:
        first = self._machine.request(context_id, message_id, command, expected)
        try:
            self._send_message(context_id, first, payload)
        except SourceError:
            self.abort()
            raise
        except OSError as exc:
            raise self._broken(f"while sending {what}", exc) from exc
        if idle is not None:  # the answer is rarely there the moment the request is out
            ready = self._poller.poll
            while idle() and not ready(0):
                pass
        try:
            events = wait(
                self._sock,
                self._machine,
                _deadline(self.timeouts.dimse),
                f"dimse_timeout={self.timeouts.dimse}s",
                self._recv_buffer,
                self.interruption,
                self._poller if self._scatter else None,
            )
        except OSError as exc:
            raise self._broken("while waiting for the response", exc) from exc
        event = events[0]
        if isinstance(event, ResponseReceived):
            status = event.command.status
            self._log.debug("<- response id=%d status 0x%04X", message_id, status or 0)
            if self.state is not ScuState.ESTABLISHED:  # an A-ABORT came right behind it
                self.close()
            return event.command
        self.close()
        if isinstance(event, TimedOut):
            if event.what == INTERRUPTED:
                raise InterruptedStore(
                    "not answered before the transfer was interrupted; the association was aborted"
                )
            raise TransportError(
                f"no response from the SCP within {event.what}; the association was aborted"
            )
        if isinstance(event, PeerViolation):
            raise ProtocolError(f"{event.detail}; the association was aborted")
        raise TransportError(_why_not(event, "the request"))

    def _send_message(self, context_id: int, command_pdus: bytes, payload: Payload | None) -> None:
        if not self._scatter:
            self._sock.settimeout(self.timeouts.network)
        elif self._sock.gettimeout() != 0.0:
            # Non-blocking during an exchange: the waits are our own polls (see
            # _send_parts and _wait), which spares a system call or two per request.
            self._sock.settimeout(0.0)
        if payload is None:
            self._sock.sendall(command_pdus)
            return
        limit = self.max_pdv_data
        parts: list[bytes | memoryview] = [command_pdus]
        remaining = payload.length
        if remaining == 0:
            parts.append(pdu.pdv_header(context_id, 0, command=False, last=True))
        try:
            # Mapped chunks only where the views go straight to the kernel (sendmsg).
            for chunk in payload.chunks(self._chunk, mapped=self._scatter):
                for start in range(0, len(chunk), limit):
                    piece = chunk[start : start + limit]
                    remaining -= len(piece)
                    parts.append(
                        pdu.pdv_header(context_id, len(piece), command=False, last=remaining == 0)
                    )
                    parts.append(piece)
                self._send_parts(parts)
                parts = []
            if parts:
                self._send_parts(parts)
        except OSError as exc:
            if exc.errno == errno.EFAULT and payload.path is not None:  # see Payload.chunks
                raise SourceError(
                    f"{payload.path} was cut short while it was being sent (changed after it "
                    "was queued?)"
                ) from exc
            raise

    def _send_parts(self, parts: list[bytes | memoryview]) -> None:
        if not self._scatter:
            self._sock.sendall(b"".join(parts))
            return
        # sendmsg gathers many PDUs into one system call without copying the data;
        # the kernel may take less than all of it, so go on from where it stopped.
        first = 0
        while first < len(parts):
            try:
                sent = self._sock.sendmsg(parts[first : first + 512])
            except BlockingIOError:
                self._writable()
                continue
            while first < len(parts) and sent >= len(parts[first]):
                sent -= len(parts[first])
                first += 1
            if sent:
                parts[first] = memoryview(parts[first])[sent:]

    def _writable(self) -> None:
        """Wait until the socket takes more; ``TimeoutError`` after ``network_timeout``
        seconds without progress."""
        poller = self._out_poller
        if poller is None:
            poller = self._out_poller = select.poll()
            poller.register(self._sock, select.POLLOUT)
        network = self.timeouts.network
        if not poller.poll(None if network is None else ms(network)):
            raise TimeoutError("timed out")

    def _broken(self, when: str, exc: OSError) -> TransportError:
        """The link failed: look for an A-ABORT the SCP may have sent first."""
        reason = describe_os_error(exc)
        if isinstance(exc, socket.timeout | TimeoutError):
            reason = f"no progress within network_timeout={self.timeouts.network}s"
        aborted = pending_abort(self._sock, self._machine, self._recv_buffer)
        self.close()
        if aborted is not None:
            described = acse.describe_abort(aborted.source, aborted.reason)
            return TransportError(f"the SCP aborted the association {when} (A-ABORT, {described})")
        return TransportError(f"connection lost {when}: {reason}")


def _negotiated(
    contexts: Sequence[ContextProposal], accept: AssociateAC
) -> list[NegotiatedContext]:
    out = []
    for proposal in contexts:
        answer = accept.context(proposal.context_id)
        if answer is None:
            out.append(NegotiatedContext(proposal.context_id, proposal.abstract_syntax,
                                         proposal.transfer_syntaxes, 2, None))  # fmt: skip
            continue
        syntax = answer.transfer_syntax if answer.accepted else None
        result = answer.result
        if syntax is not None and syntax not in proposal.transfer_syntaxes:
            syntax, result = None, 4  # the SCP picked something we never offered
        out.append(NegotiatedContext(proposal.context_id, proposal.abstract_syntax,
                                     proposal.transfer_syntaxes, result, syntax))  # fmt: skip
    return out


def _why_not(event: ScuEvent, request: str) -> str:
    """Words for an event that ended an exchange the wrong way."""
    if isinstance(event, PeerAborted):
        described = acse.describe_abort(event.source, event.reason)
        if request == "A-ASSOCIATE-RQ":
            return f"the SCP answered A-ABORT ({described})"
        return f"the SCP aborted the association (A-ABORT, {described})"
    if isinstance(event, TimedOut):
        return f"no answer to {request} within {event.what}; the association was aborted"
    if isinstance(event, ConnectionLost | PeerViolation):
        return event.detail
    return f"unexpected {type(event).__name__}"


class InterruptedStore(TransportError):
    """The response did not come before the transfer was interrupted (not worth a retry)."""

    transient = False
