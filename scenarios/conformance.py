"""``scukit conformance``: judge one external sender against the library (or a folder of
scenarios), by level, with text, HTML, JSON and JUnit reports.

Exit codes: 0 conformant (also when not robust, unless ``--strict``); 1 non-conformant,
not robust with ``--strict``, or not shown conformant (nothing judged, a run broke);
2 invalid input (a scenario, a folder, the command template), found before anything runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_all
from .command import CommandTemplate, describe_program
from .html_report import write_html
from .loader import library_dir
from .output import render_json, render_table, render_verdict, write_junit
from .report import ScenarioReport, Verdict, overall_verdict
from .runner import run

__all__ = ["exit_code", "register_conformance"]


def register_conformance(subparsers: Any) -> None:
    """Add ``conformance`` to the ``scukit`` parser."""
    parser = subparsers.add_parser(
        "conformance",
        help="judge an external sender against the scenario library: conformant, "
        "not robust, or non-conformant",
        description="Runs every scenario of the library (or of --scenarios DIR) against "
        "the sender --scu-command starts, and judges it by level: 'required' (the DICOM "
        "standard requires it, with the PS3.x section) and 'recommended' (robust "
        "practice). Exit codes: 0 conformant (not robust included, unless --strict), 1 "
        "non-conformant (or not robust with --strict, or nothing could be judged), 2 "
        "invalid input.",
    )
    parser.add_argument(
        "--scu-command",
        required=True,
        metavar="CMD",
        help="the sender's shell command line with placeholders, e.g. "
        "'/usr/bin/storescu -aet {calling_ae} -aec {called_ae} -td {dimse_timeout} "
        "{host} {port} {files}' (see 'scukit scenario run --help' for every placeholder)",
    )
    parser.add_argument(
        "--scenarios",
        metavar="DIR",
        help="a folder of scenario files (default: the shipped library)",
    )
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--json", metavar="FILE", help="write a JSON report")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when the sender is not robust, too"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds a sender may take per scenario"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="every expectation, program and output"
    )
    parser.set_defaults(func=_cmd_conformance)


def exit_code(reports: list[ScenarioReport], *, strict: bool) -> int:
    """The command's exit code for ``reports`` (see the module docstring)."""
    verdict = overall_verdict(reports)
    if verdict is Verdict.CONFORMANT or (verdict is Verdict.NOT_ROBUST and not strict):
        return EXIT_OK
    return EXIT_FAILED


def _usage(message: str) -> int:
    print(f"scukit conformance: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_conformance(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout <= 0:
        return _usage("--timeout must be positive")
    try:
        CommandTemplate(args.scu_command)
    except ValueError as exc:
        return _usage(str(exc))
    folder = Path(args.scenarios) if args.scenarios is not None else library_dir()
    if not folder.is_dir():
        return _usage(f"--scenarios {folder}: not a folder")
    for option in ("html", "json", "junit"):
        target = getattr(args, option)
        if target is not None and not Path(target).absolute().parent.is_dir():
            return _usage(f"--{option} {target}: the folder does not exist")
    scenarios, problem = load_all([str(folder)])
    if problem:
        return _usage(problem)
    print(f"sender: {args.scu_command}", file=sys.stderr)
    print(f"program: {describe_program(args.scu_command)}", file=sys.stderr)
    reports: list[ScenarioReport] = []
    for sc in scenarios:
        print(f"running {sc.name} ...", file=sys.stderr, flush=True)
        reports.append(run(sc, scu_command=args.scu_command, timeout=args.timeout))
    if args.html:
        write_html(reports, args.html)
    if args.json:
        Path(args.json).write_text(render_json(reports) + "\n", encoding="utf-8")
    if args.junit:
        write_junit(reports, args.junit)
    print(render_table(reports, verbose=args.verbose))
    print()
    print(render_verdict(reports))
    return exit_code(reports, strict=args.strict)
