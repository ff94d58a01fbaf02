"""Faults while the data set is still being written, and faults with several
associations (concurrency), against a real pynetdicom SCP."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from mock_scp import datagen
from scu import AssociationRejected, FileSending
from tests.support.pynetdicom_scp import (
    Abort,
    DuringDataset,
    HarnessScp,
    Reject,
    Respond,
)
from tests.support.recorder import Recorder
from tests.support.scu_helpers import instance_uid, make_scu, pydicom_file, write_series


def _big_file(megabytes: int, seed: int = 7) -> bytes:
    """A CT instance with ``megabytes`` MB of (zero) pixel data: far larger than the
    loopback socket buffers, quick to make."""
    ds = datagen.make_dataset(seed=seed)
    ds.Rows, ds.Columns = 1024, megabytes * 512
    ds.PixelData = bytes(ds.Rows * ds.Columns * 2)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("what", "words"), [("abort", "abort"), ("close", "connection")], ids=["abort", "close"]
)
def test_fault_while_the_data_set_is_being_written(
    scp: HarnessScp, tmp_path: Path, what: str, words: str
) -> None:
    """The SCP aborts / drops the connection after the first PDUs of a 4 MB data set
    (DCMTK's --abort-during): that file fails with a clear reason and the transfer
    goes on over a new association."""
    small = write_series(tmp_path, 2)
    big = tmp_path / "big.dcm"
    big.write_bytes(_big_file(4))
    queue = [small[0], str(big), small[1]]
    # P-DATA PDUs 1-2 carry the first file (command + data set); 3 is the big file's
    # command, 4-5 its first data set fragments.
    scp.during_dataset = lambda n: DuringDataset(what) if n == 5 else None
    scu = make_scu(scp)
    for f in queue:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, queue)
    assert [o.ok for o in result.files] == [True, False, True]
    error = (result.files[1].error or "").lower()
    assert words in error, error
    assert [r.sop_instance_uid for r in scp.received] == [
        instance_uid(small[0]),
        instance_uid(small[1]),
    ]
    assert len(scp.associations) == 2


def test_scp_that_stops_reading_hits_network_timeout(scp: HarnessScp) -> None:
    """The SCP stops reading in the middle of a 32 MB data set for longer than the
    SCU's timeouts: the file fails on a timeout instead of hanging; the next one is
    sent on a new association."""
    scp.during_dataset = lambda n: DuringDataset("sleep", 2.0) if n == 3 else None
    scu = make_scu(scp, network_timeout=0.5, dimse_timeout=0.5)
    scu.add_file_from_memory(_big_file(32), "huge")
    scu.add_file_from_memory(datagen.make_bytes(seed=3), "small")
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, ["huge", "small"])
    assert [o.ok for o in result.files] == [False, True]
    error = result.files[0].error or ""
    assert "network_timeout" in error or "dimse_timeout" in error, error


def test_extra_associations_rejected_the_first_carries_everything(
    scp: HarnessScp, tmp_path: Path
) -> None:
    """Concurrency 3 against an SCP that takes one association: the workers that are
    rejected hand their entries back; every file is sent, nothing raises."""
    scp.reject_from(2, Reject(2, 3, 2))  # transient, local limit exceeded
    files = write_series(tmp_path, 9)
    scu = make_scu(scp, concurrency=3)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert result.successful == 9, [o.error for o in result.files if not o.ok]
    assert {r.association for r in scp.received} == {1}
    assert sorted(scp.instance_uids, key=str) == sorted(instance_uid(f) for f in files)


def test_every_association_rejected_with_concurrency(scp: HarnessScp, tmp_path: Path) -> None:
    scp.reject_from(1, Reject(1, 1, 3))
    files = write_series(tmp_path, 5)
    scu = make_scu(scp, concurrency=3)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    with pytest.raises(AssociationRejected) as caught:
        scu.send(**rec.callbacks)
    assert "calling AE title not recognised" in str(caught.value)
    assert caught.value.result is not None
    rec.check_invariants(caught.value.result, files)
    assert caught.value.result.failed == 5
    assert not rec.of(FileSending)


def test_fail_fast_with_concurrency(scp: HarnessScp, tmp_path: Path) -> None:
    scp.actions({2: Respond(0xA700, "full")})
    files = write_series(tmp_path, 15)
    scu = make_scu(scp, concurrency=3, fail_fast=True)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    refused = [o for o in result.files if o.status == 0xA700]
    assert len(refused) == 1
    skipped = [o for o in result.files if o.error == "not sent: fail_fast"]
    assert skipped, "fail_fast stopped nothing"
    assert result.failed == 1 + len(skipped)
    # Entries stopped by fail_fast were never offered to the SCP.
    sent_uids = set(scp.instance_uids)
    assert not {o.sop_instance_uid for o in skipped} & sent_uids
    assert len(scp.received) + len(skipped) == 15


def test_abort_with_concurrency_reassociates(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path
) -> None:
    scp = scp_factory()
    scp.actions({2: Abort(), 5: Abort()})
    files = write_series(tmp_path, 10)
    scu = make_scu(scp, concurrency=2)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert result.failed == 2 and result.successful == 8
    assert len(scp.associations) >= 3  # both aborted workers associated again


def test_concurrency_larger_than_the_queue(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    scu = make_scu(scp, concurrency=8)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert result.successful == 2
    assert len(scp.associations) <= 2


def test_pydicom_file_with_sequences_and_private_tags(scp: HarnessScp) -> None:
    files = [pydicom_file(n) for n in ("rtplan.dcm", "test-SR.dcm", "waveform_ecg.dcm")]
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    result = scu.send()
    assert result.failed == 0, [o.error for o in result.files]
    assert scp.instance_uids == [instance_uid(f) for f in files]
    assert all(r.decode_error is None for r in scp.received)
