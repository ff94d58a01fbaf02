"""A conversion matrix over real files: for every (source file, target syntax) pair,
convert() either refuses with a ConversionError or delivers exactly the original pixels
with the same SOP Instance UID. Silent corruption is the one outcome never allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from scu.convert import ConversionError, convert
from scu.source import Entry, read_header
from tests.support.wire import decode_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_SOURCES = [
    "MR_small.dcm",  # Explicit VR LE, 16-bit
    "MR_small_implicit.dcm",  # Implicit VR LE, 16-bit
    "MR_small_bigendian.dcm",  # Explicit VR BE, 16-bit OW
    "ExplVR_BigEnd.dcm",  # Explicit VR BE, 8-bit RGB, colour-by-plane, OB
    "SC_rgb_small_odd_big_endian.dcm",  # Explicit VR BE, 8-bit RGB as OW, odd size
    "rtdose_expb_1frame.dcm",  # Explicit VR BE, 32-bit
    "MR_small_RLE.dcm",  # RLE Lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless
    "SC_rgb_rle_2frame.dcm",  # RLE, RGB, two frames
    "image_dfl.dcm",  # Deflated Explicit VR LE
]
_TARGETS = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEG2000Lossless,
    JPEGLSLossless,
]


def _path(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None and path.startswith(str(Path(pydicom.__file__).parent)), name
    return str(path)


#: Each source's own syntax: converting to it is no conversion, so those pairs are left out.
_OWN_SYNTAX = {
    name: read_header(Entry(name, path=_path(name))).transfer_syntax for name in _SOURCES
}

_MATRIX = [
    pytest.param(
        name,
        target,
        id=f"{name}-{UID(target).keyword}",
    )
    for name in _SOURCES
    for target in _TARGETS
    if _OWN_SYNTAX[name] != target
]


@pytest.mark.parametrize(("name", "target"), _MATRIX)
def test_conversion_is_exact_or_refused(name: str, target: str) -> None:
    path = _path(name)
    entry = Entry(name, path=path)
    header = read_header(entry)
    try:
        out = convert(entry, header, target)
    except ConversionError as exc:
        assert str(exc)  # refused, with a reason: allowed
        return
    original = pydicom.dcmread(path)
    converted = decode_dataset(out, target)
    assert converted.SOPInstanceUID == original.SOPInstanceUID
    expected, actual = original.pixel_array, converted.pixel_array
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(
    ("name", "target"),
    [
        (name, target)
        for name in _SOURCES
        for target in (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
        if _OWN_SYNTAX[name] != target
    ],
)
def test_every_source_converts_to_the_fallback_syntaxes(name: str, target: str) -> None:
    # The fallbacks are what auto mode converts to: refusing them loses the file.
    path = _path(name)
    entry = Entry(name, path=path)
    header = read_header(entry)
    converted = decode_dataset(convert(entry, header, target), target)
    np.testing.assert_array_equal(converted.pixel_array, pydicom.dcmread(path).pixel_array)
