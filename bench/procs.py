"""External processes of a benchmark run: DCMTK programs, our child processes, and the
bookkeeping (wall time, CPU time and peak RSS of exactly one process).

A sender is always a process of its own, so ``os.wait4`` on its pid gives its CPU time
and peak RSS without the runner's own cost mixed in.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.programs import dcmtk_env, find_dcmtk
from tests.support.programs import free_port as _free_port

PDU = 16384
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """A run could not be carried out (missing program, a peer that never came up, a
    sender that failed): reported in the table instead of a figure."""


def dcmtk_tool(name: str) -> str:
    """Absolute path of a DCMTK program (looked up as the test suites do)."""
    path = find_dcmtk(name)
    if path is None:
        raise BenchError(f"DCMTK program {name!r} not found (apt-get install dcmtk)")
    return path


def free_port() -> int:
    """A port the kernel just handed out, for DCMTK storescp (which cannot bind port 0
    and report it)."""
    return _free_port(HOST)


def child_env(tree: Path | None = None) -> dict[str, str]:
    """Environment of our Python children: output unbuffered, TCP_NODELAY set (for any
    DCMTK program they might start; our own sockets set it themselves). ``tree`` is a
    source tree whose ``scu`` and ``mock_scp`` the child imports instead of the installed
    ones (``--compare``)."""
    env = dcmtk_env()
    env["PYTHONUNBUFFERED"] = "1"
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


CHILD = Path(__file__).resolve().parent / "child.py"
_LAUNCH = "import runpy, sys; sys.argv[0] = {path!r}; runpy.run_path({path!r}, run_name='__main__')"


def child_command(*args: str) -> list[str]:
    """Run ``bench/child.py`` by path, from a cwd outside the checkout (see ``run_measured``),
    so that the child imports the *installed* ``scu`` and ``mock_scp`` (under tox: the
    wheel), not the source tree that ``python -m bench`` put on the runner's path."""
    return [sys.executable, "-c", _LAUNCH.format(path=str(CHILD)), *args]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once something accepts on ``port``; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"receiver exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BenchError(f"nothing listening on port {port} after {timeout:.0f} s")


def _vm_hwm_kb(pid: int) -> int:
    """Peak RSS of ``pid``'s current program, 0 once it has exited.

    Not ``ru_maxrss`` from ``wait4``: Linux carries the high-water mark of the memory
    image a process had before ``exec`` into it, so every child of this (numpy-laden)
    runner would report the runner's own RSS. ``VmHWM`` is reset by ``exec``.
    """
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Finished:
    """How one process ended: exit code, wall seconds from spawn to exit, its CPU time
    (with its reaped children) from ``wait4``, and its peak RSS sampled every 10 ms."""

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_kb: int
    stdout: str
    stderr: str

    def json_tail(self) -> dict[str, Any]:
        """The last line of stdout as JSON: what ``bench/child.py`` reports."""
        for line in reversed(self.stdout.strip().splitlines()):
            if line.startswith("{"):
                data: dict[str, Any] = json.loads(line)
                return data
        raise BenchError(
            f"child printed no result (exit {self.returncode}): {last_line(self.stderr)}"
        )


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str], timeout: float, logdir: Path, tag: str
) -> Finished:
    """Run ``cmd`` to completion; wall time, CPU time and peak RSS come from ``wait4``
    on its pid, so they describe this process only."""
    logdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logdir / f"{tag}.out", logdir / f"{tag}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=err, cwd=logdir)
        box: list[tuple[int, int, Any, float]] = []

        def reap() -> None:
            pid, status, usage = os.wait4(proc.pid, 0)
            box.append((pid, status, usage, time.perf_counter()))

        # A blocking wait4 in a thread: polling for the exit would add its interval to
        # every figure. Meanwhile this thread samples the peak RSS (see _vm_hwm_kb).
        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        peak = 0
        deadline = time.monotonic() + timeout
        while not box and time.monotonic() < deadline:
            peak = max(peak, _vm_hwm_kb(proc.pid))
            reaper.join(0.01)
        if not box:
            proc.kill()
            reaper.join(10)
            raise BenchError(f"{tag}: still running after {timeout:.0f} s, killed")
    _, status, usage, end = box[0]
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Finished(
        returncode=proc.returncode,
        wall_seconds=end - start,
        cpu_seconds=float(usage.ru_utime + usage.ru_stime),
        peak_rss_kb=peak,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


@dataclass
class Receiver:
    """A running receiver on ``port``; ``summary`` is filled when it stops (the mock
    reports how many stores it journaled and what it cost)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][-300:] if lines else "(no output)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def storescp(logdir: Path, tag: str) -> Iterator[Receiver]:
    """DCMTK storescp --fork --ignore: receives every store and throws the data away.

    ``--fork`` so that several associations (our SCU at concurrency N, or the readiness
    probe) are served at once, as a PACS would; ``+xa`` accepts the compressed syntaxes
    of the mixed set.
    """
    port = free_port()
    logdir.mkdir(parents=True, exist_ok=True)
    with (logdir / f"{tag}.storescp.log").open("wb") as log:
        cmd = [dcmtk_tool("storescp"), "--fork", "--ignore", "+xa", "-pdu", str(PDU), str(port)]
        proc = subprocess.Popen(cmd, env=dcmtk_env(), stdout=log, stderr=log, cwd=logdir)
        try:
            wait_for_port(port, proc, timeout=10)
            yield Receiver("storescp", port, proc)
        finally:
            _stop(proc)


@contextmanager
def mock_server(
    logdir: Path, tag: str, *, as_user: bool = False, tree: Path | None = None
) -> Iterator[Receiver]:
    """Our MockScp in a child process (``bench/child.py serve``), journal on. It prints its
    port, serves until its stdin closes, then prints a JSON summary, which lands in the
    receiver's ``summary`` when this context exits. ``as_user``: built as the README
    shows (``MockScp("PACS")``, every default), not with the benchmark's settings."""
    logdir.mkdir(parents=True, exist_ok=True)
    err_path = logdir / f"{tag}.mock.err"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            child_command("serve", *(["--as-user"] if as_user else [])),
            env=child_env(tree),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=logdir,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            _stop(proc)
            raise BenchError(f"MockScp did not start: {last_line(err_path.read_text())}")
        rec = Receiver("mock", int(json.loads(line)["port"]), proc)
        try:
            yield rec
        finally:
            try:
                out, _ = proc.communicate(input=b"", timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            for raw in reversed(out.decode(errors="replace").splitlines()):
                if raw.startswith("{"):
                    rec.summary = json.loads(raw)
                    break


@contextmanager
def scukit_serve(logdir: Path, tag: str, *, tree: Path | None = None) -> Iterator[Receiver]:
    """``scukit serve`` as an operator starts it (``python -m scu.cli serve``, every
    default, port 0); stopped with SIGINT, after which it prints its summary."""
    logdir.mkdir(parents=True, exist_ok=True)
    err_path = logdir / f"{tag}.serve.err"
    cmd = [sys.executable, "-m", "scu.cli", "serve", "--port", "0", "--ae-title", "PACS"]
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            cmd, env=child_env(tree), stdout=subprocess.PIPE, stderr=err, cwd=logdir
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode(errors="replace")
        match = re.search(r"listening on .*:(\d+)\s*$", line)
        if match is None:
            _stop(proc)
            raise BenchError(
                f"scukit serve did not start: {line.strip() or last_line(err_path.read_text())}"
            )
        rec = Receiver("serve", int(match.group(1)), proc)
        try:
            yield rec
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            summary = re.search(r"summary: (\d+) stores", out.decode(errors="replace"))
            if summary is not None:
                rec.summary = {"received": int(summary.group(1))}
