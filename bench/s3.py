"""``python -m bench.s3``: StoreScu sending from S3 against the same files on local disk.

The store is moto's S3 server in its own process on a free loopback port (the real HTTP
API, fake credentials); the receiver is DCMTK ``storescp --fork --ignore``; the sender is
``bench/child.py send`` in its own process, so its time and peak RSS are its own. The
local and S3 runs alternate, and the figure that counts is the ratio of S3 to local disk
throughput measured in the same invocation (moto on the same two cores is a slower,
busier store than a real one: the ratio is a floor). ``--big`` sends one 1 GB object
and reports the sender's peak RSS above its baseline (target: under 64 MB).

    python -m bench.s3 [--corpus ct|small|mixed] [--repeat 3] [--big] [--smoke] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import corpus, procs
from bench.runs import MB

DEFAULT_WORKDIR = Path(__file__).resolve().parent / "out"
BUCKET = "bench"
#: Fake credentials for moto, and never the instance-metadata endpoint.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_MOTO = (
    "import logging, sys, json\n"
    "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "from moto.server import ThreadedMotoServer\n"
    "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
    "s.start()\n"
    "print(json.dumps({'port': s.get_host_and_port()[1]}), flush=True)\n"
    "sys.stdin.read()\n"
    "s.stop()\n"
)


def _log(msg: str) -> None:
    print(f"[bench.s3 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in a child process; yields its endpoint URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **FAKE_AWS},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise procs.BenchError("moto's server did not start (is moto[server] installed?)")
        yield f"http://127.0.0.1:{json.loads(line)['port']}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def upload(endpoint: str, files: tuple[Path, ...], prefix: str) -> str:
    client = _client(endpoint)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        client.create_bucket(Bucket=BUCKET)
    for path in files:
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")
    return f"s3://{BUCKET}/{prefix}/"


def send(addr: str, sources: list[str], *, flag: str, endpoint: str | None, tag: str,
         logdir: Path, timeout: float) -> dict[str, Any]:  # fmt: skip
    args = ["send", "--addr", addr]
    for source in sources:
        args += [flag, source]
    if endpoint is not None:
        args += ["--s3-endpoint", endpoint]
    env = {**procs.child_env(), **FAKE_AWS}
    done = procs.run_measured(
        procs.child_command(*args), env=env, timeout=timeout, logdir=logdir, tag=tag
    )
    info = done.json_tail()
    if done.returncode != 0 or info.get("failed"):
        raise procs.BenchError(f"{tag}: {info.get('first_error') or procs.last_line(done.stderr)}")
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.s3", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--corpus", choices=["ct", "small", "mixed"], default="ct")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny corpus, one round, no 1 GB")
    p.add_argument("--big", action="store_true", help="also send a 1 GB object")
    p.add_argument("--big-bytes", type=int, default=1 << 30, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    repeat = 1 if args.smoke else args.repeat
    logdir = args.workdir / "logs-s3"
    spec = corpus.specs(smoke=args.smoke)[args.corpus]
    files = corpus.build(spec, args.workdir, log=_log)
    report: dict[str, Any] = {"corpus": files.description, "files": files.count,
                              "bytes": files.total_bytes, "repeat": repeat}  # fmt: skip
    with moto_server() as endpoint, procs.storescp(logdir, "s3") as receiver:
        _log(f"moto at {endpoint}; uploading {files.count} files")
        prefix = upload(endpoint, files.files, files.name)
        seconds: dict[str, list[float]] = {"local": [], "s3": []}
        for round_ in range(repeat):
            for kind in ("local", "s3"):  # alternate, so drift hits both alike
                _log(f"{kind}, round {round_ + 1}/{repeat}")
                source = str(files.directory) if kind == "local" else prefix
                info = send(
                    receiver.addr, [source], flag="--dir",
                    endpoint=endpoint if kind == "s3" else None,
                    tag=f"{kind}-{round_}", logdir=logdir, timeout=args.timeout,
                )  # fmt: skip
                seconds[kind].append(info["seconds"])
        for kind, values in seconds.items():
            median = statistics.median(values)
            report[kind] = {
                "seconds": median,
                "files_per_second": files.count / median,
                "mb_per_second": files.total_bytes / MB / median,
            }
        report["ratio_s3_to_local"] = report["local"]["seconds"] / report["s3"]["seconds"]
        if args.big and not args.smoke:
            path = corpus.big_file(args.workdir, size_bytes=args.big_bytes)
            _log(f"uploading {path.stat().st_size / MB:.0f} MB")
            client = _client(endpoint)
            client.upload_file(str(path), BUCKET, "big/big.dcm")
            for kind, source, endpoint_or_none in (
                ("local", str(path), None),
                ("s3", f"s3://{BUCKET}/big/big.dcm", endpoint),
            ):
                _log(f"big: {kind}")
                info = send(receiver.addr, [source], flag="--file", endpoint=endpoint_or_none,
                            tag=f"big-{kind}", logdir=logdir, timeout=args.timeout)  # fmt: skip
                report[f"big_{kind}"] = {
                    "bytes": path.stat().st_size,
                    "seconds": info["seconds"],
                    "mb_per_second": path.stat().st_size / MB / info["seconds"],
                    "baseline_rss_mib": info["baseline_rss_kb"] / 1024,
                    "peak_rss_mib": info["peak_rss_kb"] / 1024,
                    "above_baseline_mib": (info["peak_rss_kb"] - info["baseline_rss_kb"]) / 1024,
                }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    lines = [
        f"scukit bench.s3: {report['files']} files, {report['bytes'] / MB:.1f} MB "
        f"({report['corpus']}), median of {report['repeat']}, "
        "StoreScu c=1 -> storescp --fork --ignore",
        "",
        f"{'source':<8} {'seconds':>8} {'files/s':>9} {'MB/s':>8}",
    ]
    for kind in ("local", "s3"):
        r = report[kind]
        lines.append(
            f"{kind:<8} {r['seconds']:>8.2f} {r['files_per_second']:>9.1f} "
            f"{r['mb_per_second']:>8.1f}"
        )
    lines.append(f"S3 / local throughput: {report['ratio_s3_to_local']:.3f}x")
    for kind in ("local", "s3"):
        big = report.get(f"big_{kind}")
        if big:
            lines.append(
                f"big {kind}: {big['bytes'] / MB:,.0f} MB in {big['seconds']:.2f} s "
                f"({big['mb_per_second']:.1f} MB/s), peak RSS {big['peak_rss_mib']:.1f} MiB = "
                f"{big['above_baseline_mib']:.1f} MiB above baseline "
                f"{big['baseline_rss_mib']:.1f} [target < 64 MB above baseline]"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
