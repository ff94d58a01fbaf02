"""A real S3 API for tests: moto's standalone server (``ThreadedMotoServer``) on
127.0.0.1 and a port the OS picks (moto binds port 0 and reports the real one), spoken to
over HTTP with fake credentials from the environment, as botocore's standard chain finds
them; nothing in the client is patched.

The ``s3`` fixture (session scope: one server per xdist worker) yields an
:class:`S3Server`; ``s3.bucket()`` makes a fresh bucket per test. Access denied is
real: ``s3.restricted_user(...)`` makes an IAM user with a policy, and
``s3.enforce_auth()`` turns on moto's IAM checks for the time of a ``with`` block.

moto, boto3 and s3fs are test dependencies (the ``test`` extra): when one is missing,
importing this module fails, so the tests that need it fail, never skip.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import s3fs  # noqa: F401  (the tests need it: fail at import, not later)
from moto.server import ThreadedMotoServer

__all__ = ["FAKE_ENV", "S3Server", "s3", "start_s3"]

_BUCKETS = itertools.count(1)

#: Credentials and settings every test process uses: fake keys (moto accepts any), no
#: AWS config files, and never the instance-metadata endpoint (a non-loopback address).
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key-do-not-print",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
#: Variables of the credential chain a test that wants "no credentials" must remove.
CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@dataclass
class S3Server:
    """A running moto server: its endpoint and helpers to fill it."""

    endpoint: str
    _client: Any = field(default=None, repr=False)

    @property
    def options(self) -> dict[str, Any]:
        """``StoreScu(storage_options=...)`` for this endpoint."""
        return {"endpoint_url": self.endpoint}

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint (made once: making one is slow)."""
        if self._client is None:
            self._client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        return self._client

    def bucket(self, prefix: str = "bkt") -> str:
        """A new empty bucket with a name no other test uses (moto keeps its buckets per
        process, shared by every server started in it, so names are unique per process)."""
        name = f"{prefix}-{os.getpid()}-{next(_BUCKETS)}"
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes | Path) -> str:
        """Store an object (bytes, or a file's content); returns its s3:// URL."""
        body = data.read_bytes() if isinstance(data, Path) else data
        self.client().put_object(Bucket=bucket, Key=key, Body=body)
        return f"s3://{bucket}/{key}"

    def put_file(self, bucket: str, key: str, path: Path) -> str:
        """Store a (large) file without reading it into memory."""
        self.client().upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def restricted_user(self, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
        """An IAM user with an inline policy; returns its credentials as
        ``storage_options`` (``key``/``secret``)."""
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1")
        iam.create_user(UserName=name)
        iam.put_user_policy(
            UserName=name,
            PolicyName=f"{name}-policy",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

    @contextlib.contextmanager
    def enforce_auth(self) -> Iterator[None]:
        """moto checks every request's credentials and IAM policy inside the block
        (the fake keys of the environment are then refused, as unknown keys are)."""
        self._reset_auth("0")
        try:
            yield
        finally:
            self._reset_auth("inf")

    def _reset_auth(self, count: str) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@contextlib.contextmanager
def start_s3() -> Iterator[S3Server]:
    """moto's server on 127.0.0.1, a free port, until the block ends."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """One S3 server per test session (per xdist worker), with fake credentials in the
    environment for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            patch.delenv(name, raising=False)
        with start_s3() as server:
            yield server
