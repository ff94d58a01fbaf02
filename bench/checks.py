"""The memory and scaling checks, measured (never asserted: the figures go in the report,
the thresholds in the notes beside them)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import corpus, procs
from bench.runs import MB, RUNS, RunDef, measure

SCU_C1: RunDef = next(r for r in RUNS if r.name == "scu-c1")


def queue_check(
    small: corpus.Corpus,
    workdir: Path,
    *,
    count: int,
    logdir: Path,
    log: Callable[[str], None],
    tree: Path | None = None,
) -> dict[str, Any]:
    """RSS of a StoreScu holding ``count`` queued files (target: 100,000 under 100 MB)."""
    farm = corpus.link_farm(small.files, count, workdir / f"links-{count}")
    log(f"check queue: {count} files queued")
    result: dict[str, Any] = {"check": "queue", "files": count, "target": "RSS < 100 MB"}
    try:
        done = procs.run_measured(
            procs.child_command("queue", "--dir", str(farm)),
            env=procs.child_env(tree),
            timeout=600,
            logdir=logdir,
            tag=f"queue-{count}",
        )
        info = done.json_tail()
    except procs.BenchError as exc:
        return {**result, "error": str(exc)}
    if done.returncode != 0:
        return {**result, "error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    return {
        **result,
        "seconds": info["seconds"],
        "baseline_rss_mib": info["baseline_rss_kb"] / 1024,
        "queued_rss_mib": info["queued_rss_kb"] / 1024,
        "peak_rss_mib": info["peak_rss_kb"] / 1024,
        "queue_cost_mib": (info["queued_rss_kb"] - info["baseline_rss_kb"]) / 1024,
        "error": None,
    }


def scale_check(
    small: corpus.Corpus,
    workdir: Path,
    *,
    sizes: tuple[int, ...],
    repeat: int,
    logdir: Path,
    timeout: float,
    log: Callable[[str], None],
    tree: Path | None = None,
) -> dict[str, Any]:
    """StoreScu c=1 files/s with queues of ``sizes`` small files, and how long after
    ``send()`` the first entry was announced (its C-STORE-RQ is written right after):
    files/s must not fall as the queue grows, and the first store must not wait for the
    whole queue to be checked (50 ms with 100,000 queued)."""
    farms = {n: corpus.link_farm(small.files, n, workdir / f"links-{n}") for n in sizes}
    rates: dict[int, list[float]] = {n: [] for n in sizes}
    firsts: dict[int, list[float]] = {n: [] for n in sizes}
    peaks: dict[int, int] = {n: 0 for n in sizes}
    errors: list[str] = []
    for rep in range(repeat):
        for n in sizes:  # alternate, so drift hits every size alike
            log(f"check scale: {n} queued, round {rep + 1}/{repeat}")
            s = measure(
                SCU_C1,
                [farms[n]],
                n,
                logdir=logdir,
                tag=f"scale-{n}-{rep}",
                timeout=timeout,
                first=True,
                tree=tree,
            )
            if s.ok:
                rates[n].append(n / s.seconds)
                peaks[n] = max(peaks[n], s.peak_rss_kb)
                if s.extra.get("first_store_seconds") is not None:
                    firsts[n].append(float(s.extra["first_store_seconds"]))
            elif s.error:
                errors.append(s.error)
    med = {n: statistics.median(v) if v else None for n, v in rates.items()}
    first = {n: statistics.median(v) if v else None for n, v in firsts.items()}
    lo, hi = med[sizes[0]], med[sizes[-1]]
    return {
        "check": "scale",
        "files": list(sizes),
        "target": "files/s flat as the queue grows; first store < 50 ms with 100,000 queued",
        "files_per_second": {str(n): med[n] for n in sizes},
        "first_store_seconds": {str(n): first[n] for n in sizes},
        "peak_rss_mib": {str(n): peaks[n] / 1024 for n in sizes},
        "ratio_long_to_short": hi / lo if lo and hi else None,
        "error": errors[0] if errors else None,
    }


def big_check(
    workdir: Path,
    *,
    size_bytes: int,
    logdir: Path,
    timeout: float,
    log: Callable[[str], None],
    tree: Path | None = None,
) -> dict[str, Any]:
    """Peak RSS above the interpreter's baseline while sending one big file (target:
    1 GB under 64 MB above baseline)."""
    log(f"check big: building/using a {size_bytes / MB:.0f} MB file")
    path = corpus.big_file(workdir, size_bytes=size_bytes)
    nbytes = path.stat().st_size
    log("check big: sending it with StoreScu c=1 -> storescp --fork --ignore")
    s = measure(SCU_C1, [path], 1, logdir=logdir, tag="big", timeout=timeout, tree=tree)
    result: dict[str, Any] = {
        "check": "big",
        "bytes": nbytes,
        "target": "peak RSS < 64 MB above baseline",
        "error": s.error,
    }
    if s.extra:
        result.update(
            seconds=s.seconds,
            mb_per_second=nbytes / MB / s.seconds if s.seconds else None,
            baseline_rss_mib=s.extra["baseline_rss_kb"] / 1024,
            peak_rss_mib=s.extra["peak_rss_kb"] / 1024,
            above_baseline_mib=(s.extra["peak_rss_kb"] - s.extra["baseline_rss_kb"]) / 1024,
        )
    return result
