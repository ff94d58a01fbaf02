"""Child processes of the benchmark: one sender or receiver per process, so its CPU time
and peak RSS are measured cleanly. Each prints one JSON line as its last line of stdout.

    python bench/child.py send --addr HOST:PORT (--dir D | --file F)... [--concurrency N]
                               [--s3-endpoint URL]   # D and F may be s3:// URLs
    python bench/child.py pynetdicom --addr HOST:PORT --dir D
    python bench/child.py serve            # MockScp; prints {"port": N}, stops on stdin EOF
    python bench/child.py queue --dir D    # StoreScu queue only, no network
    python bench/child.py dcmtk-parallel --addr HOST:PORT --dir D --processes N

Times are taken around queueing and the transfer (association included; interpreter
start-up and imports excluded, a fixed cost of any Python program, reported by the runner
as process seconds); CPU is this process plus any children it reaped, so a SCU that
uses worker processes is charged for them.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def current_rss_kb() -> int:
    """Resident set size now (Linux ``/proc``), unlike ``ru_maxrss`` which is the peak."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE // 1024


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_rss_kb() -> int:
    """``VmHWM``: unlike ``ru_maxrss`` it does not include the memory image of the
    parent this process was forked from before ``exec``."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def cmd_send(args: argparse.Namespace) -> int:
    from scu import StoreScu

    baseline = current_rss_kb()
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    # Queueing is timed with the send: DCMTK's figure includes scanning its folder too.
    cpu0 = _cpu()
    t0 = time.perf_counter()
    # Only for s3:// sources: the child may run against an installed scu of any version.
    extra = {"storage_options": {"endpoint_url": args.s3_endpoint}} if args.s3_endpoint else {}
    scu = StoreScu(args.addr, max_pdu_length=args.pdu, concurrency=args.concurrency, **extra)
    for d in args.dir:  # a folder, or an s3:// prefix
        scu.add_directory(d, pattern="*.dcm")
    for f in args.file:  # a file, or an s3:// object
        scu.add_file(f)
    t1 = time.perf_counter()
    queued = current_rss_kb()
    first: list[float] = []
    callbacks: dict[str, Any] = {}
    if args.first:
        # When the first entry is announced: its C-STORE-RQ is written right after.
        callbacks["on_file_sending"] = lambda event: first or first.append(time.perf_counter())
    called = time.perf_counter()
    result = scu.send(**callbacks)
    seconds = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    if profiler is not None:
        profiler.disable()
    if profiler is not None:
        profiler.dump_stats(args.profile)
    errors = [f.error for f in result.files if not f.ok and f.error]
    import scu as scu_package

    _emit(
        {
            "scu_file": scu_package.__file__,
            "files": result.total_files,
            "successful": result.successful,
            "failed": result.failed,
            "seconds": seconds,
            "queue_seconds": t1 - t0,
            "cpu_seconds": cpu,
            "baseline_rss_kb": baseline,
            "queued_rss_kb": queued,
            "peak_rss_kb": _peak_rss_kb(),
            "children_peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            "first_error": errors[0] if errors else None,
            "first_store_seconds": first[0] - called if first else None,
        }
    )
    return 0 if result.failed == 0 else 1


def cmd_dcmtk_parallel(args: argparse.Namespace) -> int:
    """DCMTK's own answer to concurrency: N storescu processes in parallel, each given
    every N-th file of the folders (sorted), to one storescp --fork. Timed from the first
    spawn to the last exit (their start-up included, as for one storescu)."""
    import subprocess

    env = dict(os.environ)
    env.setdefault("TCP_NODELAY", "1")
    host, port = args.addr.rsplit(":", 1)
    files = sorted(str(p) for d in args.dir for p in Path(d).glob("*.dcm"))
    profile = ["-xf", args.xf, "Bench"] if args.xf else []
    cpu0 = _cpu()
    t0 = time.perf_counter()
    argv = [args.storescu, "-pdu", str(args.pdu), *profile, host, port]
    procs = [
        subprocess.Popen(
            [*argv, *files[k :: args.processes]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for k in range(args.processes)
    ]
    errors = [p.communicate()[1].decode(errors="replace")[-300:] for p in procs]
    seconds = time.perf_counter() - t0
    codes = [p.returncode for p in procs]
    failed = [err for err, code in zip(errors, codes, strict=True) if code]
    _emit(
        {
            "files": len(files),
            "successful": len(files) if not any(codes) else 0,
            "failed": 0 if not any(codes) else len(files),
            "seconds": seconds,
            "cpu_seconds": _cpu() - cpu0,
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            "first_error": failed[0] if failed else None,
        }
    )
    return 1 if any(codes) else 0


def cmd_pynetdicom(args: argparse.Namespace) -> int:
    """The plain-pynetdicom baseline: one association, contexts for exactly what the
    files need, every file sent from its path (no decode, no re-encode)."""
    import logging

    import pydicom
    from pynetdicom import AE

    # pynetdicom's warnings and errors (a DIMSE timeout, an abort) go to the run's log.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    paths = sorted(p for d in args.dir for p in Path(d).glob("*.dcm"))
    needed: set[tuple[str, str]] = set()
    for p in paths:
        meta = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=[]).file_meta
        needed.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    ae = AE(ae_title="PYNETDICOM")
    for sop, ts in sorted(needed):
        ae.add_requested_context(sop, [ts])
    host, port = args.addr.rsplit(":", 1)
    baseline = current_rss_kb()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    assoc = ae.associate(host, int(port), max_pdu=args.pdu)
    if not assoc.is_established:
        _emit({"error": "association not established"})
        return 1
    # pynetdicom never sets TCP_NODELAY; without it every figure is ~1% of the real one.
    sock = assoc.dul.socket.socket if assoc.dul.socket is not None else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ok = failed = 0
    first_error: str | None = None
    for i, p in enumerate(paths):
        try:
            status = assoc.send_c_store(p)
        except RuntimeError as exc:
            # pynetdicom aborts the association when a response never comes within the
            # DIMSE timeout (its reactor race, pynetdicom issues 842 and 435); the rest
            # of the queue cannot be sent on it.
            failed += len(paths) - i
            first_error = first_error or f"{p.name} (store {i + 1}): {exc}"
            break
        code = getattr(status, "Status", None)
        if code is not None and (
            code == 0 or code in (0x0001, 0x0107, 0x0116) or code >> 12 == 0xB
        ):
            ok += 1
        else:
            failed += 1
            what = f"status 0x{code:04X}" if code is not None else "no response (timeout)"
            first_error = first_error or f"{p.name}: {what}"
    if assoc.is_established:
        assoc.release()
    seconds = time.perf_counter() - t0
    _emit(
        {
            "files": len(paths),
            "successful": ok,
            "failed": failed,
            "seconds": seconds,
            "cpu_seconds": _cpu() - cpu0,
            "baseline_rss_kb": baseline,
            "peak_rss_kb": _peak_rss_kb(),
            "first_error": first_error,
        }
    )
    return 0 if failed == 0 else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from mock_scp import MockScp

    options: dict[str, Any] = {}
    if not args.as_user:
        options = {"max_pdu_length": args.pdu, "max_associations": 16}
    with MockScp(args.ae_title, **options) as scp:
        addr = str(scp.addr)
        _emit({"port": int(addr.rsplit(":", 1)[1]), "addr": addr})
        cpu0 = _cpu()
        sys.stdin.read()  # the runner closes our stdin when the run is over
        received = len(scp.received)
        violations = [str(v) for v in getattr(scp, "violations", [])]
        associations = len(getattr(scp, "associations", []))
    import mock_scp

    _emit(
        {
            "mock_file": mock_scp.__file__,
            "received": received,
            "associations": associations,
            "violations": violations[:5],
            "violation_count": len(violations),
            "cpu_seconds": _cpu() - cpu0,
            "peak_rss_kb": _peak_rss_kb(),
        }
    )
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    """Queue a (large) folder without sending: what holding the queue costs."""
    from scu import StoreScu

    baseline = current_rss_kb()
    t0 = time.perf_counter()
    scu = StoreScu("127.0.0.1:104")  # never contacted: nothing is sent
    for d in args.dir:
        scu.add_directory(d, pattern="*.dcm")
    seconds = time.perf_counter() - t0
    _emit(
        {
            "seconds": seconds,
            "baseline_rss_kb": baseline,
            "queued_rss_kb": current_rss_kb(),
            "peak_rss_kb": _peak_rss_kb(),
        }
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/child.py")
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send")
    send.add_argument("--addr", required=True)
    send.add_argument("--dir", action="append", default=[])
    send.add_argument("--file", action="append", default=[])
    send.add_argument("--concurrency", type=int, default=1)
    send.add_argument("--pdu", type=int, default=16384)
    send.add_argument("--profile", help="write cProfile stats of send() to this file")
    send.add_argument("--s3-endpoint", help="storage_options endpoint_url for s3:// sources")
    send.add_argument(
        "--first", action="store_true", help="report when the first entry was announced"
    )
    send.set_defaults(func=cmd_send)
    pynd = sub.add_parser("pynetdicom")
    pynd.add_argument("--addr", required=True)
    pynd.add_argument("--dir", action="append", default=[])
    pynd.add_argument("--pdu", type=int, default=16384)
    pynd.set_defaults(func=cmd_pynetdicom)
    serve = sub.add_parser("serve")
    serve.add_argument("--ae-title", default="MOCK-SCP")
    serve.add_argument("--pdu", type=int, default=16384)
    serve.add_argument(
        "--as-user",
        action="store_true",
        help='MockScp("PACS") with every default, as the README shows',
    )
    serve.set_defaults(func=cmd_serve)
    parallel = sub.add_parser("dcmtk-parallel")
    parallel.add_argument("--addr", required=True)
    parallel.add_argument("--dir", action="append", default=[])
    parallel.add_argument("--processes", type=int, default=2)
    parallel.add_argument("--pdu", type=int, default=16384)
    parallel.add_argument("--storescu", default="/usr/bin/storescu")
    parallel.add_argument("--xf", help="storescu's negotiation profile file (-xf FILE Bench)")
    parallel.set_defaults(func=cmd_dcmtk_parallel)
    queue = sub.add_parser("queue")
    queue.add_argument("--dir", action="append", default=[])
    queue.set_defaults(func=cmd_queue)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
