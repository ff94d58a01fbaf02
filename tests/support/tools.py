"""The external programs the interop tests drive, found through
:mod:`tests.support.programs`; a missing program is a test *failure*, never a skip:
interop is part of the contract."""

from __future__ import annotations

import pytest

from tests.support.programs import (
    DCMTK_DIRS,
    dcmtk_env,
    find_chromium,
    find_dcmtk,
    find_gdcmscu,
    find_node,
    find_npm,
    find_orthanc,
    free_port,
)

__all__ = [
    "chromium_binary",
    "dcmtk_env",
    "dcmtk_tool",
    "free_port",
    "gdcmscu_binary",
    "node_binary",
    "npm_binary",
    "orthanc_binary",
]


def dcmtk_tool(name: str) -> str:
    """Absolute path of a DCMTK program such as ``storescu``; fails the test if absent."""
    path = find_dcmtk(name)
    if path is None:
        pytest.fail(
            f"DCMTK program {name!r} not found (looked in {', '.join(DCMTK_DIRS)} and PATH); "
            "install Debian's 'dcmtk' package (apt-get install dcmtk)",
            pytrace=False,
        )
    return path


def orthanc_binary() -> str:
    """Absolute path of the Orthanc server; fails the test if absent."""
    path = find_orthanc()
    if path is None:
        pytest.fail(
            "Orthanc not found (looked at $ORTHANC_BIN, /usr/sbin/Orthanc and PATH); "
            "install Debian's 'orthanc' package (apt-get install orthanc)",
            pytrace=False,
        )
    return path


def gdcmscu_binary() -> str:
    """Absolute path of gdcmscu; fails the test if absent."""
    path = find_gdcmscu()
    if path is None:
        pytest.fail(
            "gdcmscu not found; install Debian's 'libgdcm-tools' package",
            pytrace=False,
        )
    return path


def _required(path: str | None, what: str, package: str) -> str:
    if path is None:
        pytest.fail(f"{what} not found; install Debian's {package!r} package", pytrace=False)
    return path


def node_binary() -> str:
    """Absolute path of Node.js; fails the test if absent."""
    return _required(find_node(), "Node.js (node)", "nodejs")


def npm_binary() -> str:
    """Absolute path of npm; fails the test if absent."""
    return _required(find_npm(), "npm", "npm")


def chromium_binary() -> str:
    """Absolute path of Chromium; fails the test if absent."""
    return _required(find_chromium(), "Chromium", "chromium")
