"""Hostile peers on bare sockets, for the adversarial suites: an SCP that runs a script
per connection (it may lie, drip bytes, flood or never answer), and a few byte-level
helpers to build what a well-behaved peer would never send.

Every socket is on 127.0.0.1, port 0, with ``TCP_NODELAY``; every wait is bounded, and
:meth:`HostileScp.stop` ends every script (drips stop as soon as the peer goes or the
server stops)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from scu.protocol import dimse, pdu
from scu.protocol.dimse import Command
from scu.protocol.pdu import AssociateRQ, ContextResult
from scu.protocol.stream import (
    CommandReceived,
    ControlPdu,
    DatasetComplete,
    Decoder,
    Limits,
    StreamError,
)

__all__ = [
    "Harassment",
    "HostileScp",
    "PeerClosed",
    "RawConn",
    "Request",
    "p_data",
    "raw_pdu",
]

_HEADER = struct.Struct(">BxL")
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
#: How long a script waits for the SCU's next bytes before it gives up.
READ_TIMEOUT = 30.0


class PeerClosed(Exception):
    """The other side went away (or the server is stopping)."""


def raw_pdu(pdu_type: int, body: bytes, *, length: int | None = None) -> bytes:
    """A PDU whose header may claim another ``length`` than the body it carries."""
    return _HEADER.pack(pdu_type, len(body) if length is None else length) + body


def p_data(context_id: int, data: bytes, *, command: bool, last: bool) -> bytes:
    """One P-DATA-TF with one PDV."""
    return pdu.pdv_header(context_id, len(data), command=command, last=last) + data


@dataclass(frozen=True)
class Request:
    """A DIMSE request the hostile SCP read in full."""

    context_id: int
    command: Command
    dataset_size: int

    @property
    def message_id(self) -> int:
        return self.command.message_id or 0

    def response(
        self,
        status: int = 0x0000,
        *,
        message_id: int | None = None,
        command_field: int | None = None,
    ) -> bytes:
        """A response command set (optionally lying about what it answers)."""
        field_ = command_field
        if field_ is None:
            field_ = (self.command.command_field or 0) | 0x8000
        return dimse.encode_response(
            field_,
            self.message_id if message_id is None else message_id,
            status,
            sop_class_uid=self.command.affected_sop_class_uid,
            sop_instance_uid=self.command.affected_sop_instance_uid,
        )


class RawConn:
    """One connection driven byte by byte: a connection the hostile SCP accepted, as its
    script sees it, or (:meth:`connect`) a hostile SCU's connection to a server."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self.decoder = Decoder(Limits(max_pdata_hard=1 << 31, max_associate_pdu=1 << 20))
        self._pending: list[object] = []
        self.request: AssociateRQ | None = None
        self.bytes_sent = 0
        self._command: CommandReceived | None = None

    @classmethod
    def connect(cls, port: int, stop: threading.Event | None = None) -> RawConn:
        sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, stop or threading.Event())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- as an SCU

    def associate(
        self,
        contexts: Sequence[tuple[int, str, Sequence[str]]] = ((1, CT, (EXPLICIT,)),),
        *,
        max_pdu_length: int = 16384,
    ) -> ControlPdu:
        """Send an A-ASSOCIATE-RQ; the answer."""
        request = pdu.AssociateRQ(
            called_ae_title="ANY-SCP",
            calling_ae_title="HOSTILE",
            contexts=tuple(pdu.ContextProposal(c, a, tuple(ts)) for c, a, ts in contexts),
            max_pdu_length=max_pdu_length,
        )
        self.send(pdu.encode_associate_rq(request))
        return self.read_control()

    def read_status(self) -> int:
        """The Status of the next response (the next complete command set)."""
        while True:
            event = self.next_event()
            if isinstance(event, ControlPdu):
                raise PeerClosed(f"{event.pdu_type.label} instead of a response")
            if isinstance(event, CommandReceived):
                status = event.command.status
                assert status is not None, "a response without a Status"
                return status

    # -- reading

    def _more(self) -> None:
        deadline = time.monotonic() + READ_TIMEOUT
        while True:
            if self.stop.is_set():
                raise PeerClosed("server stopping")
            if time.monotonic() > deadline:
                raise PeerClosed("the SCU sent nothing more")
            self.sock.settimeout(0.1)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as exc:
                raise PeerClosed(str(exc)) from exc
            if not data:
                raise PeerClosed("closed by the SCU")
            for event in self.decoder.feed(data):
                if isinstance(event, StreamError):
                    raise PeerClosed(f"undecodable input: {event.detail}")
                self._pending.append(event)
            return

    def next_event(self) -> object:
        while not self._pending:
            self._more()
        return self._pending.pop(0)

    def read_control(self) -> ControlPdu:
        while True:
            event = self.next_event()
            if isinstance(event, ControlPdu):
                return event

    def accept(self, *, max_pdu_length: int = 16384, syntax: str | None = None) -> AssociateRQ:
        """Read the A-ASSOCIATE-RQ and accept every context (first proposed syntax)."""
        self.request = self.read_associate_rq()
        self.send(self.associate_ac(max_pdu_length=max_pdu_length, syntax=syntax))
        return self.request

    def read_associate_rq(self) -> AssociateRQ:
        event = self.read_control()
        assert event.pdu_type is pdu.PduType.ASSOCIATE_RQ, event.pdu_type
        self.request = pdu.decode_associate_rq(event.body)
        return self.request

    def associate_ac(self, *, max_pdu_length: int = 16384, syntax: str | None = None) -> bytes:
        assert self.request is not None
        results = [
            ContextResult(c.context_id, 0, syntax or c.transfer_syntaxes[0])
            for c in self.request.contexts
        ]
        return pdu.encode_associate_ac(self.request, results, max_pdu_length=max_pdu_length)

    def read_request(self) -> Request:
        """The next DIMSE request, data set included (read and counted, not kept)."""
        command: CommandReceived | None = None
        while True:
            event = self.next_event()
            if isinstance(event, ControlPdu):
                raise PeerClosed(f"{event.pdu_type.label} instead of a request")
            if isinstance(event, CommandReceived):
                command = event
                if not event.command.has_dataset:
                    return Request(event.context_id, event.command, 0)
            elif isinstance(event, DatasetComplete) and command is not None:
                return Request(command.context_id, command.command, event.size)

    def answer(self, request: Request, status: int = 0x0000) -> None:
        self.send(
            pdu.encode_p_data(
                request.context_id, request.response(status), command=True, max_pdu_length=0
            )
        )

    # -- writing

    def send(self, data: bytes) -> None:
        try:
            self.sock.settimeout(READ_TIMEOUT)
            self.sock.sendall(data)
            self.bytes_sent += len(data)
        except OSError as exc:
            raise PeerClosed(str(exc)) from exc

    def serve_until_control(self) -> ControlPdu:
        """Answer every request with success until a control PDU (A-RELEASE-RQ,
        A-ABORT...) arrives; return it."""
        while True:
            event = self.next_event()
            if isinstance(event, ControlPdu):
                return event
            if isinstance(event, CommandReceived) and not event.command.has_dataset:
                self.answer(Request(event.context_id, event.command, 0))
            elif isinstance(event, CommandReceived):
                self._command = event
            elif isinstance(event, DatasetComplete) and self._command is not None:
                command, self._command = self._command, None
                self.answer(Request(command.context_id, command.command, event.size))

    def harass(
        self, pieces: Iterable[bytes], interval: float, *, linger: float = 30.0
    ) -> Harassment:
        """Send each piece ``interval`` seconds after the last, reading what the SCU
        sends meanwhile, until the pieces run out (then wait ``linger`` seconds more),
        the SCU closes the connection, or the server stops."""
        seen = Harassment()
        for piece in pieces:
            try:
                self.send(piece)
            except PeerClosed:
                seen.closed = True
                return seen
            seen.sent += 1
            if self._listen(seen, interval):
                return seen
        self._listen(seen, linger)
        return seen

    def _listen(self, seen: Harassment, seconds: float) -> bool:
        """Read for ``seconds``; whether the SCU closed (or the server stopped)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if self.stop.is_set():
                return True
            if left <= 0:
                return False
            self.sock.settimeout(min(left, 0.1))
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                seen.closed = True
                return True
            if not data:
                seen.closed = True
                return True
            for event in self.decoder.feed(data):
                if isinstance(event, ControlPdu):
                    seen.control.append(event)

    def flood(self, piece: bytes, seconds: float) -> int:
        """Send ``piece`` again and again for ``seconds`` or until the SCU goes; the
        bytes sent."""
        sent = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop.is_set():
            try:
                self.send(piece)
            except PeerClosed:
                break
            sent += len(piece)
        return sent


@dataclass
class Harassment:
    """What :meth:`RawConn.harass` did and saw: pieces sent, the control PDUs the SCU
    sent meanwhile (an A-ABORT, say), and whether the SCU closed the connection."""

    sent: int = 0
    control: list[ControlPdu] = field(default_factory=list)
    closed: bool = False

    @property
    def aborted(self) -> tuple[int, int] | None:
        """(source, reason) of the SCU's A-ABORT, if it sent one."""
        for event in self.control:
            if event.pdu_type is pdu.PduType.ABORT:
                return pdu.decode_abort(event.body)
        return None


Script = Callable[[RawConn], object]


@dataclass
class HostileScp:
    """Runs ``script`` on each accepted connection, each on its own thread; what a
    script raises (other than :class:`PeerClosed`) is kept in :attr:`errors` and fails
    the test at exit. :attr:`results` holds what the scripts returned."""

    script: Script
    results: list[object] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> HostileScp:
        self._acceptor.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        if self.errors:
            raise AssertionError(f"the hostile SCP's script failed: {self.errors!r}")

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the scripts of the connections accepted so far to end by themselves
        (the SCU closes), then stop."""
        end = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass
        for thread in threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
            with self._lock:
                self.connections += 1
                self._socks.append(sock)
                self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        conn = RawConn(sock, self._stop)
        try:
            result = self.script(conn)
            with self._lock:
                self.results.append(result)
        except PeerClosed:
            pass
        except Exception as exc:
            with self._lock:
                self.errors.append(exc)
        finally:
            try:
                sock.close()
            except OSError:
                pass
