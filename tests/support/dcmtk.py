"""Run DCMTK's ``storescp`` as a real receiving peer in tests.

``run_storescp(...)`` is a context manager: it starts ``storescp`` on 127.0.0.1 and a free
port (retrying with a new port if another process wins the bind race), waits until the
process itself is listening, yields a :class:`StoreScp` handle and stops the process at
exit. The ``storescp_factory`` fixture wraps it for tests (import it into a conftest).

Files written by ``storescp -od`` can be read back with :func:`received_sop_instance_uids`.
The options map one to one onto storescp's own flags (see ``storescp --help`` and the
pitfalls in ANCHORS.md: ``+xe`` only *prefers* Explicit VR LE; only a ``-xf`` profile
really restricts; ``--sleep-during`` sleeps on every PDU received).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pydicom
import pytest

from tests.support.tools import dcmtk_env, dcmtk_tool, free_port

__all__ = [
    "ServerProcess",
    "StoreScp",
    "StoreScpStartError",
    "listening",
    "received_files",
    "received_sop_instance_uids",
    "run_storescp",
    "spawn",
    "storescp_factory",
    "storescp_starter",
    "write_profile",
]

#: Log lines that mean "somebody else got the port first": start again on another port.
_BIND_RACE_MARKERS = ("address already in use", "cannot listen", "bind")


class StoreScpStartError(RuntimeError):
    """storescp did not start listening; the message carries its command line and log."""


@dataclass
class ServerProcess:
    """An external server started by a test harness: its process and its log file.
    Shared by :class:`StoreScp` and :class:`support.orthanc.Orthanc`."""

    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _final_log: str | None = field(default=None, repr=False, init=False)

    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr); kept after stop()."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def listening_on(self, port: int) -> bool:
        """Whether this very process (not another one that won a port race) listens."""
        return listening(self.process.pid, port)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; keeps the log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._final_log is None:
            self._final_log = self.log_path.read_text(errors="replace")


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a TCP socket listening on ``port``."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def spawn(
    args: Sequence[str], log_path: Path, *, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` with ``dcmtk_env()`` (TCP_NODELAY), output into ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dcmtk_env(),
            cwd=cwd,
        )


@dataclass(kw_only=True)
class StoreScp(ServerProcess):
    """A running ``storescp``: where it listens, where it writes, what it logged."""

    host: str
    port: int
    ae_title: str
    out_dir: Path | None
    args: list[str]

    @property
    def addr(self) -> str:
        """``"host:port"`` as :class:`scu.StoreScu` takes it."""
        return f"{self.host}:{self.port}"

    def received_files(self) -> list[Path]:
        """Files storescp wrote into ``out_dir`` (sorted by name)."""
        if self.out_dir is None:
            raise ValueError("this storescp was started with ignore=True: it wrote no files")
        return received_files(self.out_dir)

    def received_sop_instance_uids(self) -> list[str]:
        """SOP Instance UIDs of the files in ``out_dir``, one per file."""
        if self.out_dir is None:
            raise ValueError("this storescp was started with ignore=True: it wrote no files")
        return received_sop_instance_uids(self.out_dir)

    def clear(self) -> None:
        """Remove the files received so far (between sends to the same storescp)."""
        for path in self.received_files():
            path.unlink()


def received_files(out_dir: Path) -> list[Path]:
    """Regular files in ``out_dir`` (storescp writes one per stored instance)."""
    return sorted(p for p in Path(out_dir).iterdir() if p.is_file())


def received_sop_instance_uids(out_dir: Path) -> list[str]:
    """The SOP Instance UID of each file storescp wrote, read back from the file itself."""
    uids = []
    for path in received_files(out_dir):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        uids.append(str(ds.SOPInstanceUID))
    return uids


def write_profile(
    path: Path,
    *,
    sop_classes: Sequence[str],
    transfer_syntaxes: Sequence[str],
    name: str = "Restricted",
) -> tuple[Path, str]:
    """Write a DCMTK association negotiation profile (for ``profile=``) that accepts
    exactly ``sop_classes`` (UIDs) with exactly ``transfer_syntaxes`` (UIDs, in order of
    preference). Returns ``(file, profile_name)``; storescp allows at most 128 contexts."""
    if not 1 <= len(sop_classes) <= 128:
        raise ValueError(f"a profile holds 1..128 SOP classes, got {len(sop_classes)}")
    lines = ["[[TransferSyntaxes]]", "[Syntaxes]"]
    lines += [f"TransferSyntax{i} = {uid}" for i, uid in enumerate(transfer_syntaxes, 1)]
    lines += ["", "[[PresentationContexts]]", "[Contexts]"]
    lines += [f"PresentationContext{i} = {uid}\\Syntaxes" for i, uid in enumerate(sop_classes, 1)]
    lines += ["", "[[Profiles]]", f"[{name}]", "PresentationContexts = Contexts", ""]
    path.write_text("\n".join(lines))
    return path, name


def _options(
    *,
    ae_title: str,
    out_dir: Path | None,
    accept_all: bool,
    profile: tuple[Path, str] | None,
    refuse: bool,
    reject: bool,
    abort_after: bool,
    abort_during: bool,
    sleep_during: int | None,
    sleep_after: int | None,
    max_pdu: int | None,
    promiscuous: bool,
    unique_filenames: bool,
    extra_args: Sequence[str],
) -> list[str]:
    # -dhl: no reverse DNS lookups on loopback; -v: the log explains failures.
    args = ["-v", "-dhl", "-aet", ae_title]
    if out_dir is None:
        args.append("--ignore")
    else:
        args += ["-od", str(out_dir), "+uf" if unique_filenames else "-uf"]
    if accept_all:
        args.append("+xa")
    if profile is not None:
        args += ["-xf", str(profile[0]), profile[1]]
    flags = {
        "--refuse": refuse,
        "--reject": reject,
        "--abort-after": abort_after,
        "--abort-during": abort_during,
        "--promiscuous": promiscuous,
    }
    args += [flag for flag, on in flags.items() if on]
    if sleep_during is not None:
        args += ["--sleep-during", str(sleep_during)]
    if sleep_after is not None:
        args += ["--sleep-after", str(sleep_after)]
    if max_pdu is not None:
        args += ["-pdu", str(max_pdu)]
    return args + list(extra_args)


@contextlib.contextmanager
def run_storescp(
    *,
    ae_title: str = "STORESCP",
    out_dir: Path | None = None,
    ignore: bool = False,
    accept_all: bool = False,
    profile: tuple[Path, str] | None = None,
    refuse: bool = False,
    reject: bool = False,
    abort_after: bool = False,
    abort_during: bool = False,
    sleep_during: int | None = None,
    sleep_after: int | None = None,
    max_pdu: int | None = None,
    promiscuous: bool = False,
    unique_filenames: bool = True,
    extra_args: Sequence[str] = (),
    host: str = "127.0.0.1",
    startup_timeout: float = 15.0,
    attempts: int = 5,
) -> Iterator[StoreScp]:
    """Start ``storescp`` and yield a :class:`StoreScp`; stop it at exit.

    Unless ``ignore`` is true, received objects are written (``-od``) into ``out_dir`` or,
    if it is ``None``, a fresh temporary folder; with ``unique_filenames`` (the default,
    ``+uf``) every store gets its own file even when SOP Instance UIDs repeat, so files
    can be counted; ``unique_filenames=False`` names files by SOP Instance UID (``-uf``).
    """
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="storescp-")))
        if not ignore and out_dir is None:
            out_dir = work / "received"
        if out_dir is not None and not ignore:
            out_dir.mkdir(parents=True, exist_ok=True)
        options = _options(
            ae_title=ae_title,
            out_dir=None if ignore else out_dir,
            accept_all=accept_all,
            profile=profile,
            refuse=refuse,
            reject=reject,
            abort_after=abort_after,
            abort_during=abort_during,
            sleep_during=sleep_during,
            sleep_after=sleep_after,
            max_pdu=max_pdu,
            promiscuous=promiscuous,
            unique_filenames=unique_filenames,
            extra_args=extra_args,
        )
        scp = _start(
            work, host, ae_title, None if ignore else out_dir, options, startup_timeout, attempts
        )
        try:
            yield scp
        finally:
            scp.stop()


def _start(
    work: Path,
    host: str,
    ae_title: str,
    out_dir: Path | None,
    options: list[str],
    startup_timeout: float,
    attempts: int,
) -> StoreScp:
    failures: list[str] = []
    for attempt in range(1, attempts + 1):
        port = free_port(host)
        args = [dcmtk_tool("storescp"), *options, str(port)]
        log_path = work / f"storescp-{attempt}.log"
        process = spawn(args, log_path)
        scp = StoreScp(
            log_path=log_path,
            process=process,
            host=host,
            port=port,
            ae_title=ae_title,
            out_dir=out_dir,
            args=args,
        )
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and scp.alive():
            if scp.listening_on(port):
                return scp
            time.sleep(0.02)
        scp.stop(timeout=5)
        text = scp.log()
        failures.append(f"attempt {attempt} ({' '.join(args)}): exit {process.returncode}\n{text}")
        if not any(marker in text.lower() for marker in _BIND_RACE_MARKERS):
            break
    raise StoreScpStartError("storescp did not start listening:\n" + "\n".join(failures))


@contextlib.contextmanager
def storescp_starter(base_dir: Path) -> Iterator[Callable[..., StoreScp]]:
    """Yield ``start(**run_storescp options) -> StoreScp``; every storescp started through
    it is stopped on exit. Default ``out_dir``: a new folder in ``base_dir`` per start."""
    with contextlib.ExitStack() as stack:
        count = 0

        def start(**options: Any) -> StoreScp:
            nonlocal count
            count += 1
            if not options.get("ignore") and options.get("out_dir") is None:
                options["out_dir"] = base_dir / f"storescp-{count}"
            return stack.enter_context(run_storescp(**options))

        yield start


@pytest.fixture
def storescp_factory(tmp_path: Path) -> Iterator[Callable[..., StoreScp]]:
    """The :func:`storescp_starter` of a test (import this fixture into a conftest)."""
    with storescp_starter(tmp_path) as start:
        yield start
