"""The promises of StoreScu (one outcome per entry, callbacks in order on the caller's
thread, counts that add up, the SCP's journal agreeing) over real associations with a
pynetdicom SCP."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from scu import (
    CallbackError,
    FileError,
    FileSending,
    FileSent,
    TransferCompleted,
    TransferStarted,
)
from tests.support.pynetdicom_scp import Abort, HarnessScp, Respond
from tests.support.recorder import Recorder
from tests.support.scu_helpers import instance_uid, make_scu, pydicom_file, write_series


def test_events_and_result_for_a_clean_transfer(scp: HarnessScp, tmp_path: Path) -> None:
    """Invariants 1-4 and 6 when everything goes well: every file arrives, in queue
    order, with the UIDs the events report."""
    files = [*write_series(tmp_path, 3), pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")]
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert (result.successful, result.failed, result.warnings) == (5, 0, [])
    # 4: concurrency 1 sends in queue order, and the sending/terminal events alternate.
    assert [e.file for e in rec.of(FileSending)] == files
    assert [type(e) for e in rec.events[1:-1]] == [FileSending, FileSent] * 5
    expected_uids = [instance_uid(f) for f in files]
    assert scp.instance_uids == expected_uids
    assert [e.sop_instance_uid for e in rec.of(FileSent)] == expected_uids
    assert [o.sop_instance_uid for o in result.files] == expected_uids
    for outcome, received in zip(result.files, scp.received, strict=True):
        assert outcome.ok and outcome.status == 0x0000 and outcome.error is None
        assert outcome.transfer_syntax == received.transfer_syntax
        assert outcome.sop_class_uid == received.sop_class_uid == received.command_sop_class_uid
        assert received.decode_error is None
        assert received.calling_ae_title == "STORE-SCU"
    # 5: every callback ran on this thread.
    assert rec.threads == {threading.get_ident()}
    # One association, released properly at the end.
    assert [a.ended for a in scp.associations] == ["released"]
    # The result round-trips through JSON with the same field names.
    data = json.loads(json.dumps(result.to_dict()))
    assert data["successful"] == 5 and data["total_files"] == 5
    assert data["files"][0]["sop_instance_uid"] == expected_uids[0]
    assert data["duration_seconds"] >= 0
    done = rec.events[-1]
    assert isinstance(done, TransferCompleted) and done.duration_seconds >= 0
    assert isinstance(rec.events[0], TransferStarted)


def test_success_only_on_success_or_warning_status(scp: HarnessScp, tmp_path: Path) -> None:
    """Invariant 6: each outcome follows the status the SCP really answered."""
    answers = {1: Respond(0x0000), 2: Respond(0xA700), 3: Respond(0xB000), 4: Respond(0xA900),
               5: Respond(0x0001), 6: Respond(0xC123)}  # fmt: skip
    scp.actions(answers)
    files = write_series(tmp_path, 6)
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, False, True, False, True, False]
    assert [o.status for o in result.files] == [a.status for a in answers.values()]
    assert (result.successful, result.failed) == (3, 3)
    assert len(scp.received) == 6


@pytest.mark.parametrize("concurrency", [2, 3])
def test_concurrency_sends_every_entry_once_with_serial_callbacks(
    scp: HarnessScp, tmp_path: Path, concurrency: int
) -> None:
    """Invariants 2, 4, 5 with several associations: every entry exactly once,
    callbacks on the caller's thread and never two at a time."""
    files = write_series(tmp_path, 12)
    scu = make_scu(scp, concurrency=concurrency)
    for f in files:
        scu.add_file(f)
    rec = Recorder(hold=0.002)
    result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert result.successful == 12
    assert sorted(scp.instance_uids, key=str) == sorted(instance_uid(f) for f in files)
    assert rec.threads == {threading.get_ident()}
    assert 1 <= len(scp.associations) <= concurrency
    # Per-entry order: each file's FileSending comes before its FileSent.
    for f in files:
        kinds = [type(e) for e in rec.events if getattr(e, "file", None) == f]
        assert kinds == [FileSending, FileSent]


@pytest.mark.parametrize("raise_in", [TransferStarted, FileSending, FileSent, TransferCompleted])
@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_raising_callback_does_not_break_the_transfer(
    scp: HarnessScp, tmp_path: Path, raise_in: type, concurrency: int
) -> None:
    """Invariant 5 (documented behaviour): the transfer completes, the accounting is
    intact, and CallbackError is raised at the end carrying the result; the first
    exception is its cause."""
    files = write_series(tmp_path, 4)
    scu = make_scu(scp, concurrency=concurrency)
    for f in files:
        scu.add_file(f)
    rec = Recorder(raise_in=raise_in)
    with pytest.raises(CallbackError) as caught:
        scu.send(**rec.callbacks)

    result = caught.value.result
    rec.check_invariants(result, files)
    assert result.successful == 4
    assert len(scp.received) == 4
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert raise_in.__name__ in str(caught.value.__cause__)


def test_a_raising_error_callback_keeps_accounting(scp: HarnessScp, tmp_path: Path) -> None:
    scp.actions({2: Respond(0xA700)})
    files = write_series(tmp_path, 3)
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    rec = Recorder(raise_in=FileError)
    with pytest.raises(CallbackError) as caught:
        scu.send(**rec.callbacks)
    rec.check_invariants(caught.value.result, files)
    assert [o.ok for o in caught.value.result.files] == [True, False, True]


def test_no_callbacks_at_all(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    result = scu.send()
    assert (result.successful, result.failed, result.total_files) == (2, 0, 2)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_send_async_runs_callbacks_on_the_loop_thread(
    scp: HarnessScp, tmp_path: Path, concurrency: int
) -> None:
    files = write_series(tmp_path, 6)
    scu = make_scu(scp, concurrency=concurrency)
    for f in files:
        scu.add_file(f)
    rec = Recorder(hold=0.001)
    loop_thread: list[int] = []
    ticks: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        stop = asyncio.Event()

        async def ticker() -> None:  # the loop stays responsive while sending
            while not stop.is_set():
                ticks.append(1)
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        result = await scu.send_async(**rec.callbacks)
        stop.set()
        await task
        rec.check_invariants(result, files)
        assert result.successful == 6

    asyncio.run(main())
    assert rec.threads == set(loop_thread)
    assert ticks
    if concurrency == 1:
        assert [e.file for e in rec.of(FileSending)] == files
    assert sorted(scp.instance_uids, key=str) == sorted(instance_uid(f) for f in files)


def test_send_async_raises_callback_error_with_result(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    rec = Recorder(raise_in=FileSent)
    with pytest.raises(CallbackError) as caught:
        asyncio.run(scu.send_async(**rec.callbacks))
    rec.check_invariants(caught.value.result, files)
    assert caught.value.result.successful == 2


def test_every_entry_one_outcome_under_abort_with_concurrency(
    scp_factory: Callable[..., HarnessScp], tmp_path: Path
) -> None:
    """Invariant 2 under a fault with several associations: nothing is dropped."""
    scp = scp_factory()
    scp.actions({3: Abort(), 7: Abort()})
    files = write_series(tmp_path, 12)
    scu = make_scu(scp, concurrency=3)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert result.failed == 2
    failed = [o for o in result.files if not o.ok]
    assert all("abort" in (o.error or "").lower() for o in failed)
    # Everything not in flight during an abort arrived.
    ok_uids = {o.sop_instance_uid for o in result.files if o.ok}
    assert ok_uids <= set(scp.instance_uids)
