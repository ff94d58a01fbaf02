"""Unit tests of scu.convert: the bytes it returns are decoded independently with pydicom
and compared pixel by pixel with the original; the SOP Instance UID never changes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from scu.convert import ConversionError, convert
from scu.source import Entry, read_header
from tests.support.wire import decode_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _path(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None and path.startswith(str(Path(pydicom.__file__).parent)), name
    return str(path)


def _convert(name: str, target: str, *, in_memory: bool = False) -> tuple[Dataset, Dataset]:
    """(original as pydicom reads it, our output decoded independently)."""
    path = _path(name)
    entry = Entry(name, data=Path(path).read_bytes()) if in_memory else Entry(path, path=path)
    out = convert(entry, read_header(entry), target)
    return pydicom.dcmread(path), decode_dataset(out, target)


def _same_pixels(original: Dataset, converted: Dataset) -> None:
    expected, actual = original.pixel_array, converted.pixel_array
    # Same kind and size of sample; the byte order of the array follows the syntax.
    assert (actual.dtype.kind, actual.dtype.itemsize) == (
        expected.dtype.kind,
        expected.dtype.itemsize,
    )
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def _same_attributes(original: Dataset, converted: Dataset) -> None:
    assert converted.SOPInstanceUID == original.SOPInstanceUID
    assert converted.SOPClassUID == original.SOPClassUID
    assert not any(tag.group == 0x0002 for tag in converted.keys())
    for keyword in ("PatientName", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns"):
        if keyword in original:
            assert converted[keyword].value == original[keyword].value, keyword


# --- uncompressed <-> uncompressed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("MR_small.dcm", ImplicitVRLittleEndian),
        ("MR_small_implicit.dcm", ExplicitVRLittleEndian),
        ("CT_small.dcm", ImplicitVRLittleEndian),
        ("rtdose.dcm", ExplicitVRLittleEndian),
        ("examples_rgb_color.dcm", ImplicitVRLittleEndian),
    ],
)
def test_uncompressed_little_endian_round_trip(name: str, target: str) -> None:
    original, converted = _convert(name, target)
    _same_attributes(original, converted)
    _same_pixels(original, converted)


def test_non_image_data_set_converts_without_pixels() -> None:
    original, converted = _convert("rtplan.dcm", ExplicitVRLittleEndian)
    _same_attributes(original, converted)
    assert converted.BeamSequence[0].BeamName == original.BeamSequence[0].BeamName


def test_in_memory_entry_converts_like_a_file() -> None:
    original, converted = _convert("MR_small.dcm", ImplicitVRLittleEndian, in_memory=True)
    _same_attributes(original, converted)
    _same_pixels(original, converted)


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("MR_small_bigendian.dcm", ExplicitVRLittleEndian),
        ("MR_small_bigendian.dcm", ImplicitVRLittleEndian),
        ("rtdose_expb_1frame.dcm", ExplicitVRLittleEndian),
        ("SC_rgb_small_odd_big_endian.dcm", ImplicitVRLittleEndian),
        ("MR_small.dcm", ExplicitVRBigEndian),
    ],
)
def test_endianness_conversion_keeps_pixel_values(name: str, target: str) -> None:
    original, converted = _convert(name, target)
    _same_attributes(original, converted)
    _same_pixels(original, converted)


@pytest.mark.parametrize("name", ["ExplVR_BigEnd.dcm", "liver_expb_1frame.dcm"])
def test_big_endian_ob_pixel_data_converts(name: str) -> None:
    # OB (8-bit, 1-bit) pixel data has no byte order, so these convert correctly today.
    original, converted = _convert(name, ExplicitVRLittleEndian)
    _same_attributes(original, converted)
    _same_pixels(original, converted)


# --- compressed -> uncompressed (decoders installed) ----------------------------------------


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("MR_small_RLE.dcm", ExplicitVRLittleEndian),
        ("MR_small_jp2klossless.dcm", ExplicitVRLittleEndian),
        ("MR_small_jpeg_ls_lossless.dcm", ImplicitVRLittleEndian),
        ("SC_rgb_rle_2frame.dcm", ExplicitVRLittleEndian),
        ("SC_rgb_rle_16bit.dcm", ImplicitVRLittleEndian),
        ("JPEG2000.dcm", ExplicitVRLittleEndian),
        ("SC_rgb_jpeg_dcmtk.dcm", ExplicitVRLittleEndian),
        ("JPGExtended.dcm", ExplicitVRLittleEndian),
    ],
)
def test_compressed_to_uncompressed(name: str, target: str) -> None:
    original, converted = _convert(name, target)
    _same_attributes(original, converted)
    assert "NumberOfFrames" not in original or converted.NumberOfFrames == original.NumberOfFrames
    _same_pixels(original, converted)  # the same decoder on both sides: identical


# --- uncompressed -> lossless compressed -------------------------------------------------------


@pytest.mark.parametrize("target", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "MR_small_implicit.dcm"])
def test_lossless_compression_round_trips_pixel_identical(name: str, target: str) -> None:
    original, converted = _convert(name, target)
    _same_attributes(original, converted)
    assert converted["PixelData"].is_undefined_length  # encapsulated
    _same_pixels(original, converted)


def test_compressed_to_other_compressed_goes_through_pixels() -> None:
    original, converted = _convert("MR_small_RLE.dcm", JPEG2000Lossless)
    _same_attributes(original, converted)
    _same_pixels(original, converted)


def test_rgb_multiframe_to_rle() -> None:
    original, converted = _convert("SC_rgb_rle_2frame.dcm", RLELossless)
    # Same syntax: no conversion at all, the bytes are re-encoded unchanged.
    _same_pixels(original, converted)
    original, converted = _convert("SC_rgb_small_odd.dcm", RLELossless)
    _same_pixels(original, converted)


def test_encoder_failure_names_the_syntax() -> None:
    # OpenJPEG cannot encode a 3x3 image with its default resolution levels.
    with pytest.raises(ConversionError, match="cannot encode pixel data in JPEG2000Lossless"):
        _convert("SC_rgb_small_odd.dcm", JPEG2000Lossless)


# --- JPEG Baseline -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "examples_rgb_color.dcm"])
def test_jpeg_baseline_for_8_bit_colour(name: str) -> None:
    original, converted = _convert(name, JPEGBaseline8Bit)
    _same_attributes(original, converted)
    assert converted.PhotometricInterpretation == "YBR_FULL_422"
    assert converted.LossyImageCompression == "01"
    assert converted.LossyImageCompressionMethod == "ISO_10918_1"
    expected = original.pixel_array.astype(np.int16)
    actual = converted.pixel_array.astype(np.int16)  # pydicom converts back to RGB
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).mean() < 3  # lossy, but close (quality 90)


def _ct_8_bit(*, signed: bool) -> tuple[Entry, Dataset, np.ndarray]:
    """CT_small squeezed to 8-bit samples (unsigned, or signed two's complement)."""
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    pixels = ds.pixel_array.astype(np.int32) % 256
    pixels = (pixels - 128).astype(np.int8) if signed else pixels.astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return Entry("ct8.dcm", data=buffer.getvalue()), ds, pixels


def test_jpeg_baseline_for_8_bit_monochrome() -> None:
    entry, ds, pixels = _ct_8_bit(signed=False)
    converted = decode_dataset(
        convert(entry, read_header(entry), JPEGBaseline8Bit), JPEGBaseline8Bit
    )
    assert converted.SOPInstanceUID == ds.SOPInstanceUID
    assert converted.PhotometricInterpretation == ds.PhotometricInterpretation
    assert converted.pixel_array.shape == pixels.shape
    assert np.abs(converted.pixel_array.astype(int) - pixels.astype(int)).mean() < 4


def test_jpeg_baseline_signed_8_bit_is_a_conversion_error_or_exact() -> None:
    entry, _ds, pixels = _ct_8_bit(signed=True)
    try:
        out = convert(entry, read_header(entry), JPEGBaseline8Bit)
    except ConversionError:
        return  # refusing is fine, with a reason
    converted = decode_dataset(out, JPEGBaseline8Bit)
    assert np.abs(converted.pixel_array.astype(int) - pixels.astype(int)).mean() < 4


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm"])
def test_jpeg_baseline_refuses_16_bit_saying_8_bit(name: str) -> None:
    with pytest.raises(ConversionError, match="8-bit") as info:
        _convert(name, JPEGBaseline8Bit)
    assert "BitsAllocated 16" in str(info.value)


# --- deflate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_deflated_source_converts(target: str) -> None:
    original, converted = _convert("image_dfl.dcm", target)
    _same_attributes(original, converted)
    _same_pixels(original, converted)


@pytest.mark.parametrize("name", ["rtplan.dcm", "MR_small.dcm"])
def test_deflated_target_is_deflated(name: str) -> None:
    original, converted = _convert(name, DeflatedExplicitVRLittleEndian)
    _same_attributes(original, converted)


# --- every conversion keeps the SOP Instance UID ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("MR_small.dcm", RLELossless),
        ("MR_small.dcm", JPEG2000Lossless),
        ("MR_small_RLE.dcm", ImplicitVRLittleEndian),
        ("SC_rgb_rle_2frame.dcm", JPEGBaseline8Bit),
        ("MR_small_jp2klossless.dcm", RLELossless),
    ],
)
def test_sop_instance_uid_is_kept(name: str, target: str) -> None:
    original, converted = _convert(name, target)
    assert converted.SOPInstanceUID == original.SOPInstanceUID
    assert converted.SOPInstanceUID == read_header(Entry(name, path=_path(name))).sop_instance_uid


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("target", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
def test_dataset_only_file_converts(implicit: bool, target: str) -> None:
    ds = pydicom.dcmread(_path("MR_small.dcm"))
    expected = ds.pixel_array
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    assert buffer.getvalue()[:2] == b"\x08\x00"  # no preamble, no meta
    entry = Entry("bare.dcm", data=buffer.getvalue())
    header = read_header(entry)
    assert not header.has_meta
    converted = decode_dataset(convert(entry, header, target), target)
    assert converted.SOPInstanceUID == ds.SOPInstanceUID
    np.testing.assert_array_equal(converted.pixel_array, expected)


@pytest.mark.parametrize(
    "target",
    [
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1: pydicom has no encoder
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000 lossy: needs a ratio or PSNR
    ],
)
def test_no_encoder_is_a_conversion_error_naming_the_syntax(target: str) -> None:
    from scu.protocol.uids import uid_keyword as syntax_name

    with pytest.raises(ConversionError, match="cannot encode pixel data in") as info:
        _convert("MR_small.dcm", target)
    assert syntax_name(target) in str(info.value)


def _planar_rgb() -> tuple[Entry, np.ndarray]:
    """examples_rgb_color.dcm re-encoded colour-by-plane (PlanarConfiguration 1)."""
    ds = pydicom.dcmread(_path("examples_rgb_color.dcm"))
    expected = ds.pixel_array
    ds.PixelData = np.ascontiguousarray(expected.transpose(2, 0, 1)).tobytes()
    ds.PlanarConfiguration = 1
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert np.array_equal(pydicom.dcmread(io.BytesIO(buffer.getvalue())).pixel_array, expected)
    return Entry("planar.dcm", data=buffer.getvalue()), expected


@pytest.mark.parametrize("target", [ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless])
def test_planar_rgb_converts_losslessly(target: str) -> None:
    entry, expected = _planar_rgb()
    converted = decode_dataset(convert(entry, read_header(entry), target), target)
    np.testing.assert_array_equal(converted.pixel_array, expected)


def test_planar_rgb_to_rle_keeps_pixels() -> None:
    entry, expected = _planar_rgb()
    converted = decode_dataset(convert(entry, read_header(entry), RLELossless), RLELossless)
    np.testing.assert_array_equal(converted.pixel_array, expected)
