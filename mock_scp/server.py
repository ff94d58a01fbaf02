"""MockScp: an in-process DICOM Storage SCP that does what each test tells it.

Design (why not pynetdicom's AE): the faults the mock must produce (A-ABORT after the
first P-DATA fragment, slow reads, TCP reset, garbage, PDU-size checks) and its receive
rate need the socket in hand. So the server is small and explicit:

* one listening socket (``SO_REUSEADDR``, port 0 by default) and an accept thread; at
  most ``max_connections`` connections at once, each on its own thread
  (:mod:`mock_scp.connection`) with ``TCP_NODELAY``;
* the protocol is the shared core (:mod:`scu.protocol`) driven by the connection's state
  machine (:mod:`mock_scp.machine`); per store only the command set is decoded, the data
  set is kept as received (:mod:`mock_scp.storage`) and decoded on demand;
* journal entries are recorded *before* the answer goes out, so an SCU that has its
  response (or its A-RELEASE-RP) can read the journal without racing the server.
"""

from __future__ import annotations

import errno
import socket
import ssl
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from scu.protocol.acse import parse_reject
from scu.protocol.identity import UserIdentity
from scu.protocol.pdu import AssociateRQ

from .admission import Admission, RejectRule, check_identity
from .checks import uid_mismatch
from .config import IdentityCheck, ScpConfig, is_loopback
from .connection import Connection
from .journal import (
    AssociationRecord,
    Journal,
    Listener,
    ReceivedStore,
    Violation,
    ViolationKind,
    printable,
)
from .matching import Plan, RuleTable
from .negotiation import Policy
from .rules import Decision, Rule, RuleBuilder, StoreContent, StoreRequest
from .storage import PayloadStore, StoreWriter, payload_store
from .verdicts import Verdicts

__all__ = ["Listener", "MockScp", "RejectRule"]


class _Port:
    """What the connections of one server may use (:class:`mock_scp.connection.ServerPort`)."""

    def __init__(self, scp: MockScp) -> None:
        self._scp = scp
        self.config = scp.config
        self.journal = scp._journal
        self.stop_event = scp._stop_event
        self.payloads = scp._payloads
        self.writer = scp._writer

    def admit(self, request: AssociateRQ) -> tuple[tuple[int, int, int], str, bool] | None:
        return self._scp._admission.admit(request)

    def release_slot(self) -> None:
        self._scp._admission.release()

    def next_nth(self) -> int:
        return self._scp._rules.next_nth()

    def plan(self, request: StoreRequest) -> Plan:
        return self._scp._rules.plan(request, self.journal.error)

    def decide(self, plan: Plan, content: StoreContent) -> Decision:
        return self._scp._decide(plan, content)

    def check_identity(self, identity: UserIdentity | None) -> tuple[bool, bytes | None]:
        return check_identity(self.config.require_user_identity, identity)


class MockScp(Verdicts):
    """A configurable DICOM Storage SCP on a loopback port, for tests.

    Use as a context manager or call :meth:`start`/:meth:`stop`. Configure answers
    with :meth:`on_store` and :meth:`reject_associations`; read the journal from
    :attr:`received` (every store that arrived), :attr:`stored` (those complete and
    answered), :attr:`associations` and :attr:`violations`; call :meth:`check` to raise
    in the test thread whatever went wrong.

    Negotiation: ``transfer_syntaxes`` is a list (UIDs or keywords, in preference
    order) or a mapping SOP class -> list; ``sop_classes`` a list ("only these"). By
    default every storage SOP class and transfer syntax DCMTK ``storescp +xa`` accepts
    is accepted. ``max_pdu_length`` is what the mock announces (0 = no limit).

    Behaviour: ``strict`` makes it abort an SCU that exceeds the maximum PDU, uses a
    context that was not accepted, or proposes duplicate context IDs or more than 128
    contexts, as DCMTK does (otherwise these are only recorded); ``strict_rules`` makes
    a store that matches no rule a violation. ``require_user_identity`` is a mapping
    username -> passcode (``None``: any) or a callable on the identity.

    Limits: ``max_associations`` open associations (more are rejected, transient,
    local limit exceeded) and ``max_connections`` open TCP connections (more are closed
    at once); ``acse_timeout``, ``dimse_timeout`` and ``network_timeout`` are deadlines
    (see :mod:`mock_scp.connection`); ``max_dataset_size`` bytes per data set.

    Data: ``keep_data`` keeps each data set (``False``: only its first bytes),
    in memory up to ``memory_budget`` bytes in all, beyond it in files under
    ``spool_dir`` (a temporary directory by default); ``store_dir`` also writes each
    complete store as a Part-10 file (a store that cannot be written is answered
    0xA700 Out of Resources). ``tls`` is a server-side ``ssl.SSLContext``.
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
        max_connections: int | None = None,
        seed: int | None = None,
        store_dir: str | Path | None = None,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
        strict: bool = True,
        strict_rules: bool = False,
        tls: ssl.SSLContext | None = None,
        keep_data: bool = True,
        memory_budget: int = 128 << 20,
        spool_dir: str | Path | None = None,
        max_dataset_size: int | None = None,
        require_user_identity: IdentityCheck | None = None,
    ) -> None:
        self.config = ScpConfig.build(
            ae_title=ae_title,
            host=host,
            port=port,
            max_pdu_length=max_pdu_length,
            transfer_syntaxes=transfer_syntaxes,
            sop_classes=sop_classes,
            accept_unknown_sop_classes=accept_unknown_sop_classes,
            require_called_ae_title=require_called_ae_title,
            require_calling_ae_titles=require_calling_ae_titles,
            max_associations=max_associations,
            max_connections=max_connections,
            seed=seed,
            store_dir=store_dir,
            acse_timeout=acse_timeout,
            dimse_timeout=dimse_timeout,
            network_timeout=network_timeout,
            strict=strict,
            strict_rules=strict_rules,
            tls=tls,
            keep_data=keep_data,
            memory_budget=memory_budget,
            spool_dir=spool_dir,
            max_dataset_size=max_dataset_size,
            require_user_identity=require_user_identity,
        )
        config = self.config
        self._rules = RuleTable(config.seed)
        self._journal = Journal()
        self._payloads: PayloadStore = payload_store(
            self,
            keep_data=config.keep_data,
            memory_budget=config.memory_budget,
            spool_dir=config.spool_dir,
        )
        self._writer = None if config.store_dir is None else StoreWriter(config.store_dir)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._admission = Admission(config)
        self._connections: dict[int, socket.socket] = {}  # thread ident -> socket
        self._threads: list[threading.Thread] = []
        self._in_flight = 0
        self._listener_sock: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._port = 0

    # --- the configuration, read back ------------------------------------------------

    @property
    def ae_title(self) -> str:
        return self.config.ae_title

    @property
    def host(self) -> str:
        """The address the mock binds."""
        return self.config.host

    @property
    def max_pdu_length(self) -> int:
        return self.config.max_pdu_length

    @property
    def max_associations(self) -> int:
        return self.config.max_associations

    @property
    def strict(self) -> bool:
        return self.config.strict

    @property
    def store_dir(self) -> Path | None:
        return self.config.store_dir

    @property
    def policy(self) -> Policy:
        """What the mock accepts in negotiation."""
        return self.config.policy

    # --- rules ---------------------------------------------------------------------

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
        dataset: Mapping[str, object] | None = None,
        match: Callable[[StoreContent], bool] | None = None,
        times: int | None = None,
        expect: int | range | tuple[int, int | None] | None = None,
        ordered: bool = False,
    ) -> RuleBuilder:
        """Start a store rule; finish it with one action (``.accept()``, ``.fail(...)``,
        ``.respond_with(handler)``...).

        On the command: ``nth`` counts C-STOREs over the server's life (1-based);
        ``every=N`` matches every N-th store after the first ``offset`` ones
        (``every=3``: 3, 6, 9...; ``every=3, offset=1``: 4, 7, 10...); the UIDs and the
        calling AE title; ``when`` a predicate on the :class:`StoreRequest`;
        ``probability`` draws from ``seed``. On the content, once the data set has
        arrived: ``dataset={"Modality": "CT"}`` (a value may be a list of values or a
        predicate) and ``match`` a predicate on the :class:`StoreContent`.

        ``times`` limits how often the rule may match (``None``: always); ``expect`` is
        the number (or range) of hits :meth:`check` requires; ``ordered=True`` makes it
        one of a sequence that must be hit in the order the rules were made (``times``
        and ``expect`` default to 1)."""
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
            dataset=dataset,
            match=match,
            times=times,
            expect=expect,
            ordered=ordered,
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
        """Reject the next association requests with an A-ASSOCIATE-RJ; names or numbers
        (see :mod:`scu.protocol.acse`). ``times=None`` rejects every request.

        By default the mock half-closes and lets the SCU read the reject before the
        connection goes. ``close_at_once=True`` closes right after the reject, as DCMTK
        storescp and Orthanc do: an SCU that races the close against reading the
        A-ASSOCIATE-RJ may then report an abort instead of the rejection."""
        r, s, why = parse_reject(result, source, reason)
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError(f"times: expected an int >= 1 or None (always), got {times!r}")
        if not isinstance(close_at_once, bool):
            raise ValueError(f"close_at_once: expected a bool, got {close_at_once!r}")
        return self._admission.add(RejectRule(r, s, why, times, close_at_once))

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn`` from server threads with an :class:`AssociationRecord` when an
        association opens and when it ends (``ended`` set; a rejected one is reported
        once), and with a :class:`ReceivedStore` after each store is journaled.
        Exceptions from ``fn`` are caught and reported by :meth:`check`."""
        if not callable(fn):
            raise ValueError(f"fn: expected a callable, got {fn!r}")
        self._journal.add_listener(fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn``."""
        self._journal.remove_listener(fn)

    def add_request_listener(self, fn: Callable[[StoreRequest], object]) -> None:
        """Call ``fn`` from server threads with a :class:`StoreRequest` as soon as a
        C-STORE command has arrived (before its data set, its stall or its answer), so a
        runner can tell "the SCU has started this store" without racing the SCU's own
        log. Exceptions from ``fn`` are caught and reported by :meth:`check`."""
        if not callable(fn):
            raise ValueError(f"fn: expected a callable, got {fn!r}")
        self._journal.add_request_listener(fn)  # type: ignore[arg-type]

    def reset(self) -> None:
        """Clear rules, reject rules, journal, errors, listeners, kept data sets and the
        nth counter."""
        self._rules.reset()
        self._admission.clear()
        self._journal.reset()
        self._payloads.reset()

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> MockScp:
        """Bind and start serving; returns ``self``."""
        if self._listener_sock is not None:
            raise RuntimeError("MockScp is already running")
        host = self.config.host
        if not is_loopback(host):
            warnings.warn(
                f"MockScp binds {host}, not a loopback address: other machines can reach it",
                stacklevel=2,
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.config.port))
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
                self._journal.error(RuntimeError(f"{thread.name} did not stop within 10 s"))
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
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._port

    @property
    def addr(self) -> str:
        """``"host:port"`` (IPv6 hosts in brackets) for an SCU."""
        host = self.config.host
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

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
        """Every C-STORE request that arrived, in arrival order, whatever became of it
        (answered, faulted, or interrupted with ``complete=False``)."""
        return self._journal.stores

    @property
    def stored(self) -> list[ReceivedStore]:
        """The stores whose data set arrived in full and that were answered with a
        status (success, warning or failure), in arrival order."""
        return [s for s in self._journal.stores if s.answered]

    @property
    def associations(self) -> list[AssociationRecord]:
        """Every association attempt, in order (a copy of the list; records are live)."""
        return self._journal.associations

    @property
    def violations(self) -> list[Violation]:
        """What SCUs did against the standard (UID checks deferred to now included)."""
        self._run_deferred_checks()
        return self._journal.violations

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised in server threads (predicates and listeners included)."""
        return self._journal.errors

    @property
    def refused_connections(self) -> int:
        """TCP connections closed at once because ``max_connections`` were open."""
        return self._journal.refused_connections

    def __repr__(self) -> str:
        state = f"listening on {self.addr}" if self.running else "stopped"
        stores = self._journal.stores
        return (
            f"<MockScp {self.ae_title!r} {state}: {len(self.rules)} rules, {len(stores)} "
            f"stores received, {len(self._journal.associations)} associations, "
            f"{len(self._journal.violations)} violations>"
        )

    # --- internals -----------------------------------------------------------------

    def _decide(self, plan: Plan, content: StoreContent) -> Decision:
        decision, hit = self._rules.decide(plan, content, self._journal.error)
        request = plan.request
        if not hit and plan.decision is None and self.config.strict_rules:
            self._journal.violation(
                Violation(
                    ViolationKind.UNMATCHED_STORE,
                    request.association_id,
                    f"store {request.nth} ({printable(request.sop_instance_uid)}) matched no "
                    "rule (strict_rules)",
                    request.message_id,
                )
            )
        return decision

    def _run_deferred_checks(self) -> None:
        for store in self._journal.take_deferred():
            try:
                ds = store.dataset()
                uid = str(ds.get("SOPInstanceUID", ""))
            except ValueError as exc:
                if "not kept" in str(exc):
                    continue  # keep_data=False: nothing to check against
                self._journal.violation(_undecodable(store, exc))
                continue
            except Exception as exc:  # an undecodable data set is the SCU's fault
                self._journal.violation(_undecodable(store, exc))
                continue
            store.dataset_sop_instance_uid = uid
            if uid != store.sop_instance_uid:
                self._journal.violation(uid_mismatch(store, uid))

    def _accept_loop(self, listener: socket.socket) -> None:
        port = _Port(self)
        while not self._stop_event.is_set():
            try:
                conn, peer = listener.accept()
            except OSError as exc:
                if self._stop_event.is_set() or exc.errno not in _ACCEPT_AGAIN:
                    return  # the listener was closed by stop()
                # Out of file descriptors or memory (a flood), or a connection reset
                # before it was taken: wait a little for the connections being served
                # to end, and go on accepting; what waits in the backlog is kept.
                if exc.errno in _ACCEPT_LATER:
                    self._stop_event.wait(0.05)
                continue
            if self._stop_event.is_set():
                conn.close()
                return
            with self._lock:
                full = len(self._connections) + self._in_flight >= self.config.max_connections
            if full:
                # Reset, so that a flood of connections costs no TIME_WAIT either.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                with self._journal.lock:
                    self._journal.refused_connections += 1
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            handler = Connection(port, conn, peer)
            thread = threading.Thread(
                target=self._serve, args=(handler,), name=f"mock-scp-{self._port}-conn", daemon=True
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                self._in_flight += 1  # until the thread registers its socket
            thread.start()

    def _serve(self, handler: Connection) -> None:
        ident = threading.get_ident()
        with self._lock:
            self._connections[ident] = handler.sock
            self._in_flight -= 1
        try:
            handler.run()
        finally:
            with self._lock:
                self._connections.pop(ident, None)
                self._idle.notify_all()


#: accept() errors after which the server goes on accepting: resource exhaustion (it
#: waits a little first) and connections that died in the backlog.
_ACCEPT_LATER = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_AGAIN = _ACCEPT_LATER | {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR}


def _undecodable(store: ReceivedStore, exc: BaseException) -> Violation:
    return Violation(
        "wrong-transfer-syntax",
        store.association_id,
        f"dataset does not decode as {store.transfer_syntax}: {exc}",
        store.message_id,
    )
