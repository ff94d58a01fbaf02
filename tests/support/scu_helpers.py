"""Helpers for the StoreScu tests: an SCU factory with short timeouts, small synthetic
files, pydicom's test files; the callback recorder lives in :mod:`tests.support.recorder`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file

from mock_scp import datagen
from scu import (
    StoreScu,
)
from tests.support.pynetdicom_scp import HarnessScp

SCP_AE = "TEST-SCP"
#: Short timeouts keep fault tests fast; dimse 0.5 s is the stall threshold.
FAST: dict[str, Any] = {
    "connect_timeout": 2.0,
    "acse_timeout": 2.0,
    "dimse_timeout": 2.0,
    "network_timeout": 2.0,
}


def pydicom_file(name: str) -> str:
    """A pydicom test file that ships with the installed package (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    assert Path(path).is_relative_to(Path(pydicom.__file__).parent)
    return str(path)


def make_scu(scp: HarnessScp, **options: Any) -> StoreScu:
    """A StoreScu pointed at ``scp`` with short timeouts (overridable)."""
    settings: dict[str, Any] = {"called_ae_title": SCP_AE, **FAST, **options}
    return StoreScu(scp.addr, **settings)


def write_series(
    folder: Path, count: int, *, prefix: str = "img", seed: int = 0, **options: Any
) -> list[str]:
    """``count`` small synthetic files (64x64 CT, Explicit VR LE unless told)."""
    options.setdefault("sop_class", "CTImageStorage")
    paths = datagen.write_files(
        folder, count=count, name=f"{prefix}-{{index:03d}}.dcm", seed=seed, **options
    )
    return [os.fspath(p) for p in paths]


def instance_uid(path: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)
