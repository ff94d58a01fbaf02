"""Things that change while a transfer runs: queued files modified or removed after
the transfer started, and ``send_async`` cancelled mid-way."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scu import FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from tests.support.pynetdicom_scp import HarnessScp, RespondThenDrop, Stall
from tests.support.recorder import Recorder
from tests.support.scu_helpers import instance_uid, make_scu, write_series


def _truncate(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("change", "words"),
    [(os.remove, "no such file"), (_truncate, "ended")],
    ids=["removed", "truncated"],
)
def test_file_changed_after_the_transfer_started(
    scp: HarnessScp, tmp_path: Path, change: Callable[[str], object], words: str
) -> None:
    """The third file is removed / cut short while the first is being sent (after
    the entries were checked): it fails with an error that names the file problem,
    not the network, and the others arrive."""
    files = write_series(tmp_path, 4)
    expected_uid = instance_uid(files[2])
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)

    rec = Recorder()
    callbacks = rec.callbacks
    record_sent = callbacks["on_file_sent"]

    def on_sent(event: FileSent) -> None:
        record_sent(event)
        if event.file == files[0]:  # runs between stores: the next read sees the change
            change(files[2])

    callbacks["on_file_sent"] = on_sent
    result = scu.send(**callbacks)

    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, True, False, True]
    error = result.files[2].error or ""
    assert words in error.lower(), error
    assert not error.startswith("connection lost"), (
        f"a local read error blamed on the link: {error}"
    )
    assert expected_uid not in scp.instance_uids


def test_send_async_cancelled_mid_transfer(scp: HarnessScp, tmp_path: Path) -> None:
    """Cancelling the task: the store in flight gets a moment to be answered (its
    stall is shorter than that), the rest fail as interrupted, TransferCompleted still
    comes last, and CancelledError reaches the caller with the result."""
    files = write_series(tmp_path, 6)
    scp.actions({3: Stall(1.0)})
    scu = make_scu(scp, dimse_timeout=5.0)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    cancelled: list[object] = []

    async def main() -> None:
        task = asyncio.create_task(scu.send_async(**rec.callbacks))
        while len(rec.of(FileSending)) < 3:  # the third store is stalling
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as exc:
            cancelled.append(getattr(exc, "result", None))

    asyncio.run(main())
    assert len(cancelled) == 1 and cancelled[0] is not None
    result = cancelled[0]
    assert result.interrupted  # type: ignore[attr-defined]
    assert isinstance(rec.events[0], TransferStarted)
    assert isinstance(rec.events[-1], TransferCompleted)
    assert len(rec.of(TransferCompleted)) == 1
    terminal = rec.terminal()
    assert sorted(e.file for e in terminal) == sorted(files)
    errors = [e for e in terminal if isinstance(e, FileError)]
    assert [e.file for e in errors] == files[3:]
    assert all(e.error == "not sent: interrupted" for e in errors), errors
    assert [e.file for e in rec.of(FileSent)] == files[:3]  # the stalled one was answered
    done = rec.events[-1]
    assert done.successful + done.failed == done.total_files == 6
    assert not rec.of(FileSending)[3:]  # nothing was started after the cancel


@pytest.mark.parametrize(
    ("scp_options", "first_answer", "idle"),
    [
        ({"idle_timeout": 0.5}, None, 1.2),  # the SCP's idle timeout: A-ABORT
        ({}, RespondThenDrop(0x0000, after=0.2), 0.6),  # a plain TCP close
    ],
    ids=["idle-timeout-abort", "tcp-close"],
)
def test_association_dropped_by_the_scp_while_the_scu_is_idle(
    scp_factory: Callable[..., HarnessScp],
    tmp_path: Path,
    scp_options: dict[str, float],
    first_answer: RespondThenDrop | None,
    idle: float,
) -> None:
    """The SCP ends the association while the SCU is idle between two stores (a slow
    callback; PACS idle timeouts do this). The next file was never in flight when the
    association died: it must go out on a new association, not fail."""
    scp = scp_factory(**scp_options)
    if first_answer is not None:
        scp.actions({1: first_answer})
    files = write_series(tmp_path, 3)
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)

    def slow_consumer(event: FileSent) -> None:
        if event.file == files[0]:
            time.sleep(idle)  # by now the SCP has ended the association

    result = scu.send(on_file_sent=slow_consumer)
    assert [o.ok for o in result.files] == [True, True, True], [o.error for o in result.files]
    assert scp.instance_uids == [instance_uid(f) for f in files]
