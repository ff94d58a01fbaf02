"""The committed fixtures are what fixtures/make_fixtures.py generates, and are what
fixtures/README.md says they are."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

import pydicom
import pytest
from pydicom.errors import InvalidDicomError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_fixtures_are_fresh() -> None:
    assert load_script().stale(FIXTURES) == []


def test_fixture_set_is_small_and_fully_documented() -> None:
    files = sorted(p for p in FIXTURES.rglob("*.dcm"))
    assert sum(p.stat().st_size for p in files) < 200_000
    readme = (FIXTURES / "README.md").read_text()
    for path in files:
        assert f"`{path.name}`" in readme, f"{path.name} is not described in README.md"


@pytest.mark.parametrize("path", sorted((FIXTURES / "valid").glob("*.dcm")), ids=lambda p: p.name)
def test_valid_fixtures_read_back_with_distinct_uids(path: Path) -> None:
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    if "PixelData" in ds:
        assert ds.pixel_array.shape[:2] == (64, 64)
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in (FIXTURES / "valid").glob("*.dcm")}
    assert len(uids) == len(list((FIXTURES / "valid").glob("*.dcm")))


def test_bare_data_set_fixture_is_refused_by_a_strict_reader_and_sendable() -> None:
    from scu.source import Entry, read_header

    bare = FIXTURES / "no_meta" / "ct_dataset_only_implicit.dcm"
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(bare)
    assert pydicom.dcmread(bare, force=True).Modality == "CT"
    header = read_header(Entry(bare.name, path=str(bare)))
    assert (header.has_meta, header.transfer_syntax) == (False, "1.2.840.10008.1.2")


def test_invalid_fixtures_are_invalid_in_the_documented_way() -> None:
    bad = FIXTURES / "invalid"
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(bad / "not_dicom.dcm")
    truncated = (bad / "ct_truncated.dcm").read_bytes()
    assert truncated[128:132] == b"DICM"
    with pytest.raises((ValueError, EOFError, OSError)):
        pydicom.dcmread(io.BytesIO(truncated)).pixel_array  # noqa: B018 - reading is the point
