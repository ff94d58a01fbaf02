"""Queue handling, dataset-only files, bad inputs, max PDU and verbose logging, each
over a real association."""

from __future__ import annotations

import io
import logging
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from mock_scp import datagen
from scu import FileSending, StoreScu, TransferCompleted, TransferStarted
from tests.support.pynetdicom_scp import HarnessScp
from tests.support.raw_scp import RawScp
from tests.support.recorder import Recorder
from tests.support.scu_helpers import (
    FAST,
    SCP_AE,
    instance_uid,
    make_scu,
    pydicom_file,
    write_series,
)

RT_ION_PLAN = str(pydicom.uid.RTIonPlanStorage)


def _without(keyword: str) -> bytes:
    """A Part-10 file whose data set lacks ``keyword`` (the file meta is intact)."""
    ds = datagen.make_dataset(seed=99)
    delattr(ds, keyword)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=False)
    return out.getvalue()


# --- dataset-only files ---------------------------------------------------------------


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_dataset_only_files_are_sent(scp: HarnessScp, tmp_path: Path, syntax: str) -> None:
    """No preamble, no "DICM", no file meta: read, and sent in the syntax guessed."""
    on_disk = tmp_path / "bare.dcm"
    on_disk.write_bytes(datagen.without_meta_bytes(transfer_syntax=syntax, seed=1))
    in_memory = datagen.without_meta_bytes(transfer_syntax=syntax, seed=2)
    scu = make_scu(scp)
    scu.add_file(on_disk)
    scu.add_file_from_memory(in_memory, "bare-in-memory")
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, [os.fspath(on_disk), "bare-in-memory"])
    assert result.failed == 0, [o.error for o in result.files]
    assert [r.transfer_syntax for r in scp.received] == [syntax, syntax]
    assert all(r.decode_error is None for r in scp.received)
    expected = [
        str(datagen.make_dataset(transfer_syntax=syntax, seed=s).SOPInstanceUID) for s in (1, 2)
    ]
    assert scp.instance_uids == expected


def test_pydicom_dataset_only_files(scp_factory: Callable[..., HarnessScp]) -> None:
    scp = scp_factory(extra_sop_classes=[RT_ION_PLAN])
    files = [pydicom_file("ExplVR_LitEndNoMeta.dcm"), pydicom_file("ExplVR_BigEndNoMeta.dcm")]
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    result = scu.send()
    assert result.failed == 0, [o.error for o in result.files]
    assert [r.transfer_syntax for r in scp.received] == [
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    ]
    assert scp.instance_uids == ["1.2.333.4444.5.6.7.8"] * 2
    assert all(r.decode_error is None for r in scp.received)


# --- bad inputs -----------------------------------------------------------------------

#: (name, bytes or None for "removed after queueing", words the error must contain)
BAD_INPUTS: list[tuple[str, Callable[[], bytes | None], str]] = [
    ("removed.dcm", lambda: None, "not found"),
    ("empty.dcm", lambda: b"", "empty"),
    ("truncated.dcm", lambda: datagen.truncated_bytes(keep=0.5, seed=5), "truncated"),
    ("not-dicom.dcm", lambda: datagen.not_dicom_bytes(size=600), "not a dicom file"),
    ("pdf-as-dcm.dcm", lambda: b"%PDF-1.4\n" + bytes(range(256)) * 4, "not a dicom file"),
    ("no-sop-class.dcm", lambda: _without("SOPClassUID"), "sop class uid"),
    ("no-sop-instance.dcm", lambda: _without("SOPInstanceUID"), "sop instance uid"),
    ("preamble-only.dcm", lambda: b"\0" * 128 + b"DICM", "transfer syntax"),
]


def _materialise(tmp_path: Path) -> list[tuple[str, str]]:
    """Bad files on disk, with the words expected in their errors."""
    made: list[tuple[str, str]] = []
    for name, make, words in BAD_INPUTS:
        path = tmp_path / name
        data = make()
        path.write_bytes(data if data is not None else b"soon gone")
        made.append((os.fspath(path), words))
    return made


@pytest.mark.parametrize("concurrency", [1, 2])
def test_bad_inputs_each_end_in_one_clear_error(
    scp: HarnessScp, tmp_path: Path, concurrency: int
) -> None:
    good = write_series(tmp_path / "good", 3)
    bad = _materialise(tmp_path)
    bad += [
        (pydicom_file("MR_truncated.dcm"), "truncated"),
        (pydicom_file("rtplan_truncated.dcm"), "truncated"),
        (pydicom_file("meta_missing_tsyntax.dcm"), "transfer syntax"),
        (pydicom_file("no_meta.dcm"), "not a dicom file"),
    ]
    queue = [good[0], *[p for p, _ in bad[:6]], good[1], *[p for p, _ in bad[6:]], good[2]]
    scu = make_scu(scp, concurrency=concurrency)
    for path in queue:
        scu.add_file(path)
    os.remove(bad[0][0])  # missing after queueing
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, queue)
    assert result.successful == 3 and result.failed == len(bad)
    errors = rec.errors_by_file()
    for path, words in bad:
        assert words in errors[path].lower(), (path, errors[path])
        assert "\n" not in errors[path]
    assert {e.file for e in rec.of(FileSending)} == set(good)
    assert sorted(str(u) for u in scp.instance_uids) == sorted(instance_uid(g) for g in good)


def test_bad_entries_from_memory(scp: HarnessScp, tmp_path: Path) -> None:
    (good,) = write_series(tmp_path, 1)
    scu = make_scu(scp)
    scu.add_file_from_memory(b"", "empty-bytes")
    scu.add_file_from_memory(datagen.not_dicom_bytes(), "junk-bytes")
    scu.add_file_from_memory(datagen.truncated_bytes(keep=0.3), "cut-bytes")
    scu.add_file(good)
    scu.add_file_from_memory(memoryview(datagen.make_bytes(seed=41)), "a-memoryview")
    scu.add_file_from_memory(bytearray(datagen.make_bytes(seed=42)), "a-bytearray")
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    names = ["empty-bytes", "junk-bytes", "cut-bytes", good, "a-memoryview", "a-bytearray"]
    rec.check_invariants(result, names)
    assert [o.ok for o in result.files] == [False, False, False, True, True, True]
    assert len(scp.received) == 3
    errors = rec.errors_by_file()
    assert "empty" in errors["empty-bytes"]
    assert "not a dicom file" in errors["junk-bytes"].lower()
    assert "truncated" in errors["cut-bytes"]


def test_only_bad_inputs_needs_no_association(scp: HarnessScp, tmp_path: Path) -> None:
    bad = _materialise(tmp_path)[1:4]
    scu = make_scu(scp)
    for path, _ in bad:
        scu.add_file(path)
    rec = Recorder()
    result = scu.send(**rec.callbacks)  # nothing to send: no association, no raise
    rec.check_invariants(result, [p for p, _ in bad])
    assert result.failed == 3
    assert not scp.associations


def test_missing_paths_fail_at_add_time(tmp_path: Path) -> None:
    scu = StoreScu("127.0.0.1:104")  # never contacted
    with pytest.raises(FileNotFoundError):
        scu.add_file(tmp_path / "nope.dcm")
    with pytest.raises(FileNotFoundError):
        scu.add_directory(tmp_path / "no-such-folder")
    assert len(scu) == 0


# --- the queue ------------------------------------------------------------------------


def test_add_directory_sorted_recursive_pattern_and_dicomdir(
    scp: HarnessScp, tmp_path: Path
) -> None:
    root = tmp_path / "study"
    b = write_series(root / "b", 2, prefix="x")
    a = write_series(root / "a", 2, prefix="y", seed=1)
    top = write_series(root, 1, prefix="z", seed=2)
    (root / "notes.txt").write_text("not queued")
    (root / "a" / "DICOMDIR").write_bytes(b"not queued either")
    (root / "a" / "DICOMDIR.dcm").write_bytes(b"matches the pattern, but is not DICOM")
    real_dicomdir = root / "b" / "DICOMDIR.DCM"
    real_dicomdir.write_bytes(Path(pydicom_file("DICOMDIR")).read_bytes())
    upper = root / "b" / "UPPER.DCM"
    upper.write_bytes(Path(b[0]).read_bytes().replace(b"x-000", b"u-000"))
    scu = make_scu(scp)
    assert scu.add_directory(root, recursive=False) == 1
    scu.clean()
    assert scu.skipped == []
    count = scu.add_directory(root)
    expected = sorted([*a, *b, *top, os.fspath(upper)])  # the pattern ignores case
    assert count == 6 and scu.files == expected
    reasons = {os.path.basename(s.path): s.reason for s in scu.skipped}
    assert reasons == {
        "notes.txt": "does not match *.dcm",
        "DICOMDIR": "does not match *.dcm",
        "DICOMDIR.dcm": "not DICOM by its content",
        "DICOMDIR.DCM": "a DICOMDIR (media directory)",
    }
    result = scu.send()
    assert result.successful == 6 and result.failed == 0
    assert [o.file for o in result.files] == expected


def test_add_directory_by_content_whatever_the_names(scp: HarnessScp, tmp_path: Path) -> None:
    root = tmp_path / "export"
    series = write_series(root, 2, prefix="img")
    no_extension = root / "IM000012"
    no_extension.write_bytes(Path(series[0]).read_bytes())
    bare = root / "bare.bin"  # a data set without preamble and file meta
    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    bare.write_bytes((fixtures / "no_meta" / "ct_dataset_only_implicit.dcm").read_bytes())
    (root / "README.txt").write_text("a readme")
    (root / "media").write_bytes(Path(pydicom_file("DICOMDIR")).read_bytes())
    scu = make_scu(scp)
    assert scu.add_directory(root, pattern=None) == 4
    assert sorted(os.path.basename(f) for f in scu.files) == sorted(
        ["IM000012", "bare.bin", *(os.path.basename(f) for f in series)]
    )
    reasons = {os.path.basename(s.path): s.reason for s in scu.skipped}
    assert reasons == {
        "README.txt": "not DICOM by its content",
        "media": "a DICOMDIR (media directory)",
    }


def test_send_keeps_the_queue_and_clean_empties_it(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    first = scu.send()
    second = scu.send()
    assert first.successful == second.successful == 2
    assert len(scp.received) == 4  # sent again: send() does not empty the queue
    assert len(scp.associations) == 2
    scu.clean()
    assert len(scu) == 0
    rec = Recorder()
    empty = scu.send(**rec.callbacks)
    assert (empty.total_files, empty.successful, empty.failed, empty.files) == (0, 0, 0, [])
    assert [type(e) for e in rec.events] == [TransferStarted, TransferCompleted]
    assert len(scp.associations) == 2  # nothing to send: no association


def test_the_same_file_queued_twice_is_sent_twice(scp: HarnessScp, tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, 1)
    scu = make_scu(scp)
    scu.add_file(path)
    scu.add_file(path)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, [path, path])
    assert result.successful == 2 and len(scp.received) == 2


@pytest.mark.parametrize(
    ("calling", "called"),
    [("ABCDEFGHIJKLMNOP", "SIXTEEN-CHARS-AE"), ("A B", "PACS 1"), ("X", "Y")],
)
def test_ae_titles_reach_the_scp_as_given(tmp_path: Path, calling: str, called: str) -> None:
    """16-character titles and inner spaces; the SCP requires its called AE title."""
    with HarnessScp(ae_title=called) as scp:
        (path,) = write_series(tmp_path, 1)
        scu = StoreScu(scp.addr, calling_ae_title=calling, called_ae_title=called)
        scu.add_file(path)
        assert scu.send().successful == 1
        (assoc,) = scp.associations
        assert (assoc.calling_ae_title, assoc.called_ae_title) == (calling, called)
    scp.check()


# --- max PDU --------------------------------------------------------------------------


@pytest.mark.parametrize(("scu_max", "scp_max"), [(4096, 4096), (0, 0), (4096, 0), (0, 4096)])
def test_max_pdu_lengths(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path, scu_max: int, scp_max: int
) -> None:
    """The SCU announces its max PDU (0 = no limit) and keeps to the SCP's: every
    P-DATA PDU it sends fits, and files far larger than one PDU arrive intact."""
    scp = scp_factory(max_pdu_length=scp_max)
    files = [*write_series(tmp_path, 2, size=200_000), pydicom_file("CT_small.dcm")]
    scu = make_scu(scp, max_pdu_length=scu_max)
    for f in files:
        scu.add_file(f)
    result = scu.send()
    assert result.failed == 0, [o.error for o in result.files]
    (assoc,) = scp.associations
    assert assoc.requested_max_pdu == scu_max
    if scp_max:
        assert 0 < assoc.largest_pdata_pdu <= scp_max
    for path, received in zip(files, scp.received, strict=True):
        assert received.decode_error is None
        assert received.dataset is not None
        original = pydicom.dcmread(path)
        assert received.dataset.PixelData == original.PixelData


def test_tiny_peer_max_pdu_is_respected_for_commands_too(tmp_path: Path) -> None:
    """PS3.8 9.3.5: no P-DATA-TF PDU may exceed the receiver's maximum length, the
    PDUs that carry the command set included (a C-STORE-RQ command is ~150 bytes)."""
    with HarnessScp(ae_title=SCP_AE, max_pdu_length=128) as scp:
        (path,) = write_series(tmp_path, 1)
        scu = make_scu(scp)
        scu.add_file(path)
        assert scu.send().successful == 1
        (assoc,) = scp.associations
        assert assoc.largest_pdata_pdu <= 128, scp.violations


# --- verbose --------------------------------------------------------------------------


def test_verbose_logs_the_protocol_exchange(
    scp: HarnessScp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Capture everything, but start from a quiet "scu" logger; caplog restores its level.
    caplog.set_level(logging.DEBUG, logger="scu")
    logging.getLogger("scu").setLevel(logging.WARNING)
    (path,) = write_series(tmp_path, 1)
    quiet = make_scu(scp)
    quiet.add_file(path)
    assert quiet.send().successful == 1
    assert not [r for r in caplog.records if r.name.startswith("scu")]

    scu = make_scu(scp, verbose=True)
    scu.add_file(path)
    assert scu.send().successful == 1
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("scu"))
    for step in ("A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "C-STORE-RQ", "status 0x0000", "A-RELEASE"):
        assert step in text, f"{step!r} not logged:\n{text}"
    assert instance_uid(path) in text


def test_verbose_is_per_instance(
    scp: HarnessScp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One verbose StoreScu must not make every later StoreScu log the exchange (nor
    leave a handler of its own on the library's logger)."""
    logger = logging.getLogger("scu")
    saved_level, saved_handlers = logger.level, list(logger.handlers)
    try:
        # As in an application that configured nothing: "scu" inherits WARNING from
        # the root; caplog's handler (on the root) sees whatever "scu" lets through.
        logger.setLevel(logging.NOTSET)
        assert logging.getLogger().getEffectiveLevel() == logging.WARNING
        (path,) = write_series(tmp_path, 1)
        make_scu(scp, verbose=True)  # constructed, never used
        quiet = make_scu(scp)
        quiet.add_file(path)
        caplog.clear()
        assert quiet.send().successful == 1
        debug = [r for r in caplog.records if r.name.startswith("scu") and r.levelno < 20]
        assert not debug, f"verbose=False logged {len(debug)} DEBUG records"
    finally:
        logger.setLevel(saved_level)
        for handler in [h for h in logger.handlers if h not in saved_handlers]:
            logger.removeHandler(handler)


# --- memory -----------------------------------------------------------------------------


def test_a_large_file_is_streamed_from_disk(tmp_path: Path) -> None:
    """A 64 MB file needing no conversion goes out from disk: the Python memory the
    transfer allocates stays a small fraction of the file (the receiver here is the
    raw SCP, which keeps no data set bytes)."""
    big = tmp_path / "big.dcm"
    ds = datagen.make_dataset(seed=11)
    ds.Rows, ds.Columns = 1024, 32 * 1024  # 64 MB of 16-bit zeros
    ds.PixelData = bytes(ds.Rows * ds.Columns * 2)
    pydicom.dcmwrite(big, ds, enforce_file_format=True)
    del ds
    with RawScp() as scp:
        scu = StoreScu(scp.addr, **FAST)
        scu.add_file(big)
        tracemalloc.start()
        try:
            result = scu.send()
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.successful == 1, result.files[0].error
    assert len(scp.stores) == 1
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while sending a 64 MB file"
