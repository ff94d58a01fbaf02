"""A raw-socket Storage SCP that answers C-STOREs with bytes chosen by the test: a
well-formed response, or a malformed one (pynetdicom's "parrot" idea). It accepts
every proposed context in its first transfer syntax and serves one association at a
time, on 127.0.0.1, port 0."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from scu.protocol import dimse, pdu
from scu.protocol.pdu import ContextResult

_HEADER = struct.Struct(">BxL")


@dataclass(frozen=True)
class StoreSeen:
    nth: int
    context_id: int
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str


#: (what the SCP saw) -> bytes to send back, and whether to close the connection after.
Answer = Callable[[StoreSeen], tuple[bytes, bool]]


def response_command(
    seen: StoreSeen,
    *,
    status: int | None = 0x0000,
    message_id: int | None = None,
    command_field: int = 0x8001,
) -> bytes:
    """A C-STORE-RSP command set (optionally wrong in one way)."""
    elements: list[tuple[int, int | str]] = [
        (0x0002, seen.sop_class_uid),
        (0x0100, command_field),
        (0x0120, seen.message_id if message_id is None else message_id),
        (0x0800, 0x0101),
    ]
    if status is not None:
        elements.append((0x0900, status))
    elements.append((0x1000, seen.sop_instance_uid))
    return dimse.encode_command(elements)


def good_answer(seen: StoreSeen) -> tuple[bytes, bool]:
    return (
        pdu.encode_p_data(
            seen.context_id, response_command(seen), command=True, max_pdu_length=16384
        ),
        False,
    )


@dataclass
class RawScp:
    """``answers[n]`` answers the n-th C-STORE (1-based, over the server's life);
    stores without an entry get :func:`good_answer`."""

    answers: dict[int, Answer] = field(default_factory=dict)
    #: Accept every context in this syntax instead of the first proposed one.
    accept_syntax: str | None = None
    #: The Maximum Length announced in the A-ASSOCIATE-AC.
    max_pdu_length: int = 16384
    #: False: never answer A-RELEASE-RQ (keep the connection open until the SCU closes).
    answer_release: bool = True
    stores: list[StoreSeen] = field(default_factory=list)
    associations: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> RawScp:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        if self.errors:
            raise AssertionError(f"the raw SCP failed: {self.errors!r}")

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self._association(conn)
                except (ConnectionError, TimeoutError, EOFError):
                    pass  # the SCU went away: that is what several tests provoke
                except Exception as exc:
                    self.errors.append(exc)

    @staticmethod
    def _exactly(conn: socket.socket, size: int) -> bytes:
        chunks, got = [], 0
        while got < size:
            chunk = conn.recv(min(size - got, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read(self, conn: socket.socket) -> tuple[int, bytes]:
        pdu_type, length = _HEADER.unpack(self._exactly(conn, 6))
        return pdu_type, self._exactly(conn, length)

    def _association(self, conn: socket.socket) -> None:
        pdu_type, body = self._read(conn)
        assert pdu_type == 0x01, pdu_type
        request = pdu.decode_associate_rq(body)
        self.associations += 1
        results = [
            ContextResult(c.context_id, 0, self.accept_syntax or c.transfer_syntaxes[0])
            for c in request.contexts
        ]
        conn.sendall(pdu.encode_associate_ac(request, results, max_pdu_length=self.max_pdu_length))
        command = bytearray()
        have_command = False
        while True:
            pdu_type, body = self._read(conn)
            if pdu_type in (0x05, 0x07):  # A-RELEASE-RQ / A-ABORT
                if pdu_type == 0x05 and self.answer_release:
                    conn.sendall(pdu.encode_release_rp())
                elif pdu_type == 0x05:
                    conn.recv(1)  # until the SCU gives up and closes
                return
            pos = 0
            while pos < len(body):
                length, context_id, control = struct.unpack_from(">LBB", body, pos)
                data = body[pos + 6 : pos + 4 + length]
                pos += 4 + length
                if control & 0x01:
                    command += data
                    have_command = bool(control & 0x02)
                elif control & 0x02 and have_command:
                    fields = dimse.decode_command(bytes(command))
                    seen = StoreSeen(
                        len(self.stores) + 1,
                        context_id,
                        fields.message_id or 0,
                        fields.affected_sop_class_uid or "",
                        fields.affected_sop_instance_uid or "",
                    )
                    self.stores.append(seen)
                    command, have_command = bytearray(), False
                    reply, close = self.answers.get(seen.nth, good_answer)(seen)
                    conn.sendall(reply)
                    if close:
                        return
