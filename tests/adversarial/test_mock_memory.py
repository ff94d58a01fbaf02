"""What the mock holds in memory under load: a data set that never ends, many large or
small stores, and ``scukit serve``, which keeps no data set at all. The mock runs in a
child process; its RSS is read from ``/proc`` with generous bounds."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from scu import StoreScu
from scu.protocol import dimse, pdu
from scu.protocol.pdu import PduType
from tests.support.hostile import CT, RawConn, p_data
from tests.support.scu_helpers import write_series
from tests.support.serve import serve
from tests.support.victim import MockProcess, proc_status

MIB = 1024 * 1024


def _mib(kb: int) -> float:
    return kb / 1024


def _stream_endless_data_set(port: int, total: int) -> int:
    """Associate, start a C-STORE and send ``total`` bytes of data set fragments, none of
    them the last; then A-ABORT. The bytes sent."""
    conn = RawConn.connect(port)
    try:
        assert conn.associate().pdu_type is PduType.ASSOCIATE_AC
        command = dimse.encode_store_rq(1, CT, "1.2.826.0.1.3680043.10.1399.66.3")
        conn.send(p_data(1, command, command=True, last=True))
        block = p_data(1, bytes(16000), command=False, last=False) * 64
        per_block = 16000 * 64
        sent = 0
        while sent < total:
            conn.send(block)
            sent += per_block
        conn.send(pdu.encode_abort(0, 0))
        return sent
    finally:
        conn.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("keep_data", [True, False])
def test_a_data_set_that_never_ends_stays_within_the_budget(keep_data: bool) -> None:
    """192 MiB of a data set that never sets its last bit, against a 32 MiB budget: the
    mock holds at most the budget (the rest goes to a spill file, or nowhere without
    keep_data), and once the SCU is gone nothing of it is left in memory."""
    budget = 32 * MIB
    with MockProcess(
        memory_budget=budget, keep_data=keep_data, dimse_timeout=120, network_timeout=120
    ) as mock:
        baseline = mock.status()["VmRSS"]
        sent = _stream_endless_data_set(mock.port, 192 * MIB)
        stats = mock.wait_until(lambda s: s["received"] == 1)
        after = mock.status()
    (store,) = stats["stores"]
    assert store["action"] == "interrupted" and not store["complete"], store
    assert store["size"] == sent
    assert store["kept"] is False, store  # not in memory: spilled, or not kept at all
    assert store["spilled"] is keep_data, store
    assert stats["in_memory"] == 0, stats
    peak = _mib(after["VmHWM"] - baseline)
    ceiling = 64 + (budget / MIB if keep_data else 0)
    assert peak < ceiling, f"{peak:.0f} MiB above baseline while receiving (budget 32)"
    assert _mib(after["VmRSS"] - baseline) < 48, after


def _big_file(tmp_path: Path) -> str:
    (path,) = write_series(tmp_path, 1, rows=2048, columns=3072)  # 12.6 MB of pixels
    return path


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("label", "copies", "options"),
    [
        ("large", 40, {"rows": 2048, "columns": 3072}),  # 40 x 12.6 MB
        ("small", 4000, {"rows": 160, "columns": 160}),  # 4,000 x 51 KB
    ],
)
def test_the_journal_of_many_stores_stays_within_the_memory_budget(
    tmp_path: Path, label: str, copies: int, options: dict[str, Any]
) -> None:
    """About 500 MB of large stores, or 200 MB of small ones, kept by an in-process
    MockScp with its default settings: what it holds in memory stays within its
    budget (128 MiB) plus a margin; the rest went to spill files, and nothing is held
    twice (a small data set kept in memory is not kept again as its 'first bytes')."""
    (path,) = write_series(tmp_path, 1, **options)
    size = os.path.getsize(path)
    budget = 128 * MIB
    with MockProcess() as mock:
        baseline = mock.status()["VmRSS"]
        scu = StoreScu(mock.addr, dimse_timeout=30)
        for _ in range(copies):
            scu.add_file(path)
        result = scu.send()
        stats = mock.wait_until(lambda s: s["received"] == copies)
        after = mock.status()
    assert (result.successful, result.failed) == (copies, 0)
    assert copies * size > 1.5 * budget  # the test is about what cannot all fit
    assert stats["in_memory"] <= budget, stats
    assert stats["stores"][-1]["spilled"], stats  # the last ones could not be kept in memory
    grown = _mib(after["VmHWM"] - baseline)
    assert grown < budget / MIB + 100, f"{label}: {grown:.0f} MiB above baseline (budget 128)"


@pytest.mark.timeout(240)
def test_serve_keeps_no_data_set(tmp_path: Path) -> None:
    """``scukit serve`` without --keep-data, 3,000 stores of 130 KB (400 MB): the
    process grows by what the journal's records cost, not by what they received."""
    (path,) = write_series(tmp_path, 1, rows=256, columns=256)
    copies = 3000
    with serve() as server:
        baseline = proc_status(server.proc.pid)
        scu = StoreScu(f"127.0.0.1:{server.port}", dimse_timeout=30)
        for _ in range(copies):
            scu.add_file(path)
        result = scu.send()
        server.wait_for(f"store {copies} (")
        after = proc_status(server.proc.pid)
        code, _lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert (result.successful, result.failed) == (copies, 0)
    grown = _mib(after["VmRSS"] - baseline["VmRSS"])
    assert grown < 48, f"serve grew {grown:.0f} MiB over {copies} stores of 130 KB"
