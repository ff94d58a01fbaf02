"""``scukit scenario list|show|run`` and ``scukit demo`` (registered through the
``scukit.commands`` entry-point group; ``scukit conformance`` is in
:mod:`scenarios.conformance`)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from scu.protocol.status import status_label
from scu.protocol.uids import resolve_uid, uid_name

from .command import CommandTemplate
from .errors import ScenarioError
from .loader import discover, library, library_dir, load, resolve
from .model import Scenario
from .output import render_json, render_table, write_junit
from .runner import ScenarioReport, run

__all__ = ["register_demo", "register_scenario"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register_scenario(subparsers: Any) -> None:
    """Add ``scenario`` (list, show, run) to the ``scukit`` parser."""
    parser = subparsers.add_parser(
        "scenario",
        help="list, show and run declarative scenarios (conformance checks before a rollout)",
        description="Scenario files describe a mock PACS, what to send and what must be "
        "observed. Run them against our StoreScu or any sender (--scu-command).",
    )
    sub = parser.add_subparsers(dest="scenario_command", metavar="{list,show,run}")
    sub.required = True

    p_list = sub.add_parser(
        "list", help="the library scenarios (or a folder's) with one-line descriptions"
    )
    p_list.add_argument(
        "directory", nargs="?", metavar="DIR", help="a folder of scenario files (default: library)"
    )
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.set_defaults(func=_cmd_list)

    p_show = sub.add_parser("show", help="print a scenario's YAML")
    p_show.add_argument("scenario", metavar="NAME|PATH")
    p_show.set_defaults(func=_cmd_show)

    p_run = sub.add_parser(
        "run",
        help="run scenarios and compare with their expectations",
        description="Exit codes: 0 every expectation held (required and recommended), 1 "
        "some did not (a sender that never connects, dies by a signal or runs past the "
        "time limit included), 2 a usage or validation error (found before anything runs).",
    )
    p_run.add_argument(
        "scenarios",
        nargs="*",
        metavar="NAME|PATH|DIR",
        help="scenarios; a folder runs every *.yaml in it",
    )
    p_run.add_argument("--all", action="store_true", help="run every library scenario")
    p_run.add_argument(
        "--scu-command",
        metavar="CMD",
        help="run this sender instead of our StoreScu; placeholders {host} {port} {addr} "
        "{files} {dir} {calling_ae} {called_ae} {max_pdu} {transfer_syntax} "
        "{dimse_timeout} {acse_timeout} {network_timeout} {connect_timeout} "
        "{concurrency} {never_transcode} {fail_fast} {verbose}; judged from the SCP "
        "journal and the process",
    )
    p_run.add_argument(
        "--timeout", type=float, default=None, help="seconds before --scu-command is killed"
    )
    p_run.add_argument("--json", action="store_true", help="JSON report on stdout")
    p_run.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p_run.add_argument(
        "-v", "--verbose", action="store_true", help="show every expectation, not only failures"
    )
    p_run.set_defaults(func=_cmd_run)


def _fail_usage(message: str) -> int:
    print(f"scukit scenario: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_list(args: argparse.Namespace) -> int:
    folder = args.directory if args.directory is not None else library_dir()
    if args.directory is not None and not Path(args.directory).is_dir():
        return _fail_usage(f"{args.directory}: not a folder")
    try:
        entries = library(folder)
    except ScenarioError as exc:
        return _fail_usage("invalid scenario(s):\n" + str(exc))
    if not entries:
        return _fail_usage(f"no scenario files (*.yaml) in {folder}")
    if args.json:
        payload = [{"name": e.name, "description": e.summary, "path": str(e.path)} for e in entries]
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name:<{width}}  {e.summary}")
    print(f"\n{len(entries)} scenarios in {folder}")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        path = resolve(args.scenario)
    except ScenarioError as exc:
        return _fail_usage(str(exc))
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    names: list[str] = list(args.scenarios)
    if args.all:
        names += [str(p) for p in sorted(library_dir().glob("*.yaml"))]
    if not names:
        return _fail_usage("name at least one scenario (NAME or PATH) or use --all")
    if args.timeout is not None and args.timeout <= 0:
        return _fail_usage("--timeout must be positive")
    loaded, problem = load_all(names)
    if problem:
        return _fail_usage(problem)
    if args.scu_command is not None:
        try:
            CommandTemplate(args.scu_command)
        except ValueError as exc:
            return _fail_usage(str(exc))

    reports: list[ScenarioReport] = []
    for sc in loaded:
        if not args.json:
            print(f"running {sc.name} ...", file=sys.stderr, flush=True)
        reports.append(run(sc, scu_command=args.scu_command, timeout=args.timeout))
    if args.junit:
        write_junit(reports, args.junit)
    if args.json:
        print(render_json(reports))
    else:
        print(render_table(reports, verbose=args.verbose))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def load_all(names: list[str]) -> tuple[list[Scenario], str | None]:
    """Every scenario named (files, folders, library names), validated before anything
    runs: the scenarios, or the text of every problem found."""
    try:
        paths = discover(names)
    except ScenarioError as exc:
        return [], str(exc)
    loaded: list[Scenario] = []
    problems: list[str] = []
    for path in paths:
        try:
            loaded.append(load(path))
        except ScenarioError as exc:
            problems.append(str(exc))
    if problems:
        return [], "invalid scenario(s):\n" + "\n".join(problems)
    return loaded, None


# --- scukit demo -----------------------------------------------------------------------


def register_demo(subparsers: Any) -> None:
    """Add ``demo`` to the ``scukit`` parser."""
    parser = subparsers.add_parser(
        "demo",
        help="start a mock PACS in-process, send generated files to it, show the journal",
        description="A self-contained tour: a MockScp on 127.0.0.1 (a free port), a small "
        "generated study, StoreScu with a progress bar, the summary and the SCP journal.",
    )
    parser.add_argument(
        "--count", type=int, default=12, help="number of files to generate (default 12)"
    )
    parser.set_defaults(func=_cmd_demo)


class _Progress:
    """A one-line progress bar on a TTY stream; silent otherwise (pipes, CI logs)."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total, self.done = stream, total, 0
        self.enabled = stream.isatty() and total > 0

    def step(self) -> None:
        self.done += 1
        if self.enabled:
            filled = int(30 * self.done / self.total)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _uid_name(uid: str | None) -> str:
    return uid_name(uid) if uid else "-"


def _cmd_demo(args: argparse.Namespace) -> int:
    from mock_scp import MockScp, datagen
    from scu import ScuError, StoreScu

    if args.count < 1:
        print("scukit demo: error: --count must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    # Two series of a small study: CT uncompressed, MR JPEG 2000 lossless, so the journal
    # shows per-file transfer syntaxes.
    ct_count = (args.count + 1) // 2
    mr_count = args.count - ct_count
    with tempfile.TemporaryDirectory(prefix="scukit-demo-") as tmp:
        root = Path(tmp)
        datagen.write_files(
            root / "ct",
            count=ct_count,
            sop_class=resolve_uid("CTImageStorage", parameter="demo"),
            transfer_syntax=resolve_uid("ExplicitVRLittleEndian", parameter="demo"),
            seed=1,
        )
        if mr_count:
            datagen.write_files(
                root / "mr",
                count=mr_count,
                sop_class=resolve_uid("MRImageStorage", parameter="demo"),
                transfer_syntax=resolve_uid("JPEG2000Lossless", parameter="demo"),
                seed=2,
            )
        with MockScp(ae_title="DEMO-PACS") as scp:
            print(f"mock PACS DEMO-PACS listening on {scp.addr}")
            sender = StoreScu(scp.addr, calling_ae_title="SCUKIT-DEMO", called_ae_title="DEMO-PACS")
            sender.add_directory(root)
            progress = _Progress(sys.stderr, args.count)
            started = time.monotonic()
            try:
                result = sender.send(
                    on_file_sent=lambda ev: progress.step(),
                    on_file_error=lambda ev: progress.step(),
                )
            except ScuError as exc:
                progress.close()
                print(f"demo failed: {exc}", file=sys.stderr)
                return EXIT_FAILED
            progress.close()
            elapsed = time.monotonic() - started
            scp.wait_idle(10.0)
            received = list(scp.received)
            associations = list(scp.associations)
            violations = list(scp.violations)

    print(
        f"\nsent {result.successful} of {result.total_files} files "
        f"({result.failed} failed, {len(result.warnings)} warnings) in {elapsed:.2f} s"
    )
    for w in result.warnings:
        print(f"  warning: {w}")
    for f in result.files:
        if not f.ok:
            print(f"  failed: {f.file}: {f.error}")
    print("\nSCP journal: stores received")
    print(f"  {'#':>3}  {'assoc':<5}  {'SOP class':<24}  {'transfer syntax':<36}  status")
    for i, r in enumerate(received, 1):
        print(
            f"  {i:>3}  {r.association_id!s:<5}  {_uid_name(r.sop_class_uid)[:24]:<24}  "
            f"{_uid_name(r.transfer_syntax)[:36]:<36}  {status_label(r.status)}"
        )
    print("SCP journal: associations")
    for a in associations:
        print(
            f"  #{a.id}: {a.calling_ae_title} -> {a.called_ae_title}, "
            f"max PDU {a.max_pdu_length}, ended: {a.ended or 'open'}"
        )
    print(f"SCP journal: violations: {len(violations) or 'none'}")
    for v in violations:
        print(f"  {v}")
    print(
        "\nNext steps:\n"
        "  scukit scenario list            real-world PACS behaviours, ready to run\n"
        "  scukit scenario run --all       check our sender against all of them\n"
        "  scukit conformance --scu-command 'your-sender {host} {port} {files}'\n"
        "                                  judge your own sender against the library\n"
        "  scukit serve --ae-title PACS    a standalone mock PACS for any SCU"
    )
    return EXIT_OK if result.failed == 0 else EXIT_FAILED
