"""Transfer syntaxes: what goes on the wire, checked by a pynetdicom SCP that decodes
every data set it receives."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts

from mock_scp import datagen
from scu import FileSending, StoreScu
from tests.support.pynetdicom_scp import UNCOMPRESSED, HarnessScp
from tests.support.recorder import Recorder
from tests.support.scu_helpers import instance_uid, make_scu, pydicom_file, write_series

CT = str(pydicom.uid.CTImageStorage)
MR = str(pydicom.uid.MRImageStorage)

#: pydicom test files in many syntaxes (all ship with pydicom; none is downloaded).
ENCODED_FILES = [
    "CT_small.dcm",  # Explicit VR LE
    "MR_small_implicit.dcm",  # Implicit VR LE
    "MR_small_bigendian.dcm",  # Explicit VR BE
    "image_dfl.dcm",  # Deflated Explicit VR LE
    "MR_small_RLE.dcm",
    "rtdose_rle.dcm",  # RLE, multi-frame
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",  # JPEG 2000 (lossy)
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline, YBR colour
    "JPGExtended.dcm",  # JPEG Extended 12-bit
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1, RGB
]
COMPRESSED_FILES = [f for f in ENCODED_FILES if f not in ("CT_small.dcm", "MR_small_implicit.dcm")]


def _file_syntax(path: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def _pixels(path: str) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def _queue(scu: StoreScu, files: list[str]) -> list[str]:
    for f in files:
        scu.add_file(f)
    return files


def test_auto_sends_each_file_in_its_own_syntax(scp: HarnessScp) -> None:
    files = [pydicom_file(n) for n in ENCODED_FILES]
    scu = make_scu(scp)
    _queue(scu, files)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert result.failed == 0, [o.error for o in result.files if not o.ok]
    for path, outcome, received in zip(files, result.files, scp.received, strict=True):
        assert outcome.transfer_syntax == _file_syntax(path) == received.transfer_syntax, path
        assert received.decode_error is None, (path, received.decode_error)
        assert received.sop_instance_uid == instance_uid(path)


@pytest.mark.parametrize("name", COMPRESSED_FILES)
def test_auto_converts_when_only_uncompressed_is_accepted(
    scp_factory: Callable[..., HarnessScp], name: str
) -> None:
    """The SCP accepts only Explicit/Implicit VR LE: the file goes decompressed, with
    the same SOP Instance UID and the same pixels."""
    scp = scp_factory(default_syntaxes=UNCOMPRESSED)
    path = pydicom_file(name)
    scu = make_scu(scp)
    scu.add_file(path)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, [path])
    (outcome,) = result.files
    assert outcome.ok, outcome.error
    (received,) = scp.received
    assert received.transfer_syntax in UNCOMPRESSED
    assert outcome.transfer_syntax == received.transfer_syntax
    assert received.decode_error is None
    assert received.sop_instance_uid == instance_uid(path)
    assert received.dataset is not None
    sent = received.dataset.pixel_array
    original = _pixels(path)
    assert sent.shape == original.shape
    assert np.array_equal(sent, original), f"{name}: pixels changed in conversion"


def test_never_transcode_refuses_what_needs_converting(
    scp_factory: Callable[..., HarnessScp],
) -> None:
    scp = scp_factory(default_syntaxes=UNCOMPRESSED)
    files = [pydicom_file(n) for n in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm")]
    scu = make_scu(scp, never_transcode=True)
    _queue(scu, files)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, False, False]
    # The reason names the refused syntax (and, ideally, that never_transcode is what
    # stopped a conversion; today it does not: only the file's own syntax was proposed).
    for outcome, syntax in zip(result.files[1:], ("RLELossless", "JPEG2000"), strict=True):
        error = outcome.error or ""
        assert ("refused" in error or "never_transcode" in error) and syntax in error, error
    assert [e.file for e in rec.of(FileSending)] == files[:1]
    assert len(scp.received) == 1
    # Nothing beyond the files' own syntaxes was proposed.
    assert scp.associations[0].proposed_contexts == 3


FORCED_SOURCES = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "image_dfl.dcm",
]


@pytest.mark.parametrize("name", FORCED_SOURCES)
@pytest.mark.parametrize(
    "forced", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_forced_uncompressed_syntax(scp: HarnessScp, forced: str, name: str) -> None:
    """Forced: only that syntax is proposed and the file goes in it, converted, with
    the same UID and the same pixels."""
    path = pydicom_file(name)
    scu = make_scu(scp, transfer_syntax=UID(forced).keyword)
    scu.add_file(path)
    result = scu.send()
    (outcome,) = result.files
    assert outcome.ok, outcome.error
    assert outcome.transfer_syntax == forced
    (received,) = scp.received
    assert received.transfer_syntax == forced
    assert received.decode_error is None
    assert received.sop_instance_uid == instance_uid(path)
    assert received.dataset is not None
    assert np.array_equal(received.dataset.pixel_array, _pixels(path)), "pixels changed"
    assert scp.associations[0].proposed_contexts == 1


LOSSLESS_SOURCES = [
    "MR_small.dcm",
    "CT_small.dcm",
    "MR_small_bigendian.dcm",  # 16-bit samples, big endian
    "SC_rgb_small_odd_big_endian.dcm",  # 8-bit RGB, big endian
    "SC_rgb_rle.dcm",  # decompressed, then compressed again
    "MR_small_jpeg_ls_lossless.dcm",
]


#: OpenJPEG (through pylibjpeg) cannot encode this odd-sized image: a clear refusal.
ENCODER_REFUSES = {(JPEG2000Lossless, "SC_rgb_small_odd_big_endian.dcm")}


@pytest.mark.parametrize("name", LOSSLESS_SOURCES)
@pytest.mark.parametrize("forced", [RLELossless, JPEG2000Lossless])
def test_forced_lossless_compression_keeps_pixels_and_uid(
    scp: HarnessScp, forced: str, name: str
) -> None:
    """Forced lossless compression: the file arrives compressed with the same UID and
    exactly the same pixels, or fails with the encoder's reason; never corrupted."""
    path = pydicom_file(name)
    scu = make_scu(scp, transfer_syntax=UID(forced).keyword)
    scu.add_file(path)
    result = scu.send()
    (outcome,) = result.files
    if (forced, name) in ENCODER_REFUSES:
        assert not outcome.ok and not scp.received
        assert "cannot encode" in (outcome.error or ""), outcome.error
        return
    assert outcome.ok, outcome.error
    (received,) = scp.received
    assert received.transfer_syntax == forced
    assert received.sop_instance_uid == instance_uid(path)
    assert received.dataset is not None
    assert np.array_equal(received.dataset.pixel_array, _pixels(path)), "pixels changed"


def test_forced_jpeg_baseline_8bit_ok_16bit_refused(scp: HarnessScp, tmp_path: Path) -> None:
    eight = write_series(tmp_path, 1, prefix="eight", bits_allocated=8)[0]
    sixteen = pydicom_file("CT_small.dcm")
    scu = make_scu(scp, transfer_syntax="JPEGBaseline")
    _queue(scu, [eight, sixteen])
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, [eight, sixteen])
    assert [o.ok for o in result.files] == [True, False], result.files[0].error
    assert result.files[0].transfer_syntax == JPEGBaseline8Bit
    error = result.files[1].error or ""
    assert "JPEG Baseline" in error or "JPEGBaseline" in error
    assert "16" in error  # names the bit depth that makes it impossible
    (received,) = scp.received
    assert received.transfer_syntax == JPEGBaseline8Bit
    assert received.sop_instance_uid == instance_uid(eight)
    assert received.dataset is not None
    assert received.dataset.LossyImageCompression == "01"
    original = _pixels(eight).astype(int)
    lossy = received.dataset.pixel_array.astype(int)
    assert lossy.shape == original.shape
    assert np.abs(lossy - original).mean() < 8  # lossy, but the same image
    # The failed one never left: no FileSending for it.
    assert [e.file for e in rec.of(FileSending)] == [eight]


def test_forced_syntax_the_scp_refuses_fails_each_file(
    scp_factory: Callable[..., HarnessScp],
) -> None:
    scp = scp_factory(default_syntaxes=UNCOMPRESSED)
    files = [pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")]
    scu = make_scu(scp, transfer_syntax="JPEG2000Lossless")
    _queue(scu, files)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert result.failed == 2
    for outcome in result.files:
        error = outcome.error or ""
        assert "refused" in error and "JPEG2000Lossless" in error, error
    assert not scp.received


def test_files_go_on_their_own_sop_class_context(scp_factory: Callable[..., HarnessScp]) -> None:
    """CT is accepted only in Implicit VR LE, MR only in Explicit VR LE. A CT file in
    Explicit VR LE must be converted to Implicit on a CT context, never sent on the MR
    context that happens to accept its syntax (a bug of the node-dicom implementation)."""
    scp = scp_factory(
        sop_classes=[CT, MR],
        syntaxes={CT: [ImplicitVRLittleEndian], MR: [ExplicitVRLittleEndian]},
    )
    files = [
        pydicom_file("CT_small.dcm"),  # CT, Explicit
        pydicom_file("MR_small_implicit.dcm"),  # MR, Implicit
        pydicom_file("MR_small.dcm"),  # MR, Explicit
    ]
    scu = make_scu(scp)
    _queue(scu, files)
    result = scu.send()
    assert result.failed == 0, [o.error for o in result.files if not o.ok]
    for received in scp.received:
        assert received.context_abstract_syntax == received.command_sop_class_uid
        assert received.sop_class_uid == received.context_abstract_syntax
        assert received.decode_error is None
    assert [r.transfer_syntax for r in scp.received] == [
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
    ]


def test_sop_class_the_scp_does_not_support(scp_factory: Callable[..., HarnessScp]) -> None:
    scp = scp_factory(sop_classes=[CT])
    files = [pydicom_file("MR_small.dcm"), pydicom_file("CT_small.dcm")]
    scu = make_scu(scp)
    _queue(scu, files)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [False, True]
    error = result.files[0].error or ""
    assert "MR Image Storage" in error and "refused" in error, error
    assert [e.file for e in rec.of(FileSending)] == files[1:]


#: 70 storage SOP classes pynetdicom serves (a private UID would make its SCP abort:
#: it has no service class for it).
SEVENTY_CLASSES = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts][:70]


@functools.cache
def _seventy_class_instances() -> list[tuple[str, bytes, str, str, str]]:
    """(name, bytes, SOP class, syntax, SOP Instance UID): 2 per class, made once."""
    made = []
    for n, sop_class in enumerate(SEVENTY_CLASSES):
        for k, syntax in enumerate((str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))):
            data = datagen.make_bytes(sop_class=sop_class, transfer_syntax=syntax, seed=2 * n + k)
            ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True)
            name = f"mem-{n:02d}-{UID(syntax).keyword}.dcm"
            made.append((name, data, sop_class, syntax, str(ds.SOPInstanceUID)))
    return made


@pytest.mark.parametrize(
    ("options", "per_class"),
    [({}, 3), ({"never_transcode": True}, 2), ({"transfer_syntax": "ExplicitVRLittleEndian"}, 1)],
    ids=["auto", "never-transcode", "forced"],
)
def test_more_than_128_contexts_are_split_across_associations(
    scp_factory: Callable[..., HarnessScp], options: dict[str, object], per_class: int
) -> None:
    """70 SOP classes x 2 file syntaxes: 210 / 140 / 70 contexts, so two association
    plans for auto and never_transcode, one for forced; every file arrives once, in
    queue order, on its own SOP class's context."""
    classes = SEVENTY_CLASSES
    scp = scp_factory(sop_classes=classes, default_syntaxes=UNCOMPRESSED, decode_datasets=True)
    scu = make_scu(scp, **options)
    names: list[str] = []
    expected: dict[str, tuple[str, str]] = {}
    for name, data, sop_class, syntax, uid in _seventy_class_instances():
        scu.add_file_from_memory(data, name)
        names.append(name)
        expected[uid] = (sop_class, syntax)
    assert len(expected) == 140
    # Then classes from both ends of the list, alternating: they sit in different
    # association plans when the contexts are split, and queue order must still hold.
    tail_classes = [c for n in range(2) for c in (classes[n], classes[-1 - n])]
    for n, sop_class in enumerate(tail_classes):
        data = datagen.make_bytes(sop_class=sop_class, seed=1000 + n)
        names.append(f"alternating-{n}.dcm")
        scu.add_file_from_memory(data, names[-1])
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True)
        expected[str(ds.SOPInstanceUID)] = (sop_class, str(ExplicitVRLittleEndian))
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, names)
    assert result.failed == 0, [o.error for o in result.files if not o.ok][:3]
    proposed = [a.proposed_contexts for a in scp.associations]
    assert all(count <= 128 for count in proposed), proposed
    if per_class == 1:  # forced: 70 contexts fit in one association
        assert proposed == [70]
    else:
        # Two plans, one after the other; then each alternating file needs the other
        # plan's association again (queue order wins over reuse).
        assert sum(proposed[:2]) == 70 * per_class
        assert proposed[2:] == proposed[:2] * 2
    assert sorted(str(u) for u in scp.instance_uids) == sorted(expected)
    assert [r.sop_class_uid for r in scp.received[-4:]] == tail_classes
    forced = options.get("transfer_syntax")
    for received in scp.received:
        sop_class, syntax = expected[str(received.sop_instance_uid)]
        assert received.context_abstract_syntax == sop_class == received.sop_class_uid
        assert received.transfer_syntax == (ExplicitVRLittleEndian if forced else syntax)


def test_deflated_and_big_endian_go_as_they_are_when_accepted(
    scp_factory: Callable[..., HarnessScp],
) -> None:
    scp = scp_factory(
        default_syntaxes=(DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, *UNCOMPRESSED)
    )
    files = [pydicom_file("image_dfl.dcm"), pydicom_file("MR_small_bigendian.dcm")]
    scu = make_scu(scp)
    _queue(scu, files)
    result = scu.send()
    assert result.failed == 0
    assert [r.transfer_syntax for r in scp.received] == [
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    ]
    assert all(r.decode_error is None for r in scp.received)


def test_scp_accepting_only_implicit_vr(scp_factory: Callable[..., HarnessScp]) -> None:
    """Every file, whatever its syntax (and with or without pixel data or file meta),
    arrives in Implicit VR Little Endian with its content intact."""
    rt_ion_plan = str(pydicom.uid.RTIonPlanStorage)
    scp = scp_factory(default_syntaxes=(ImplicitVRLittleEndian,), extra_sop_classes=[rt_ion_plan])
    names = [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "test-SR.dcm",  # no pixel data, nested sequences
        "ExplVR_BigEndNoMeta.dcm",  # big endian, no file meta
        "SC_rgb_small_odd_big_endian.dcm",
    ]
    files = [pydicom_file(n) for n in names]
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    result = scu.send()
    assert result.failed == 0, [o.error for o in result.files if not o.ok]
    for path, received in zip(files, scp.received, strict=True):
        assert received.transfer_syntax == ImplicitVRLittleEndian
        assert received.decode_error is None
        assert received.dataset is not None
        original = pydicom.dcmread(path, force=True)
        assert received.sop_instance_uid == str(original.SOPInstanceUID)
        if "PixelData" in original:
            assert np.array_equal(received.dataset.pixel_array, original.pixel_array), path
        # Every top-level element survived (values compared as decoded by pydicom).
        for elem in original:
            if elem.tag.group == 0x0002 or elem.tag == 0x7FE00010:
                continue
            assert elem.tag in received.dataset, (path, elem.tag)
            if elem.VR not in ("SQ", "UN", "OB", "OW") and not elem.tag.is_private:
                assert received.dataset[elem.tag].value == elem.value, (path, elem.tag)
