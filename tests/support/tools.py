"""Locate the external programs the interop tests drive, and pick free loopback ports.

pynetdicom installs console scripts named `storescu`, `storescp` and `echoscu` that
shadow DCMTK's on PATH, so DCMTK programs are looked up by their Debian location first
and confirmed by their version banner. A missing program is a test *failure* in CI,
never a skip: interop is part of the contract.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from functools import cache
from pathlib import Path

import pytest

DCMTK_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")


@cache
def dcmtk_tool(name: str) -> str:
    """Absolute path of a DCMTK program such as ``storescu``; fails the test if absent."""
    candidates = [str(Path(d) / name) for d in DCMTK_DIRS]
    found = shutil.which(name)
    if found:
        candidates.append(found)
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        try:
            banner = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in banner.lower():
            return path
    pytest.fail(
        f"DCMTK program {name!r} not found (looked in {', '.join(DCMTK_DIRS)} and PATH); "
        "install Debian's 'dcmtk' package (apt-get install dcmtk)",
        pytrace=False,
    )


@cache
def orthanc_binary() -> str:
    """Absolute path of the Orthanc server; fails the test if absent."""
    for path in (os.environ.get("ORTHANC_BIN"), "/usr/sbin/Orthanc", shutil.which("Orthanc")):
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "Orthanc not found (looked at $ORTHANC_BIN, /usr/sbin/Orthanc and PATH); "
        "install Debian's 'orthanc' package (apt-get install orthanc)",
        pytrace=False,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out for ``host``, for programs that cannot bind port 0
    themselves and report it (DCMTK storescp, Orthanc)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK programs: Debian's DCMTK leaves Nagle on unless told."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env
