"""``scukit journal show FILE``: what a transfer journal holds."""

from __future__ import annotations

import argparse
import os
import time

from scu import TransferJournal
from scu.cli.common import EXIT_OK, UsageError, print_json
from scu.journal import JournalSummary

__all__ = ["format_journal_summary", "register_journal"]

#: How many failed files are listed before "and N more".
_FAILED_SHOWN = 20


def register_journal(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``scukit journal show FILE``."""
    parser = subparsers.add_parser(
        "journal",
        help="summarise a transfer journal (written by send --journal)",
        description="Summarise a transfer journal: per destination, the files it "
        "acknowledged and those that failed; every run, and whether it ended, was "
        "interrupted or never ended (killed). Exit codes: 0, 2 not a journal.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    show = actions.add_parser("show", help="summarise FILE")
    show.add_argument("file", metavar="FILE", help="the journal (SQLite)")
    show.add_argument("--json", action="store_true", help="print JSON only on stdout")
    show.set_defaults(func=run_journal_show)


def run_journal_show(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.file):
        raise UsageError(f"{args.file!r}: no such journal file")
    try:
        journal = TransferJournal(args.file)
        try:
            summary = journal.summary()
        finally:
            journal.close()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # sqlite3.DatabaseError on a file that is not SQLite
        raise UsageError(f"{args.file!r}: not a transfer journal ({exc})") from None
    if args.json:
        print_json(summary.to_dict())
    else:
        print(format_journal_summary(summary))
    return EXIT_OK


def _when(stamp: object) -> str:
    if not isinstance(stamp, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def format_journal_summary(summary: JournalSummary) -> str:
    lines = [f"Transfer journal {summary.path}: {summary.transfers} run(s)", ""]
    if summary.destinations:
        width = max(len(d) for d in summary.destinations)
        lines.append(f"  {'DESTINATION':<{width}}  {'ACKNOWLEDGED':>12}  {'FAILED':>8}")
        for destination, counts in sorted(summary.destinations.items()):
            lines.append(
                f"  {destination:<{width}}  {counts['acknowledged']:>12}  {counts['failed']:>8}"
            )
    else:
        lines.append("  no outcome recorded")
    if summary.runs:
        lines += ["", "Runs:"]
        for n, run in enumerate(summary.runs, 1):
            if run["ended_at"] is None:
                how = "never ended (killed, or still running)"
            elif run["interrupted"]:
                how = "interrupted"
            else:
                how = "completed"
            figures = ""
            if isinstance(run["counts"], dict):
                figures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in run["counts"].items())
            lines.append(
                f"  {n:>3}  {_when(run['started_at'])}  {run['destination']}  {how}"
                + (f": {figures}" if figures else "")
            )
    if summary.failed:
        lines += ["", "Failed (not acknowledged):"]
        for destination, name, error in summary.failed[:_FAILED_SHOWN]:
            lines.append(f"  {destination}  {name}  {error}")
        if len(summary.failed) > _FAILED_SHOWN:
            lines.append(f"  and {len(summary.failed) - _FAILED_SHOWN} more")
    return "\n".join(lines)
