"""Soak: many long single-association and multi-association runs, to show that the SCU
cannot stall for the DIMSE timeout the way pynetdicom's reactor race makes it do
(ANCHORS.md: 13 of 86 runs of 2,000 small files, 15 of 39 with several associations).

Our association is driven by the one thread that writes each request and reads its
response, so the race has no place to happen; these runs would catch a regression.
Run with ``pytest -m soak`` (CI runs it as a separate, time-bounded step).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from scu import StoreScu
from tests.support.dcmtk import StoreScp, run_storescp

pytestmark = [pytest.mark.soak, pytest.mark.interop]

FILES = 2000
RUNS = 20
#: A stall would make some file wait this long and fail with "dimse_timeout".
DIMSE_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("small")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.PatientID = "SOAK"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 64, 72
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(64 * 72, dtype=np.uint16).tobytes()
    for i in range(FILES):
        uid = f"1.2.826.0.1.3680043.10.1399.9.{i + 1}"
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def storescp() -> Iterator[StoreScp]:
    with run_storescp(ignore=True, extra_args=["-q"]) as scp:
        yield scp


@pytest.mark.parametrize("concurrency", [1, 4])
def test_long_runs_never_stall(small_files: Path, storescp: StoreScp, concurrency: int) -> None:
    sender = StoreScu(
        f"{storescp.ae_title}@{storescp.addr}",
        concurrency=concurrency,
        dimse_timeout=DIMSE_TIMEOUT,
    )
    sender.add_directory(small_files)
    for run in range(RUNS):
        result = sender.send()
        # A stalled store fails with "dimse_timeout" and shows up here.
        assert (result.successful, result.failed) == (FILES, 0), (run, result.files[:1])
