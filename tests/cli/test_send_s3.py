"""``scukit send`` and ``scukit preflight`` with s3:// sources, as a user runs them: the
command in a subprocess, moto's S3 server as the store, MockScp as the receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from mock_scp import MockScp
from tests.support.s3 import CREDENTIAL_VARS, FAKE_ENV, S3Server, s3
from tests.support.tools import free_port

__all__ = ["s3"]  # the fixture

WORKTREE = Path(__file__).resolve().parents[2]
NAMES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb_rle.dcm")


def scukit(*args: str, env: dict[str, str] | None = None, code: str | None = None) -> Any:
    """Run ``scukit ARGS`` (or ``code`` before it) in a fresh interpreter."""
    prelude = code or ""
    command = [
        sys.executable,
        "-c",
        f"import sys\n{prelude}\nfrom scu.cli import main\nsys.exit(main(sys.argv[1:]))",
        *args,
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=WORKTREE,
        env={**(env if env is not None else dict(os.environ)), "PYTHONPATH": str(WORKTREE)},
    )


@pytest.fixture
def study(s3: S3Server) -> tuple[str, dict[str, str]]:
    """A bucket prefix holding a few test files: (prefix URL, {url: SOP Instance UID})."""
    bucket = s3.bucket()
    urls = {}
    for name in NAMES:
        path = Path(get_testdata_file(name, download=False) or name)
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        urls[s3.put(bucket, f"study/{name}", path)] = uid
    return f"s3://{bucket}/study/", urls


@pytest.fixture
def scp() -> Iterator[MockScp]:
    with MockScp(ae_title="PACS") as server:
        yield server


def test_send_a_prefix_with_json(
    s3: S3Server, scp: MockScp, study: tuple[str, dict[str, str]]
) -> None:
    prefix, urls = study
    done = scukit("send", str(scp.addr), prefix, "--called-ae", "PACS",
                  "--s3-endpoint", s3.endpoint, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [f["file"] for f in report["files"]] == sorted(urls)
    assert sorted(r.sop_instance_uid for r in scp.received) == sorted(urls.values())
    secret = FAKE_ENV["AWS_SECRET_ACCESS_KEY"]
    assert secret not in done.stdout and secret not in done.stderr


def test_send_one_object_and_a_prefix_without_its_slash(
    s3: S3Server, scp: MockScp, study: tuple[str, dict[str, str]]
) -> None:
    prefix, urls = study
    one = sorted(urls)[0]
    done = scukit("send", str(scp.addr), one, prefix.rstrip("/"), "--called-ae", "PACS",
                  "--pattern", "*RLE*", "--s3-endpoint", s3.endpoint, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = [f["file"] for f in json.loads(done.stdout)["files"]]
    assert files == [one, prefix + "SC_rgb_rle.dcm"]


def test_preflight_on_object_storage(
    s3: S3Server, scp: MockScp, study: tuple[str, dict[str, str]]
) -> None:
    prefix, urls = study
    done = scukit("preflight", str(scp.addr), prefix, "--called-ae", "PACS",
                  "--s3-endpoint", s3.endpoint, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    items = report["files"] if isinstance(report, dict) else report
    assert sorted(i["file"] for i in items) == sorted(urls)
    assert {i["verdict"] for i in items} == {"accept"}


def test_bad_sources_are_usage_errors_naming_the_url(
    s3: S3Server, scp: MockScp, study: tuple[str, dict[str, str]]
) -> None:
    prefix, _ = study
    missing = prefix + "missing.dcm"
    done = scukit("send", str(scp.addr), missing, "--s3-endpoint", s3.endpoint)
    assert done.returncode == 2
    assert f"{missing}: no such object" in done.stderr
    done = scukit("send", str(scp.addr), prefix + "nowhere/", "--s3-endpoint", s3.endpoint)
    assert done.returncode == 2
    assert f"no such prefix: {prefix}nowhere/" in done.stderr
    # Nothing listens on this port: the endpoint is unreachable.
    closed = f"http://127.0.0.1:{free_port()}"
    done = scukit("send", str(scp.addr), missing, "--s3-endpoint", closed)
    assert done.returncode == 2
    assert f"{missing}: cannot reach the store" in done.stderr
    assert len(scp.received) == 0


def test_no_credentials_is_a_clear_error(
    s3: S3Server, scp: MockScp, study: tuple[str, dict[str, str]]
) -> None:
    _, urls = study
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    done = scukit("send", str(scp.addr), sorted(urls)[0], "--s3-endpoint", s3.endpoint, env=env)
    assert done.returncode == 2
    assert f"{sorted(urls)[0]}: no credentials" in done.stderr
    assert "--s3-anonymous" in done.stderr


def test_without_the_extra_the_error_names_it(scp: MockScp) -> None:
    done = scukit("send", str(scp.addr), "s3://bucket/key.dcm", code="sys.modules['s3fs'] = None")
    assert done.returncode == 2
    assert "pip install 'scukit[s3]'" in done.stderr
    assert "s3://bucket/key.dcm" in done.stderr


def test_bad_s3_options_are_usage_errors(scp: MockScp) -> None:
    done = scukit("send", str(scp.addr), "s3://b/k.dcm", "--s3-endpoint", "minio:9000")
    assert done.returncode == 2
    assert "endpoint_url must be an http" in done.stderr
    done = scukit("send", str(scp.addr), "s3://b/k.dcm", "--s3-anonymous", "--s3-profile", "x")
    assert done.returncode == 2
    assert "contradict" in done.stderr
