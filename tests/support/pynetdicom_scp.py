"""A small in-process pynetdicom Storage SCP for the StoreScu integration tests.

It is deliberately independent of ``mock_scp``: the SCU is judged by a plain pynetdicom
acceptor, so a bug shared by our SCU and our mock cannot hide itself. What it does:

* accepts every storage SOP class of pynetdicom (plus any extra classes given) with
  the transfer syntaxes chosen per SOP class;
* records every C-STORE it handles (:class:`Received`) and every association
  (:class:`AssociationSeen`), including the largest P-DATA PDU it received;
* answers each store with an :class:`Action` chosen per call: a status (int, or a
  Dataset with Status and ErrorComment), a stall, an A-ABORT, or a socket close;
* rejects association requests on demand (any result/source/reason) and requires
  the called AE title;
* re-raises, in the test thread, any exception raised inside its handlers (``check()``).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom import uid as uid_module
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
VERIFICATION = "1.2.840.10008.1.1"

#: The syntaxes an "accept everything" SCP offers: every one pydicom can read or that
#: the SCU may propose. (Each supported context costs pynetdicom negotiation time, so
#: the list is the useful ones, not all 46 UIDs.)
ALL_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
)

#: The storage SOP classes the tests send (pydicom's test files and datagen's):
#: listing all 170 would make every negotiation of the pynetdicom SCP ~10x slower.
STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    str(getattr(uid_module, keyword))
    for keyword in (
        "CTImageStorage",
        "MRImageStorage",
        "SecondaryCaptureImageStorage",
        "UltrasoundImageStorage",
        "UltrasoundMultiFrameImageStorage",
        "RTDoseStorage",
        "RTPlanStorage",
        "RTStructureSetStorage",
        "BasicTextSRStorage",
        "ComprehensiveSRStorage",
        "SegmentationStorage",
        "TwelveLeadECGWaveformStorage",
        "EncapsulatedPDFStorage",
        "DigitalXRayImageStorageForPresentation",
    )
)


def _raw_socket(assoc: Association) -> socket.socket | None:
    """The TCP socket under a pynetdicom association, if it is still there."""
    transport = assoc.dul.socket
    return None if transport is None else transport.socket


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


# --- what the SCP does with one C-STORE -----------------------------------------------


@dataclass(frozen=True)
class Respond:
    """Answer with ``status``; with a ``comment`` the answer carries ErrorComment."""

    status: int = 0x0000
    comment: str | None = None


@dataclass(frozen=True)
class Stall:
    """Sleep ``seconds`` before answering as ``then``."""

    seconds: float
    then: Respond = Respond()


@dataclass(frozen=True)
class Abort:
    """Send A-ABORT instead of a response."""


@dataclass(frozen=True)
class CloseSocket:
    """Close the TCP connection without A-ABORT or a response."""


@dataclass(frozen=True)
class RespondThenDrop:
    """Answer ``status``, then close the connection ``after`` seconds later (while
    the SCU is idle), without A-RELEASE or A-ABORT."""

    status: int = 0x0000
    after: float = 0.2


Action = Respond | Stall | Abort | CloseSocket | RespondThenDrop


@dataclass(frozen=True)
class DuringDataset:
    """What to do on receiving a P-DATA-TF PDU, before the data set is complete:
    ``"abort"`` writes an A-ABORT PDU and closes (DCMTK's ``--abort-during``),
    ``"close"`` closes the socket, ``"sleep"`` stops reading for ``seconds``."""

    what: str
    seconds: float = 0.0


#: A-ABORT, source 2 (service provider), reason 0.
_ABORT_PDU = bytes((0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0))


@dataclass(frozen=True)
class Reject:
    """An A-ASSOCIATE-RJ with the standard's numbers."""

    result: int
    source: int
    reason: int


# --- what the SCP saw -----------------------------------------------------------------


@dataclass
class Received:
    """One C-STORE as the SCP handled it."""

    nth: int
    association: int
    calling_ae_title: str
    called_ae_title: str
    #: The accepted presentation context the request came on.
    context_abstract_syntax: str
    transfer_syntax: str
    #: Affected SOP Class/Instance UID from the C-STORE-RQ command.
    command_sop_class_uid: str
    command_sop_instance_uid: str
    #: From the decoded data set (``None`` if it could not be decoded).
    sop_class_uid: str | None
    sop_instance_uid: str | None
    decode_error: str | None
    dataset: Dataset | None
    thread_id: int
    action: Action


@dataclass
class AssociationSeen:
    """One association request as the SCP saw it."""

    number: int
    calling_ae_title: str
    called_ae_title: str
    proposed_contexts: int
    requested_max_pdu: int
    rejected: Reject | None = None
    largest_pdata_pdu: int = 0
    #: "released", "aborted" (by the SCU or the SCP) or "rejected"; None while open
    #: or when the connection simply closed.
    ended: str | None = None
    message_ids: list[int] = field(default_factory=list)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    stores: int = 0
    associations: int = 0


class HarnessScp:
    """A pynetdicom Storage SCP on 127.0.0.1, port 0; use as a context manager.

    ``syntaxes`` maps SOP class UID -> accepted transfer syntaxes; classes not in it
    accept ``default_syntaxes``. ``extra_sop_classes`` adds classes pynetdicom does
    not list (private or synthetic UIDs). ``action`` chooses what to do with each store
    (called with the 1-based store number over the server's life and the event);
    ``reject`` chooses whether to reject each association request (called with the
    1-based association number); both may be replaced between sends. ``user_identity``
    is pynetdicom's ``EVT_USER_ID`` handler (``(accepted, response)`` from the event's
    ``user_id_type``, ``primary_field``, ``secondary_field``).
    """

    def __init__(
        self,
        *,
        ae_title: str = "TEST-SCP",
        default_syntaxes: Sequence[str] = ALL_SYNTAXES,
        syntaxes: Mapping[str, Sequence[str]] | None = None,
        sop_classes: Iterable[str] | None = None,
        extra_sop_classes: Iterable[str] = (),
        max_pdu_length: int = 16384,
        require_called_ae_title: bool = True,
        decode_datasets: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        idle_timeout: float = 5.0,
        user_identity: Callable[[Event], tuple[bool, bytes | None]] | None = None,
    ) -> None:
        self.host = host
        self.user_identity = user_identity
        self.ae_title = ae_title
        self.received: list[Received] = []
        self.associations: list[AssociationSeen] = []
        self.errors: list[BaseException] = []
        self.action: Callable[[int, Event], Action] = lambda _n, _e: Respond()
        self.reject: Callable[[int], Reject | None] = lambda _n: None
        #: Called with the 1-based P-DATA-TF PDU number (over the server's life).
        self.during_dataset: Callable[[int], DuringDataset | None] = lambda _n: None
        self._pdata = 0
        self.decode_datasets = decode_datasets
        self._state = _State()
        self._by_assoc: dict[int, AssociationSeen] = {}
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = max_pdu_length
        self.max_pdu_length = max_pdu_length
        self._ae.require_called_aet = require_called_ae_title
        self._ae.acse_timeout = 5
        self._ae.dimse_timeout = 5
        # pynetdicom's network_timeout is an idle timeout: it aborts an association
        # that carried nothing for that long (as PACS do).
        self._ae.network_timeout = idle_timeout
        self._ae.maximum_associations = 20
        per_class = dict(syntaxes or {})
        classes = list(STORAGE_SOP_CLASSES if sop_classes is None else sop_classes)
        classes += [c for c in per_class if c not in classes]
        classes += [c for c in extra_sop_classes if c not in classes]
        for sop_class in classes:
            accepted = per_class.get(sop_class, default_syntaxes)
            if accepted:
                self._ae.add_supported_context(sop_class, list(accepted))
        self._ae.add_supported_context(VERIFICATION, list(UNCOMPRESSED))
        self._ssl_context = ssl_context
        self._server: Any = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> HarnessScp:
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._guard(self._on_conn_open)),
            (evt.EVT_REQUESTED, self._guard(self._on_requested)),
            (evt.EVT_DATA_RECV, self._guard(self._on_data_recv)),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._guard(self._ended("released"))),
            (evt.EVT_ABORTED, self._guard(self._ended("aborted"))),
        ]
        if self.user_identity is not None:
            handlers.append((evt.EVT_USER_ID, self.user_identity))
        # AE.start_server(block=False) polls for shutdown every 0.5 s; the same server
        # with a short poll interval keeps a per-test SCP cheap to stop.
        server = self._ae.make_server(
            (self.host, 0, 0, 0) if ":" in self.host else (self.host, 0),
            evt_handlers=handlers,
            server_class=ThreadedAssociationServer,
            ssl_context=self._ssl_context,
        )
        self._ae._servers.append(server)  # so that AE.shutdown() stops it
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            # A rejected association waits for the SCU to close the connection; aborting
            # it in that state makes pynetdicom's DUL thread raise, so let it finish.
            for assoc in self._ae.active_associations:
                if assoc.is_rejected:
                    assoc.join(2)
            self._ae.shutdown()  # aborts live associations, then stops the server
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> HarnessScp:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the SCP first"
        return int(self._server.server_address[1])

    @property
    def addr(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def check(self) -> None:
        """Raise the first exception a handler raised (in the server's threads), or
        what the SCU did against the standard (:attr:`violations`)."""
        if self.errors:
            raise AssertionError(f"the test SCP's handlers raised: {self.errors!r}") from (
                self.errors[0]
            )
        if self.violations:
            raise AssertionError(f"the SCU violated the standard: {self.violations}")

    @property
    def violations(self) -> list[str]:
        """Requests that break PS3.7/PS3.8, whatever the test is about."""
        found: list[str] = []
        for r in self.received:
            where = f"store {r.nth} ({r.command_sop_instance_uid})"
            if r.context_abstract_syntax != r.command_sop_class_uid:
                found.append(f"{where}: sent on a context for {r.context_abstract_syntax}")
            if r.sop_class_uid is not None and r.sop_class_uid != r.command_sop_class_uid:
                found.append(f"{where}: data set SOP class {r.sop_class_uid} != command's")
            if r.sop_instance_uid is not None and r.sop_instance_uid != r.command_sop_instance_uid:
                found.append(f"{where}: data set SOP instance {r.sop_instance_uid} != command's")
        for a in self.associations:
            if self.max_pdu_length and a.largest_pdata_pdu > self.max_pdu_length:
                found.append(
                    f"association {a.number}: a {a.largest_pdata_pdu}-byte P-DATA PDU over "
                    f"the negotiated {self.max_pdu_length}"
                )
            if len(set(a.message_ids)) != len(a.message_ids):
                found.append(f"association {a.number}: message IDs reused: {a.message_ids}")
        return found

    # --- configuration helpers ---------------------------------------------------------

    def actions(self, by_nth: Mapping[int, Action], default: Action = Respond()) -> None:
        """Per store number (1-based over the server's life); ``default`` otherwise."""
        table = dict(by_nth)
        self.action = lambda n, _e: table.get(n, default)

    def reject_from(self, first: int, rejection: Reject) -> None:
        """Reject association number ``first`` and every later one."""
        self.reject = lambda n: rejection if n >= first else None

    @property
    def instance_uids(self) -> list[str | None]:
        return [r.sop_instance_uid for r in self.received]

    # --- handlers ----------------------------------------------------------------------

    def _guard(self, handler: Callable[[Event], None]) -> Callable[[Event], None]:
        def wrapped(event: Event) -> None:
            try:
                handler(event)
            except Exception as exc:  # surfaced in the test thread by check()
                self.errors.append(exc)

        return wrapped

    def _on_conn_open(self, event: Event) -> None:
        # Nagle plus delayed ACKs costs ~40 ms per exchange on loopback.
        sock = _raw_socket(event.assoc)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_requested(self, event: Event) -> None:
        assoc = event.assoc
        with self._state.lock:
            self._state.associations += 1
            number = self._state.associations
        primitive = assoc.requestor.primitive
        assert primitive is not None
        seen = AssociationSeen(
            number=number,
            calling_ae_title=_text(primitive.calling_ae_title),
            called_ae_title=_text(primitive.called_ae_title),
            proposed_contexts=len(assoc.requestor.requested_contexts),
            requested_max_pdu=int(assoc.requestor.maximum_length or 0),
        )
        self.associations.append(seen)
        self._by_assoc[id(assoc)] = seen
        rejection = self.reject(number)
        if rejection is not None:
            seen.rejected = rejection
            seen.ended = "rejected"
            assoc.acse.send_reject(rejection.result, rejection.source, rejection.reason)
            # send_reject() only queues the PDU for the DUL thread, and pynetdicom closes
            # the socket as soon as this handler returns: kill() waits for the DUL to
            # send it (as pynetdicom's own rejections do), so the SCU gets the A-ASSOCIATE-RJ.
            assoc.kill()

    def _ended(self, how: str) -> Callable[[Event], None]:
        def record(event: Event) -> None:
            seen = self._by_assoc.get(id(event.assoc))
            if seen is not None and seen.ended is None:
                seen.ended = how

        return record

    def _on_data_recv(self, event: Event) -> None:
        data: bytes = event.data
        if data[:1] == b"\x04":  # P-DATA-TF: its length field excludes the 6-byte header
            seen = self._by_assoc.get(id(event.assoc))
            if seen is not None:
                seen.largest_pdata_pdu = max(seen.largest_pdata_pdu, len(data) - 6)
            self._pdata += 1  # only the DUL thread of one association runs this at a time
            fault = self.during_dataset(self._pdata)
            if fault is not None:
                self._fault_during_dataset(event, fault)

    def _fault_during_dataset(self, event: Event, fault: DuringDataset) -> None:
        # This runs in pynetdicom's DUL thread, which owns the socket: act on the raw
        # socket (assoc.abort() from here would wait for this very thread).
        sock = _raw_socket(event.assoc)
        if fault.what == "sleep":
            time.sleep(fault.seconds)
            return
        if sock is None:
            return
        if fault.what == "abort":
            try:
                sock.sendall(_ABORT_PDU)
            except OSError:
                pass
        # SO_LINGER 0: close with RST, as a crashing peer does; the SCU, still writing,
        # sees the reset at once instead of waiting out its network timeout.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _on_store(self, event: Event) -> int | Dataset:
        try:
            return self._store(event)
        except Exception as exc:
            self.errors.append(exc)
            return 0xC211  # pynetdicom's "handler raised" status; the test fails in check()

    def _store(self, event: Event) -> int | Dataset:
        with self._state.lock:
            self._state.stores += 1
            nth = self._state.stores
        action = self.action(nth, event)
        ds: Dataset | None = None
        decode_error: str | None = None
        if self.decode_datasets:
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                _ = ds.get("SOPInstanceUID")
            except Exception as exc:  # recorded: a test asserts there were none
                decode_error = f"{type(exc).__name__}: {exc}"
                ds = None
        seen = self._by_assoc.get(id(event.assoc))
        request = event.request
        assert isinstance(request, C_STORE)
        assoc = event.assoc
        if seen is not None:
            seen.message_ids.append(int(request.MessageID or 0))
        self.received.append(
            Received(
                nth=nth,
                association=seen.number if seen else 0,
                calling_ae_title=seen.calling_ae_title if seen else "",
                called_ae_title=seen.called_ae_title if seen else "",
                context_abstract_syntax=str(event.context.abstract_syntax),
                transfer_syntax=str(event.context.transfer_syntax),
                command_sop_class_uid=str(request.AffectedSOPClassUID),
                command_sop_instance_uid=str(request.AffectedSOPInstanceUID),
                sop_class_uid=None if ds is None else str(ds.get("SOPClassUID", "")) or None,
                sop_instance_uid=None if ds is None else str(ds.get("SOPInstanceUID", "")) or None,
                decode_error=decode_error,
                dataset=ds,
                thread_id=threading.get_ident(),
                action=action,
            )
        )
        if isinstance(action, Stall):
            time.sleep(action.seconds)
            action = action.then
        if isinstance(action, Abort):
            assoc.abort()
            return 0x0000  # never sent: the association is gone
        if isinstance(action, CloseSocket):
            sock = _raw_socket(assoc)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            return 0x0000  # never reaches the SCU
        if isinstance(action, RespondThenDrop):
            sock = _raw_socket(assoc)
            if sock is not None:
                timer = threading.Timer(action.after, _drop, args=(sock,))
                timer.daemon = True
                timer.start()
            return action.status
        assert isinstance(action, Respond)
        if action.comment is None:
            return action.status
        status = Dataset()
        status.Status = action.status
        status.ErrorComment = action.comment
        return status
