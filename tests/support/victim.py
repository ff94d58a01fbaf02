"""Victims in child processes, so that their memory can be measured on its own: a
MockScp that reports its journal, RSS and threads on request, and a StoreScu send that
reports its result and peak RSS.

Run by path (it imports only the installed ``scu`` and ``mock_scp``)::

    python victim.py mock '{"max_associations": 2}'   # prints {"port": ...}; then one
                                                      # JSON line per "stats" on stdin;
                                                      # EOF stops it (final stats)
    python victim.py send '{"addr": ..., "files": [...], "options": {...}}'

The parent side is :class:`MockProcess` and :func:`send_in_child`.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["MockProcess", "private_tmpfs", "proc_status", "send_in_child"]

HERE = Path(__file__).resolve()


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (kB) and ``Threads`` of a live process (Linux ``/proc``)."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in wanted:
                out[key] = int(value.split()[0])
    return out


# --- the child side ------------------------------------------------------------------------


def _mock_stats(scp: Any) -> dict[str, Any]:
    status = proc_status(os.getpid())
    received = scp.received
    violations = scp.violations
    return {
        "rss_kb": status["VmRSS"],
        "hwm_kb": status["VmHWM"],
        "threads": status["Threads"],
        "received": len(received),
        "stored": len(scp.stored),
        "stores": [
            {
                "status": s.status,
                "action": s.action,
                "complete": s.complete,
                "size": s.size,
                "kept": s.payload is not None and s.payload.in_memory,
                "spilled": s.payload is not None and s.payload.path is not None,
                "comment": s.comment,
                "path": None if s.path is None else str(s.path),
            }
            for s in received[-20:]
        ],
        "refused_connections": scp.refused_connections,
        "associations": len(scp.associations),
        "ends": dict(Counter(a.ended or "open" for a in scp.associations)),
        "end_details": sorted({a.end_detail or "" for a in scp.associations})[:20],
        "violations": len(violations),
        "violation_kinds": dict(Counter(v.kind for v in violations)),
        "violation_samples": [str(v)[:300] for v in violations[:5]],
        "in_memory": scp._payloads.in_memory,
        "errors": [repr(e) for e in scp.errors],
        "store_files": _listing(scp.store_dir),
    }


def _listing(directory: Path | None) -> list[str] | None:
    """Every name in ``directory`` (hidden ones included), or ``None`` without one."""
    if directory is None or not directory.is_dir():
        return None
    return sorted(os.listdir(directory))


def _run_mock(options: dict[str, Any]) -> int:
    from mock_scp import MockScp

    descriptors = options.pop("rlimit_nofile", None)
    if descriptors is not None:  # a process that may open this many files at most
        resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))
    scp = MockScp(**options).start()
    print(json.dumps({"port": scp.port, **_mock_stats(scp)}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(_mock_stats(scp)), flush=True)
    scp.stop()
    print(json.dumps(_mock_stats(scp)), flush=True)
    return 0


def _run_send(spec: dict[str, Any]) -> int:
    from scu import AssociationError, StoreScu, TransferResult

    scu = StoreScu(spec["addr"], **spec.get("options", {}))
    for path in spec["files"]:
        scu.add_file(path)
    baseline = proc_status(os.getpid())["VmRSS"]
    started = time.monotonic()
    error = None
    result: TransferResult | None
    try:
        result = scu.send()
    except AssociationError as exc:
        error = str(exc)
        result = exc.result
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "baseline_rss_kb": baseline,
                "peak_rss_kb": proc_status(os.getpid())["VmHWM"],
                "seconds": seconds,
                "error": error,
                "result": None if result is None else result.to_dict(),
            }
        ),
        flush=True,
    )
    return 0


def main(argv: list[str]) -> int:
    mode, spec = argv[1], json.loads(argv[2])
    if mode == "mock":
        return _run_mock(spec)
    if mode == "send":
        return _run_send(spec)
    raise SystemExit(f"unknown mode {mode!r}")


# --- the parent side -----------------------------------------------------------------------


def _command(mode: str, spec: dict[str, Any]) -> list[str]:
    return [sys.executable, str(HERE), mode, json.dumps(spec)]


def _env() -> dict[str, str]:
    # Not the checkout on the path: the child imports the installed packages.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def private_tmpfs(directory: Path, *, size: str, read_only: bool = False) -> list[str] | None:
    """A command prefix that runs a program with a small tmpfs of its own mounted on
    ``directory`` (read-only if asked), seen by that program alone: in a private mount
    namespace (root), else in a user namespace (an unprivileged user, where the kernel
    allows it). ``None`` when neither is possible here."""
    where = shlex.quote(str(directory))
    script = f"mount -t tmpfs -o size={size},mode=0777 tmpfs {where}"
    if read_only:
        script += f" && mount -o remount,ro {where}"
    script += ' && exec "$@"'
    for unshare in (["unshare", "-m"], ["unshare", "-r", "-m"]):
        try:
            probe = subprocess.run(
                [*unshare, "sh", "-c", script, "sh", "true"], capture_output=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if probe.returncode == 0:
            return [*unshare, "sh", "-c", script, "sh"]
    return None


class MockProcess:
    """A MockScp in a child process; use as a context manager. ``prefix`` runs it under
    another command (see :func:`private_tmpfs`); ``rlimit_nofile`` among the options
    limits the files the child may have open."""

    def __init__(self, *, prefix: list[str] | None = None, **options: Any) -> None:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
        self.proc = subprocess.Popen(
            [*(prefix or []), *_command("mock", options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=HERE.parent,
        )
        first = self._line()
        self.port: int = first["port"]
        self.baseline: dict[str, Any] = first
        self.final: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"the MockScp child died: {self.proc.stderr.read()[-3000:]}")
        data: dict[str, Any] = json.loads(line)
        return data

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self._line()

    def status(self) -> dict[str, int]:
        """RSS, peak RSS and threads now, read from outside (no help from the child)."""
        return proc_status(self.proc.pid)

    def open_files(self) -> int:
        """How many file descriptors the child has open now."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def wait_until(self, check: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll :meth:`stats` until ``check(stats)`` holds; the last stats either way."""
        end = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if check(stats) or time.monotonic() > end:
                return stats
            time.sleep(0.05)

    def __enter__(self) -> MockProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.final = self._line()
            except (OSError, AssertionError, ValueError):
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def send_in_child(spec: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run a StoreScu send in a child; its report (see :func:`_run_send`)."""
    done = subprocess.run(
        _command("send", spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=HERE.parent,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert done.returncode == 0 and lines, (done.returncode, done.stderr[-3000:])
    report: dict[str, Any] = json.loads(lines[-1])
    return report


if __name__ == "__main__":
    # Run by path: this folder is first on the path, and its modules must not shadow
    # anything the child imports.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
    raise SystemExit(main(sys.argv))
