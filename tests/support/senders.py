"""Senders nobody here wrote, as ``--scu-command`` templates, for the conformance matrix.

Each template passes every setting the program can take (AE titles, timeouts, max PDU)
through scukit's placeholders, and names the program by its absolute path: a bare
``storescu`` may be pynetdicom's console script rather than DCMTK's.

- DCMTK ``storescu`` (``-nh``: go on after a failed store, as an integrator would set it);
- pynetdicom's ``storescu`` app (``python -m pynetdicom storescu``);
- GDCM's ``gdcmscu --store`` (Debian ``libgdcm-tools``; it takes no timeout and no PDU
  size);
- dcmjs-dimse, driven by :file:`dcmjs_store.js` (installed with npm by
  :func:`install_dcmjs_dimse`);
- Orthanc as an SCU, driven through its REST API by :file:`orthanc_sender.py`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.programs import find_dcmtk, find_gdcmscu, find_node, find_npm

__all__ = [
    "DCMJS_DIMSE_VERSION",
    "SUPPORT_DIR",
    "Sender",
    "dcmjs_dimse",
    "dcmtk_storescu",
    "gdcmscu",
    "install_dcmjs_dimse",
    "orthanc_scu",
    "pynetdicom_storescu",
]

SUPPORT_DIR = Path(__file__).resolve().parent
#: The dcmjs-dimse release the matrix runs (pinned: its verdicts are written down).
DCMJS_DIMSE_VERSION = "0.3.3"


@dataclass(frozen=True)
class Sender:
    """A sender under test: its name and its ``--scu-command`` template."""

    name: str
    command: str


def _need(path: str | None, what: str) -> str:
    if path is None:
        raise FileNotFoundError(f"{what} not found")
    return path


def dcmtk_storescu() -> Sender:
    exe = shlex.quote(_need(find_dcmtk("storescu"), "DCMTK storescu (apt-get install dcmtk)"))
    return Sender(
        "dcmtk-storescu",
        # TCP_NODELAY=1: Debian's DCMTK leaves Nagle on otherwise.
        f"TCP_NODELAY=1 {exe} -nh -aet {{calling_ae}} -aec {{called_ae}} "
        "-ta {acse_timeout} -td {dimse_timeout} -ts {network_timeout} -pdu {max_pdu} "
        "{host} {port} {files}",
    )


def pynetdicom_storescu() -> Sender:
    return Sender(
        "pynetdicom-storescu",
        f"{shlex.quote(sys.executable)} -m pynetdicom storescu -aet {{calling_ae}} "
        "-aec {called_ae} -ta {acse_timeout} -td {dimse_timeout} -tn {network_timeout} "
        "-pdu {max_pdu} {host} {port} {files}",
    )


def gdcmscu() -> Sender:
    exe = shlex.quote(_need(find_gdcmscu(), "gdcmscu (apt-get install libgdcm-tools)"))
    return Sender(
        "gdcmscu",
        f"{exe} --store --aetitle {{calling_ae}} --call {{called_ae}} {{host}} {{port}} {{files}}",
    )


def dcmjs_dimse(node_modules: Path) -> Sender:
    node = shlex.quote(_need(find_node(), "Node.js (apt-get install nodejs)"))
    script = shlex.quote(str(SUPPORT_DIR / "dcmjs_store.js"))
    return Sender(
        "dcmjs-dimse",
        f"NODE_PATH={shlex.quote(str(node_modules))} {node} {script} "
        "--calling-ae {calling_ae} --called-ae {called_ae} --dimse-timeout {dimse_timeout} "
        "--acse-timeout {acse_timeout} --max-pdu {max_pdu} {host} {port} {files}",
    )


def orthanc_scu(rest_url: str) -> Sender:
    script = shlex.quote(str(SUPPORT_DIR / "orthanc_sender.py"))
    return Sender(
        "orthanc",
        f"{shlex.quote(sys.executable)} {script} --url {shlex.quote(rest_url)} "
        "--calling-ae {calling_ae} --called-ae {called_ae} --timeout {dimse_timeout} "
        "{host} {port} {files}",
    )


def install_dcmjs_dimse(cache: Path, version: str = DCMJS_DIMSE_VERSION) -> Path:
    """``npm install dcmjs-dimse@version`` into ``cache`` (once; later calls and other
    processes reuse it, a lock file keeps two installs apart) and return the
    ``node_modules`` folder. Raises ``RuntimeError`` with npm's output when npm fails."""
    npm = _need(find_npm(), "npm (apt-get install npm)")
    target = cache / f"dcmjs-dimse-{version}"
    target.mkdir(parents=True, exist_ok=True)
    modules = target / "node_modules"
    marker = modules / "dcmjs-dimse" / "package.json"
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and json.loads(marker.read_text())["version"] == version:
            return modules
        env = dict(os.environ, npm_config_update_notifier="false")
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(target),
             f"dcmjs-dimse@{version}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )  # fmt: skip
        if done.returncode != 0 or not marker.is_file():
            raise RuntimeError(
                f"npm install dcmjs-dimse@{version} failed (exit {done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
    return modules
