"""Unit tests of scu.source.read_header: real pydicom test files agree with pydicom's
dcmread; dataset-only, big endian, deflated and nested-sequence files are read; broken
entries fail with an EntryError that says what is wrong."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from mock_scp import datagen
from scu.source import Entry, EntryError, Header, read_header

_PYDICOM_DIR = os.path.dirname(pydicom.__file__)
SC = "1.2.840.10008.5.1.4.1.1.7"


def _offline(name: str) -> str:
    """A pydicom test file that ships with the installed package (never a download)."""
    path = get_testdata_file(name)
    assert path is not None and path.startswith(_PYDICOM_DIR), name
    return str(path)


def _real_files() -> list[str]:
    """Every ``*.dcm`` bundled in the installed pydicom's test_files folder.

    Listed from the folder rather than with ``get_testdata_files()``, which also tries to
    download the external data sets (slow and failing offline)."""
    root = Path(_PYDICOM_DIR) / "data" / "test_files"
    return sorted(str(p) for p in root.glob("*.dcm") if p.is_file())


# Files pydicom reads leniently but which cannot be sent as they are: the reason our
# reader must give. Everything else with SOP UIDs must agree with dcmread.
_BROKEN = {
    "MR_truncated.dcm": r"truncated: element \(7FE0,0010\) declares 8192 bytes",
    "rtplan_truncated.dcm": "truncated",
    # Its meta says JPEG Baseline (explicit VR) but the data set is implicit VR.
    "SC_rgb_jpeg.dcm": "data set is not encoded as its file meta says",
    "meta_missing_tsyntax.dcm": r"file meta has no Transfer Syntax UID \(0002,0010\)",
    # A stray byte before the data set: pydicom finds no SOP Class either.
    "no_meta.dcm": "not a DICOM file",
}


def _pydicom_view(path: str) -> tuple[str, str] | None:
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    if not sop_class or not sop_instance:
        return None
    return str(sop_class), str(sop_instance)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", _real_files(), ids=os.path.basename)
def test_real_files_agree_with_pydicom(path: str) -> None:
    name = os.path.basename(path)
    if name in _BROKEN:
        with pytest.raises(EntryError, match=_BROKEN[name]):
            read_header(Entry(path, path=path))
        return
    expected = _pydicom_view(path)
    if expected is None:  # no SOP UIDs (e.g. a bare sequence test file)
        with pytest.raises(EntryError, match=r"missing SOP (Class|Instance) UID"):
            read_header(Entry(path, path=path))
        return
    header = read_header(Entry(path, path=path))
    assert (header.sop_class_uid, header.sop_instance_uid) == expected
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    meta_syntax = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta else None
    if meta_syntax:
        assert header.has_meta
        assert header.transfer_syntax == meta_syntax
    else:
        assert not header.has_meta
        assert header.dataset_offset == 0
    assert header.size == os.path.getsize(path)


def test_enough_real_files_are_covered() -> None:
    readable = [p for p in _real_files() if os.path.basename(p) not in _BROKEN]
    assert len(readable) >= 60


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "rtdose.dcm",
        "examples_jpeg2k.dcm",
    ],
)
def test_dataset_offset_points_at_the_data_set(name: str) -> None:
    path = _offline(name)
    header = read_header(Entry(path, path=path))
    data = Path(path).read_bytes()[header.dataset_offset :]
    implicit = header.transfer_syntax == ImplicitVRLittleEndian
    ds = read_dataset(io.BytesIO(data), is_implicit_VR=implicit, is_little_endian=True)
    assert not any(tag.group == 0x0002 for tag in ds.keys())
    assert ds.SOPInstanceUID == header.sop_instance_uid


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "ExplVR_BigEnd.dcm", "image_dfl.dcm", "ExplVR_LitEndNoMeta.dcm"]
)
def test_file_on_disk_and_same_bytes_in_memory_give_the_same_header(name: str) -> None:
    path = _offline(name)
    on_disk = read_header(Entry(path, path=path))
    in_memory = read_header(Entry("memory.dcm", data=Path(path).read_bytes()))
    assert on_disk == in_memory


def test_special_transfer_syntaxes() -> None:
    big = read_header(Entry("be", path=_offline("MR_small_bigendian.dcm")))
    assert big.transfer_syntax == ExplicitVRBigEndian
    deflated = read_header(Entry("dfl", path=_offline("image_dfl.dcm")))
    assert deflated.transfer_syntax == DeflatedExplicitVRLittleEndian
    assert deflated.sop_class_uid == SC


# --- synthetic files ----------------------------------------------------------------------


def _dataset(*, undefined_lengths: bool = True) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.777"
    ds.PatientName = "Doe^John"
    inner = Dataset()
    inner.CodeValue = "121071"
    inner.CodingSchemeDesignator = "DCM"
    item = Dataset()
    item.ConceptNameCodeSequence = Sequence([inner])
    ds.ContentSequence = Sequence([item, Dataset()])
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 2, 2, 8, 1
    ds.PixelData = b"\x01\x02\x03\x04"
    if undefined_lengths:
        ds["ContentSequence"].is_undefined_length = True
        item["ConceptNameCodeSequence"].is_undefined_length = True
        for each in (item, inner, ds.ContentSequence[1]):
            each.is_undefined_length_sequence_item = True
    return ds


def _with_meta(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _dataset_only(ds: Dataset, *, implicit: bool, little: bool = True) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    return out.getvalue()


@pytest.mark.parametrize("undefined", [True, False])
@pytest.mark.parametrize(
    ("implicit", "syntax"), [(True, ImplicitVRLittleEndian), (False, ExplicitVRLittleEndian)]
)
def test_dataset_only_files(implicit: bool, syntax: str, undefined: bool) -> None:
    data = _dataset_only(_dataset(undefined_lengths=undefined), implicit=implicit)
    assert data[:2] == b"\x08\x00"  # really no preamble and no meta
    header = read_header(Entry("x.dcm", data=data))
    assert header == Header(SC, "1.2.826.0.1.3680043.8.498.777", syntax, 0, len(data), False)


def test_dataset_only_big_endian() -> None:
    data = _dataset_only(_dataset(), implicit=False, little=False)
    header = read_header(Entry("x.dcm", data=data))
    assert header.transfer_syntax == ExplicitVRBigEndian
    assert header.sop_instance_uid == "1.2.826.0.1.3680043.8.498.777"
    assert not header.has_meta


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_nested_undefined_length_sequences_with_meta(syntax: str) -> None:
    data = _with_meta(_dataset(), syntax)
    header = read_header(Entry("x.dcm", data=data))
    assert header.transfer_syntax == syntax
    assert header.has_meta
    assert data[header.dataset_offset : header.dataset_offset + 2] == b"\x08\x00"


def test_meta_without_preamble() -> None:
    data = _with_meta(_dataset(), ExplicitVRLittleEndian)[132:]
    header = read_header(Entry("x.dcm", data=data))
    assert header.has_meta and header.transfer_syntax == ExplicitVRLittleEndian
    assert header.sop_instance_uid == "1.2.826.0.1.3680043.8.498.777"


def _explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2s2xL", group, element, vr, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _implicit(group: int, element: int, value: bytes, length: int | None = None) -> bytes:
    return struct.pack("<HHL", group, element, len(value) if length is None else length) + value


_DELIM_ITEM = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_DELIM_SEQ = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_ITEM_UNDEFINED = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)


def test_un_sequence_of_undefined_length_after_the_uids_is_walked_as_implicit() -> None:
    un_body = _ITEM_UNDEFINED + _implicit(0x0008, 0x0100, b"en") + _DELIM_ITEM + _DELIM_SEQ
    data = (
        _explicit(0x0008, 0x0016, b"UI", SC.encode() + b"\x00")
        + _explicit(0x0008, 0x0018, b"UI", b"1.2.3.4\x00")
        + struct.pack("<HH2s2xL", 0x0009, 0x1010, b"UN", 0xFFFFFFFF)
        + un_body
    )
    header = read_header(Entry("x.dcm", data=data))
    assert header.sop_instance_uid == "1.2.3.4"


def test_un_sequence_of_undefined_length_before_the_uids() -> None:
    un_body = _ITEM_UNDEFINED + _implicit(0x0008, 0x0100, b"en") + _DELIM_ITEM + _DELIM_SEQ
    data = (
        _explicit(0x0008, 0x0005, b"CS", b"ISO_IR 100")
        + struct.pack("<HH2s2xL", 0x0008, 0x0006, b"UN", 0xFFFFFFFF)
        + un_body
        + _explicit(0x0008, 0x0016, b"UI", SC.encode() + b"\x00")
        + _explicit(0x0008, 0x0018, b"UI", b"1.2.3.4\x00")
    )
    assert pydicom.dcmread(io.BytesIO(data), force=True).SOPInstanceUID == "1.2.3.4"
    assert read_header(Entry("x.dcm", data=data)).sop_instance_uid == "1.2.3.4"


# --- errors -------------------------------------------------------------------------------


def test_empty_file_on_disk_and_in_memory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    for entry in (Entry(str(empty), path=str(empty)), Entry("m", data=b"")):
        with pytest.raises(EntryError, match=r"^empty file \(0 bytes\)$"):
            read_header(entry)


@pytest.mark.parametrize(
    "data",
    [
        b"x",
        b"hello world, this is not DICOM at all" * 10,
        b"\x89PNG\r\n\x1a\n" + bytes(300),
        bytes(200),  # zeros: no DICM marker, group 0000
        b"%PDF-1.4\n" + b"0" * 500,
        bytes(128) + b"DICX" + bytes(100),
    ],
    ids=["one-byte", "text", "png", "zeros", "pdf", "bad-marker"],
)
def test_non_dicom_bytes(data: bytes) -> None:
    with pytest.raises(EntryError, match="not a DICOM file: no 'DICM' marker at offset 128"):
        read_header(Entry("x", data=data))


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.dcm")
    with pytest.raises(EntryError, match=f"file not found: {missing}"):
        read_header(Entry(missing, path=missing))
    with pytest.raises(EntryError, match="is a directory"):
        read_header(Entry(str(tmp_path), path=str(tmp_path)))


def _mr_small() -> bytes:
    return Path(_offline("MR_small.dcm")).read_bytes()


def _meta_end(data: bytes) -> int:
    group_length: int = struct.unpack_from("<L", data, 140)[0]
    return 144 + group_length


@pytest.mark.parametrize("cut", [140, 200, 230])
def test_truncated_inside_a_meta_element_value(cut: int) -> None:
    with pytest.raises(EntryError, match=r"^truncated: file meta element \(0002,"):
        read_header(Entry("x", data=_mr_small()[:cut]))


@pytest.mark.parametrize("cut", [135, 150, 250, "meta+3"])
def test_truncated_inside_a_meta_element_header(cut: int | str) -> None:
    data = _mr_small()
    end = _meta_end(data) + 3 if cut == "meta+3" else int(cut)
    with pytest.raises(EntryError, match="truncated"):
        read_header(Entry("x", data=data[:end]))


def test_nothing_after_the_meta_has_no_sop_class() -> None:
    data = _mr_small()
    with pytest.raises(EntryError, match=r"missing SOP Class UID \(0008,0016\)"):
        read_header(Entry("x", data=data[: _meta_end(data)]))


@pytest.mark.parametrize("short_by", [1, 2, 100, 4000])
def test_truncated_in_pixel_data(short_by: int) -> None:
    data = _mr_small()
    with pytest.raises(EntryError, match=r"^truncated: element \((7FE0,0010|FFFC,FFFC)\)"):
        read_header(Entry("x", data=data[:-short_by]))


def test_truncated_anywhere_is_an_entry_error_never_a_crash() -> None:
    data = Path(_offline("CT_small.dcm")).read_bytes()
    step = max(1, len(data) // 300)
    for cut in range(1, len(data), step):
        with pytest.raises(EntryError):
            read_header(Entry("x", data=data[:cut]))


@pytest.mark.parametrize("cut", [500, 2000, -10])
def test_truncated_big_endian_file_is_refused(cut: int) -> None:
    data = Path(_offline("MR_small_bigendian.dcm")).read_bytes()
    with pytest.raises(EntryError, match="truncated"):
        read_header(Entry("x", data=data[:cut]))


@pytest.mark.parametrize(
    ("name", "corrupt"),
    [
        ("image_dfl.dcm", "truncated"),
        ("image_dfl.dcm", "flipped"),
        ("MR_small_bigendian.dcm", "bad-vr"),
    ],
)
def test_broken_deflated_or_big_endian_file_is_an_entry_error(name: str, corrupt: str) -> None:
    data = bytearray(Path(_offline(name)).read_bytes())
    if corrupt == "truncated":
        del data[2000:]
    elif corrupt == "flipped":
        for i in range(400, 420):
            data[i] ^= 0xFF
    else:
        at = data.find(b"\x00\x08\x00\x16UI")  # SOP Class UID, big endian
        assert at > 0
        data[at + 5] = ord("X")
    with pytest.raises(EntryError):
        read_header(Entry("x", data=bytes(data)))


def _builder(sop_class: bytes | None, sop_instance: bytes | None) -> Callable[[bool], bytes]:
    def build(implicit: bool) -> bytes:
        parts = []
        for element, value in ((0x0016, sop_class), (0x0018, sop_instance)):
            if value is not None:
                parts.append(
                    _implicit(0x0008, element, value)
                    if implicit
                    else _explicit(0x0008, element, b"UI", value)
                )
        name = b"Doe^John"
        parts.append(
            _implicit(0x0010, 0x0010, name) if implicit else _explicit(0x0010, 0x0010, b"PN", name)
        )
        return b"".join(parts)

    return build


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "message"),
    [
        (None, b"1.2.3\x00", r"missing SOP Class UID \(0008,0016\)"),
        (SC.encode() + b"\x00", None, r"missing SOP Instance UID \(0008,0018\)"),
        (b"", b"1.2.3\x00", r"missing SOP Class UID"),
        (SC.encode() + b"\x00", b"\x00\x00", r"missing SOP Instance UID"),
        (SC.encode() + b"\x00", b"1.2.abc\x00", r"invalid SOP Instance UID '1\.2\.abc'"),
        (b"1.2.3 4", b"1.2.3\x00", r"invalid SOP Class UID '1\.2\.3 4'"),
        (SC.encode() + b"\x00", b"1." + b"2" * 70, r"invalid SOP Instance UID"),
    ],
)
def test_missing_or_invalid_sop_uids(
    implicit: bool, sop_class: bytes | None, sop_instance: bytes | None, message: str
) -> None:
    data = _builder(sop_class, sop_instance)(implicit)
    with pytest.raises(EntryError, match=message):
        read_header(Entry("x", data=data))


def test_meta_present_but_no_transfer_syntax() -> None:
    path = _offline("meta_missing_tsyntax.dcm")
    with pytest.raises(EntryError, match=r"file meta has no Transfer Syntax UID \(0002,0010\)"):
        read_header(Entry(path, path=path))


def test_meta_says_explicit_but_data_set_is_implicit() -> None:
    ds = _dataset()
    good = _with_meta(ds, ExplicitVRLittleEndian)
    header = read_header(Entry("x", data=good))
    implicit_body = _dataset_only(_dataset(), implicit=True)
    with pytest.raises(EntryError, match="data set is not encoded as its file meta says"):
        read_header(Entry("x", data=good[: header.dataset_offset] + implicit_body))


def test_invalid_vr_in_explicit_data_set() -> None:
    data = (
        _explicit(0x0008, 0x0016, b"UI", SC.encode() + b"\x00")
        + _explicit(0x0008, 0x0018, b"UI", b"1.2.3\x00")
        + struct.pack("<HH2sH", 0x0010, 0x0010, b"ZZ", 2)
        + b"ab"
    )
    with pytest.raises(EntryError, match=r"\(0010,0010\) .* invalid VR b'ZZ'"):
        read_header(Entry("x", data=data))


def test_stray_delimiter_at_top_level() -> None:
    data = _builder(SC.encode() + b"\x00", b"1.2.3\x00")(True) + _DELIM_ITEM
    with pytest.raises(EntryError, match=r"unexpected delimiter \(FFFE,E00D\)"):
        read_header(Entry("x", data=data))


def test_undefined_length_sequence_never_closed() -> None:
    data = (
        _builder(SC.encode() + b"\x00", b"1.2.3\x00")(True)
        + _implicit(0x0040, 0xA730, b"", length=0xFFFFFFFF)
        + _ITEM_UNDEFINED
        + _implicit(0x0008, 0x0100, b"en")
    )
    with pytest.raises(EntryError, match="truncated"):
        read_header(Entry("x", data=data))


def test_undefined_length_sequence_holding_a_non_item() -> None:
    data = (
        _builder(SC.encode() + b"\x00", b"1.2.3\x00")(True)
        + _implicit(0x0040, 0xA730, b"", length=0xFFFFFFFF)
        + _implicit(0x0008, 0x0100, b"en")
    )
    with pytest.raises(EntryError, match=r"\(0040,A730\) of undefined length holds \(0008,0100\)"):
        read_header(Entry("x", data=data))


def test_sequences_nested_too_deep_are_refused_not_a_recursion_error() -> None:
    nested = b""
    for _ in range(80):
        nested = (
            _implicit(0x0040, 0xA730, b"", length=0xFFFFFFFF)
            + _ITEM_UNDEFINED
            + nested
            + _DELIM_ITEM
            + _DELIM_SEQ
        )
    data = _builder(SC.encode() + b"\x00", b"1.2.3\x00")(True) + nested
    with pytest.raises(EntryError, match="nested more than 64 deep"):
        read_header(Entry("x", data=data))


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("ExplVR_LitEndNoMeta.dcm", ExplicitVRLittleEndian),
        ("ExplVR_BigEndNoMeta.dcm", ExplicitVRBigEndian),
    ],
)
def test_real_dataset_only_files_get_their_syntax_from_the_bytes(name: str, syntax: str) -> None:
    header = read_header(Entry(name, path=_offline(name)))
    assert header.transfer_syntax == syntax
    assert (header.has_meta, header.dataset_offset) == (False, 0)
    assert header.sop_instance_uid == "1.2.333.4444.5.6.7.8"


_FUZZ_BASES = {
    name: Path(_offline(name)).read_bytes()
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "JPEG2000.dcm")
}


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(
    name=st.sampled_from(sorted(_FUZZ_BASES)),
    changes=st.lists(
        st.tuples(st.integers(min_value=0, max_value=599), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
)
def test_corrupt_little_endian_files_give_entry_error_or_a_header(
    name: str, changes: list[tuple[int, int]]
) -> None:
    data = bytearray(_FUZZ_BASES[name])
    for position, value in changes:
        data[position] = value
    try:
        header = read_header(Entry("x", data=bytes(data)))
    except EntryError as exc:
        assert str(exc)
        return
    assert header.sop_class_uid and header.sop_instance_uid
    assert 0 <= header.dataset_offset <= header.size == len(data)


def test_a_file_that_reads_short_is_read_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FUSE and network file systems may return fewer bytes than asked before the end: a
    short read is not the end of the file, and the bytes kept for sending are all of it
    (a data set cut at an element boundary would otherwise pass its check, truncated)."""
    path = tmp_path / "ct.dcm"
    path.write_bytes(datagen.make_bytes(rows=64, columns=64))
    real_read = os.read
    monkeypatch.setattr("scu.source.os.read", lambda fd, n: real_read(fd, min(n, 1000)))
    keep: list[tuple[bytes, os.stat_result]] = []
    header = read_header(Entry(str(path), path=str(path)), keep)
    assert isinstance(header, Header) and header.size == path.stat().st_size
    assert keep and keep[0][0] == path.read_bytes()
