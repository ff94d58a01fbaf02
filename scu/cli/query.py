"""``scukit echo`` (C-ECHO) and ``scukit preflight`` (negotiate only, a verdict per file)."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from scu import AssociationError, PreflightItem, echo
from scu.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_association_options,
    add_queue_options,
    association_failure,
    connection_options,
    make_scu,
    print_json,
)
from scu.cli.send import _safe, format_skipped
from scu.protocol.status import format_status
from scu.protocol.uids import uid_keyword as syntax_name

__all__ = ["format_preflight", "register_echo", "register_preflight"]

#: Verdicts of ``preflight`` that mean "this file would go out".
_SENDABLE_VERDICTS = frozenset({"accept", "convert"})
_VERDICT_ORDER = ("accept", "convert", "refuse", "unreadable")


def register_echo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``scukit echo ADDR``."""
    parser = subparsers.add_parser(
        "echo",
        help="verify a DICOM peer with C-ECHO",
        description="Send one C-ECHO. Exit codes: 0 answered with success, 1 answered "
        "with another status, 2 usage error, 3 association rejected or could not connect.",
    )
    add_association_options(parser, max_pdu=False)
    parser.set_defaults(func=run_echo)


def run_echo(args: argparse.Namespace) -> int:
    """The ``echo`` subcommand."""
    try:
        answer = echo(args.addr, **connection_options(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except AssociationError as exc:
        return association_failure(args, exc, {"addr": args.addr})
    if args.json:
        print_json(
            {
                "addr": args.addr,
                "status": answer.status,
                "duration_seconds": answer.duration_seconds,
                "error": None,
            }
        )
    else:
        print(
            f"C-ECHO {args.addr}: {format_status(answer.status)} "
            f"in {answer.duration_seconds * 1000:.1f} ms"
        )
    return EXIT_OK if answer.status == 0 else EXIT_FAILED


def register_preflight(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``scukit preflight ADDR PATH...``."""
    parser = subparsers.add_parser(
        "preflight",
        help="negotiate only: which files would be accepted, converted or refused",
        description="Negotiate with the SCP without sending anything and print a verdict "
        "per file (accept, convert, refuse, unreadable). Exit codes: 0 every file would "
        "go out, 1 some would not, 2 usage error, 3 association rejected or could not "
        "connect.",
    )
    add_association_options(parser)
    add_queue_options(parser)
    parser.set_defaults(func=run_preflight)


def run_preflight(args: argparse.Namespace) -> int:
    """The ``preflight`` subcommand."""
    scu = make_scu(args)
    try:
        items = scu.preflight()
    except AssociationError as exc:
        return association_failure(args, exc, {"addr": args.addr})
    counts = Counter(item.verdict for item in items)
    if args.json:
        print_json(
            {
                "addr": args.addr,
                "counts": dict(counts),
                "files": [asdict(item) for item in items],
                "skipped": [asdict(s) for s in scu.skipped],
                "error": None,
            }
        )
    else:
        print(format_preflight(items, addr=args.addr))
        for line in format_skipped(scu.skipped):
            print(line)
    sendable = all(item.verdict in _SENDABLE_VERDICTS for item in items)
    return EXIT_OK if sendable else EXIT_FAILED


def format_preflight(items: Sequence[PreflightItem], *, addr: str) -> str:
    """One line per file: verdict, syntax on the wire, file, reason; then the counts."""
    lines = [f"Preflight against {addr}: {len(items)} file(s)", ""]
    if items:
        width = min(50, max(len(_safe(item.file)) for item in items))
        lines.append(f"  {'VERDICT':<10}  {'ON THE WIRE':<28}  {'FILE':<{width}}  REASON")
        for item in items:
            wire = syntax_name(item.transfer_syntax) if item.transfer_syntax else "-"
            lines.append(
                f"  {item.verdict:<10}  {wire:<28}  {_safe(item.file):<{width}}  "
                f"{_safe(item.reason or '')}"
            )
    counts = Counter(item.verdict for item in items)
    lines += ["", "  " + ", ".join(f"{v} {counts.get(v, 0)}" for v in _VERDICT_ORDER)]
    return "\n".join(line.rstrip() for line in lines)
