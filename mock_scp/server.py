"""MockScp: an in-process DICOM Storage SCP that does what each test tells it.

Design (why not pynetdicom's AE): the faults the mock must produce (A-ABORT after the
first P-DATA fragment, slow reads, TCP reset, garbage, PDU-size checks) and its
receive-rate target (half of DCMTK ``storescp --ignore``) need the socket in hand.
So the server is small and explicit:

* one listening socket (``SO_REUSEADDR``, port 0 by default) and an accept thread;
* one thread per connection, blocking reads with ``recv_into`` into a reused buffer
  and PDU framing by hand (:mod:`mock_scp.wire`); ``TCP_NODELAY`` on every socket;
* per store only the command set is decoded; the dataset is kept as raw bytes and
  decoded on demand (:meth:`ReceivedStore.dataset`); two cheap peeks at its first
  elements check the transfer syntax and the SOP Instance UID;
* journal entries are recorded *before* the answer goes out, so an SCU that has its
  response (or its A-RELEASE-RP) can read the journal without racing the server.

Timeouts on the SCP side: ``acse_timeout`` waits for the A-ASSOCIATE-RQ,
``dimse_timeout`` for the rest of a DIMSE message once it has started, and
``network_timeout`` for anything while idle; each expiry aborts the association and is
recorded in ``end_detail``. ``None`` means no timeout.
"""

from __future__ import annotations

import math
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scu.protocol.acse import parse_reject
from scu.protocol.ae import check_ae_title
from scu.protocol.uids import APPLICATION_CONTEXT_NAME, UidKind, resolve_uid, resolve_uids

from . import wire
from .errors import MockScpError
from .journal import AssociationRecord, ReceivedStore, StoreWriter, Violation, ViolationKind
from .negotiation import DEFAULT_SOP_CLASSES, DEFAULT_TRANSFER_SYNTAXES, Policy, negotiate
from .rules import Action, Decision, Rule, RuleBuilder, RuleTable, StoreRequest

__all__ = ["Listener", "MockScp", "RejectRule"]

Listener = Callable[[AssociationRecord | ReceivedStore], object]

_HDR = struct.Struct(">BxI")
_PDV = struct.Struct(">IBB")
_C_STORE_RQ = 0x0001
_C_ECHO_RQ = 0x0030
_NO_DATASET = 0x0101
_DRAIN_SECONDS = 1.0
# Sizes beyond which a PDU is refused outright rather than buffered.
_MAX_ASSOCIATE_RQ = 1 << 20
_MAX_CONTROL_PDU = 1 << 10
_MAX_PDU_BUFFERED = 1 << 28


@dataclass(eq=False)
class RejectRule:
    """An association-reject rule; ``used`` counts the rejections it caused."""

    result: int
    source: int
    reason: int
    times: int | None
    close_at_once: bool = False
    used: int = 0


class _Closed(Exception):
    """The peer closed the connection (EOF)."""


class _Stopped(Exception):
    """The server is stopping."""


class _Reader:
    """Buffered PDU reads from a blocking socket into one reused buffer."""

    __slots__ = ("buf", "end", "mv", "rate", "sock", "start", "stop_event")

    def __init__(self, sock: socket.socket, stop_event: threading.Event) -> None:
        self.sock = sock
        self.stop_event = stop_event
        self.buf = bytearray(1 << 18)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.rate: float | None = None  # bytes per second while slow-reading

    def _fill(self, need: int) -> None:
        if self.end - self.start >= need:
            return
        if need > len(self.buf):
            grown = bytearray(max(need, 2 * len(self.buf)))
            grown[: self.end - self.start] = self.buf[self.start : self.end]
            self.buf, self.mv = grown, memoryview(grown)
            self.end -= self.start
            self.start = 0
        elif self.start + need > len(self.buf):
            n = self.end - self.start
            self.buf[0:n] = self.buf[self.start : self.end]
            self.start, self.end = 0, n
        while self.end - self.start < need:
            room = len(self.buf) - self.end
            if self.rate is not None:
                room = min(room, max(1, int(self.rate / 20)))
            n = self.sock.recv_into(self.mv[self.end :], room)
            if n == 0:
                raise _Closed
            self.end += n
            if self.rate is not None and self.stop_event.wait(n / self.rate):
                raise _Stopped

    def header(self) -> tuple[int, int]:
        """The next PDU's type and length."""
        self._fill(6)
        pdu_type, length = _HDR.unpack_from(self.buf, self.start)
        self.start += 6
        return pdu_type, length

    def body(self, length: int) -> memoryview:
        """The PDU body; valid until the next read."""
        self._fill(length)
        view = self.mv[self.start : self.start + length]
        self.start += length
        return view


def _check_timeout(value: object, argument: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{argument}: expected seconds > 0 or None, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{argument}: expected seconds > 0 or None, got {value!r}")
    return float(value)


class MockScp:
    """A configurable DICOM Storage SCP on a loopback port, for tests.

    Use as a context manager or call :meth:`start`/:meth:`stop`. Configure answers
    with :meth:`on_store` and :meth:`reject_associations`; read the journal from
    :attr:`received`, :attr:`associations`, :attr:`violations`; call :meth:`check`
    to re-raise in the test thread whatever went wrong.

    ``transfer_syntaxes`` is a list (UIDs or keywords, in preference order) or a
    mapping SOP class -> list; ``sop_classes`` a list ("only these"); ``None`` for
    both means every storage SOP class with the uncompressed and common compressed
    syntaxes. ``max_pdu_length`` is what the mock announces (0 = no limit);
    ``strict`` makes it abort an SCU that exceeds it, as DCMTK does (else it only
    records the violation). ``store_dir`` writes each complete store as a Part-10 file.
    """

    def __init__(
        self,
        ae_title: str = "MOCK-SCP",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_pdu_length: int = 16384,
        transfer_syntaxes: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
        sop_classes: Iterable[str] | None = None,
        accept_unknown_sop_classes: bool = False,
        require_called_ae_title: bool = False,
        require_calling_ae_titles: Iterable[str] | None = None,
        max_associations: int = 10,
        seed: int | None = None,
        store_dir: str | Path | None = None,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
        strict: bool = True,
    ) -> None:
        self._ae_title = check_ae_title(ae_title, parameter="ae_title")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host: expected an address such as '127.0.0.1', got {host!r}")
        self._host = host
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port: expected 0..65535 (0 = any free port), got {port!r}")
        self._requested_port = port
        if (
            isinstance(max_pdu_length, bool)
            or not isinstance(max_pdu_length, int)
            or not (max_pdu_length == 0 or 1024 <= max_pdu_length <= 0xFFFFFFFF)
        ):
            raise ValueError(
                f"max_pdu_length: expected 0 (no limit) or 1024..4294967295, got {max_pdu_length!r}"
            )
        self.max_pdu_length = max_pdu_length
        self._policy = self._build_policy(
            transfer_syntaxes, sop_classes, accept_unknown_sop_classes
        )
        if not isinstance(require_called_ae_title, bool):
            raise ValueError(
                f"require_called_ae_title: expected a bool, got {require_called_ae_title!r}"
            )
        self.require_called_ae_title = require_called_ae_title
        if require_calling_ae_titles is None:
            self.require_calling_ae_titles: frozenset[str] | None = None
        else:
            if isinstance(require_calling_ae_titles, str):
                raise ValueError(
                    "require_calling_ae_titles: expected a list of AE titles, got a string"
                )
            titles = frozenset(
                check_ae_title(t, parameter="require_calling_ae_titles")
                for t in require_calling_ae_titles
            )
            if not titles:
                raise ValueError(
                    "require_calling_ae_titles: an empty list would reject every SCU; use None"
                )
            self.require_calling_ae_titles = titles
        if (
            isinstance(max_associations, bool)
            or not isinstance(max_associations, int)
            or (max_associations < 1)
        ):
            raise ValueError(f"max_associations: expected an int >= 1, got {max_associations!r}")
        self.max_associations = max_associations
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        self.seed = seed
        self.acse_timeout = _check_timeout(acse_timeout, "acse_timeout")
        self.dimse_timeout = _check_timeout(dimse_timeout, "dimse_timeout")
        self.network_timeout = _check_timeout(network_timeout, "network_timeout")
        if not isinstance(strict, bool):
            raise ValueError(f"strict: expected a bool, got {strict!r}")
        self.strict = strict
        self.store_dir = None if store_dir is None else Path(store_dir)
        self._writer = None if self.store_dir is None else StoreWriter(self.store_dir)

        self._rules = RuleTable(seed)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._rejects: list[RejectRule] = []
        self._received: list[ReceivedStore] = []
        self._associations: list[AssociationRecord] = []
        self._violations: list[Violation] = []
        self._errors: list[BaseException] = []
        self._deferred_uid_checks: list[ReceivedStore] = []
        self._listeners: list[Listener] = []
        self._request_listeners: list[Callable[[StoreRequest], object]] = []
        self._next_assoc_id = 1
        self._open_associations = 0
        self._connections: dict[int, socket.socket] = {}  # thread ident -> socket
        self._threads: list[threading.Thread] = []
        self._in_flight = 0
        self._listener_sock: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._port = 0

    # --- configuration -------------------------------------------------------------

    @staticmethod
    def _build_policy(
        transfer_syntaxes: Iterable[str] | Mapping[str, Iterable[str]] | None,
        sop_classes: Iterable[str] | None,
        accept_unknown: bool,
    ) -> Policy:
        if not isinstance(accept_unknown, bool):
            raise ValueError(f"accept_unknown_sop_classes: expected a bool, got {accept_unknown!r}")
        classes = (
            frozenset(DEFAULT_SOP_CLASSES)
            if sop_classes is None
            else frozenset(
                resolve_uids(sop_classes, parameter="sop_classes", kind=UidKind.SOP_CLASS)
            )
        )
        per_class: dict[str, tuple[str, ...]] = {}
        default_syntaxes = DEFAULT_TRANSFER_SYNTAXES
        if isinstance(transfer_syntaxes, Mapping):
            for key, syntaxes in transfer_syntaxes.items():
                uid = resolve_uid(
                    key, parameter="transfer_syntaxes (SOP class key)", kind=UidKind.SOP_CLASS
                )
                per_class[uid] = resolve_uids(
                    syntaxes, parameter="transfer_syntaxes", kind=UidKind.TRANSFER_SYNTAX
                )
            if sop_classes is None:
                # A mapping alone means "only these SOP classes".
                classes = frozenset(per_class)
            elif not set(per_class) <= classes:
                extra = ", ".join(sorted(set(per_class) - classes))
                raise ValueError(
                    f"transfer_syntaxes: SOP classes {extra} are not in sop_classes; "
                    "list them there too or drop them from the mapping"
                )
        elif transfer_syntaxes is not None:
            default_syntaxes = resolve_uids(
                transfer_syntaxes, parameter="transfer_syntaxes", kind=UidKind.TRANSFER_SYNTAX
            )
        return Policy(classes, default_syntaxes, per_class, accept_unknown)

    def on_store(
        self,
        *,
        nth: int | Iterable[int] | None = None,
        every: int | None = None,
        offset: int = 0,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
        transfer_syntax: str | None = None,
        calling_ae_title: str | None = None,
        when: Callable[[StoreRequest], bool] | None = None,
        probability: float | None = None,
        times: int | None = None,
        expect: int | range | tuple[int, int | None] | None = None,
    ) -> RuleBuilder:
        """Start a store rule; finish it with one action (``.accept()``, ``.fail(...)``...).

        ``nth`` counts C-STOREs over the server's life (1-based); ``every=N`` matches
        every N-th store after the first ``offset`` ones (``every=3``: 3, 6, 9...;
        ``every=3, offset=1``: 4, 7, 10...); ``when`` is a
        predicate on the :class:`StoreRequest`; ``probability`` draws from ``seed``;
        ``times`` limits how often the rule may match (``None``: always); ``expect``
        is the number (or range) of hits :meth:`check` requires."""
        return self._rules.builder(
            nth=nth,
            every=every,
            offset=offset,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax,
            calling_ae_title=calling_ae_title,
            when=when,
            probability=probability,
            times=times,
            expect=expect,
        )

    @property
    def rules(self) -> list[Rule]:
        """The store rules in matching order, with their ``hits``."""
        return self._rules.rules

    def reject_associations(
        self,
        *,
        result: int | str = "permanent",
        source: int | str = "service-user",
        reason: int | str = "no-reason-given",
        times: int | None = None,
        close_at_once: bool = False,
    ) -> RejectRule:
        """Reject the next association requests with an A-ASSOCIATE-RJ; names or
        numbers (see :mod:`mock_scp.tables`). ``times=None`` rejects every request.

        By default the mock half-closes and lets the SCU read the reject before the
        connection goes. ``close_at_once=True`` closes right after the reject, as
        DCMTK storescp and Orthanc do: an SCU that races the close against reading the
        A-ASSOCIATE-RJ may then report an abort instead of the rejection."""
        r, s, why = parse_reject(result, source, reason)
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError(f"times: expected an int >= 1 or None (always), got {times!r}")
        if not isinstance(close_at_once, bool):
            raise ValueError(f"close_at_once: expected a bool, got {close_at_once!r}")
        rule = RejectRule(r, s, why, times, close_at_once)
        with self._lock:
            self._rejects.append(rule)
        return rule

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn`` from server threads with an :class:`AssociationRecord` when an
        association opens and when it ends (``ended`` set; a rejected one is reported
        once), and with a :class:`ReceivedStore` after each store is answered.
        Exceptions from ``fn`` are caught and reported by :meth:`check`."""
        if not callable(fn):
            raise ValueError(f"fn: expected a callable, got {fn!r}")
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn``."""
        with self._lock:
            self._listeners.remove(fn)

    def add_request_listener(self, fn: Callable[[StoreRequest], object]) -> None:
        """Call ``fn`` from server threads with a :class:`StoreRequest` as soon as a
        C-STORE command has arrived (before its dataset, its stall or its answer), so a
        runner can tell "the SCU has started this store" without racing the SCU's own
        log. Exceptions from ``fn`` are caught and reported by :meth:`check`."""
        if not callable(fn):
            raise ValueError(f"fn: expected a callable, got {fn!r}")
        with self._lock:
            self._request_listeners.append(fn)

    def reset(self) -> None:
        """Clear rules, reject rules, journal, errors, listeners and the nth counter."""
        self._rules.reset()
        with self._lock:
            self._rejects.clear()
            self._received.clear()
            self._associations.clear()
            self._violations.clear()
            self._errors.clear()
            self._deferred_uid_checks.clear()
            self._listeners.clear()
            self._request_listeners.clear()

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> MockScp:
        """Bind and start serving; returns ``self``."""
        if self._listener_sock is not None:
            raise RuntimeError("MockScp is already running")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
            sock.listen(64)
        except BaseException:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        self._stop_event.clear()
        self._listener_sock = sock
        self._accept_thread = threading.Thread(
            target=self._accept_loop,
            args=(sock,),
            name=f"mock-scp-accept-{self._port}",
            daemon=True,
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection, and join every thread."""
        sock = self._listener_sock
        if sock is None:
            return
        self._stop_event.set()
        self._listener_sock = None
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        sock.close()
        if self._accept_thread is not None:
            self._accept_thread.join(10)
            self._accept_thread = None
        with self._lock:
            conns = list(self._connections.values())
            threads = list(self._threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(10)
            if thread.is_alive():
                self._record_error(RuntimeError(f"{thread.name} did not stop within 10 s"))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]

    def __enter__(self) -> MockScp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._listener_sock is not None

    @property
    def ae_title(self) -> str:
        """The mock's AE title."""
        return self._ae_title

    @property
    def host(self) -> str:
        """The address the mock binds."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._port

    @property
    def addr(self) -> str:
        """``"host:port"`` (IPv6 hosts in brackets) for an SCU."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no connection is open and nothing is in flight; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._connections or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    # --- journal -------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedStore]:
        """Every C-STORE request received, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def associations(self) -> list[AssociationRecord]:
        """Every association attempt, in order (a copy of the list; records are live)."""
        with self._lock:
            return list(self._associations)

    @property
    def violations(self) -> list[Violation]:
        """What SCUs did against the standard (UID checks deferred to now included)."""
        self._run_deferred_checks()
        with self._lock:
            return list(self._violations)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised in server threads (predicates and listeners included)."""
        with self._lock:
            return list(self._errors)

    def check(self, *, violations: bool = True) -> None:
        """Raise :class:`MockScpError` listing server-thread errors, unmet ``expect``
        counts and (unless ``violations=False``) the SCU's violations."""
        found_violations = self.violations if violations else []
        errors = self.errors
        unmet = self._rules.unmet()
        if errors or unmet or found_violations:
            raise MockScpError(errors=errors, unmet=unmet, violations=found_violations)

    # --- internals -----------------------------------------------------------------

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def _record_violation(self, violation: Violation) -> None:
        with self._lock:
            self._violations.append(violation)

    def _notify(self, item: AssociationRecord | ReceivedStore) -> None:
        listeners = self._listeners
        if not listeners:
            return
        for fn in list(listeners):
            try:
                fn(item)
            except Exception as exc:
                self._record_error(exc)

    def _run_deferred_checks(self) -> None:
        with self._lock:
            pending = self._deferred_uid_checks
            self._deferred_uid_checks = []
        for store in pending:
            try:
                ds = store.dataset()
                uid = str(ds.get("SOPInstanceUID", ""))
            except Exception as exc:  # an undecodable dataset is the SCU's fault
                self._record_violation(
                    Violation(
                        ViolationKind.WRONG_TRANSFER_SYNTAX,
                        store.association_id,
                        f"dataset does not decode as {store.transfer_syntax}: {exc}",
                        store.message_id,
                    )
                )
                continue
            store.dataset_sop_instance_uid = uid
            if uid != store.sop_instance_uid:
                self._record_violation(_uid_mismatch(store, uid))

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop_event.is_set():
            try:
                conn, peer = listener.accept()
            except OSError:
                return  # listener closed by stop()
            if self._stop_event.is_set():
                conn.close()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            handler = _Connection(self, conn, peer)
            thread = threading.Thread(
                target=handler.run, name=f"mock-scp-{self._port}-conn", daemon=True
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                self._in_flight += 1  # until the thread registers its socket
            thread.start()

    def _choose_reject(
        self, rq: wire.AssociateRequest
    ) -> tuple[tuple[int, int, int], str, bool] | None:
        """The reject for this request, if any; with the lock held."""
        if not rq.protocol_version & 1:
            return (1, 2, 2), "protocol version not supported", False
        if rq.application_context != APPLICATION_CONTEXT_NAME:
            why = f"application context {rq.application_context!r} not supported"
            return (1, 1, 2), why, False
        for rule in self._rejects:
            if rule.times is None or rule.used < rule.times:
                rule.used += 1
                triple = (rule.result, rule.source, rule.reason)
                return triple, "reject_associations rule", rule.close_at_once
        if self.require_called_ae_title and rq.called_ae_title != self._ae_title:
            why = f"called AE title {rq.called_ae_title!r} is not {self._ae_title!r}"
            return (1, 1, 7), why, False
        if (
            self.require_calling_ae_titles is not None
            and rq.calling_ae_title not in self.require_calling_ae_titles
        ):
            return (1, 1, 3), f"calling AE title {rq.calling_ae_title!r} not allowed", False
        if self._open_associations >= self.max_associations:
            return (2, 3, 2), f"max_associations ({self.max_associations}) reached", False
        return None


def _uid_mismatch(store: ReceivedStore, dataset_uid: str) -> Violation:
    found = repr(dataset_uid) if dataset_uid else "no SOP Instance UID"
    return Violation(
        ViolationKind.UID_MISMATCH,
        store.association_id,
        f"command Affected SOP Instance UID {store.sop_instance_uid!r} but the dataset has {found}",
        store.message_id,
    )


@dataclass
class _Message:
    """A DIMSE message being received."""

    context_id: int
    command: bytearray
    command_done: bool = False
    fields: dict[int, int | str | bytes] | None = None
    data: bytearray | None = None
    request: StoreRequest | None = None
    decision: Decision | None = None
    requested_at: float | None = None
    data_fragments: int = 0
    abort_during: bool = False  # abort(during_dataset=True) chosen for this store


class _Connection:
    """One TCP connection: association negotiation, then DIMSE until it ends."""

    def __init__(self, scp: MockScp, sock: socket.socket, peer: Any) -> None:
        self.scp = scp
        self.sock = sock
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.reader = _Reader(sock, scp._stop_event)
        self.record: AssociationRecord | None = None
        self.contexts: dict[int, tuple[str, str]] = {}  # id -> (abstract, syntax)
        self.peer_max_pdu = 0
        # PS3.7 9.1.1.1.1: a Message ID must not repeat among *outstanding* operations
        # (reuse after the response is legal; pynetdicom always sends 1). The ID of the
        # last request stays "outstanding" for the next command when that command's
        # bytes had already arrived before our response went out.
        self.outstanding_id: int | None = None
        self._poller: select.poll | None = None
        self.message: _Message | None = None
        self.counted = False  # holds one of max_associations
        self._timeout: float | None = -1.0

    # -- plumbing

    def _set_timeout(self, value: float | None) -> None:
        if value != self._timeout:
            self.sock.settimeout(value)
            self._timeout = value

    def run(self) -> None:
        scp = self.scp
        ident = threading.get_ident()
        with scp._lock:
            scp._connections[ident] = self.sock
            scp._in_flight -= 1
        try:
            if scp._stop_event.is_set():
                return
            self._serve()
        except Exception as exc:
            scp._record_error(exc)
            self._end("aborted", f"mock error: {exc!r}", abort=True)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            with scp._lock:
                scp._connections.pop(ident, None)
                if self.counted:
                    scp._open_associations -= 1
                    self.counted = False
                scp._idle.notify_all()
            if self.record is not None and self.record.ended is not None:
                scp._notify(self.record)

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _peer_sent_more(self) -> bool:
        """Whether bytes beyond the current message have already arrived (buffered by
        us or still in the kernel), i.e. the SCU sent on before our answer."""
        if self.reader.end > self.reader.start:
            return True
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock, select.POLLIN)
        return bool(self._poller.poll(0))

    def _graceful_close(self) -> None:
        """Half-close and read until the peer closes, so what we sent last (a reject,
        an abort, a release reply) is not destroyed by a reset from unread data."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(_DRAIN_SECONDS)
            deadline = time.monotonic() + _DRAIN_SECONDS
            sink = bytearray(65536)
            while time.monotonic() < deadline and not self.scp._stop_event.is_set():
                if self.sock.recv_into(sink) == 0:
                    break
        except OSError:
            pass

    def _end(
        self,
        how: str,
        detail: str,
        *,
        abort: bool = False,
        abort_source: int = 2,
        abort_reason: int = 0,
    ) -> None:
        """Record how the association ended (before telling the peer), then act."""
        record = self.record
        if record is not None and record.ended is None:
            with self.scp._lock:
                record.ended = how
                record.end_detail = detail
                record.ended_at = time.time()
        if abort and record is not None:
            if self._send(wire.encode_abort(abort_source, abort_reason)):
                self._graceful_close()

    def _new_record(self, rq: wire.AssociateRequest | None) -> AssociationRecord:
        scp = self.scp
        with scp._lock:
            record = AssociationRecord(
                id=scp._next_assoc_id,
                calling_ae_title=rq.calling_ae_title if rq else "",
                called_ae_title=rq.called_ae_title if rq else "",
                proposed_contexts=[
                    (c.context_id, c.abstract_syntax, c.transfer_syntaxes) for c in rq.contexts
                ]
                if rq
                else [],
                accepted_contexts=[],
                max_pdu_length=rq.max_pdu_length if rq else 0,
                peer=self.peer,
                implementation_class_uid=rq.implementation_class_uid if rq else "",
                implementation_version_name=rq.implementation_version_name if rq else "",
            )
            scp._next_assoc_id += 1
            scp._associations.append(record)
        return record

    def _violation(self, kind: str, detail: str, message_id: int | None = None) -> None:
        assoc_id = self.record.id if self.record is not None else 0
        self.scp._record_violation(Violation(kind, assoc_id, detail, message_id))

    # -- association

    def _serve(self) -> None:
        scp = self.scp
        self._set_timeout(scp.acse_timeout)
        try:
            pdu_type, length = self.reader.header()
            if pdu_type != wire.PDU_ASSOCIATE_RQ:
                self.record = self._new_record(None)
                self._violation(
                    ViolationKind.PROTOCOL, f"expected A-ASSOCIATE-RQ, got PDU type {pdu_type:#04x}"
                )
                self._end(
                    "aborted", f"unexpected PDU type {pdu_type:#04x} before association", abort=True
                )
                return
            if length > _MAX_ASSOCIATE_RQ:
                raise wire.WireError(f"A-ASSOCIATE-RQ of {length} bytes")
            rq = wire.decode_associate_rq(self.reader.body(length))
        except TimeoutError:
            self.record = self._new_record(None)
            self._end("aborted", f"ACSE timeout: no A-ASSOCIATE-RQ within {scp.acse_timeout} s")
            return
        except (_Closed, _Stopped, OSError):
            return  # a connection that never asked for an association is not one
        except wire.WireError as exc:
            self.record = self._new_record(None)
            self._violation(ViolationKind.PROTOCOL, f"malformed A-ASSOCIATE-RQ: {exc}")
            self._end("aborted", "malformed A-ASSOCIATE-RQ", abort=True)
            return
        self.record = record = self._new_record(rq)
        with scp._lock:
            reject = scp._choose_reject(rq)
            if reject is None:
                scp._open_associations += 1
                self.counted = True
        if reject is not None:
            (result, source, reason), why, close_at_once = reject
            with scp._lock:
                record.rejection = (result, source, reason)
                record.ended = "rejected"
                record.end_detail = why
                record.ended_at = time.time()
            if self._send(wire.encode_associate_rj(result, source, reason)) and not close_at_once:
                self._graceful_close()
            return
        results = negotiate(rq.contexts, scp._policy)  # type: ignore[arg-type]
        abstract = {c.context_id: c.abstract_syntax for c in rq.contexts}
        accepted = [(cid, abstract[cid], ts) for cid, res, ts in results if res == 0]
        with scp._lock:
            record.accepted_contexts = accepted
        self.contexts = {cid: (a, ts) for cid, a, ts in accepted}
        self.peer_max_pdu = rq.max_pdu_length
        if not self._send(wire.encode_associate_ac(rq, results, scp.max_pdu_length)):
            self._end("dropped", "connection lost while sending A-ASSOCIATE-AC")
            return
        scp._notify(record)
        self._dimse_loop()

    def _dimse_loop(self) -> None:
        scp = self.scp
        reader = self.reader
        limit = scp.max_pdu_length
        while True:
            self._set_timeout(scp.network_timeout if self.message is None else scp.dimse_timeout)
            try:
                pdu_type, length = reader.header()
                if pdu_type == wire.PDU_DATA:
                    if limit and length > limit:
                        self._violation(
                            ViolationKind.PDU_TOO_LARGE,
                            f"P-DATA-TF of {length} bytes exceeds the negotiated maximum {limit}",
                        )
                        if scp.strict:
                            self._interrupt_store()
                            self._end(
                                "aborted",
                                f"A-ABORT by the mock: PDU of {length} bytes > max {limit}",
                                abort=True,
                                abort_reason=6,
                            )
                            return
                    if length > _MAX_PDU_BUFFERED:
                        # Never try to buffer gigabytes on a peer's say-so.
                        self._protocol_abort(f"P-DATA-TF of {length} bytes is beyond any use")
                        return
                    if not self._p_data(reader.body(length)):
                        return
                elif length > _MAX_CONTROL_PDU:
                    self._protocol_abort(f"PDU type {pdu_type:#04x} of {length} bytes")
                    return
                elif pdu_type == wire.PDU_RELEASE_RQ:
                    reader.body(length)
                    if self.message is not None:
                        self._violation(
                            ViolationKind.PROTOCOL, "A-RELEASE-RQ in the middle of a DIMSE message"
                        )
                        self._interrupt_store()
                    self._end("released", "A-RELEASE by the SCU")
                    if self._send(wire.encode_release_rp()):
                        self._graceful_close()
                    return
                elif pdu_type == wire.PDU_ABORT:
                    body = bytes(reader.body(length))
                    self._interrupt_store()
                    src = body[2] if len(body) >= 4 else -1
                    why = body[3] if len(body) >= 4 else -1
                    self._end("aborted", f"A-ABORT from the SCU (source {src}, reason {why})")
                    return
                else:
                    self._violation(
                        ViolationKind.PROTOCOL,
                        f"unexpected PDU type {pdu_type:#04x} on an association",
                    )
                    self._interrupt_store()
                    self._end(
                        "aborted",
                        f"A-ABORT by the mock: unexpected PDU {pdu_type:#04x}",
                        abort=True,
                        abort_reason=2,
                    )
                    return
            except TimeoutError:
                which = "network" if self.message is None else "DIMSE"
                self._interrupt_store()
                self._end(
                    "aborted",
                    f"A-ABORT by the mock: {which} timeout",
                    abort=True,
                )
                return
            except _Stopped:
                self._interrupt_store()
                self._end("aborted", "server stopped", abort=True)
                return
            except (_Closed, OSError) as exc:
                self._interrupt_store()
                if scp._stop_event.is_set():
                    self._end("aborted", "server stopped")
                    return
                reason = "closed" if isinstance(exc, _Closed) else f"reset ({exc})"
                self._violation(
                    ViolationKind.DROPPED_CONNECTION,
                    f"TCP connection {reason} without A-RELEASE or A-ABORT",
                )
                self._end("dropped", f"TCP connection {reason} by the SCU")
                return

    # -- DIMSE

    def _p_data(self, body: memoryview) -> bool:
        """Handle one P-DATA-TF; ``False`` when the association is over."""
        msg = self.message
        if msg is not None and msg.data is not None and not msg.abort_during and len(body) > 6:
            # Fast path, most PDUs of a large store: one middle dataset fragment.
            item_len, context_id, control = _PDV.unpack_from(body, 0)
            if control == 0 and item_len + 4 == len(body) and context_id == msg.context_id:
                msg.data += body[6:]
                msg.data_fragments += 1
                return True
        pos, end = 0, len(body)
        while pos < end:
            if pos + 6 > end:
                return self._protocol_abort("truncated PDV item")
            item_len, context_id, control = _PDV.unpack_from(body, pos)
            if item_len < 2 or pos + 4 + item_len > end:
                return self._protocol_abort(f"PDV item length {item_len} does not fit the PDU")
            fragment = body[pos + 6 : pos + 4 + item_len]
            pos += 4 + item_len
            if context_id not in self.contexts:
                self._violation(
                    ViolationKind.UNKNOWN_CONTEXT,
                    f"PDV on presentation context {context_id}, which was not accepted",
                )
                if self.scp.strict:
                    self._interrupt_store()
                    self._end(
                        "aborted",
                        f"A-ABORT by the mock: context {context_id} not accepted",
                        abort=True,
                        abort_reason=6,
                    )
                    return False
            msg = self.message
            if control & 0x01:  # command fragment
                if msg is None:
                    msg = self.message = _Message(context_id, bytearray())
                elif msg.command_done:
                    return self._protocol_abort("command fragment while a dataset was expected")
                msg.command += fragment
                if control & 0x02 and not self._command_complete(msg):
                    return False
            else:
                if msg is None or not msg.command_done:
                    return self._protocol_abort("dataset fragment without a command")
                assert msg.data is not None
                msg.data += fragment
                msg.data_fragments += 1
                if control & 0x02:
                    if not self._dataset_complete(msg):
                        return False
        msg = self.message
        # abort(during_dataset=True): after the P-DATA-TF holding the first dataset fragment.
        if msg is not None and msg.abort_during and msg.data_fragments >= 1:
            self._store_ended_without_answer(msg, "abort", complete=False)
            self._end(
                "aborted",
                "A-ABORT by the mock during the dataset (rule)",
                abort=True,
                abort_source=0,
            )
            return False
        return True

    def _protocol_abort(self, detail: str) -> bool:
        self._violation(ViolationKind.PROTOCOL, detail)
        self._interrupt_store()
        self._end("aborted", f"A-ABORT by the mock: {detail}", abort=True, abort_reason=6)
        return False

    def _command_complete(self, msg: _Message) -> bool:
        try:
            fields = wire.decode_command(msg.command)
        except wire.WireError as exc:
            return self._protocol_abort(str(exc))
        msg.fields = fields
        msg.command_done = True
        has_data = fields.get(0x0800, _NO_DATASET) != _NO_DATASET
        command_field = fields.get(0x0100)
        message_id = fields.get(0x0110)
        if isinstance(message_id, int) and message_id == self.outstanding_id:
            self._violation(
                ViolationKind.DUPLICATE_MESSAGE_ID,
                f"message ID {message_id} reused while the operation with that ID was "
                "still outstanding",
                message_id,
            )
        self.outstanding_id = None
        if command_field == _C_STORE_RQ:
            self._match_store(msg, fields)
            if not has_data:
                self._violation(
                    ViolationKind.PROTOCOL,
                    "C-STORE-RQ without a dataset",
                    msg.request.message_id if msg.request else None,
                )
                msg.data = bytearray()
                return self._dataset_complete(msg)
            msg.data = bytearray()
            return True
        if has_data:
            msg.data = bytearray()  # read and drop it, then answer
            return True
        return self._answer_other(msg)

    def _match_store(self, msg: _Message, fields: dict[int, int | str | bytes]) -> None:
        scp = self.scp
        record = self.record
        assert record is not None
        abstract, syntax = self.contexts.get(msg.context_id, ("", ""))
        sop_class = str(fields.get(0x0002, ""))
        message_id = fields.get(0x0110, 0)
        move_ae = fields.get(0x1030)
        request = StoreRequest(
            nth=scp._rules.next_nth(),
            sop_class_uid=sop_class,
            sop_instance_uid=str(fields.get(0x1000, "")),
            transfer_syntax=syntax,
            calling_ae_title=record.calling_ae_title,
            called_ae_title=record.called_ae_title,
            association_id=record.id,
            message_id=message_id if isinstance(message_id, int) else 0,
            context_id=msg.context_id,
            priority=int(p) if isinstance(p := fields.get(0x0700, 0), int) else 0,
            move_originator_ae_title=move_ae if isinstance(move_ae, str) else None,
        )
        if abstract and sop_class != abstract:
            self._violation(
                ViolationKind.CONTEXT_MISMATCH,
                f"C-STORE of SOP class {sop_class} on context {msg.context_id}, "
                f"negotiated for {abstract}",
                request.message_id,
            )
        msg.request = request
        msg.requested_at = time.time()
        msg.decision, _ = scp._rules.decide(request, scp._record_error)
        for fn in list(scp._request_listeners):
            try:
                fn(request)
            except Exception as exc:
                scp._record_error(exc)
        action = msg.decision.action
        msg.abort_during = action.name == "abort" and action.during_dataset
        if msg.decision.bytes_per_second is not None:
            self.reader.rate = msg.decision.bytes_per_second

    def _make_store(
        self, msg: _Message, status: int | None, action: Action, complete: bool
    ) -> ReceivedStore:
        req = msg.request
        assert req is not None and msg.decision is not None
        return ReceivedStore(
            sop_class_uid=req.sop_class_uid,
            sop_instance_uid=req.sop_instance_uid,
            transfer_syntax=req.transfer_syntax,
            calling_ae_title=req.calling_ae_title,
            called_ae_title=req.called_ae_title,
            association_id=req.association_id,
            message_id=req.message_id,
            status=status,
            action=action.name,
            comment=action.comment if status is not None else None,
            stalled_seconds=msg.decision.stall_seconds,
            complete=complete,
            nth=req.nth,
            data=msg.data if msg.data is not None else b"",
            requested_at=msg.requested_at,
        )

    def _journal(self, store: ReceivedStore) -> None:
        with self.scp._lock:
            self.scp._received.append(store)
            if self.record is not None:
                self.record.stores += 1

    def _stall(self, seconds: float) -> str | None:
        """Hold the answer back; ``"stopped"`` if the server stops meanwhile, ``"peer"``
        as soon as the SCU gives up (an A-ABORT or a close after its own timeout),
        ``None`` when the stall ran its course. Other traffic (a pipelined request)
        does not end the stall."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if self.scp._stop_event.is_set():
                return "stopped"
            if left <= 0:
                return None
            pending = self._pending_pdu_type(min(left, 0.05))
            if pending in (0x07, -1):
                return "peer"
            if pending is not None:  # something else waits: stop watching, just wait
                return "stopped" if self.scp._stop_event.wait(left) else None

    def _pending_pdu_type(self, wait: float) -> int | None:
        """The type of the next PDU already sent by the SCU, -1 for a closed or reset
        connection, ``None`` if nothing arrived within ``wait`` seconds."""
        reader = self.reader
        if reader.end > reader.start:
            return reader.buf[reader.start]
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock, select.POLLIN)
        if not self._poller.poll(wait * 1000):
            return None
        try:
            first = self.sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return -1
        return first[0] if first else -1

    def _store_ended_without_answer(self, msg: _Message, action: str, *, complete: bool) -> None:
        if msg.request is None or msg.decision is None:
            return
        store = self._make_store(msg, None, Action(action), complete)
        self._journal(store)
        self.scp._notify(store)
        self.message = None
        self.reader.rate = None

    def _interrupt_store(self) -> None:
        """The association ends while a store is being received: journal it as such."""
        msg = self.message
        if msg is not None and msg.request is not None:
            self._store_ended_without_answer(msg, "interrupted", complete=False)
        self.message = None
        self.reader.rate = None

    def _dataset_complete(self, msg: _Message) -> bool:
        self.message = None
        self.reader.rate = None
        if msg.request is None:
            return self._answer_other(msg)
        scp = self.scp
        decision = msg.decision
        assert decision is not None and msg.data is not None
        req = msg.request
        problem, dataset_uid = wire.sniff_dataset(msg.data, req.transfer_syntax)
        if problem is not None:
            self._violation(ViolationKind.WRONG_TRANSFER_SYNTAX, problem, req.message_id)
        if decision.stall_seconds > 0:
            cut_short = self._stall(decision.stall_seconds)
            if cut_short == "stopped":
                self._store_ended_without_answer(msg, "interrupted", complete=True)
                self._end("aborted", "server stopped", abort=True)
                return False
            if cut_short == "peer":
                # The SCU gave up waiting (its DIMSE timeout): it aborted or closed. No
                # answer is journaled; the read loop sees how the association ended.
                self._store_ended_without_answer(msg, "interrupted", complete=True)
                return True
        action = decision.action
        answers = action.name in ("accept", "respond", "warn", "fail")
        store = self._make_store(msg, action.status if answers else None, action, True)
        if problem is None:
            if dataset_uid is None:
                with scp._lock:
                    scp._deferred_uid_checks.append(store)
            else:
                store.dataset_sop_instance_uid = dataset_uid
                if dataset_uid != req.sop_instance_uid:
                    scp._record_violation(_uid_mismatch(store, dataset_uid))
        if scp._writer is not None:
            try:
                store.path = scp._writer.write(store)
            except OSError as exc:
                scp._record_error(exc)
        self._journal(store)
        if answers:
            response = self._store_response(req, action.status, action.comment)
            if self._peer_sent_more():
                self.outstanding_id = req.message_id
            store.answered_at = time.time()
            ok = self._send(response)
            scp._notify(store)
            if not ok:
                # The SCU went away (e.g. its DIMSE timeout during a stall); the read
                # loop sees how (A-ABORT in the buffer, or a reset).
                return True
            return True
        scp._notify(store)
        if action.name == "abort":
            self._end(
                "aborted",
                "A-ABORT by the mock instead of a response (rule)",
                abort=True,
                abort_source=0,
            )
        elif action.name == "disconnect":
            self._end(
                "dropped", "TCP closed by the mock (rule" + (", reset)" if action.rst else ")")
            )
            if action.rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        elif action.name == "garbage":
            self._end(
                "dropped", f"{len(action.data)} garbage bytes then TCP close by the mock (rule)"
            )
            self._send(action.data)
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return False

    def _store_response(self, req: StoreRequest, status: int, comment: str | None) -> bytes:
        elements: list[tuple[int, int | str]] = [
            (0x0002, req.sop_class_uid),
            (0x0100, 0x8001),
            (0x0120, req.message_id),
            (0x0800, _NO_DATASET),
            (0x0900, status),
        ]
        if comment:
            elements.append((0x0902, comment))
        elements.append((0x1000, req.sop_instance_uid))
        return wire.encode_p_data(
            req.context_id,
            wire.encode_command(elements),
            command=True,
            max_pdu_length=self.peer_max_pdu,
        )

    def _answer_other(self, msg: _Message) -> bool:
        """C-ECHO gets success; any other command gets 0x0211 (unrecognized operation),
        except C-CANCEL, which has no response."""
        fields = msg.fields or {}
        self.message = None
        command_field = fields.get(0x0100)
        if not isinstance(command_field, int) or command_field == 0x0FFF:
            return True
        message_id = fields.get(0x0110, 0)
        status = 0x0000 if command_field == _C_ECHO_RQ else 0x0211
        elements: list[tuple[int, int | str]] = []
        sop_class = fields.get(0x0002)
        if isinstance(sop_class, str):
            elements.append((0x0002, sop_class))
        elements += [
            (0x0100, command_field | 0x8000),
            (0x0120, message_id if isinstance(message_id, int) else 0),
            (0x0800, _NO_DATASET),
            (0x0900, status),
        ]
        self._send(
            wire.encode_p_data(
                msg.context_id,
                wire.encode_command(elements),
                command=True,
                max_pdu_length=self.peer_max_pdu,
            )
        )
        return True
