"""Run Debian's Orthanc as a real PACS in tests, with its own configuration.

``run_orthanc(...)`` is a context manager: it writes a JSON configuration into a
temporary folder (storage and index there too; DICOM and HTTP ports from
:func:`free_port`; no plugins; HTTP on loopback only, without authentication), starts
Orthanc with ``dcmtk_env()`` (Orthanc's DICOM side is DCMTK, which leaves Nagle on
unless told), waits until ``GET /system`` answers and the DICOM port listens, yields an
:class:`Orthanc` handle with small REST helpers, and stops the server at exit.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.dcmtk import ServerProcess, spawn
from tests.support.tools import free_port, orthanc_binary

__all__ = ["Orthanc", "OrthancStartError", "orthanc_config", "run_orthanc"]

#: Orthanc's own default: every uncompressed and compressed syntax it knows.
ALL_SYNTAXES = ("1.2.840.10008.1.*",)


class OrthancStartError(RuntimeError):
    """Orthanc did not come up; the message carries its configuration and log."""


def orthanc_config(
    work: Path,
    *,
    dicom_port: int,
    http_port: int,
    aet: str = "ORTHANC",
    check_called_aet: bool = False,
    unknown_sop_class_accepted: bool = False,
    accepted_transfer_syntaxes: Sequence[str] = ALL_SYNTAXES,
    always_allow_store: bool = True,
    maximum_storage_size_mb: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The configuration :func:`run_orthanc` writes (exposed so tests can read it)."""
    config: dict[str, Any] = {
        "Name": "scukit-test",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "StorageCompression": False,
        "MaximumStorageSize": maximum_storage_size_mb,
        "MaximumPatientCount": 0,
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "HttpDescribeErrors": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "KeepAlive": True,
        # HTTP side; the DICOM side gets TCP_NODELAY from the environment (DCMTK).
        "TcpNoDelay": True,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": check_called_aet,
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowStore": always_allow_store,
        "DicomAlwaysAllowEcho": True,
        "UnknownSopClassAccepted": unknown_sop_class_accepted,
        "AcceptedTransferSyntaxes": list(accepted_transfer_syntaxes),
        "DicomModalities": {},
        "DicomScpTimeout": 30,
        "DicomTlsEnabled": False,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "OverwriteInstances": True,
        "StableAge": 3600,
        "ExecuteLuaEnabled": False,
        "LuaScripts": [],
        "DeidentifyLogs": False,
    }
    config.update(extra or {})
    return config


@dataclass(kw_only=True)
class Orthanc(ServerProcess):
    """A running Orthanc: DICOM address, REST base URL and what it stored."""

    host: str
    dicom_port: int
    http_port: int
    aet: str
    work_dir: Path
    config: dict[str, Any]

    @property
    def addr(self) -> str:
        """DICOM ``"host:port"`` as :class:`scu.StoreScu` takes it."""
        return f"{self.host}:{self.dicom_port}"

    @property
    def port(self) -> int:
        return self.dicom_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    # REST -------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """Call the REST API and decode its JSON answer (``None`` for an empty body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def instances(self) -> list[str]:
        """Orthanc identifiers of every stored instance."""
        return list(self.get("/instances"))

    def instance_sop_instance_uid(self, orthanc_id: str) -> str:
        """The SOP Instance UID of one stored instance, as Orthanc parsed it."""
        return str(self.get(f"/instances/{orthanc_id}/simplified-tags")["SOPInstanceUID"])

    def sop_instance_uids(self) -> list[str]:
        """SOP Instance UIDs of every stored instance (one ``/tools/find`` query)."""
        found = self.request(
            "POST", "/tools/find", {"Level": "Instance", "Query": {}, "Expand": True}
        )
        return [str(item["MainDicomTags"]["SOPInstanceUID"]) for item in found]

    def count_instances(self) -> int:
        return int(self.get("/statistics")["CountInstances"])

    def delete_all(self) -> None:
        """Delete every patient (and so every instance): a clean PACS between tests."""
        for patient in self.get("/patients"):
            self.request("DELETE", f"/patients/{patient}")


def _system_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/system", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def run_orthanc(
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 60.0,
    attempts: int = 3,
    **options: Any,
) -> Iterator[Orthanc]:
    """Start Orthanc with a private configuration and yield an :class:`Orthanc`.

    ``options`` are :func:`orthanc_config`'s keyword options (``aet``,
    ``check_called_aet``, ``unknown_sop_class_accepted``, ``accepted_transfer_syntaxes``,
    ``always_allow_store``, ``maximum_storage_size_mb``, ``extra``)."""
    with tempfile.TemporaryDirectory(prefix="orthanc-") as tmp:
        work = Path(tmp)
        failures: list[str] = []
        for attempt in range(1, attempts + 1):
            dicom_port, http_port = free_port(host), free_port(host)
            if dicom_port == http_port:
                continue
            config = orthanc_config(work, dicom_port=dicom_port, http_port=http_port, **options)
            config_path = work / f"orthanc-{attempt}.json"
            config_path.write_text(json.dumps(config, indent=2))
            log_path = work / f"orthanc-{attempt}.log"
            args = [orthanc_binary(), "--no-jobs", str(config_path)]
            server = Orthanc(
                log_path=log_path,
                process=spawn(args, log_path, cwd=work),
                host=host,
                dicom_port=dicom_port,
                http_port=http_port,
                aet=config["DicomAet"],
                work_dir=work,
                config=config,
            )
            deadline = time.monotonic() + startup_timeout
            up = False
            while time.monotonic() < deadline and server.alive():
                if server.listening_on(dicom_port) and _system_answers(server.url):
                    up = True
                    break
                time.sleep(0.05)
            if up:
                try:
                    yield server
                finally:
                    server.stop()
                return
            server.stop()
            failures.append(
                f"attempt {attempt}: exit {server.process.returncode}\n{server.log()[-3000:]}"
            )
        raise OrthancStartError("Orthanc did not come up:\n" + "\n".join(failures))
