"""The ``scukit`` command: a dispatcher over the ``scukit.commands`` entry points, and the
``send``, ``echo``, ``preflight`` and ``journal`` subcommands of :mod:`scu`.

Each entry point of the group ``scukit.commands`` is a ``register_xxx(subparsers)`` that
adds its parser and sets ``func`` (``func(args) -> int``, the exit code). A plugin that
cannot be imported or registered does not break the others: its subcommand stays
listed and, when used, says on stderr why it cannot run.

Exit codes: 0 all sent, 1 some failed, 2 usage error (argparse, invalid option values,
a missing path, nothing to send, a subcommand that could not be loaded), 3 association
rejected or could not connect, 130 interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import NoReturn

from scu.cli.common import (
    EXIT_ASSOCIATION,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    print_json,
)
from scu.cli.journal import register_journal
from scu.cli.progress import ProgressBar
from scu.cli.query import format_preflight, register_echo, register_preflight
from scu.cli.send import format_summary, register_send

__all__ = [
    "EXIT_ASSOCIATION",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ProgressBar",
    "build_parser",
    "format_preflight",
    "format_summary",
    "main",
    "register_echo",
    "register_journal",
    "register_preflight",
    "register_send",
]

ENTRY_POINT_GROUP = "scukit.commands"

Command = Callable[[argparse.Namespace], int]

#: Our own subcommands, registered from here when the distribution's metadata is absent
#: (running from a source tree).
_OWN = (
    ("send", register_send),
    ("echo", register_echo),
    ("preflight", register_preflight),
    ("journal", register_journal),
)


class _ParseError(Exception):
    """A usage error argparse found (its message already printed to stderr)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{prog}: error: {message}")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised, not exited on, so that ``--json`` still
    gets its JSON (and its ``error``) on stdout."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _ParseError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    """The ``scukit`` parser with every subcommand the installed plugins register."""
    parser: argparse.ArgumentParser = _Parser(
        prog="scukit",
        description="DICOM C-STORE toolkit: a Storage SCU, a mock Storage SCP, scenarios.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in subparsers.choices:  # the same distribution seen twice
            continue
        try:
            register = ep.load()
            register(subparsers)
        except Exception as exc:  # a broken plugin must not take the others down
            _register_broken(subparsers, ep.name, ep.value, exc)
    for name, register in _OWN:
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
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except _ParseError as exc:
        if "--json" in argv:
            print_json({"error": str(exc), "exit_code": EXIT_USAGE})
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help, --version (0)
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
        if getattr(args, "json", False):
            print_json({"error": str(exc), "exit_code": EXIT_USAGE})
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\nscukit {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


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
