"""``scukit serve``: the mock Storage SCP as a standalone server for any SCU.

The first line on stdout is exactly ``listening on HOST:PORT`` (flushed), so a script
can start the server on port 0 and read the bound port. Then one line per association
opened or ended and per store (JSON objects, one per line, with ``--json``); everything
a peer sent is escaped before it is printed. SIGINT or SIGTERM stops the server, prints
the journal summary and exits 0.

Every MockScp option has a flag; ``--scenario FILE|NAME`` configures the server from the
``scp`` section of a scenario file (options, store rules, association rejects) and the
flags given on the command line override it. Unlike MockScp in a test, ``serve`` keeps
no data set by default (``--keep-data`` keeps them, in spill files beyond
``--memory-budget``), so it can run for days.

Also runnable without the ``scukit`` dispatcher: ``python -m mock_scp.cli [options]``.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import ssl
import sys
import threading
import warnings
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from mock_scp.journal import printable
from mock_scp.report import association_dict, store_dict

if TYPE_CHECKING:
    from mock_scp import MockScp
    from mock_scp.journal import AssociationRecord, ReceivedStore
    from mock_scp.rules import StoreRequest

__all__ = ["main", "register_serve", "run_serve", "summary"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 0
DEFAULT_AE_TITLE = "MOCK-SCP"
EXIT_OK = 0
EXIT_RUNTIME = 1  # could not listen (address in use, permission)
EXIT_USAGE = 2  # bad option or scenario, found before the server starts
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


HELP = """\
Run the mock Storage SCP as a standalone server for any SCU (DCMTK storescu, a Node
program, a modality simulator). The first line printed is "listening on HOST:PORT";
then one line per association and per store. SIGINT or SIGTERM stops it with a summary
(exit 0). It binds 127.0.0.1 unless --host says otherwise (binding another address
prints a warning: other machines can then reach it). Exit codes: 0 stopped by a signal,
1 could not listen, 2 bad option or scenario (found before listening).
"""


def register_serve(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to a ``scukit`` argparse subparsers object."""
    parser = subparsers.add_parser(
        "serve",
        help="run the mock Storage SCP as a standalone server",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_serve)


def _seconds(text: str) -> float | None:
    """A timeout: seconds, or 0 for none."""
    value = float(text)
    return None if value == 0 else value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--host", default=None, help=f"address to bind (default {DEFAULT_HOST}, loopback)")
    add("--port", type=int, default=None, help="port to bind (default 0: a free port)")
    add("--ae-title", default=None, help=f"the server's AE title (default {DEFAULT_AE_TITLE})")
    add(
        "--scenario",
        type=Path,
        default=None,
        metavar="FILE",
        help="configure the server from the scp section of a scenario file or library name",
    )
    group = parser.add_argument_group("negotiation")
    group.add_argument(
        "--sop-class",
        dest="sop_classes",
        action="append",
        metavar="UID|KEYWORD",
        help="accept only these SOP classes (repeat; default: every storage class "
        "storescp +xa accepts)",
    )
    group.add_argument(
        "--accept-unknown-sop-classes",
        action="store_true",
        default=None,
        help="also accept SOP classes nobody knows (private ones)",
    )
    group.add_argument(
        "--transfer-syntax",
        dest="transfer_syntaxes",
        action="append",
        metavar="UID|KEYWORD",
        help="accepted transfer syntaxes, in preference order after Explicit and Implicit "
        "VR Little Endian (repeat; default: every one storescp +xa accepts)",
    )
    group.add_argument(
        "--transfer-syntaxes-for",
        dest="per_class",
        action="append",
        metavar="SOPCLASS=TS[,TS...]",
        help="the transfer syntaxes accepted for one SOP class (repeat); only the SOP "
        "classes named this way are accepted unless --sop-class names others",
    )
    group.add_argument(
        "--max-pdu",
        dest="max_pdu_length",
        type=int,
        default=None,
        metavar="BYTES",
        help="the Maximum Length announced (default 16384; 0 = no limit)",
    )
    group.add_argument(
        "--require-called-ae",
        dest="require_called_ae_title",
        action="store_true",
        default=None,
        help="reject an SCU that calls another AE title than --ae-title",
    )
    group.add_argument(
        "--require-calling-ae",
        dest="require_calling_ae_titles",
        action="append",
        metavar="AE",
        help="accept only these calling AE titles (repeat)",
    )
    group.add_argument(
        "--max-associations",
        type=int,
        default=None,
        metavar="N",
        help="open associations at once (default 10; more are rejected, transient)",
    )
    group.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="open TCP connections at once (default 4 x --max-associations; more are closed)",
    )
    group.add_argument(
        "--lenient",
        dest="strict",
        action="store_false",
        default=None,
        help="record, but do not abort, an SCU that exceeds the maximum PDU or uses a "
        "context that was not accepted (default: abort, as DCMTK does)",
    )
    group.add_argument(
        "--strict-rules",
        action="store_true",
        default=None,
        help="a store that matches no rule of the scenario is a violation",
    )
    timeouts = parser.add_argument_group("timeouts (seconds, 0 = none)")
    for name, default in (("acse", 30), ("dimse", 30), ("network", 60)):
        timeouts.add_argument(
            f"--{name}-timeout",
            type=_seconds,
            default=argparse.SUPPRESS,
            metavar="S",
            help=f"(default {default})",
        )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--store-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write every received instance as a Part-10 file into DIR",
    )
    data.add_argument(
        "--keep-data",
        action="store_true",
        help="keep received data sets for the journal (default: only their first bytes)",
    )
    data.add_argument(
        "--memory-budget",
        type=int,
        default=None,
        metavar="BYTES",
        help="with --keep-data, bytes of data sets held in memory before spilling to disk",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve TLS with this certificate (PEM)",
    )
    tls.add_argument(
        "--tls-key", type=Path, default=None, metavar="FILE", help="its private key (PEM)"
    )
    tls.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="require client certificates, verified against these CA certificates",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print every event (stores started and answered, associations) and the "
        "summary as JSON lines",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print a line when each C-STORE-RQ arrives (before its data set)",
    )
    output.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print associations and the summary only, no line per store",
    )


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None and args.tls_ca is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_ca is not None:
        context.load_verify_locations(cafile=str(args.tls_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


_GIVEN = (
    "sop_classes",
    "accept_unknown_sop_classes",
    "max_pdu_length",
    "require_called_ae_title",
    "require_calling_ae_titles",
    "max_associations",
    "max_connections",
    "strict",
    "strict_rules",
    "memory_budget",
)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The MockScp keyword arguments the command line gives (only those given)."""
    options: dict[str, Any] = {
        key: getattr(args, key) for key in _GIVEN if getattr(args, key) is not None
    }
    for key in ("acse_timeout", "dimse_timeout", "network_timeout"):
        if key in vars(args):  # given on the command line (0 there means None: no timeout)
            options[key] = getattr(args, key)
    if args.per_class:
        mapping: dict[str, list[str]] = {}
        for item in args.per_class:
            sop_class, sep, syntaxes = item.partition("=")
            if not sep or not syntaxes.strip():
                raise ValueError(
                    f"--transfer-syntaxes-for: expected SOPCLASS=TS[,TS...], got {item!r}"
                )
            mapping[sop_class.strip()] = [ts.strip() for ts in syntaxes.split(",") if ts.strip()]
        options["transfer_syntaxes"] = mapping
    elif args.transfer_syntaxes:
        options["transfer_syntaxes"] = args.transfer_syntaxes
    options["keep_data"] = bool(args.keep_data)
    tls = _tls_context(args)
    if tls is not None:
        options["tls"] = tls
    return options


def _build_server(args: argparse.Namespace) -> MockScp:
    options = _options(args)
    if args.scenario is None:
        from mock_scp import MockScp

        return MockScp(
            args.ae_title or DEFAULT_AE_TITLE,
            host=args.host or DEFAULT_HOST,
            port=DEFAULT_PORT if args.port is None else args.port,
            store_dir=args.store_dir,
            **options,
        )
    # Imported here: mock_scp must not depend on scenarios at import time (scenarios
    # depends on mock_scp).
    try:
        from scenarios.loader import build_mock_scp
    except ImportError as exc:
        raise ValueError(
            f"--scenario needs scenarios.loader.build_mock_scp, which is not available ({exc})"
        ) from exc
    given = {
        key: value
        for key, value in (
            ("host", args.host),
            ("port", args.port),
            ("ae_title", args.ae_title),
            ("store_dir", args.store_dir),
        )
        if value is not None
    }
    return build_mock_scp(args.scenario, **given, **options)


class _Reporter:
    """Prints journal events as lines. Server threads only queue them: a slow terminal or
    a pipe nobody reads must never hold up a store. A printer thread formats and writes
    them; if it falls more than :attr:`BACKLOG` events behind, events are counted instead
    of queued and the count is printed once it catches up (the summary counts all)."""

    BACKLOG = 100_000

    def __init__(self, out: TextIO, *, as_json: bool, verbose: bool, quiet: bool) -> None:
        self._out = out
        self._json = as_json
        self._stores = as_json or not quiet
        self._requests = as_json or verbose
        self._lock = threading.Lock()
        self._opened: set[int] = set()
        self._ended: set[int] = set()
        self._queue: queue.Queue[tuple[str, object] | None] = queue.Queue(self.BACKLOG)
        self._dropped = 0
        self._printer = threading.Thread(target=self._print, name="serve-printer", daemon=True)
        self._printer.start()

    # -- called from server threads: queue only
    def __call__(self, event: AssociationRecord | ReceivedStore) -> None:
        from mock_scp.journal import AssociationRecord

        if isinstance(event, AssociationRecord):
            # The record is shared and mutable: read `ended` once, and announce each
            # state at most once even if the listener is called again (or late).
            ended = event.ended
            with self._lock:
                opened = event.id not in self._opened and ended != "rejected"
                closed = ended is not None and event.id not in self._ended
                self._opened.add(event.id)
                if ended is not None:
                    self._ended.add(event.id)
            if opened:
                self._put("opened", event)
            if closed:
                self._put("ended", (event, ended))
        elif self._stores:
            self._put("store", event)

    def request(self, request: StoreRequest) -> None:
        """A C-STORE-RQ has arrived (its data set, stall and answer are still to come)."""
        if self._requests:
            self._put("request", request)

    def line(self, text: str) -> None:
        """A line of the command's own, in order with the events."""
        self._put("raw", text)

    def _put(self, kind: str, item: object) -> None:
        try:
            self._queue.put_nowait((kind, item))
        except queue.Full:
            with self._lock:
                self._dropped += 1

    # -- the printer thread
    def close(self) -> None:
        """Print what is queued, then stop the printer."""
        self._queue.put(None)
        self._printer.join()

    def _print(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._report_dropped()
                return
            kind, event = item
            self._write(getattr(self, f"_format_{kind}")(event))
            if self._queue.empty():
                self._report_dropped()

    def _write(self, line: str) -> None:
        try:
            self._out.write(line + "\n")
            self._out.flush()
        except (OSError, ValueError):  # the reader went away: the summary still counts
            pass

    def _report_dropped(self) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            text = (
                f"... {dropped} events not printed: the output could not keep up "
                "(the summary counts every store)"
            )
            self._write(json.dumps({"event": "dropped", "count": dropped}) if self._json else text)

    def _format_raw(self, line: str) -> str:
        return line

    def _format_opened(self, record: AssociationRecord) -> str:
        if self._json:
            return json.dumps({"event": "association-opened", **association_dict(record)})
        accepted = len(record.accepted_contexts)
        proposed = len(record.proposed_contexts)
        peer = f" from {record.peer}" if record.peer else ""
        return (
            f"association {record.id} opened: {printable(record.calling_ae_title)} -> "
            f"{printable(record.called_ae_title)}{peer}, {accepted}/{proposed} contexts "
            "accepted"
        )

    def _format_ended(self, item: tuple[AssociationRecord, str]) -> str:
        record, ended = item
        if self._json:
            return json.dumps(
                {"event": f"association-{ended}", **association_dict(record, contexts=False)}
            )
        detail = f" ({printable(record.end_detail)})" if record.end_detail else ""
        stores = "" if ended == "rejected" else f", {record.stores} stores"
        return (
            f"association {record.id} {ended}: {printable(record.calling_ae_title)} -> "
            f"{printable(record.called_ae_title)}{stores}{detail}"
        )

    def _format_request(self, request: StoreRequest) -> str:
        if self._json:
            return json.dumps(
                {
                    "event": "store-started",
                    "nth": request.nth,
                    "association_id": request.association_id,
                    "message_id": request.message_id,
                    "sop_class_uid": request.sop_class_uid,
                    "sop_instance_uid": request.sop_instance_uid,
                }
            )
        return (
            f"store {request.nth} started (association {request.association_id}, message "
            f"{request.message_id}): {_uid_name(request.sop_class_uid)} "
            f"{printable(request.sop_instance_uid)}"
        )

    def _format_store(self, store: ReceivedStore) -> str:
        if self._json:
            return json.dumps({"event": "store", **store_dict(store)})
        answer = (
            f"status {_status_text(store.status)} ({store.action})"
            if store.status is not None
            else f"no response ({store.action})"
        )
        comment = f' "{printable(store.comment)}"' if store.comment else ""
        partial = "" if store.complete else " [incomplete dataset]"
        return (
            f"store {store.nth} (association {store.association_id}, message "
            f"{store.message_id}): {_uid_name(store.sop_class_uid)} "
            f"{printable(store.sop_instance_uid)} in {_uid_name(store.transfer_syntax)} -> "
            f"{answer}{comment}{partial}"
        )


def _status_text(status: int | None) -> str:
    return "none" if status is None else f"0x{status:04X}"


def _uid_name(uid: str) -> str:
    from scu.protocol.uids import uid_keyword

    return printable(uid_keyword(uid))


def summary(scp: MockScp) -> dict[str, Any]:
    """The journal in numbers: what ``serve`` prints when it stops."""
    received = list(scp.received)
    associations = list(scp.associations)
    statuses = Counter(
        "no response" if r.status is None else _status_text(r.status) for r in received
    )
    ended = Counter(a.ended or "open" for a in associations)
    return {
        "event": "summary",
        "stores": len(received),
        "statuses": dict(sorted(statuses.items())),
        "actions": dict(sorted(Counter(r.action for r in received).items())),
        "associations": len(associations),
        "association_ends": dict(sorted(ended.items())),
        "violations": [str(v) for v in scp.violations],
        "errors": [f"{type(e).__name__}: {e}" for e in scp.errors],
    }


def _summary_text(data: dict[str, Any]) -> str:
    def counts(mapping: dict[str, int]) -> str:
        return ", ".join(f"{key} x{value}" for key, value in mapping.items()) or "none"

    lines = [
        f"summary: {data['stores']} stores, {data['associations']} associations, "
        f"{len(data['violations'])} violations, {len(data['errors'])} server errors",
        f"  statuses: {counts(data['statuses'])}",
        f"  actions: {counts(data['actions'])}",
        f"  associations: {counts(data['association_ends'])}",
    ]
    lines += [f"  violation: {text}" for text in data["violations"]]
    lines += [f"  error: {text}" for text in data["errors"]]
    return "\n".join(lines)


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit code."""
    out = sys.stdout
    try:
        scp = _build_server(args)
    except (ValueError, TypeError, OSError) as exc:
        # Bad AE title, bad scenario (ScenarioError is a ValueError), missing file.
        print(f"scukit serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reporter = _Reporter(out, as_json=args.json, verbose=args.verbose, quiet=args.quiet)
    scp.add_listener(reporter)
    scp.add_request_listener(reporter.request)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    try:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                scp.start()
        except OSError as exc:
            print(f"scukit serve: cannot listen: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
        for warning in caught:
            print(f"scukit serve: warning: {warning.message}", file=sys.stderr)
        try:
            reporter.line(f"listening on {scp.addr}")
            # Short waits keep the main thread responsive to signals on every platform.
            while not stop.wait(0.2):
                pass
        finally:
            scp.stop()
    finally:
        reporter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    data = summary(scp)
    out.write((json.dumps(data) if args.json else _summary_text(data)) + "\n")
    out.flush()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m mock_scp.cli``: the serve command without the scukit dispatcher."""
    parser = argparse.ArgumentParser(prog="python -m mock_scp.cli")
    _add_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
