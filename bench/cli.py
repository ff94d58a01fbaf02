"""``python -m bench``: build the corpora, alternate the runs, print the table."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import checks, compare, corpus, memory, procs
from bench.runs import CHECKS, MB, REFERENCE, RUNS, RunResult, fill_ratios, measure

DEFAULT_WORKDIR = Path(__file__).resolve().parent / "out"


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _names(value: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    run_names = [r.name for r in RUNS]
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark StoreScu and MockScp against DCMTK on loopback "
        "(TCP_NODELAY, max PDU 16384); ratios are to DCMTK storescu -> storescp "
        "--ignore measured in the same process.",
    )
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="corpus cache and logs")
    p.add_argument("--repeat", type=int, default=None, help="rounds per run (median; default 5)")
    p.add_argument("--smoke", action="store_true", help="tiny corpora, one round, every run")
    p.add_argument(
        "--corpus",
        type=lambda v: _names(v, ["ct", "small", "mixed"], "corpus"),
        default=["ct", "small", "mixed"],
        help="comma-separated: ct,small,mixed",
    )
    p.add_argument(
        "--runs",
        type=lambda v: _names(v, [*run_names, *CHECKS, *memory.CHECKS], "run"),
        default=None,
        help=f"comma-separated runs and checks (default: all runs, queue, scale, memory): "
        f"{','.join([*run_names, *CHECKS, *memory.CHECKS])}",
    )
    p.add_argument("--big", action="store_true", help="also send a 1 GB file (check 'big')")
    p.add_argument("--big-bytes", type=int, default=1 << 30, help=argparse.SUPPRESS)
    p.add_argument("--queue-files", type=int, default=None, help="files in the queue check")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile StoreScu c=1 on the small corpus with cProfile",
    )
    p.add_argument("--timeout", type=float, default=300, help="seconds per send before giving up")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument(
        "--worktree",
        action="store_true",
        help="our processes import this checkout's scu and mock_scp (default: the "
        "installed ones, which an editable install may take from another checkout)",
    )
    p.add_argument(
        "--compare",
        metavar="A[,B]",
        default=None,
        help="measure two versions of the code side by side in this invocation: git "
        "revisions or 'worktree' (A alone: A against the worktree); the runs only, "
        "no checks",
    )
    return p


def machine() -> dict[str, Any]:
    try:
        banner = subprocess.run(
            [procs.dcmtk_tool("storescu"), "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
    except (procs.BenchError, OSError, IndexError):
        banner = "DCMTK not found"
    import pydicom
    import pynetdicom

    root = Path(__file__).resolve().parent.parent

    def git(*argv: str) -> str:
        try:
            out = subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True)
        except OSError:
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        # Which code was measured: the commit, and whether scu/mock_scp had local edits.
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "code_dirty": bool(git("status", "--porcelain", "--", "scu", "mock_scp")),
        "pythonpath": os.environ.get("PYTHONPATH") or None,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "dcmtk": banner.strip("$ "),
        "pydicom": pydicom.__version__,
        "pynetdicom": pynetdicom.__version__,
        # Other work on a 2-core machine skews every figure; the load says how much.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width or 1) + len(suffix))
    return f"{value:{spec}}{suffix}"


def render(report: dict[str, Any]) -> str:
    """The human table: one line per run and corpus, then the checks."""
    m = report["machine"]
    lines = [
        f"scukit bench, {m['date']}, {m['cpus']} CPUs, Python {m['python']}, {m['dcmtk']}, "
        f"pynetdicom {m['pynetdicom']}; median of {report['repeat']}"
        + (" (smoke)" if report["smoke"] else ""),
        f"load average at start {m.get('load_average_at_start')}, at end {m.get('load_average')}; "
        f"commit {m.get('commit')}{' (scu/mock_scp edited)' if m.get('code_dirty') else ''}"
        + (f", PYTHONPATH={m['pythonpath']}" if m.get("pythonpath") else "")
        + f"; code measured: {report.get('code', 'installed')}",
        "",
    ]
    for name, c in report["corpora"].items():
        lines.append(f"  {name}: {c['files']} files, {c['bytes'] / MB:.1f} MB, {c['description']}")
    lines.append("")

    def name(r: dict[str, Any]) -> str:
        return f"{r['run']}@{r['version']}" if r.get("version") else str(r["run"])

    width = max([11, *(len(name(r)) for r in report["runs"])])
    lw = max([18, *(len(r["label"]) for r in report["runs"])])
    head = (
        f"{'run':<{width}} {'sender -> receiver':<{lw}} {'corpus':<12} {'files/s':>9} "
        f"{'MB/s':>8} {'ratio':>7} {'RSS MiB':>8} {'CPU s':>7}"
    )
    lines += [head, "-" * len(head)] if report["runs"] else []
    for r in report["runs"]:
        row = (
            f"{name(r):<{width}} {r['label']:<{lw}} {r['corpus']:<12} "
            f"{_fmt(r['files_per_second'], '9.1f')} {_fmt(r['mb_per_second'], '8.1f')} "
            f"{_fmt(r['ratio'], '6.3f', 'x'):>7} {_fmt(r['peak_rss_mib'], '8.1f')} "
            f"{_fmt(r['cpu_seconds'], '7.2f')}"
        )
        lines.append(row)
        if r["error"]:
            lines.append(f"{'':<{width}} ! {r['error']}")
    if report["checks"]:
        lines += ["", "checks (targets in brackets):"]
    for c in report["checks"]:
        if c["check"] == "queue" and c.get("error") is None:
            lines.append(
                f"  queue {c['files']:,} files: RSS {c['queued_rss_mib']:.1f} MiB "
                f"(baseline {c['baseline_rss_mib']:.1f}, queue costs {c['queue_cost_mib']:.1f} "
                f"MiB, {c['seconds']:.2f} s to queue) [{c['target']}]"
            )
        elif c["check"] == "scale" and c.get("error") is None:
            firsts = c.get("first_store_seconds", {})
            peaks = c.get("peak_rss_mib", {})
            rates = ", ".join(
                f"{int(n):,} queued: {_fmt(v, '.1f')} files/s"
                + (
                    f" (first store after {firsts[n] * 1000:.1f} ms)"
                    if firsts.get(n) is not None
                    else ""
                )
                for n, v in c["files_per_second"].items()
            )
            lines.append(
                f"  scale StoreScu c=1: {rates}; longest/shortest "
                f"{_fmt(c['ratio_long_to_short'], '.3f')}; peak RSS "
                + ", ".join(f"{v:.1f}" for v in peaks.values())
                + f" MiB [{c['target']}]"
            )
        elif c["check"] in memory.CHECKS and c.get("error") is None:
            lines.append(memory.render(c))
        elif c["check"] == "big" and c.get("error") is None:
            lines.append(
                f"  big file {c['bytes'] / MB:,.0f} MB: {c['seconds']:.2f} s, "
                f"{c['mb_per_second']:.1f} MB/s, peak RSS {c['peak_rss_mib']:.1f} MiB = "
                f"{c['above_baseline_mib']:.1f} MiB above baseline "
                f"{c['baseline_rss_mib']:.1f} [{c['target']}]"
            )
        else:
            lines.append(f"  {c['check']}: error: {c.get('error')}")
    if report.get("profile"):
        lines += [
            "",
            f"profile (StoreScu c=1, small corpus, {report['profile'].get('scu_file')}): "
            f"{report['profile']['stats']}",
        ]
        lines += ["  " + ln for ln in report["profile"]["top"]]
    return "\n".join(lines)


def profile_small(
    small: corpus.Corpus, workdir: Path, logdir: Path, timeout: float, tree: Path | None = None
) -> dict[str, Any]:
    """One cProfile'd StoreScu c=1 send of the small corpus; the top of the table by own
    time is what the lead needs to pick the next optimisation."""
    run = next(r for r in RUNS if r.name == "scu-c1")
    stats_path = workdir / "profile-small.prof"
    _log(f"profiling StoreScu c=1 on {small.name} -> {stats_path}")
    stats_path.unlink(missing_ok=True)  # never report a stale profile as this run's
    s = measure(
        run,
        [small.directory],
        small.count,
        logdir=logdir,
        tag="profile",
        timeout=timeout,
        profile=stats_path,
        tree=tree,
    )
    if not stats_path.exists():
        return {"stats": str(stats_path), "top": [f"no profile: {s.error}"], "error": s.error}
    buf = io.StringIO()
    st = pstats.Stats(str(stats_path), stream=buf)
    st.sort_stats("tottime").print_stats(20)
    text = buf.getvalue()
    (workdir / "profile-small.txt").write_text(text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    total = next((ln.strip() for ln in lines if "function calls" in ln), "")
    top = [total, *lines[-21:]]
    return {
        "stats": str(stats_path),
        "seconds_profiled": s.seconds,
        "scu_file": s.extra.get("scu_file"),
        "top": top,
        "error": s.error,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.smoke else 5)
    if repeat < 1:
        build_parser().error("--repeat must be at least 1")
    versions: list[compare.Version] = []
    if args.compare is not None:
        try:
            versions = [
                compare.materialise(n, args.workdir.resolve()) for n in compare.parse(args.compare)
            ]
        except (ValueError, compare.CompareError) as exc:
            build_parser().error(str(exc))
    own = compare.ROOT if args.worktree else None
    selected = args.runs or [*(r.name for r in RUNS), "queue", "scale", *memory.CHECKS]
    if versions:
        selected = [name for name in selected if name not in (*CHECKS, *memory.CHECKS)]
    if args.big and "big" not in selected:
        selected.append("big")
    runs = [r for r in RUNS if r.name in selected]
    if runs and REFERENCE not in selected:
        # Every ratio needs the reference measured in the same rounds.
        runs.insert(0, RUNS[0])
    workdir: Path = args.workdir.resolve()
    logdir = workdir / "logs"
    workdir.mkdir(parents=True, exist_ok=True)

    specs = corpus.specs(smoke=args.smoke)
    wanted = list(args.corpus)
    if ("queue" in selected or "scale" in selected or args.profile) and "small" not in wanted:
        wanted.append("small")  # the checks and the profile use the small files
    corpora = {name: corpus.build(specs[name], workdir, log=_log) for name in wanted}

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    started = machine()  # the commit and code state at the start, not after the runs
    samples: dict[tuple[str, str, str | None], RunResult] = {}
    for rep in range(repeat):
        for cname in args.corpus:
            c = corpora[cname]
            for run in runs:
                ours = run.sender not in ("dcmtk", "dcmtk-parallel") or run.receiver != "storescp"
                # Alternate the versions' order from round to round.
                sides = (versions if rep % 2 == 0 else versions[::-1]) if ours else []
                for version in sides or [None]:
                    label = f"{run.name}{'@' + version.name if version else ''}"
                    _log(f"round {rep + 1}/{repeat}: {label} on {c.name}")
                    s = measure(
                        run,
                        [c.directory],
                        c.count,
                        logdir=logdir,
                        tag=f"{run.name}-{c.name}-{rep}"
                        + (f"-{version.resolved.split()[0]}" if version else ""),
                        timeout=args.timeout,
                        dcmtk_profile=c.dcmtk_profile(),
                        tree=(version.tree if version else own) if ours else None,
                    )
                    if s.error:
                        _log(f"  {label} on {c.name}: {s.error}")
                    key = (run.name, cname, version.name if version else None)
                    result = samples.setdefault(
                        key, RunResult(run, c, [], version=version.name if version else None)
                    )
                    result.samples.append(s)
    results = list(samples.values())
    fill_ratios(results)

    check_results: list[dict[str, Any]] = []
    small = corpora.get("small")
    if "queue" in selected and small is not None:
        n = args.queue_files or (2_000 if args.smoke else 100_000)
        check_results.append(
            checks.queue_check(small, workdir, count=n, logdir=logdir, log=_log, tree=own)
        )
    if "scale" in selected and small is not None:
        sizes = (100, 1_000) if args.smoke else (1_000, 10_000, 100_000)
        check_results.append(
            checks.scale_check(
                small,
                workdir,
                sizes=sizes,
                repeat=repeat,
                logdir=logdir,
                timeout=args.timeout,
                log=_log,
                tree=own,
            )
        )
    if "big" in selected:
        size = min(args.big_bytes, 16 * MB) if args.smoke else args.big_bytes
        check_results.append(
            checks.big_check(
                workdir, size_bytes=size, logdir=logdir, timeout=args.timeout, log=_log, tree=own
            )
        )

    check_results += memory.run(
        selected, workdir, smoke=args.smoke, logdir=logdir, timeout=args.timeout, log=_log
    )

    report: dict[str, Any] = {
        "machine": {
            **started,
            "load_average_at_start": load_at_start,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "repeat": repeat,
        "smoke": args.smoke,
        "code": str(own) if own else "installed",
        "corpora": {
            name: {
                "files": c.count,
                "bytes": c.total_bytes,
                "description": c.description,
                "directory": str(c.directory),
            }
            for name, c in corpora.items()
        },
        "runs": [r.to_dict() for r in results],
        "checks": check_results,
    }
    if versions:
        report["compare"] = {
            "versions": [
                {"name": v.name, "resolved": v.resolved, "tree": str(v.tree)} for v in versions
            ]
        }
    if args.profile and small is not None:
        # With --compare, the second version is profiled (usually the worktree).
        report["profile"] = profile_small(
            small, workdir, logdir, args.timeout, versions[-1].tree if versions else own
        )
    (workdir / "last.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        if versions:
            print()
            print(compare.render(report))
    # A run that produced no figure fails the command, so CI's smoke run cannot rot.
    failed = [r.run.name for r in results if r.error and not r.run.context]
    failed += [str(c["check"]) for c in check_results if c.get("error")]
    return 1 if failed else 0
