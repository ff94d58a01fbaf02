"""Reading the SCP's answers off an association's socket: one deadline for the whole
wait however the peer drips its bytes, an interruption that leaves what is awaited
:attr:`Interruption.GRACE` seconds, and the quiet writes and reads of an association
that is going away. Used by :mod:`scu.association`; no state of its own."""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import ssl
import threading
import time

from scu.protocol.requestor import PeerAborted, Requestor, ScuEvent, ScuState, TimedOut

__all__ = [
    "INTERRUPTED",
    "Interruption",
    "describe_os_error",
    "ms",
    "pending_abort",
    "send_quietly",
    "wait",
]

#: What a wait cut short by an interruption names as its timeout.
INTERRUPTED = "the interruption of the transfer"


class Interruption:
    """Set when a transfer is interrupted: a response already awaited gets
    :attr:`GRACE` more seconds, a second interruption ends the wait at once."""

    GRACE = 2.0

    def __init__(self) -> None:
        self._at: float | None = None
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._at is None:
                self._at = now
            else:
                self._at = now - self.GRACE  # again: no more waiting

    @property
    def interrupted(self) -> bool:
        return self._at is not None

    def cutoff(self) -> float | None:
        """When waiting must end because of the interruption (``None``: no interruption)."""
        at = self._at
        return None if at is None else at + self.GRACE


def describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, UnicodeError):
        return f"cannot encode the host name ({exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
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
    if isinstance(exc, OSError) and exc.errno is not None:
        return (
            f"{os.strerror(exc.errno).lower()} (errno {errno.errorcode.get(exc.errno, exc.errno)})"
        )
    return str(exc) or type(exc).__name__


def wait(
    sock: socket.socket,
    machine: Requestor,
    deadline: float | None,
    timeout_name: str,
    buffer: bytearray,
    interruption: Interruption | None = None,
    poller: select.poll | None = None,
) -> list[ScuEvent]:
    """Read until the machine reports something; the deadline covers the whole wait. An
    interruption (or a KeyboardInterrupt while waiting) leaves :attr:`Interruption.GRACE`
    seconds for what is awaited. With ``poller`` (registered for input on ``sock``) and
    ``sock`` non-blocking, the socket is read first and polled only when it is empty."""
    view = memoryview(buffer)
    while True:
        limit, what = deadline, timeout_name
        cutoff = interruption.cutoff() if interruption is not None else None
        if cutoff is not None and (limit is None or cutoff < limit):
            limit, what = cutoff, INTERRUPTED
        now = time.monotonic()
        if limit is not None and limit <= now:
            events = machine.deadline_passed(what)
            send_quietly(sock, machine.data_to_send())
            return events or [TimedOut(what)]
        left = None if limit is None else limit - now
        if interruption is not None:  # look at the interruption now and then
            left = 0.25 if left is None else min(left, 0.25)
        try:
            if poller is not None and sock.gettimeout() == 0.0:
                try:
                    n = sock.recv_into(view)
                except BlockingIOError:
                    poller.poll(None if left is None else ms(left))
                    continue  # the deadline check above decides
            else:
                sock.settimeout(left)
                n = sock.recv_into(view)
        except TimeoutError:
            continue  # the deadline check above decides
        except KeyboardInterrupt:
            if interruption is None:
                raise
            interruption.interrupt()
            continue
        except (ConnectionError, ssl.SSLError) as exc:
            how = (
                "reset the connection"
                if isinstance(exc, ConnectionResetError)
                else f"broke the connection ({describe_os_error(exc)})"
            )
            events = machine.peer_closed(how)
            if events:
                return events
            raise
        events = machine.peer_closed() if n == 0 else machine.receive(view[:n])
        reply = machine.data_to_send()
        if reply:
            send_quietly(sock, reply)
        if events:
            return events


def ms(seconds: float) -> int:
    """Milliseconds for poll(), rounded up (a wait is never shorter than asked)."""
    return max(0, math.ceil(seconds * 1000))


def send_quietly(sock: socket.socket, data: bytes) -> None:
    if not data:
        return
    try:
        sock.settimeout(1.0)
        sock.sendall(data)
    except OSError:
        pass


def pending_abort(sock: socket.socket, machine: Requestor, buffer: bytearray) -> PeerAborted | None:
    """An A-ABORT already in our receive buffer after a failed write, if any."""
    view = memoryview(buffer)
    try:
        sock.settimeout(0.05)
        for _ in range(64):  # skip P-DATA the SCP may have sent before aborting
            n = sock.recv_into(view)
            if n == 0:
                return None
            for event in machine.receive(view[:n]):
                if isinstance(event, PeerAborted):
                    return event
            if machine.state in (ScuState.CLOSED, ScuState.ABORTED):
                return None
    except (OSError, ValueError):
        return None
    return None
