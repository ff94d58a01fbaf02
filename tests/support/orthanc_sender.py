"""Orthanc as a C-STORE sender, as one command line (so that scukit can judge it through
``--scu-command``): upload the files to a running Orthanc through its REST API, declare
the receiver as a modality, ``POST /modalities/NAME/store`` them (synchronously), then
remove the modality and the uploaded instances again.

    python orthanc_sender.py --url http://127.0.0.1:8042 [--calling-ae AE]
        [--called-ae AE] [--timeout S] HOST PORT FILE...

The store request is what an operator would send with Orthanc's defaults, plus the
calling AE title (``LocalAet``) and the DIMSE timeout (``Timeout``, whole seconds).
Exit status: 0 Orthanc reported the store job done, 1 Orthanc reported it failed (HTTP
error from the store request), 2 the files could not be uploaded or Orthanc not reached.

Standalone (standard library only): it runs as a plain script, outside the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import urllib.error
import urllib.request
from typing import Any


def _call(url: str, method: str, body: bytes | None = None, *, json_body: bool = True) -> Any:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json" if json_body else "application/dicom")
    with urllib.request.urlopen(request, timeout=300) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Orthanc's REST base URL")
    parser.add_argument("--calling-ae", default=None, help="calling AE title (LocalAet)")
    parser.add_argument("--called-ae", default="ANY-SCP", help="the receiver's AE title")
    parser.add_argument("--timeout", type=float, default=None, help="DIMSE timeout, seconds")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    name = f"scukit-receiver-{os.getpid()}"
    uploaded: list[str] = []
    try:
        for path in args.files:
            with open(path, "rb") as fh:
                answer = _call(f"{base}/instances", "POST", fh.read(), json_body=False)
            uploaded.append(str(answer["ID"]))
            print(f"uploaded {path} as {answer['ID']}")
        modality = {"AET": args.called_ae, "Host": args.host, "Port": args.port}
        _call(f"{base}/modalities/{name}", "PUT", json.dumps(modality).encode())
    except (OSError, urllib.error.URLError, KeyError, ValueError) as exc:
        print(f"orthanc_sender: could not prepare the store: {exc}", file=sys.stderr)
        return 2
    store: dict[str, Any] = {"Resources": uploaded, "Synchronous": True}
    if args.calling_ae:
        store["LocalAet"] = args.calling_ae
    if args.timeout:
        store["Timeout"] = max(1, math.ceil(args.timeout))
    try:
        answer = _call(f"{base}/modalities/{name}/store", "POST", json.dumps(store).encode())
        print(f"store done: {json.dumps(answer)}")
        return 0
    except urllib.error.HTTPError as exc:
        print(f"store failed: HTTP {exc.code}: {exc.read().decode(errors='replace')}")
        return 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"store failed: {exc}")
        return 1
    finally:
        for target in [f"/modalities/{name}", *(f"/instances/{i}" for i in set(uploaded))]:
            try:
                _call(f"{base}{target}", "DELETE")
            except (OSError, urllib.error.URLError):
                pass


if __name__ == "__main__":
    sys.exit(main())
