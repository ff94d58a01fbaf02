"""``scukit serve``: the mock Storage SCP as a standalone server for any SCU.

```
scukit serve [--host 127.0.0.1] [--port 0] [--ae-title MOCK-SCP] [--scenario FILE]
             [--store-dir DIR] [--json]
```

The first line on stdout is exactly ``listening on HOST:PORT`` (flushed), so a script
can start the server on port 0 and read the bound port. Then one line per association
opened or ended and per store received (JSON objects, one per line, with ``--json``).
SIGINT or SIGTERM stops the server, prints the journal summary (stores, statuses,
associations, violations, server errors) and exits 0.

``--scenario FILE`` configures the server from the ``scp`` section of a scenario file
(options, store rules, association rejects); ``--host/--port/--ae-title/--store-dir``
given on the command line override the file.

Also runnable without the ``scukit`` dispatcher: ``python -m mock_scp.cli [options]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

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


def register_serve(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to a ``scukit`` argparse subparsers object."""
    parser = subparsers.add_parser(
        "serve",
        help="run the mock Storage SCP as a standalone server",
        description=(__doc__ or "").split("\n\n")[0],
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_serve)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=None, help=f"address to bind (default {DEFAULT_HOST}; loopback only)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port to bind (default 0: a free port)"
    )
    parser.add_argument(
        "--ae-title", default=None, help=f"the server's AE title (default {DEFAULT_AE_TITLE})"
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        default=None,
        metavar="FILE",
        help="configure the server from the scp section of a scenario file",
    )
    parser.add_argument(
        "--store-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write every received instance as a Part-10 file into DIR",
    )
    parser.add_argument(
        "--json", action="store_true", help="print events and the summary as JSON lines"
    )


def _build_server(args: argparse.Namespace) -> MockScp:
    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "ae_title": args.ae_title,
        "store_dir": args.store_dir,
    }
    if args.scenario is None:
        from mock_scp import MockScp

        return MockScp(
            args.ae_title or DEFAULT_AE_TITLE,
            host=args.host or DEFAULT_HOST,
            port=DEFAULT_PORT if args.port is None else args.port,
            store_dir=args.store_dir,
        )
    # Imported here: mock_scp must not depend on scenarios at import time (scenarios
    # depends on mock_scp).
    try:
        from scenarios.loader import build_mock_scp
    except ImportError as exc:
        raise ValueError(
            f"--scenario needs scenarios.loader.build_mock_scp, which is not available ({exc})"
        ) from exc
    given = {key: value for key, value in overrides.items() if value is not None}
    return build_mock_scp(args.scenario, **given)


class _Reporter:
    """Formats journal events as lines; called from server threads, so serialised."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self._out = out
        self._json = as_json
        self._lock = threading.Lock()
        self._opened: set[int] = set()
        self._ended: set[int] = set()

    def emit(self, text: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False) if self._json else text
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def __call__(self, event: AssociationRecord | ReceivedStore) -> None:
        from mock_scp.journal import AssociationRecord

        if isinstance(event, AssociationRecord):
            self._association(event)
        else:
            self._store(event)

    def _association(self, record: AssociationRecord) -> None:
        # The record is shared and mutable: read `ended` once, and announce each state at
        # most once even if the listener is called again (or late) for the same record.
        ended = record.ended
        with self._lock:
            announce_open = record.id not in self._opened and ended != "rejected"
            announce_end = ended is not None and record.id not in self._ended
            self._opened.add(record.id)
            if ended is not None:
                self._ended.add(record.id)
        if announce_open:
            accepted = len(record.accepted_contexts)
            proposed = len(record.proposed_contexts)
            peer = f" from {record.peer}" if record.peer else ""
            self.emit(
                f"association {record.id} opened: {record.calling_ae_title} -> "
                f"{record.called_ae_title}{peer}, {accepted}/{proposed} contexts accepted",
                {"event": "association-opened", **_association_dict(record)},
            )
        if announce_end:
            detail = f" ({record.end_detail})" if record.end_detail else ""
            stores = "" if ended == "rejected" else f", {record.stores} stores"
            self.emit(
                f"association {record.id} {ended}: {record.calling_ae_title} -> "
                f"{record.called_ae_title}{stores}{detail}",
                {"event": f"association-{ended}", **_association_dict(record, contexts=False)},
            )

    def request(self, request: StoreRequest) -> None:
        """A C-STORE-RQ has arrived (its data set, stall and answer are still to come)."""
        self.emit(
            f"store {request.nth} started (association {request.association_id}, message "
            f"{request.message_id}): {_uid_name(request.sop_class_uid)} "
            f"{request.sop_instance_uid}",
            {
                "event": "store-started",
                "nth": request.nth,
                "association_id": request.association_id,
                "message_id": request.message_id,
                "sop_class_uid": request.sop_class_uid,
                "sop_instance_uid": request.sop_instance_uid,
            },
        )

    def _store(self, store: ReceivedStore) -> None:
        answer = (
            f"status {_status_text(store.status)} ({store.action})"
            if store.status is not None
            else f"no response ({store.action})"
        )
        comment = f' "{store.comment}"' if store.comment else ""
        partial = "" if store.complete else " [incomplete dataset]"
        self.emit(
            f"store {store.nth} (association {store.association_id}, message "
            f"{store.message_id}): {_uid_name(store.sop_class_uid)} "
            f"{store.sop_instance_uid} in {_uid_name(store.transfer_syntax)} -> "
            f"{answer}{comment}{partial}",
            {"event": "store", **_store_dict(store)},
        )


def _status_text(status: int | None) -> str:
    return "none" if status is None else f"0x{status:04X}"


def _uid_name(uid: str) -> str:
    from scu.protocol.uids import uid_keyword

    return uid_keyword(uid)


def _association_dict(record: AssociationRecord, *, contexts: bool = True) -> dict[str, Any]:
    # Contexts only when the association opens: storescu proposes 128 of them, and the
    # end event need not repeat them.
    data: dict[str, Any] = {
        "id": record.id,
        "calling_ae_title": record.calling_ae_title,
        "called_ae_title": record.called_ae_title,
        "peer": record.peer,
        "ended": record.ended,
        "end_detail": record.end_detail,
        "max_pdu_length": record.max_pdu_length,
        "rejection": list(record.rejection) if record.rejection else None,
        "stores": record.stores,
        "proposed": len(record.proposed_contexts),
        "accepted": len(record.accepted_contexts),
    }
    if contexts:
        data["proposed_contexts"] = [
            {"id": cid, "abstract_syntax": sop, "transfer_syntaxes": list(syntaxes)}
            for cid, sop, syntaxes in record.proposed_contexts
        ]
        data["accepted_contexts"] = [
            {"id": cid, "abstract_syntax": sop, "transfer_syntax": syntax}
            for cid, sop, syntax in record.accepted_contexts
        ]
    return data


def _store_dict(store: ReceivedStore) -> dict[str, Any]:
    return {
        "nth": store.nth,
        "association_id": store.association_id,
        "message_id": store.message_id,
        "sop_class_uid": store.sop_class_uid,
        "sop_instance_uid": store.sop_instance_uid,
        "transfer_syntax": store.transfer_syntax,
        "calling_ae_title": store.calling_ae_title,
        "called_ae_title": store.called_ae_title,
        "status": store.status,
        "action": store.action,
        "comment": store.comment,
        "complete": store.complete,
        "path": str(store.path) if store.path else None,
    }


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
    reporter = _Reporter(out, args.json)
    scp.add_listener(reporter)
    scp.add_request_listener(reporter.request)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    try:
        try:
            scp.start()
        except OSError as exc:
            print(f"scukit serve: cannot listen: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
        try:
            out.write(f"listening on {scp.addr}\n")
            out.flush()
            # Short waits keep the main thread responsive to signals on every platform.
            while not stop.wait(0.2):
                pass
        finally:
            scp.stop()
    finally:
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
