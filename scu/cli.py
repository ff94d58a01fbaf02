"""The ``scukit`` command: a dispatcher over the ``scukit.commands`` entry points, and the
``send``, ``echo`` and ``preflight`` subcommands of :mod:`scu`.

Each entry point of the group ``scukit.commands`` is a ``register_xxx(subparsers)`` that
adds its parser and sets ``func`` (``func(args) -> int``, the exit code). A plugin that
cannot be imported or registered does not break the others: its subcommand stays
listed and, when used, says on stderr why it cannot run.

Exit codes (SPEC): 0 all sent, 1 some failed, 2 usage error (argparse, invalid option
values, a missing path, nothing to send, a subcommand that could not be loaded),
3 association rejected or could not connect.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TextIO

from scu import (
    AssociationError,
    AssociationRejected,
    CallbackError,
    FileError,
    FileSending,
    FileSent,
    PreflightItem,
    StoreScu,
    TransferCompleted,
    TransferResult,
    TransferStarted,
    echo,
)
from scu.protocol.status import format_status
from scu.protocol.uids import uid_keyword as syntax_name

__all__ = [
    "EXIT_ASSOCIATION",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ProgressBar",
    "build_parser",
    "main",
    "register_echo",
    "register_preflight",
    "register_send",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ASSOCIATION = 3

ENTRY_POINT_GROUP = "scukit.commands"
#: Verdicts of ``preflight`` that mean "this file would go out".
_SENDABLE_VERDICTS = frozenset({"accept", "convert"})

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input from the user, found before anything is sent (exit code 2)."""


# Dispatcher ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``scukit`` parser with every subcommand the installed plugins register."""
    parser = argparse.ArgumentParser(
        prog="scukit",
        description="DICOM C-STORE toolkit: a Storage SCU, a mock Storage SCP, scenarios.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    registered = False
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in subparsers.choices:  # the same distribution seen twice
            continue
        try:
            register = ep.load()
            register(subparsers)
        except Exception as exc:  # a broken plugin must not take the others down
            _register_broken(subparsers, ep.name, ep.value, exc)
        else:
            registered = registered or ep.value.startswith("scu.cli:")
    if not registered:
        # Running from a source tree without the distribution's metadata: our own
        # subcommands still work.
        for name, register in (
            ("send", register_send),
            ("echo", register_echo),
            ("preflight", register_preflight),
        ):
            if name not in subparsers.choices:
                register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scukit")
    except PackageNotFoundError:
        return "(not installed)"


def _register_broken(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    target: str,
    exc: BaseException,
) -> None:
    reason = f"{type(exc).__name__}: {exc}"

    def broken(args: argparse.Namespace) -> int:
        print(
            f"scukit {name}: this subcommand could not be loaded "
            f"(entry point {target!r}): {reason}",
            file=sys.stderr,
        )
        return EXIT_USAGE

    parser = subparsers.choices.get(name)
    if parser is None:
        parser = subparsers.add_parser(
            name, help=f"(unavailable: {reason})", add_help=False, prefix_chars="\0"
        )
        parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=broken)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scukit`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stderr)
        print(f"scukit: error: subcommand {args.command!r} set no handler", file=sys.stderr)
        return EXIT_USAGE
    try:
        # Before the command builds its StoreScu, so that the library sees our handler
        # and does not add its own (every line would be logged twice).
        with _verbose_logging(bool(getattr(args, "verbose", False))):
            return func(args)
    except UsageError as exc:
        print(f"scukit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"scukit {args.command}: interrupted", file=sys.stderr)
        return 130


# Options shared by send, echo and preflight --------------------------------------


def _add_association_options(parser: argparse.ArgumentParser, *, max_pdu: bool = True) -> None:
    parser.add_argument(
        "addr", metavar="ADDR", help='the SCP: "host:port", "AE@host:port" or "[IPv6]:port"'
    )
    group = parser.add_argument_group("association")
    group.add_argument("--calling-ae", default="STORE-SCU", help="our AE title (STORE-SCU)")
    group.add_argument(
        "--called-ae",
        default=None,
        help="the SCP's AE title (default: the AE in ADDR, else ANY-SCP)",
    )
    if max_pdu:
        group.add_argument(
            "--max-pdu",
            type=int,
            default=16384,
            metavar="BYTES",
            help="max PDU length we receive, 4096..131072 or 0 for no limit (16384)",
        )
    timeouts = parser.add_argument_group("timeouts (seconds)")
    for name, default in (("connect", 10.0), ("acse", 30.0), ("dimse", 30.0), ("network", 60.0)):
        timeouts.add_argument(
            f"--{name}-timeout", type=float, default=default, metavar="S", help=f"({default:g})"
        )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="associate over TLS (verifying the SCP)")
    tls.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="trust these CA certificates (PEM) instead of the system's; implies --tls",
    )
    tls.add_argument(
        "--tls-cert", type=Path, default=None, metavar="FILE",
        help="present this client certificate (PEM); implies --tls",
    )  # fmt: skip
    tls.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                     help="the client certificate's private key (PEM)")  # fmt: skip
    tls.add_argument(
        "--tls-no-verify",
        action="store_true",
        help="do not verify the SCP's certificate or host name (insecure: for tests only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the protocol exchange")
    parser.add_argument("--json", action="store_true", help="print JSON only on stdout")


def _add_queue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", metavar="PATH", nargs="+", help="DICOM files or folders")
    group = parser.add_argument_group("queue")
    group.add_argument(
        "--pattern", default="*.dcm", help="file name pattern inside folders (*.dcm)"
    )
    group.add_argument(
        "--recursive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="descend into sub-folders (default: yes)",
    )
    group.add_argument(
        "--transfer-syntax",
        default=None,
        metavar="NAME|UID",
        help="send every file in this syntax (e.g. ExplicitVRLittleEndian, JPEGBaseline)",
    )
    group.add_argument(
        "--never-transcode",
        action="store_true",
        help="never convert a file: refuse it when its own syntax is not accepted",
    )


def _tls(args: argparse.Namespace) -> dict[str, Any]:
    """``tls=`` for StoreScu/echo from the TLS options, or nothing."""
    wanted = (
        args.tls
        or args.tls_no_verify
        or any(value is not None for value in (args.tls_ca, args.tls_cert, args.tls_key))
    )
    if not wanted:
        return {}
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    try:
        context = ssl.create_default_context(
            cafile=None if args.tls_ca is None else str(args.tls_ca)
        )
        if args.tls_cert is not None:
            context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"TLS: {exc}") from None
    if args.tls_no_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        print(
            f"scukit {args.command}: WARNING: --tls-no-verify: the SCP's certificate is not "
            "checked; anyone on the path can read and change what is sent",
            file=sys.stderr,
        )
    return {"tls": context}


def _timeouts(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "connect_timeout": args.connect_timeout,
        "acse_timeout": args.acse_timeout,
        "dimse_timeout": args.dimse_timeout,
        "network_timeout": args.network_timeout,
    }


def _titles(args: argparse.Namespace) -> dict[str, Any]:
    titles: dict[str, Any] = {"calling_ae_title": args.calling_ae}
    if args.called_ae is not None:
        titles["called_ae_title"] = args.called_ae
    return titles


def _make_scu(args: argparse.Namespace, **extra: Any) -> StoreScu:
    try:
        scu = StoreScu(
            args.addr,
            max_pdu_length=args.max_pdu,
            verbose=args.verbose,
            transfer_syntax=args.transfer_syntax,
            never_transcode=args.never_transcode,
            **_titles(args),
            **_timeouts(args),
            **_tls(args),
            **extra,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for path in args.paths:
        try:
            if os.path.isdir(path):
                if not _folder_has_match(path, args.pattern, args.recursive):
                    where = "or its sub-folders " if args.recursive else ""
                    raise UsageError(
                        f"folder {path!r} {where}holds no file matching {args.pattern!r}"
                    )
                scu.add_directory(path, pattern=args.pattern, recursive=args.recursive)
            else:
                scu.add_file(path)
        except FileNotFoundError as exc:
            raise UsageError(f"{path!r}: no such file or directory ({exc})") from None
        except (ValueError, OSError) as exc:
            raise UsageError(f"{path!r}: {exc}") from None
    return scu


def _folder_has_match(folder: str, pattern: str, recursive: bool) -> bool:
    """Whether ``add_directory`` would queue anything (so that a wrong ``--pattern`` is a
    usage error, not an empty "all sent")."""
    root = Path(folder)
    matches = root.rglob(pattern) if recursive else root.glob(pattern)
    return any(p.is_file() and p.name.upper() != "DICOMDIR" for p in matches)


@contextmanager
def _verbose_logging(enabled: bool) -> Iterator[None]:
    """``--verbose``: the ``scu`` logger (protocol exchange) to stderr, for this command only."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("scu")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _association_failure(
    args: argparse.Namespace, exc: AssociationError, extra: dict[str, Any] | None = None
) -> int:
    """Report a failed association (exit 3): words on stderr, JSON on stdout if asked."""
    print(f"scukit {args.command}: {exc}", file=sys.stderr)
    if args.json:
        data: dict[str, Any] = exc.result.to_dict() if exc.result is not None else {}
        data.update(extra or {})
        data["error"] = str(exc)
        data["rejection"] = asdict(exc.rejection) if isinstance(exc, AssociationRejected) else None
        _print_json(data)
    return EXIT_ASSOCIATION


# Progress bar ----------------------------------------------------------------------


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal (stderr).

    Hooks into the five transfer events; draws at most every ``interval`` seconds,
    plus once at the start and once at the end.
    """

    def __init__(self, stream: TextIO, *, interval: float = 0.1, width: int | None = None):
        self.stream = stream
        self.interval = interval
        self.width = width
        self.total = 0
        self.successful = 0
        self.failed = 0
        self.current = ""
        self._last_draw = 0.0

    def started(self, event: TransferStarted) -> None:
        self.total = event.total_files
        self._draw(force=True)

    def sending(self, event: FileSending) -> None:
        self.current = os.path.basename(event.file)
        self._draw()

    def sent(self, event: FileSent) -> None:
        self.successful += 1
        self._draw()

    def error(self, event: FileError) -> None:
        self.failed += 1
        self._draw()

    def completed(self, event: TransferCompleted) -> None:
        self.successful, self.failed = event.successful, event.failed
        self.current = ""
        self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def render(self, columns: int) -> str:
        """The line for a terminal ``columns`` wide (never wider)."""
        done = self.successful + self.failed
        counts = f" {done}/{self.total} ok {self.successful} failed {self.failed} "
        bar_width = max(10, min(40, columns - len(counts) - 3 - 20))
        filled = bar_width * done // self.total if self.total else bar_width
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}]{counts}{self.current}"
        return line[: max(columns - 1, 1)]

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        columns = self.width or shutil.get_terminal_size((80, 24)).columns
        line = self.render(columns)
        self.stream.write("\r" + line.ljust(max(columns - 1, 1)))
        self.stream.flush()


# send --------------------------------------------------------------------------------


def register_send(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``scukit send ADDR PATH...``."""
    parser = subparsers.add_parser(
        "send",
        help="send DICOM files to a Storage SCP",
        description="Send DICOM files (and folders) to a Storage SCP with C-STORE. Exit "
        "codes: 0 all sent, 1 some failed, 2 usage error, 3 association rejected or "
        "could not connect.",
    )
    _add_association_options(parser)
    _add_queue_options(parser)
    group = parser.add_argument_group("transfer")
    group.add_argument(
        "--concurrency", type=int, default=1, metavar="N", help="parallel associations (1)"
    )
    group.add_argument("--fail-fast", action="store_true", help="stop at the first failed file")
    parser.set_defaults(func=run_send)


def run_send(args: argparse.Namespace) -> int:
    """The ``send`` subcommand."""
    scu = _make_scu(args, concurrency=args.concurrency, fail_fast=args.fail_fast)
    callbacks: dict[str, Any] = {}
    if sys.stderr.isatty() and not args.verbose:
        bar = ProgressBar(sys.stderr)
        callbacks = {
            "on_transfer_started": bar.started,
            "on_file_sending": bar.sending,
            "on_file_sent": bar.sent,
            "on_file_error": bar.error,
            "on_transfer_completed": bar.completed,
        }
    try:
        result = scu.send(**callbacks)
    except AssociationError as exc:
        return _association_failure(args, exc)
    except CallbackError as exc:  # only our progress bar: the result is still right
        print(f"scukit send: progress display failed: {exc.__cause__}", file=sys.stderr)
        result = exc.result
    if args.json:
        _print_json(result.to_dict())
    else:
        print(format_summary(result, addr=args.addr))
    return EXIT_OK if result.failed == 0 else EXIT_FAILED


def format_summary(result: TransferResult, *, addr: str) -> str:
    """The human summary of ``send``: counts, syntaxes on the wire, warnings, failures."""
    lines = [
        f"Sent to {addr} in {result.duration_seconds:.2f} s",
        "",
        f"  {'total':<12}{result.total_files:>8}",
        f"  {'successful':<12}{result.successful:>8}",
        f"  {'failed':<12}{result.failed:>8}",
        f"  {'warnings':<12}{len(result.warnings):>8}",
    ]
    syntaxes = Counter(
        syntax_name(o.transfer_syntax) for o in result.files if o.ok and o.transfer_syntax
    )
    if syntaxes:
        lines += ["", "Transfer syntaxes on the wire:"]
        lines += [f"  {count:>6}  {name}" for name, count in syntaxes.most_common()]
    if result.warnings:
        lines += ["", "Warnings:"]
        lines += [f"  {warning}" for warning in result.warnings]
    failed = [o for o in result.files if not o.ok]
    if failed:
        width = min(60, max(len(o.file) for o in failed))
        lines += ["", "Failed files:", f"  {'FILE':<{width}}  REASON"]
        for outcome in failed:
            reason = outcome.error or (
                format_status(outcome.status) if outcome.status is not None else "unknown"
            )
            lines.append(f"  {outcome.file:<{width}}  {reason}")
    return "\n".join(lines)


# echo ----------------------------------------------------------------------------------


def register_echo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``scukit echo ADDR``."""
    parser = subparsers.add_parser(
        "echo",
        help="verify a DICOM peer with C-ECHO",
        description="Send one C-ECHO. Exit codes: 0 answered with success, 1 answered "
        "with another status, 2 usage error, 3 association rejected or could not connect.",
    )
    _add_association_options(parser, max_pdu=False)
    parser.set_defaults(func=run_echo)


def run_echo(args: argparse.Namespace) -> int:
    """The ``echo`` subcommand."""
    try:
        answer = echo(args.addr, **_titles(args), **_timeouts(args), **_tls(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except AssociationError as exc:
        return _association_failure(args, exc, {"addr": args.addr})
    if args.json:
        _print_json(
            {
                "addr": args.addr,
                "status": answer.status,
                "duration_seconds": answer.duration_seconds,
            }
        )
    else:
        print(
            f"C-ECHO {args.addr}: {format_status(answer.status)} "
            f"in {answer.duration_seconds * 1000:.1f} ms"
        )
    return EXIT_OK if answer.status == 0 else EXIT_FAILED


# preflight -----------------------------------------------------------------------------


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
    _add_association_options(parser)
    _add_queue_options(parser)
    parser.set_defaults(func=run_preflight)


def run_preflight(args: argparse.Namespace) -> int:
    """The ``preflight`` subcommand."""
    scu = _make_scu(args)
    try:
        items = scu.preflight()
    except AssociationError as exc:
        return _association_failure(args, exc, {"addr": args.addr})
    counts = Counter(item.verdict for item in items)
    if args.json:
        _print_json(
            {
                "addr": args.addr,
                "counts": dict(counts),
                "files": [asdict(item) for item in items],
            }
        )
    else:
        print(format_preflight(items, addr=args.addr))
    sendable = all(item.verdict in _SENDABLE_VERDICTS for item in items)
    return EXIT_OK if sendable else EXIT_FAILED


def format_preflight(items: Sequence[PreflightItem], *, addr: str) -> str:
    """One line per file: verdict, syntax on the wire, file, reason; then the counts."""
    lines = [f"Preflight against {addr}: {len(items)} file(s)", ""]
    if items:
        width = min(50, max(len(item.file) for item in items))
        lines.append(f"  {'VERDICT':<10}  {'ON THE WIRE':<28}  {'FILE':<{width}}  REASON")
        for item in items:
            wire = syntax_name(item.transfer_syntax) if item.transfer_syntax else "-"
            lines.append(
                f"  {item.verdict:<10}  {wire:<28}  {item.file:<{width}}  {item.reason or ''}"
            )
    counts = Counter(item.verdict for item in items)
    lines += ["", "  " + ", ".join(f"{v} {counts.get(v, 0)}" for v in _VERDICT_ORDER)]
    return "\n".join(line.rstrip() for line in lines)


_VERDICT_ORDER = ("accept", "convert", "refuse", "unreadable")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
