"""One association, on one socket, driven by one thread: no reactor, no polling.

pynetdicom's SCU runs a DUL thread and an association reactor beside the caller and
hands messages between them through queues; the reactor can take a C-STORE-RSP off
the queue between the send handshake and ``get_msg`` so that the SCU waits out the
whole DIMSE timeout (pynetdicom issues 435 and 842). Here the thread that writes a
request is the thread that reads its response, with blocking socket calls and the
kernel's timeouts, so that race cannot exist; and the caller waits in ``recv``, not in
a 1 ms sleep loop.

The PDUs and command sets come from :mod:`scu.wire` (sans-IO). Every state change goes
through :data:`TRANSITIONS`; an illegal one is a local bug and raises ``RuntimeError``.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from scu import syntaxes as wire_ts
from scu import wire
from scu.errors import (
    AssociationRejected,
    ConnectionFailed,
    ProtocolError,
    Rejection,
    TransportError,
)
from scu.options import Address
from scu.planning import AssociationPlan, NegotiatedContext

__all__ = ["Association", "Payload", "SourceError", "State", "Timeouts"]

log = logging.getLogger("scu.association")

#: Bytes of data set read and written per system call when streaming from disk.
CHUNK_SIZE = 1 << 20
#: PDV size used when the SCP announces no limit (Maximum Length 0).
UNLIMITED_PDV = 1 << 20
#: The smallest peer maximum PDU length we work with: room for a PDV header and some
#: data. Smaller values (PS3.8 sets no minimum) cannot carry a command set sensibly.
MIN_PEER_PDU = 64
#: A PDU larger than this from the peer is treated as a protocol error, whatever it
#: claims, so a corrupt length cannot make us allocate gigabytes.
MAX_INCOMING_PDU = 64 << 20


class State(str, Enum):
    IDLE = "idle"
    ASSOCIATING = "associating"
    ESTABLISHED = "established"
    STORING = "storing"
    RELEASING = "releasing"
    ABORTED = "aborted"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.ASSOCIATING, State.CLOSED}),
    State.ASSOCIATING: frozenset({State.ESTABLISHED, State.ABORTED, State.CLOSED}),
    State.ESTABLISHED: frozenset({State.STORING, State.RELEASING, State.ABORTED}),
    State.STORING: frozenset({State.ESTABLISHED, State.ABORTED}),
    State.RELEASING: frozenset({State.CLOSED, State.ABORTED}),
    State.ABORTED: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


@dataclass(frozen=True)
class Timeouts:
    connect: float | None = 10.0
    acse: float | None = 30.0
    dimse: float | None = 30.0
    network: float | None = 60.0


@dataclass(frozen=True)
class Payload:
    """A data set to send: bytes in memory, or bytes of a file from ``offset``;
    ``length`` counts every byte that goes on the wire, ``padding`` (sent last) included."""

    data: bytes | memoryview | None = None
    path: str | None = None
    offset: int = 0
    length: int = 0
    padding: bytes = b""

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Payload:
        return cls(data=data, length=len(data))

    def padded(self, padding: bytes) -> Payload:
        """The same data set with ``padding`` appended on the wire."""
        return replace(self, length=self.length + len(padding), padding=self.padding + padding)

    def chunks(self, buffer: bytearray) -> Iterator[memoryview]:
        """The bytes to send, in chunks of ``len(buffer)`` (the last one shorter), the
        padding inside the last chunk: chunk sizes never depend on how the kernel
        happened to split a read, so PDV fragments stay even-sized."""
        if self.data is not None:
            view = memoryview(self.data)
            for start in range(0, len(view), len(buffer)):
                piece = view[start : start + len(buffer)]
                if self.padding and start + len(buffer) >= len(view):
                    piece = memoryview(bytes(piece) + self.padding)
                yield piece
            if not view and self.padding:
                yield memoryview(self.padding)
            return
        assert self.path is not None
        remaining = self.length - len(self.padding)
        view = memoryview(buffer)
        try:
            handle = open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        padded = not self.padding
        with handle:
            handle.seek(self.offset)
            while remaining > 0:
                last = remaining <= len(view) - len(self.padding)
                want = remaining if last else len(view)
                filled = 0
                while filled < want:
                    try:
                        got = handle.readinto(view[filled:want])
                    except OSError as exc:
                        message = f"cannot read {self.path}: {exc.strerror or exc}"
                        raise SourceError(message) from exc
                    if not got:
                        raise SourceError(
                            f"{self.path} ended {remaining - filled} bytes early "
                            "(changed after it was queued?)"
                        )
                    filled += got
                remaining -= filled
                if last and not padded:
                    view[filled : filled + len(self.padding)] = self.padding
                    filled += len(self.padding)
                    padded = True
                yield view[:filled]
        if not padded:  # the data filled its last chunk exactly
            yield memoryview(self.padding)


class SourceError(Exception):
    """The data set could not be read while it was being sent (the file changed or
    vanished after it was queued). The association is aborted: the SCP holds half a
    data set."""


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, UnicodeError):
        return f"cannot encode the host name ({exc})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, BrokenPipeError):
        return "connection closed by peer (broken pipe)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno is not None:
        return (
            f"{os.strerror(exc.errno).lower()} (errno {errno.errorcode.get(exc.errno, exc.errno)})"
        )
    return str(exc) or type(exc).__name__


class Association:
    """An established association; use :meth:`open` to make one."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        address: Address,
        accept: wire.AssociateAccept,
        negotiated: Sequence[NegotiatedContext],
        timeouts: Timeouts,
        log: logging.Logger = log,
    ) -> None:
        self._log = log
        self._sock = sock
        self.address = address
        self.accept = accept
        self.negotiated = tuple(negotiated)
        self.timeouts = timeouts
        self.state = State.ESTABLISHED
        peer_max = accept.max_pdu_length
        # A PDV item takes 6 bytes of the PDU's length; open() refuses a smaller maximum.
        # Even, so that no data set fragment has an odd length (DCMTK refuses those).
        self.max_pdv_data = ((peer_max - 6) & ~1) if peer_max else UNLIMITED_PDV
        self._next_message_id = 1
        self._chunk = bytearray(CHUNK_SIZE)
        self._scatter = hasattr(sock, "sendmsg") and not isinstance(sock, ssl.SSLSocket)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    # --- lifecycle -----------------------------------------------------------------

    def _move(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(
                f"illegal association state change {self.state.value} -> {new.value}"
            )
        self.state = new

    @classmethod
    def open(
        cls,
        address: Address,
        *,
        calling_ae_title: str,
        called_ae_title: str,
        plan: AssociationPlan | None,
        max_pdu_length: int,
        timeouts: Timeouts,
        tls: ssl.SSLContext | None = None,
        verification: bool = False,
        log: logging.Logger = log,
    ) -> Association:
        """Connect and negotiate.

        Raises :class:`ConnectionFailed` or :class:`AssociationRejected`.
        """
        where = f"{called_ae_title}@{address}"
        contexts: list[tuple[int, str, Sequence[str]]] = []
        if plan is not None:
            contexts = [
                (c.context_id, c.abstract_syntax, c.transfer_syntaxes) for c in plan.contexts
            ]
        if verification:
            next_id = 2 * len(contexts) + 1
            contexts.append(
                (
                    next_id,
                    wire.VERIFICATION_SOP_CLASS,
                    (wire_ts.EXPLICIT_VR_LE, wire_ts.IMPLICIT_VR_LE),
                )
            )
        try:
            sock = socket.create_connection((address.host, address.port), timeout=timeouts.connect)
        except (OSError, UnicodeError) as exc:  # UnicodeError: the idna codec on odd names
            cause = _describe_os_error(exc)
            if isinstance(exc, socket.timeout | TimeoutError):
                cause = f"no TCP connection within connect_timeout={timeouts.connect}s"
            raise ConnectionFailed(
                f"could not establish association with {where}: {cause}"
            ) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock.settimeout(timeouts.acse)
                sock = tls.wrap_socket(sock, server_hostname=address.host)
            rq = wire.encode_associate_rq(
                calling_ae_title=calling_ae_title,
                called_ae_title=called_ae_title,
                contexts=contexts,
                max_pdu_length=max_pdu_length,
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "-> A-ASSOCIATE-RQ %s -> %s, %d contexts, max PDU %d",
                    calling_ae_title, where, len(contexts), max_pdu_length,
                )  # fmt: skip
            sock.settimeout(timeouts.network)
            sock.sendall(rq)
            sock.settimeout(timeouts.acse)
            pdu_type, body = _read_pdu(sock)
        except (OSError, ProtocolError, TransportError) as exc:
            sock.close()
            cause = _describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
            if isinstance(exc, socket.timeout | TimeoutError):
                cause = f"no answer to A-ASSOCIATE-RQ within acse_timeout={timeouts.acse}s"
            raise ConnectionFailed(
                f"could not establish association with {where}: {cause}"
            ) from exc
        if pdu_type == wire.PduType.ASSOCIATE_RJ:
            sock.close()
            result, source, reason = wire.decode_associate_rj(body)
            description = wire.describe_rejection(result, source, reason)
            log.debug("<- A-ASSOCIATE-RJ %s", description)
            raise AssociationRejected(
                f"association rejected by {where}: {description}",
                rejection=Rejection(result, source, reason, description),
            )
        if pdu_type == wire.PduType.ABORT:
            sock.close()
            source, reason = wire.decode_abort(body)
            raise ConnectionFailed(
                f"could not establish association with {where}: the SCP answered A-ABORT "
                f"({wire.describe_abort(source, reason)})"
            )
        if pdu_type != wire.PduType.ASSOCIATE_AC:
            _abort_quietly(sock)
            raise ConnectionFailed(
                f"could not establish association with {where}: the SCP answered "
                f"{wire.PduType.NAMES.get(pdu_type, hex(pdu_type))} to A-ASSOCIATE-RQ"
            )
        try:
            accept = wire.decode_associate_ac(body)
        except ProtocolError as exc:
            _abort_quietly(sock)
            raise ConnectionFailed(
                f"could not establish association with {where}: malformed A-ASSOCIATE-AC ({exc})"
            ) from exc
        if 0 < accept.max_pdu_length < MIN_PEER_PDU:
            _abort_quietly(sock)
            raise ConnectionFailed(
                f"could not establish association with {where}: the SCP announced a maximum "
                f"PDU length of {accept.max_pdu_length} bytes, too small to carry a C-STORE "
                f"(at least {MIN_PEER_PDU} needed)"
            )
        negotiated = []
        for context_id, abstract, proposed in contexts:
            answer = accept.contexts.get(context_id)
            if answer is None:
                negotiated.append(NegotiatedContext(context_id, abstract, tuple(proposed), 2, None))
                continue
            syntax = answer.transfer_syntax if answer.accepted else None
            if syntax is not None and syntax not in proposed:
                syntax, result = None, 4  # the SCP picked something we never offered
            else:
                result = answer.result
            negotiated.append(
                NegotiatedContext(context_id, abstract, tuple(proposed), result, syntax)
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "<- A-ASSOCIATE-AC max PDU %d, %d of %d contexts accepted",
                accept.max_pdu_length, sum(c.accepted for c in negotiated), len(negotiated),
            )  # fmt: skip
        sock.settimeout(timeouts.network)
        return cls(
            sock, address=address, accept=accept, negotiated=negotiated, timeouts=timeouts, log=log
        )

    def release(self) -> None:
        """A-RELEASE; on any trouble the socket is simply closed."""
        if self.state != State.ESTABLISHED:
            self.close()
            return
        self._move(State.RELEASING)
        try:
            self._sock.settimeout(self.timeouts.network)
            self._sock.sendall(wire.encode_release_rq())
            self._sock.settimeout(self.timeouts.acse)
            while True:
                pdu_type, _body = _read_pdu(self._sock)
                if pdu_type in (wire.PduType.RELEASE_RP, wire.PduType.ABORT):
                    break
            self._log.debug("<- A-RELEASE-RP")
        except (OSError, ProtocolError, TransportError) as exc:
            self._log.debug("release did not complete cleanly: %s", exc)
        self.close()

    def abort(self) -> None:
        if self.state in (State.CLOSED, State.ABORTED):
            self.close()
            return
        self._move(State.ABORTED)
        _abort_quietly(self._sock)
        self._log.debug("-> A-ABORT")
        self.close()

    def close(self) -> None:
        if self.state != State.CLOSED:
            if self.state not in (State.RELEASING, State.ABORTED):
                self.state = State.ABORTED
            self._move(State.CLOSED)
        try:
            self._sock.close()
        except OSError:
            pass

    @property
    def usable(self) -> bool:
        """Established, and the SCP has not aborted or closed it while we were idle
        (an idle timeout on the SCP side): checked before each request, so that a file
        is never sent on an association the SCP already gave up."""
        if self.state != State.ESTABLISHED:
            return False
        if not self._poller.poll(0):
            return True
        try:  # the SCP sent something unasked: an A-ABORT, or it closed
            pending = self._sock.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            pending = b""
        if not pending or pending[0] in (wire.PduType.ABORT, wire.PduType.RELEASE_RQ):
            self._log.debug("the SCP ended the association while it was idle")
            self.abort()
            return False
        return True

    # --- DIMSE ---------------------------------------------------------------------

    def _message_id(self) -> int:
        message_id = self._next_message_id
        self._next_message_id = message_id % 0xFFFF + 1
        return message_id

    def store(
        self, context_id: int, sop_class_uid: str, sop_instance_uid: str, payload: Payload
    ) -> wire.Command:
        """C-STORE one data set; returns the response command. A broken link, an
        A-ABORT or a timeout raises :class:`TransportError` and leaves the association
        aborted; a malformed answer raises :class:`ProtocolError` after aborting."""
        self._move(State.STORING)
        message_id = self._message_id()
        command = wire.encode_store_rq(message_id, sop_class_uid, sop_instance_uid)
        if self._log.isEnabledFor(logging.DEBUG):
            self._log.debug(
                "-> C-STORE-RQ id=%d %s (%d bytes, context %d)",
                message_id, sop_instance_uid, payload.length, context_id,
            )  # fmt: skip
        return self._exchange(
            context_id, message_id, command, payload, wire.C_STORE_RSP, "the data set"
        )

    def echo(self) -> wire.Command:
        context = next(
            (
                c
                for c in self.negotiated
                if c.abstract_syntax == wire.VERIFICATION_SOP_CLASS and c.accepted
            ),
            None,
        )
        if context is None:
            raise ProtocolError("the SCP did not accept the Verification SOP Class")
        self._move(State.STORING)
        message_id = self._message_id()
        command = wire.encode_echo_rq(message_id)
        return self._exchange(
            context.context_id, message_id, command, None, wire.C_ECHO_RSP, "C-ECHO-RQ"
        )

    def _exchange(
        self,
        context_id: int,
        message_id: int,
        command: bytes,
        payload: Payload | None,
        expected: int,
        what: str,
    ) -> wire.Command:
        """Send a request (state STORING) and read its response, back to ESTABLISHED."""
        try:
            self._send_message(context_id, command, payload)
        except OSError as exc:
            raise self._broken(f"while sending {what}", exc) from exc
        response = self._await_response(context_id, message_id, expected)
        self._move(State.ESTABLISHED)
        return response

    def _send_message(self, context_id: int, command: bytes, payload: Payload | None) -> None:
        self._sock.settimeout(self.timeouts.network)
        limit = self.max_pdv_data
        parts: list[bytes | memoryview] = []
        for start in range(0, len(command), limit):  # a command set may need fragments too
            fragment = command[start : start + limit]
            last = start + limit >= len(command)
            parts += [
                wire.pdata_header(context_id, len(fragment), command=True, last=last),
                fragment,
            ]
        if payload is None:
            self._send_parts(parts)
            return
        remaining = payload.length
        if remaining == 0:
            parts.append(wire.pdata_header(context_id, 0, command=False, last=True))
        for chunk in payload.chunks(self._chunk):
            for start in range(0, len(chunk), limit):
                piece = chunk[start : start + limit]
                remaining -= len(piece)
                parts.append(
                    wire.pdata_header(context_id, len(piece), command=False, last=remaining == 0)
                )
                parts.append(piece)
            self._send_parts(parts)
            parts = []
        if parts:
            self._send_parts(parts)

    def _send_parts(self, parts: list[bytes | memoryview]) -> None:
        if not self._scatter:
            self._sock.sendall(b"".join(parts))
            return
        # sendmsg gathers many PDUs into one system call without copying the data;
        # the kernel may take less than all of it, so go on from where it stopped.
        first = 0
        while first < len(parts):
            sent = self._sock.sendmsg(parts[first : first + 512])
            while first < len(parts) and sent >= len(parts[first]):
                sent -= len(parts[first])
                first += 1
            if sent:
                parts[first] = memoryview(parts[first])[sent:]

    def _await_response(self, context_id: int, message_id: int, expected: int) -> wire.Command:
        self._sock.settimeout(self.timeouts.dimse)
        fragments: list[bytes] = []
        deadline = None if self.timeouts.dimse is None else time.monotonic() + self.timeouts.dimse
        while True:
            try:
                pdu_type, body = _read_pdu(self._sock, deadline=deadline)
            except TimeoutError as exc:
                self.abort()
                raise TransportError(
                    f"no response from the SCP within dimse_timeout={self.timeouts.dimse}s; "
                    "the association was aborted"
                ) from exc
            except OSError as exc:
                raise self._broken("while waiting for the response", exc) from exc
            except TransportError:
                self.close()
                raise
            except ProtocolError as exc:
                self.abort()
                raise ProtocolError(f"{exc}; the association was aborted") from exc
            if pdu_type == wire.PduType.P_DATA_TF:
                for pc_id, is_command, is_last, data in wire.iter_pdvs(body):
                    if not is_command or pc_id != context_id:
                        self.abort()
                        raise ProtocolError(
                            "the SCP sent a data set or used another presentation context where "
                            "a response command was expected; the association was aborted"
                        )
                    fragments.append(bytes(data))
                    if is_last:
                        return self._check_response(b"".join(fragments), message_id, expected)
            elif pdu_type == wire.PduType.ABORT:
                source, reason = wire.decode_abort(body)
                self.state = State.ABORTED
                self.close()
                described = wire.describe_abort(source, reason)
                raise TransportError(f"the SCP aborted the association (A-ABORT, {described})")
            else:
                self.abort()
                raise ProtocolError(
                    f"unexpected {wire.PduType.NAMES.get(pdu_type, hex(pdu_type))} while waiting "
                    "for a response; the association was aborted"
                )

    def _check_response(self, raw: bytes, message_id: int, expected: int) -> wire.Command:
        try:
            response = wire.decode_command(raw)
        except ProtocolError:
            self.abort()
            raise
        if response.command_field != expected or response.message_id_responded != message_id:
            self.abort()
            raise ProtocolError(
                f"the SCP answered command 0x{response.command_field:04X} for message "
                f"{response.message_id_responded} where 0x{expected:04X} for message {message_id} "
                "was expected; the association was aborted"
            )
        if response.status is None:
            self.abort()
            raise ProtocolError("the SCP's response has no Status (0000,0900)")
        if self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("<- response id=%d status 0x%04X", message_id, response.status)
        return response

    def _broken(self, when: str, exc: OSError) -> TransportError:
        """The link failed: look for an A-ABORT the SCP may have sent first."""
        reason = _describe_os_error(exc)
        if isinstance(exc, socket.timeout | TimeoutError):
            reason = f"no progress within network_timeout={self.timeouts.network}s"
        abort_text = _pending_abort(self._sock)
        self.state = State.ABORTED
        self.close()
        if abort_text:
            return TransportError(f"the SCP aborted the association {when} ({abort_text})")
        return TransportError(f"connection lost {when}: {reason}")


def _abort_quietly(sock: socket.socket) -> None:
    try:
        sock.settimeout(1.0)
        sock.sendall(wire.encode_abort(0, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _pending_abort(sock: socket.socket) -> str | None:
    """An A-ABORT already in our receive buffer, described; else ``None``."""
    try:
        sock.settimeout(0.05)
        for _ in range(64):  # skip P-DATA the SCP may have sent before aborting
            pdu_type, body = _read_pdu(sock)
            if pdu_type == wire.PduType.ABORT:
                source, reason = wire.decode_abort(body)
                return f"A-ABORT, {wire.describe_abort(source, reason)}"
    except (OSError, ProtocolError, TransportError):
        return None
    return None


def _recv_exact(sock: socket.socket, size: int, deadline: float | None = None) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            sock.settimeout(left)
        n = sock.recv_into(view[got:])
        if n == 0:
            raise TransportError(
                "the SCP closed the connection without A-RELEASE or A-ABORT"
                if got == 0
                else f"the SCP closed the connection in the middle of a PDU ({got} of {size} bytes)"
            )
        got += n
    return buffer


def _read_pdu(sock: socket.socket, deadline: float | None = None) -> tuple[int, bytes]:
    header = _recv_exact(sock, 6, deadline)
    pdu_type, length = wire.parse_pdu_header(header)
    if length > MAX_INCOMING_PDU:
        raise ProtocolError(
            f"the SCP sent a {length}-byte PDU, over the {MAX_INCOMING_PDU} byte cap"
        )
    return pdu_type, bytes(_recv_exact(sock, length, deadline))
