"""Where the external programs are: DCMTK's tools, Orthanc, gdcmscu, Node.js and npm,
Chromium.

Shared by the test suites (which fail when a program is missing) and the benchmark
runner (which reports it). pynetdicom installs console scripts named ``storescu``,
``storescp`` and ``echoscu`` that shadow DCMTK's on PATH, so DCMTK programs are looked
up at their Debian location first and each candidate is confirmed by its version
banner. Nothing here imports pytest.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from functools import cache
from pathlib import Path

__all__ = [
    "DCMTK_DIRS",
    "dcmtk_env",
    "find_chromium",
    "find_dcmtk",
    "find_gdcmscu",
    "find_node",
    "find_npm",
    "find_orthanc",
    "free_port",
]

DCMTK_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")


@cache
def find_dcmtk(name: str) -> str | None:
    """Absolute path of a DCMTK program such as ``storescu``, or ``None``."""
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
    return None


@cache
def find_orthanc() -> str | None:
    """Absolute path of the Orthanc server (``$ORTHANC_BIN`` first), or ``None``."""
    for path in (os.environ.get("ORTHANC_BIN"), "/usr/sbin/Orthanc", shutil.which("Orthanc")):
        if path and os.access(path, os.X_OK):
            return path
    return None


@cache
def find_gdcmscu() -> str | None:
    """Absolute path of GDCM's ``gdcmscu`` (Debian's libgdcm-tools), or ``None``."""
    for path in ("/usr/bin/gdcmscu", shutil.which("gdcmscu")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _first_executable(*candidates: str | None) -> str | None:
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


@cache
def find_node() -> str | None:
    """Absolute path of Node.js (Debian's ``nodejs`` package installs ``/usr/bin/node``)."""
    return _first_executable("/usr/bin/node", shutil.which("node"), shutil.which("nodejs"))


@cache
def find_npm() -> str | None:
    """Absolute path of npm, or ``None``."""
    return _first_executable("/usr/bin/npm", shutil.which("npm"))


@cache
def find_chromium() -> str | None:
    """Absolute path of Chromium (Debian's ``chromium`` package), or ``None``."""
    return _first_executable(
        "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out for ``host``, for programs that cannot bind port 0
    themselves and report it (DCMTK storescp, Orthanc)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK programs: Debian's DCMTK leaves Nagle on unless told, and
    without TCP_NODELAY every exchange waits out a delayed ACK."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env
