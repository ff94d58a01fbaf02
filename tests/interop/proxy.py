"""A loopback TCP proxy that drops chosen connections mid-stream, in front of a real SCP.

DCMTK storescp's ``--abort-after`` / ``--abort-during`` hit *every* association, so they
cannot show that a sender recovers. This proxy forwards connections to a real peer and
breaks only the ones it is told to, after a given number of bytes from the client, with
a TCP reset (what ANCHORS.md says senders usually see when storescp aborts mid-dataset).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["DroppingProxy", "run_proxy"]


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset(sock: socket.socket) -> None:
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class DroppingProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; connection number k (1-based) in
    ``drop`` is reset (RST towards the client, FIN towards the server) once the client
    has sent ``after_bytes`` bytes on it."""

    upstream: tuple[str, int]
    drop: frozenset[int]
    after_bytes: int
    port: int = 0
    connections: int = 0
    dropped: list[int] = field(default_factory=list)
    _listener: socket.socket | None = field(default=None, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the accept() blocked in the other thread; close() alone
            # would not (Linux keeps the socket alive while a call is using it).
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            _nodelay(client)
            _nodelay(server)
            limit = self.after_bytes if number in self.drop else None
            self._spawn(self._pump, client, server, limit, number)
            self._spawn(self._pump, server, client, None, number)

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None, number: int) -> None:
        seen = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and seen + len(data) >= limit:
                    dst.sendall(data[: max(limit - seen, 0)])
                    with self._lock:
                        self.dropped.append(number)
                    _reset(src)
                    # shutdown() first: the opposite pump is blocked in recv() on dst,
                    # and a plain close() would wait for it; the server sees the end.
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_RDWR)
                    with contextlib.suppress(OSError):
                        dst.close()
                    return
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for sock in (dst, src):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def run_proxy(
    upstream: tuple[str, int], *, drop: set[int] | frozenset[int], after_bytes: int
) -> Iterator[DroppingProxy]:
    proxy = DroppingProxy(upstream, frozenset(drop), after_bytes)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
