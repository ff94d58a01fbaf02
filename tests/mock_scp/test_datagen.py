"""mock_scp.datagen: deterministic synthetic instances, read back by pydicom and DCMTK."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from mock_scp import datagen
from tests.support.tools import dcmtk_tool

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")

LOSSLESS = [
    "ExplicitVRLittleEndian",
    "ImplicitVRLittleEndian",
    "ExplicitVRBigEndian",
    "DeflatedExplicitVRLittleEndian",
    "RLELossless",
    "JPEG2000Lossless",
]
LOSSY_8BIT = ["JPEGBaseline8Bit", "JPEG2000"]


def read(data: bytes) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_same_options_give_the_same_bytes() -> None:
    assert datagen.make_bytes(seed=7, size=5000) == datagen.make_bytes(seed=7, size=5000)


def test_seed_changes_uids_and_pixels() -> None:
    a, b = datagen.make_dataset(seed=1), datagen.make_dataset(seed=2)
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert a.PixelData != b.PixelData


def test_generated_uids_are_valid_and_distinct_per_role() -> None:
    ds = datagen.make_dataset()
    uids = [ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID]
    for uid in uids:
        assert UID_RE.match(uid) and len(uid) <= 64, uid
    assert len(set(uids)) == 4
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID


def test_given_uids_are_used() -> None:
    ds = datagen.make_dataset(
        sop_instance_uid="1.2.3.4", study_instance_uid="1.2.3.5", series_instance_uid="1.2.3.6"
    )
    assert (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID) == (
        "1.2.3.4",
        "1.2.3.5",
        "1.2.3.6",
    )


@pytest.mark.parametrize("syntax", LOSSLESS)
@pytest.mark.parametrize(("bits", "samples"), [(16, 1), (8, 1), (8, 3)])
def test_lossless_syntaxes_round_trip_exactly(syntax: str, bits: int, samples: int) -> None:
    reference = datagen.make_dataset(bits_allocated=bits, samples_per_pixel=samples, size=9000)
    ds = read(
        datagen.make_bytes(
            transfer_syntax=syntax, bits_allocated=bits, samples_per_pixel=samples, size=9000
        )
    )
    assert ds.file_meta.TransferSyntaxUID == datagen.resolve_transfer_syntax(syntax)
    # Compression must keep the instance's identity (pydicom's compress() would not).
    assert ds.SOPInstanceUID == reference.SOPInstanceUID
    assert np.array_equal(ds.pixel_array, reference.pixel_array)


@pytest.mark.parametrize("syntax", LOSSY_8BIT)
@pytest.mark.parametrize("samples", [1, 3])
def test_lossy_syntaxes_stay_close_and_are_flagged(syntax: str, samples: int) -> None:
    reference = datagen.make_dataset(bits_allocated=8, samples_per_pixel=samples)
    ds = read(
        datagen.make_bytes(transfer_syntax=syntax, bits_allocated=8, samples_per_pixel=samples)
    )
    assert ds.SOPInstanceUID == reference.SOPInstanceUID
    assert ds.LossyImageCompression == "01"
    arr = ds.pixel_array  # pydicom 3 converts YBR to RGB by default
    diff = np.abs(arr.astype(int) - reference.pixel_array.astype(int))
    assert diff.mean() < 8


def test_jpeg_baseline_refuses_16_bit() -> None:
    with pytest.raises(ValueError, match="8-bit"):
        datagen.make_dataset(transfer_syntax="JPEGBaseline8Bit", bits_allocated=16)


def test_syntax_without_encoder_says_so() -> None:
    # No JPEG Lossless (process 14) encoder exists for pydicom here or anywhere.
    with pytest.raises(ValueError, match="no encoder is installed"):
        datagen.make_dataset(transfer_syntax="JPEGLosslessSV1")


def test_uids_accepted_for_syntax_and_sop_class() -> None:
    ds = datagen.make_dataset(
        sop_class="1.2.840.10008.5.1.4.1.1.4", transfer_syntax="1.2.840.10008.1.2.5"
    )
    assert ds.SOPClassUID.keyword == "MRImageStorage"
    assert ds.Modality == "MR"
    assert ds.file_meta.TransferSyntaxUID.keyword == "RLELossless"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sop_class": "CTImage"}, "sop_class: unknown SOP class 'CTImage'"),
        ({"transfer_syntax": "JPEG"}, "transfer_syntax: unknown transfer syntax 'JPEG'"),
        ({"transfer_syntax": "1.2.3"}, "transfer_syntax: unknown transfer syntax '1.2.3'"),
        ({"size": -1}, "size: -1"),
        ({"bits_allocated": 12}, "bits_allocated: 12"),
        ({"samples_per_pixel": 2}, "samples_per_pixel: 2"),
        ({"rows": 0}, "rows: 0"),
        ({"sop_instance_uid": "1.2.x"}, "sop_instance_uid"),
        ({"transfer_syntax": "JPEG2000Lossless", "rows": 8, "columns": 8}, "rows: 8"),
    ],
)
def test_bad_options_raise_value_error(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        datagen.make_dataset(**options)  # type: ignore[arg-type]


def test_unknown_but_valid_sop_class_uid_is_generated_without_pixels() -> None:
    ds = datagen.make_dataset(sop_class="1.2.3.4.5.6.7")
    assert ds.SOPClassUID == "1.2.3.4.5.6.7"
    assert "PixelData" not in ds


@pytest.mark.parametrize(
    ("sop_class", "modality"),
    [("BasicTextSRStorage", "SR"), ("EncapsulatedPDFStorage", "DOC")],
)
def test_non_image_classes_have_no_pixel_data(sop_class: str, modality: str) -> None:
    ds = read(datagen.make_bytes(sop_class=sop_class, size=100_000))
    assert "PixelData" not in ds
    assert ds.Modality == modality
    if modality == "DOC":
        assert ds.EncapsulatedDocument.startswith(b"%PDF-")
    else:
        assert ds.ContentSequence[0].TextValue


@pytest.mark.parametrize("size", [1, 16, 1000, 250_000])
def test_size_is_approximately_the_pixel_bytes(size: int) -> None:
    ds = datagen.make_dataset(size=size)
    assert size <= len(ds.PixelData) <= size + 2 * (ds.Columns * 2) + 2


def test_tiny_jpeg2000_images_are_padded_to_what_openjpeg_can_encode() -> None:
    ds = read(datagen.make_bytes(transfer_syntax="JPEG2000Lossless", size=16))
    assert ds.Rows >= 32 and ds.Columns >= 32
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns)


def test_rows_and_columns_shape_the_image() -> None:
    ds = datagen.make_dataset(rows=10, size=2000)
    assert (ds.Rows, ds.Columns) == (10, 100)
    ds = datagen.make_dataset(rows=7, columns=9)
    assert ds.pixel_array.shape == (7, 9)


def test_write_files_makes_distinct_instances_of_one_series(tmp_path: Path) -> None:
    paths = datagen.write_files(tmp_path / "out", count=5, sop_class="MRImageStorage", seed=3)
    assert [p.name for p in paths] == [f"{i:05d}.dcm" for i in range(5)]
    datasets = [pydicom.dcmread(p) for p in paths]
    assert len({ds.SOPInstanceUID for ds in datasets}) == 5
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3, 4, 5]
    single = datagen.write_file(tmp_path / "one.dcm", sop_class="MRImageStorage", seed=3)
    assert single.read_bytes() == paths[0].read_bytes()


def test_write_files_names_stay_inside_the_directory(tmp_path: Path) -> None:
    paths = datagen.write_files(tmp_path, count=2, name=lambda i: f"img-{i}.dcm")
    assert [p.name for p in paths] == ["img-0.dcm", "img-1.dcm"]
    with pytest.raises(ValueError, match="inside"):
        datagen.write_files(tmp_path, count=1, name="../escape-{index}.dcm")
    with pytest.raises(ValueError, match="sop_instance_uid"):
        datagen.write_files(tmp_path, count=2, sop_instance_uid="1.2.3")


def test_truncated_bytes_keep_the_header_and_lose_the_end() -> None:
    whole = datagen.make_bytes()
    cut = datagen.truncated_bytes(keep=0.5)
    assert whole.startswith(cut) and len(cut) < len(whole)
    assert cut[128:132] == b"DICM"
    with pytest.raises((ValueError, EOFError, OSError)):
        read(cut).pixel_array  # noqa: B018 - reading is the point
    with pytest.raises(ValueError, match="keep"):
        datagen.truncated_bytes(keep=1.0)


@pytest.mark.parametrize("syntax", ["ImplicitVRLittleEndian", "ExplicitVRLittleEndian"])
def test_without_meta_bytes_is_a_bare_dataset(syntax: str) -> None:
    data = datagen.without_meta_bytes(transfer_syntax=syntax)
    assert data[128:132] != b"DICM"
    assert data[:4] == b"\x08\x00\x05\x00"  # starts with (0008,0005) Specific Character Set
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(io.BytesIO(data))
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    assert ds.SOPInstanceUID == datagen.make_dataset().SOPInstanceUID


def test_without_meta_refuses_compressed_syntaxes() -> None:
    with pytest.raises(ValueError, match="without file meta"):
        datagen.without_meta_bytes(transfer_syntax="RLELossless")


def test_not_dicom_bytes_is_rejected_by_readers() -> None:
    data = datagen.not_dicom_bytes(size=300)
    assert len(data) == 300
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(io.BytesIO(data))


@pytest.mark.interop
@pytest.mark.parametrize("syntax", [*LOSSLESS, "JPEGBaseline8Bit", "JPEG2000"])
def test_dcmtk_reads_every_generated_syntax(tmp_path: Path, syntax: str) -> None:
    path = datagen.write_file(tmp_path / "x.dcm", transfer_syntax=syntax, bits_allocated=8)
    out = subprocess.run(
        [dcmtk_tool("dcmdump"), "-Un", "+P", "0002,0010", "+P", "0008,0018", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0 and not out.stderr, out.stderr
    assert datagen.resolve_transfer_syntax(syntax) in out.stdout
    assert datagen.make_dataset().SOPInstanceUID in out.stdout
