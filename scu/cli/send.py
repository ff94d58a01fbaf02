"""``scukit send``: files and folders to a Storage SCP, with a progress bar, a summary or
JSON, a transfer journal to resume from, retries and rate limits.

SIGINT and SIGTERM interrupt a send the same way: the store in flight gets a moment to
be answered, every entry is accounted (``not sent: interrupted``), the journal and the
JSON are written, the counts are printed on a fresh line and the exit code is 130.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from scu import (
    AssociationError,
    CallbackError,
    Interrupted,
    Skipped,
    TransferJournal,
    TransferResult,
)
from scu.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_association_options,
    add_queue_options,
    association_failure,
    make_scu,
    parse_bandwidth,
    parse_rate,
    print_json,
)
from scu.cli.progress import ProgressBar, format_duration, format_rate
from scu.protocol.status import format_status
from scu.protocol.text import printable
from scu.protocol.uids import uid_keyword as syntax_name
from scu.worker import INTERRUPTED

__all__ = ["format_skipped", "format_summary", "register_send", "run_send"]

#: How many skipped files are named per reason before "and N more".
_SKIPPED_SHOWN = 10


def register_send(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``scukit send ADDR PATH...``."""
    parser = subparsers.add_parser(
        "send",
        help="send DICOM files to a Storage SCP",
        description="Send DICOM files (and folders) to a Storage SCP with C-STORE. Exit "
        "codes: 0 all sent, 1 some failed, 2 usage error, 3 association rejected or "
        "could not connect, 130 interrupted (SIGINT or SIGTERM).",
    )
    add_association_options(parser)
    add_queue_options(parser)
    group = parser.add_argument_group("transfer")
    group.add_argument(
        "--concurrency", type=int, default=1, metavar="N", help="parallel associations (1)"
    )
    group.add_argument("--fail-fast", action="store_true", help="stop at the first failed file")
    group.add_argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="try a file up to N more times after a transient failure: a transient "
        "rejection, an A-ABORT, a dropped connection, a timeout, 0xA7xx (0)",
    )
    group.add_argument(
        "--retry-delay",
        type=float,
        default=1.0,
        metavar="S",
        help="first delay between tries, doubled each time, with jitter (1)",
    )
    group.add_argument(
        "--max-rate",
        type=parse_rate,
        default=None,
        metavar="N/s",
        help="at most N files per second across all associations (e.g. 50/s)",
    )
    group.add_argument(
        "--max-bandwidth",
        type=parse_bandwidth,
        default=None,
        metavar="RATE",
        help="at most this many bytes of data set per second (e.g. 20MB/s, 512KiB/s)",
    )
    journal = group.add_mutually_exclusive_group()
    journal.add_argument(
        "--journal",
        default=None,
        metavar="FILE",
        help="record each file's outcome in this SQLite journal as it happens",
    )
    journal.add_argument(
        "--resume",
        default=None,
        metavar="FILE",
        help="like --journal, and leave out what the journal says this destination has",
    )
    parser.set_defaults(func=run_send)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends a send as Ctrl-C does: Python's SIGINT handler is installed for it,
    which ``send()`` turns into a request the workers honour where it is safe. Only the
    main thread can set handlers."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_send(args: argparse.Namespace) -> int:
    """The ``send`` subcommand."""
    if args.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {args.retries}")
    if args.retry_delay < 0:
        raise UsageError(f"--retry-delay must be 0 or more, got {args.retry_delay}")
    journal_path = args.resume or args.journal
    if journal_path is not None:
        try:
            TransferJournal(journal_path).close()  # a bad path is a usage error, now
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    scu = make_scu(
        args,
        concurrency=args.concurrency,
        fail_fast=args.fail_fast,
        retries=args.retries,
        retry_backoff=args.retry_delay,
        max_rate=args.max_rate,
        max_bandwidth=args.max_bandwidth,
    )
    callbacks: dict[str, Any] = {}
    bar: ProgressBar | None = None
    if sys.stderr.isatty() and not args.verbose:
        bar = ProgressBar(sys.stderr)
        callbacks = {
            "on_transfer_started": bar.started,
            "on_file_sending": bar.sending,
            "on_file_sent": bar.sent,
            "on_file_error": bar.error,
            "on_transfer_completed": bar.completed,
        }
    extra = {"addr": args.addr, "skipped": [asdict(s) for s in scu.skipped]}
    try:
        with _sigterm_interrupts():
            result = scu.send(**callbacks, journal=journal_path, resume=args.resume is not None)
    except AssociationError as exc:
        if bar is not None:
            bar.finish()
        return association_failure(args, exc, extra)
    except CallbackError as exc:  # only our progress bar: the result is still right
        if bar is not None:
            bar.finish()
        print(f"scukit send: progress display failed: {exc.__cause__}", file=sys.stderr)
        result = exc.result
    except Interrupted as exc:
        if bar is not None:
            bar.finish()
        result = exc.result
        not_sent = sum(1 for o in result.files if o.error == INTERRUPTED)
        print(
            f"scukit send: interrupted: {result.successful} sent, "
            f"{result.failed - not_sent} failed, {not_sent} not sent"
            + (f" (journal: {journal_path})" if journal_path else ""),
            file=sys.stderr,
        )
        if args.json:
            print_json({**result.to_dict(), **extra, "error": "interrupted"})
        return EXIT_INTERRUPTED
    if args.json:
        print_json({**result.to_dict(), **extra, "error": None})
    else:
        print(format_summary(result, addr=args.addr, skipped=scu.skipped))
    return EXIT_OK if result.failed == 0 else EXIT_FAILED


def format_skipped(skipped: Sequence[Skipped]) -> list[str]:
    """``skipped 3 files (does not match *.dcm): a.txt, b, c``, one line per reason."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for item in skipped:
        by_reason[item.reason].append(item.path)
    lines = []
    for reason, paths in by_reason.items():
        shown = ", ".join(_safe(p) for p in paths[:_SKIPPED_SHOWN])
        more = f" and {len(paths) - _SKIPPED_SHOWN} more" if len(paths) > _SKIPPED_SHOWN else ""
        noun = "file" if len(paths) == 1 else "files"
        lines.append(f"skipped {len(paths)} {noun} ({_safe(reason)}): {shown}{more}")
    return lines


def format_summary(result: TransferResult, *, addr: str, skipped: Sequence[Skipped] = ()) -> str:
    """The human summary of ``send``: counts, throughput, syntaxes on the wire, retries,
    warnings, failures and skipped files."""
    seconds = result.duration_seconds
    sent = result.successful
    throughput = (
        f": {sent / seconds:.1f} files/s, {format_rate(result.bytes_sent / seconds)}"
        if seconds > 0 and sent
        else ""
    )
    lines = [
        f"Sent to {addr} in {format_duration(seconds)} ({seconds:.2f} s){throughput}",
        "",
        f"  {'total':<12}{result.total_files:>8}",
        f"  {'successful':<12}{result.successful:>8}",
        f"  {'failed':<12}{result.failed:>8}",
        f"  {'warnings':<12}{len(result.warnings):>8}",
    ]
    if result.already_sent:
        lines.append(f"  {'already sent':<12}{len(result.already_sent):>8}  (journal)")
    retried = [o for o in result.files if len(o.attempts) > 1]
    if retried:
        extra = sum(len(o.attempts) - 1 for o in retried)
        lines.append(f"  {'retried':<12}{len(retried):>8}  ({extra} more attempts)")
    syntaxes = Counter(
        syntax_name(o.transfer_syntax) for o in result.files if o.ok and o.transfer_syntax
    )
    if syntaxes:
        lines += ["", "Transfer syntaxes on the wire:"]
        lines += [f"  {count:>6}  {name}" for name, count in syntaxes.most_common()]
    if result.warnings:
        lines += ["", "Warnings:"]
        lines += [f"  {_safe(warning)}" for warning in result.warnings]
    failed = [o for o in result.files if not o.ok]
    if failed:
        width = min(60, max(len(_safe(o.file)) for o in failed))
        lines += ["", "Failed files:", f"  {'FILE':<{width}}  REASON"]
        for outcome in failed:
            reason = outcome.error or (
                format_status(outcome.status) if outcome.status is not None else "unknown"
            )
            n = len(outcome.attempts)
            tries = f" (after {n} attempts)" if n > 1 else ""
            lines.append(f"  {_safe(outcome.file):<{width}}  {_safe(reason)}{tries}")
    if skipped:
        lines += ["", *format_skipped(skipped)]
    return "\n".join(lines)


def _safe(text: str) -> str:
    """A file name, an SCP's Error Comment or a reason, as it may be printed: control
    characters and terminal sequences escaped, other Unicode kept."""
    return printable(text, ascii_only=False)
