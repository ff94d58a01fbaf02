"""What the benchmark runs, as data, and how one measurement is taken.

A *run* sends a whole corpus from one sender to one receiver; the reference run
(DCMTK storescu -> DCMTK storescp --fork --ignore) is measured in the same process and the
same rounds as the others, and every other run is reported as a ratio to it.
A *check* measures one of the memory and scaling targets.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import procs
from bench.corpus import Corpus

Sender = Literal["dcmtk", "dcmtk-parallel", "scu", "pynetdicom"]
ReceiverKind = Literal["storescp", "mock", "mock-user", "serve"]


@dataclass(frozen=True)
class RunDef:
    """One sender -> receiver pairing."""

    name: str
    sender: Sender
    receiver: ReceiverKind
    concurrency: int
    label: str
    #: A run for context only (not ours, not the reference): its failure is reported but
    #: does not fail the command. Plain pynetdicom loses C-STORE responses now and then
    #: (its reactor race, pynetdicom issues 842 and 435), more often on a loaded machine.
    context: bool = False


REFERENCE = "reference"

RUNS: tuple[RunDef, ...] = (
    RunDef(REFERENCE, "dcmtk", "storescp", 1, "DCMTK storescu -> DCMTK storescp --fork --ignore"),
    RunDef("scu-c1", "scu", "storescp", 1, "StoreScu c=1 -> DCMTK storescp --fork --ignore"),
    RunDef("scu-c2", "scu", "storescp", 2, "StoreScu c=2 -> DCMTK storescp --fork --ignore"),
    RunDef("scu-c4", "scu", "storescp", 4, "StoreScu c=4 -> DCMTK storescp --fork --ignore"),
    RunDef(
        "dcmtk-2p",
        "dcmtk-parallel",
        "storescp",
        2,
        "2 DCMTK storescu in parallel -> storescp",
        context=True,
    ),
    RunDef("dcmtk-mock", "dcmtk", "mock", 1, "DCMTK storescu -> MockScp (journal on)"),
    RunDef("scu-mock", "scu", "mock", 1, "StoreScu c=1 -> MockScp (journal on)"),
    RunDef("dcmtk-user", "dcmtk", "mock-user", 1, 'DCMTK storescu -> MockScp("PACS") as shown'),
    RunDef("dcmtk-serve", "dcmtk", "serve", 1, "DCMTK storescu -> scukit serve"),
    RunDef(
        "pynetdicom",
        "pynetdicom",
        "storescp",
        1,
        "plain pynetdicom, from paths -> storescp",
        context=True,
    ),
)

#: Memory and scaling checks; "big" writes a 1 GB file, so only on request.
CHECKS = ("queue", "scale", "big")

MB = 1_000_000
MIB = 1024 * 1024


@dataclass
class Sample:
    """One measurement of one run on one corpus."""

    seconds: float = 0.0
    process_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_kb: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.seconds > 0


def _receiver(
    run: RunDef, logdir: Path, tag: str, tree: Path | None
) -> AbstractContextManager[procs.Receiver]:
    if run.receiver == "storescp":
        return procs.storescp(logdir, tag)
    if run.receiver == "serve":
        return procs.scukit_serve(logdir, tag, tree=tree)
    return procs.mock_server(logdir, tag, as_user=run.receiver == "mock-user", tree=tree)


def send_command(
    run: RunDef,
    addr: str,
    sources: list[Path],
    profile: Path | None = None,
    tree: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The sender's command line and environment for ``sources`` (folders or files);
    ``profile`` is DCMTK's negotiation profile for the corpus; ``tree`` the source tree
    our children import (``--compare``)."""
    host, port = addr.rsplit(":", 1)
    if run.sender == "dcmtk":
        # +sd scans the folders itself, so 2,000 (or 100,000) files never meet argv limits.
        cmd = [procs.dcmtk_tool("storescu"), "-pdu", str(procs.PDU), "+sd", "+sp", "*.dcm"]
        if profile is not None:
            cmd += ["-xf", str(profile), "Bench"]
        return [*cmd, host, port, *map(str, sources)], procs.dcmtk_env()
    args = [a for p in sources for a in ("--file" if p.is_file() else "--dir", str(p))]
    if run.sender == "dcmtk-parallel":
        dirs = [a for p in sources for a in ("--dir", str(p))]
        extra = ["--xf", str(profile)] if profile is not None else []
        cmd = procs.child_command(
            "dcmtk-parallel", "--addr", addr, "--processes", str(run.concurrency),
            "--storescu", procs.dcmtk_tool("storescu"), *extra, *dirs,
        )  # fmt: skip
        return cmd, procs.dcmtk_env()
    if run.sender == "scu":
        cmd = procs.child_command(
            "send", "--addr", addr, "--concurrency", str(run.concurrency), *args
        )
    else:
        cmd = procs.child_command("pynetdicom", "--addr", addr, *args)
    return cmd, procs.child_env(tree)


def measure(
    run: RunDef,
    sources: list[Path],
    expected: int,
    *,
    logdir: Path,
    tag: str,
    timeout: float,
    profile: Path | None = None,
    dcmtk_profile: Path | None = None,
    tree: Path | None = None,
    first: bool = False,
) -> Sample:
    """Start the receiver, send ``sources`` once, and account for it. ``tree``: the
    source tree whose ``scu`` and ``mock_scp`` our processes run (``--compare``);
    ``first``: the sender reports when its first entry was announced."""
    try:
        with _receiver(run, logdir, tag, tree) as rec:
            cmd, env = send_command(run, rec.addr, sources, dcmtk_profile, tree)
            if profile is not None:
                cmd += ["--profile", str(profile)]
            if first:
                cmd += ["--first"]
            done = procs.run_measured(cmd, env=env, timeout=timeout, logdir=logdir, tag=tag)
    except procs.BenchError as exc:
        return Sample(error=str(exc))
    except OSError as exc:
        return Sample(error=f"{type(exc).__name__}: {exc}")
    sample = Sample(
        cpu_seconds=done.cpu_seconds,
        peak_rss_kb=done.peak_rss_kb,
        process_seconds=done.wall_seconds,
    )
    if run.sender == "dcmtk":
        # Spawn to exit: DCMTK starts in milliseconds, and reads its files in that time.
        sample.seconds = done.wall_seconds
        if done.returncode != 0:
            sample.error = f"storescu exit {done.returncode}: {procs.last_line(done.stderr)}"
    else:
        try:
            info = done.json_tail()
        except procs.BenchError as exc:
            sample.error = str(exc)
            return sample
        sample.extra = info
        if tree is not None and not str(info.get("scu_file", "")).startswith(str(tree)):
            sample.error = f"measured the wrong code: scu from {info.get('scu_file')}, not {tree}"
            return sample
        # Our children time queueing plus the transfer: interpreter start-up and imports
        # are a fixed cost of any Python program, not of its send path (process_seconds
        # keeps the spawn-to-exit figure).
        sample.seconds = float(info.get("seconds", 0.0))
        sample.cpu_seconds = float(info.get("cpu_seconds", done.cpu_seconds))
        sample.peak_rss_kb = max(done.peak_rss_kb, int(info.get("peak_rss_kb", 0)))
        if info.get("error") or info.get("failed"):
            sample.error = (
                f"{info.get('failed', '?')} of {info.get('files', '?')} failed: "
                f"{info.get('first_error') or info.get('error')}"
            )
        elif info.get("files") != expected:
            sample.error = f"sent {info.get('files')} files, expected {expected}"
    if run.receiver != "storescp" and sample.error is None:
        got = rec.summary.get("received")
        sample.extra["receiver"] = rec.summary
        mock_file = str(rec.summary.get("mock_file", ""))
        if tree is not None and mock_file and not mock_file.startswith(str(tree)):
            sample.error = f"measured the wrong code: mock_scp from {mock_file}, not {tree}"
            return sample
        if got != expected:
            sample.error = f"MockScp journaled {got} stores, expected {expected}"
    return sample


@dataclass
class RunResult:
    """The medians of one run on one corpus, and its ratio to the reference."""

    run: RunDef
    corpus: Corpus
    samples: list[Sample]
    ratio: float | None = None
    #: The code measured (``--compare``): a git revision or "worktree"; None otherwise.
    version: str | None = None

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    def _median(self, key: Callable[[Sample], float]) -> float | None:
        good = self.good
        return statistics.median(key(s) for s in good) if good else None

    @property
    def seconds(self) -> float | None:
        return self._median(lambda s: s.seconds)

    @property
    def files_per_second(self) -> float | None:
        secs = self.seconds
        return self.corpus.count / secs if secs else None

    @property
    def mb_per_second(self) -> float | None:
        secs = self.seconds
        return self.corpus.total_bytes / MB / secs if secs else None

    @property
    def cpu_seconds(self) -> float | None:
        return self._median(lambda s: s.cpu_seconds)

    @property
    def peak_rss_mib(self) -> float | None:
        good = self.good
        return max(s.peak_rss_kb for s in good) / 1024 if good else None

    @property
    def error(self) -> str | None:
        errors = [s.error for s in self.samples if s.error]
        if not errors:
            return None
        return f"{len(errors)}/{len(self.samples)} failed: {errors[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.name,
            "version": self.version,
            "label": self.run.label,
            "corpus": self.corpus.name,
            "sender": self.run.sender,
            "receiver": self.run.receiver,
            "concurrency": self.run.concurrency,
            "context": self.run.context,
            "files": self.corpus.count,
            "bytes": self.corpus.total_bytes,
            "seconds": self.seconds,
            "files_per_second": self.files_per_second,
            "mb_per_second": self.mb_per_second,
            "ratio": self.ratio,
            "peak_rss_mib": self.peak_rss_mib,
            "cpu_seconds": self.cpu_seconds,
            "error": self.error,
            "samples": [
                {
                    "seconds": s.seconds,
                    "process_seconds": s.process_seconds,
                    "cpu_seconds": s.cpu_seconds,
                    "peak_rss_kb": s.peak_rss_kb,
                    "error": s.error,
                    **({"receiver": s.extra["receiver"]} if "receiver" in s.extra else {}),
                    **({"scu_file": s.extra["scu_file"]} if "scu_file" in s.extra else {}),
                }
                for s in self.samples
            ],
        }


def fill_ratios(results: list[RunResult]) -> None:
    """Ratio of files/s to the reference run on the same corpus."""
    ref = {r.corpus.name: r.files_per_second for r in results if r.run.name == REFERENCE}
    for r in results:
        fps, base = r.files_per_second, ref.get(r.corpus.name)
        r.ratio = fps / base if fps and base else None
