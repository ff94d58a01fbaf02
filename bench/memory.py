"""What the receivers hold in memory under a long stream of stores, measured (never
asserted: the figures go in the report beside what they should stay under).

* ``memory-serve``: N GB through ``scukit serve`` with its defaults (no data set kept):
  the RSS of the serve process at start, at its peak, and at the end, and what each
  store cost it (the journal keeps a record of every one);
* ``memory-mock``: 2 GB through a MockScp in a Python process with its default
  settings (data sets kept in memory up to ``memory_budget``, 128 MiB, spilled to files
  beyond): its peak RSS against its baseline plus the budget plus 100 MB.

The sender is StoreScu in a process of its own (``bench/child.py send``); the receiver's
RSS is sampled from ``/proc`` every 20 ms while it runs, and ``VmHWM`` gives its peak.
The stores are one 4 MiB file queued again and again (hard links in a folder).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import corpus, procs
from bench.runs import MIB

__all__ = ["CHECKS", "render", "run"]

CHECKS = ("memory-serve", "memory-mock")
GB = 1_000_000_000
#: The default memory budget of a MockScp (its ``memory_budget``).
BUDGET = 128 * MIB
FILE_BYTES = 4 * MIB


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _corpus(workdir: Path, total_bytes: int) -> tuple[Path, int, int]:
    """A folder of hard links to one 4 MiB file, as many as ``total_bytes`` needs."""
    source = corpus.big_file(workdir / "memory", size_bytes=FILE_BYTES)
    size = source.stat().st_size
    count = max(1, total_bytes // size)
    return corpus.link_farm([source], count, workdir / f"memory-links-{count}"), count, size


def _send_and_watch(
    addr: str, farm: Path, receiver_pid: int, *, logdir: Path, tag: str, timeout: float
) -> tuple[dict[str, Any], dict[str, int], int, float]:
    """Send the folder from a child; the sender's report, the receiver's status at the
    end, and its largest RSS sampled meanwhile (kB)."""
    out_path, err_path = logdir / f"{tag}.send.out", logdir / f"{tag}.send.err"
    started = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        sender = subprocess.Popen(
            procs.child_command("send", "--addr", addr, "--dir", str(farm)),
            env=procs.child_env(),
            stdout=out,
            stderr=err,
            cwd=logdir,
        )
        largest = 0
        deadline = time.monotonic() + timeout
        while sender.poll() is None:
            if time.monotonic() > deadline:
                sender.kill()
                sender.wait()
                raise procs.BenchError(f"{tag}: the sender still ran after {timeout:.0f} s")
            largest = max(largest, _status(receiver_pid).get("VmRSS", 0))
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    report = procs.Finished(
        sender.returncode, seconds, 0.0, 0, out_path.read_text(), err_path.read_text()
    ).json_tail()
    if report.get("failed"):
        raise procs.BenchError(
            f"{tag}: {report['failed']} of {report['files']} stores failed: "
            f"{report.get('first_error')}"
        )
    return report, _status(receiver_pid), largest, seconds


def _figures(
    name: str, baseline: dict[str, int], end: dict[str, int], largest: int, **extra: Any
) -> dict[str, Any]:
    peak = max(end.get("VmHWM", 0), largest)
    return {
        "check": name,
        "baseline_rss_mib": baseline["VmRSS"] / 1024,
        "peak_rss_mib": peak / 1024,
        "final_rss_mib": end.get("VmRSS", 0) / 1024,
        "above_baseline_mib": (peak - baseline["VmRSS"]) / 1024,
        "error": None,
        **extra,
    }


def serve_check(
    workdir: Path, *, total_bytes: int, logdir: Path, timeout: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """``total_bytes`` through ``scukit serve`` (no data set kept)."""
    name = "memory-serve"
    result: dict[str, Any] = {"check": name, "target": "serve keeps no data set: RSS flat"}
    farm, count, size = _corpus(workdir, total_bytes)
    log(f"check {name}: {count} stores of {size / MIB:.0f} MiB through scukit serve")
    logdir.mkdir(parents=True, exist_ok=True)
    serve_log = logdir / f"{name}.serve.out"
    with serve_log.open("wb") as out, (logdir / f"{name}.serve.err").open("wb") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "mock_scp.cli"],
            env=procs.child_env(),
            stdout=out,
            stderr=err,
            cwd=logdir,
        )
        try:
            port = _listening(serve_log, server)
            baseline = _status(server.pid)
            report, end, largest, seconds = _send_and_watch(
                f"{procs.HOST}:{port}", farm, server.pid, logdir=logdir, tag=name, timeout=timeout
            )
        except procs.BenchError as exc:
            return {**result, "error": str(exc)}
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    figures = _figures(name, baseline, end, largest, **result)
    growth_kb = end.get("VmRSS", 0) - baseline["VmRSS"]
    return {
        **figures,
        "stores": report["successful"],
        "bytes": count * size,
        "seconds": seconds,
        "mb_per_second": count * size / 1e6 / seconds if seconds else None,
        "per_store_kib": growth_kb / count if count else None,
    }


def _listening(log_path: Path, server: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise procs.BenchError(f"scukit serve exited with {server.returncode}")
        first = log_path.read_text().partition("\n")
        if first[1] and first[0].startswith("listening on "):
            return int(first[0].rpartition(":")[2])
        time.sleep(0.05)
    raise procs.BenchError("scukit serve printed no 'listening on' line within 60 s")


def mock_check(
    workdir: Path, *, total_bytes: int, logdir: Path, timeout: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """``total_bytes`` through a MockScp with its default settings, in a process of its
    own (``bench/child.py serve``)."""
    name = "memory-mock"
    result: dict[str, Any] = {
        "check": name,
        "target": f"RSS < baseline + memory_budget ({BUDGET // MIB} MiB) + 100 MB",
    }
    farm, count, size = _corpus(workdir, total_bytes)
    log(f"check {name}: {count} stores of {size / MIB:.0f} MiB through an in-process MockScp")
    try:
        with procs.mock_server(logdir, name) as receiver:
            baseline = _status(receiver.proc.pid)
            report, end, largest, seconds = _send_and_watch(
                receiver.addr, farm, receiver.proc.pid, logdir=logdir, tag=name, timeout=timeout
            )
    except procs.BenchError as exc:
        return {**result, "error": str(exc)}
    figures = _figures(name, baseline, end, largest, **result)
    return {
        **figures,
        "stores": report["successful"],
        "journaled": receiver.summary.get("received"),
        "bytes": count * size,
        "seconds": seconds,
        "mb_per_second": count * size / 1e6 / seconds if seconds else None,
        "budget_mib": BUDGET / MIB,
        "within_target": figures["above_baseline_mib"] < BUDGET / MIB + 100e6 / MIB,
    }


def run(
    selected: Sequence[str],
    workdir: Path,
    *,
    smoke: bool,
    logdir: Path,
    timeout: float,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The memory checks among ``selected``; smoke runs stream 64 MB instead of GBs."""
    out = []
    if "memory-serve" in selected:
        size = 64 * MIB if smoke else 20 * GB
        out.append(
            serve_check(
                workdir, total_bytes=size, logdir=logdir, timeout=max(timeout, 3600), log=log
            )
        )
    if "memory-mock" in selected:
        size = 64 * MIB if smoke else 2 * GB
        out.append(
            mock_check(
                workdir, total_bytes=size, logdir=logdir, timeout=max(timeout, 1200), log=log
            )
        )
    return out


def render(check: dict[str, Any]) -> str:
    """One line of the report's checks for a memory figure."""
    head = (
        f"  {check['check']} {check['bytes'] / GB:,.2f} GB in {check['stores']:,} stores, "
        f"{check['mb_per_second']:.0f} MB/s: RSS {check['baseline_rss_mib']:.1f} MiB at start, "
        f"peak {check['peak_rss_mib']:.1f} (+{check['above_baseline_mib']:.1f}), "
        f"{check['final_rss_mib']:.1f} at the end"
    )
    if check["check"] == "memory-serve":
        return f"{head}, {check['per_store_kib']:.2f} KiB per store [{check['target']}]"
    return f"{head} [{check['target']}]"
