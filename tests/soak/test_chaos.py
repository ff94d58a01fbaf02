"""Chaos soak: 10,000 stores to MockScp at concurrency 1 and 4, about a fifth of them
met by a fault drawn from a fixed seed: failure and warning statuses, A-ABORT (instead
of the answer, or in the middle of the data set), dropped and reset connections,
garbage, stalls past the SCU's DIMSE timeout, and transient association rejects armed
mid-run. No accounting error may come out of it:

* every queued entry ends in exactly one outcome, and the counts add up (the
  transfer invariants, checked on every batch);
* every store the mock journaled is one the SCU queued, and none was sent twice;
* for every store the mock answered, the SCU reports that status (a success or a
  warning as sent, a failure as failed); for every store the mock did not answer, the
  SCU reports a failure; for every store the SCU reports sent, the mock has it;
* what the mock did to each store is what the plan drawn from the seed says.

Each store's fault is a function of the seed and its SOP Instance UID, not of the order
in which four workers happen to reach the mock, so the plan is the same on every run.
Run with ``pytest -m soak`` (CI: ``tox -e soak``).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mock_scp import MockScp, datagen
from mock_scp.journal import ReceivedStore
from mock_scp.rules import StoreRequest
from scu import AssociationError, StoreScu, TransferResult
from scu.protocol.status import StatusCategory, classify
from tests.support.recorder import Recorder

pytestmark = pytest.mark.soak

SEED = 20240611
STORES = 10_000
BATCH = 100
SCU_DIMSE = 0.5
STALL = 1.0
UID_ROOT = "1.2.826.0.1.3680043.10.1399.88."


@dataclass(frozen=True)
class Fault:
    """One kind of fault: its share of the stores, the journal's action for a store it
    hit, and how the SCU must report that store."""

    name: str
    share: float
    action: str
    status: int | None  # the status the mock answers (None: no answer)


FAULTS: tuple[Fault, ...] = (
    Fault("fail-out-of-resources", 0.04, "fail", 0xA700),
    Fault("fail-cannot-understand", 0.02, "fail", 0xC000),
    Fault("warn-coercion", 0.04, "warn", 0xB000),
    Fault("warn-attribute-list", 0.01, "respond", 0x0107),
    Fault("abort", 0.02, "abort", None),
    Fault("abort-during-dataset", 0.01, "abort", None),
    Fault("disconnect", 0.015, "disconnect", None),
    Fault("reset", 0.01, "disconnect", None),
    Fault("garbage", 0.005, "garbage", None),
    Fault("stall", 0.004, "interrupted", None),
    # A-ABORT, and the next association request (whoever makes it) rejected, transient.
    Fault("abort-then-reject", 0.002, "abort", None),
)
ACCEPT = Fault("accept", 0.0, "accept", 0x0000)


def plan(seed: int, count: int) -> list[Fault]:
    """The fault (or none) of each store, drawn once from the seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        draw = rng.random()
        chosen = ACCEPT
        for fault in FAULTS:
            if draw < fault.share:
                chosen = fault
                break
            draw -= fault.share
        out.append(chosen)
    return out


def _template(tmp_path: Path) -> tuple[bytes, bytes]:
    """A small CT file and the UID in it to replace (same length for every store)."""
    uid = f"{UID_ROOT}{1_000_000}"
    (path,) = datagen.write_files(
        tmp_path, count=1, name="template.dcm", seed=SEED, rows=32, columns=32,
        sop_instance_uid=uid,
    )  # fmt: skip
    return path.read_bytes(), uid.encode()


def _uid(index: int) -> str:
    return f"{UID_ROOT}{1_000_001 + index}"  # all of one length, as the template's


def _install(scp: MockScp, faults: list[Fault]) -> None:
    by_uid = {_uid(i): f.name for i, f in enumerate(faults)}

    def hit(name: str) -> Callable[[StoreRequest], bool]:
        return lambda request: by_uid.get(request.sop_instance_uid) == name

    def reject_next(request: StoreRequest) -> bool:
        if by_uid.get(request.sop_instance_uid) != "abort-then-reject":
            return False
        # Transient, service provider (presentation), local limit exceeded.
        scp.reject_associations(result=2, source=3, reason=2, times=1)
        return True

    scp.on_store(when=hit("fail-out-of-resources")).fail(0xA700, comment="chaos: disk full")
    scp.on_store(when=hit("fail-cannot-understand")).fail(0xC000)
    scp.on_store(when=hit("warn-coercion")).warn(0xB000)
    scp.on_store(when=hit("warn-attribute-list")).respond(0x0107)
    scp.on_store(when=hit("abort")).abort()
    scp.on_store(when=hit("abort-during-dataset")).abort(during_dataset=True)
    scp.on_store(when=hit("disconnect")).disconnect()
    scp.on_store(when=hit("reset")).disconnect(rst=True)
    scp.on_store(when=hit("garbage")).garbage()
    scp.on_store(when=hit("stall")).stall(STALL)
    scp.on_store(when=reject_next).abort()


def _check_batch(
    names: list[str],
    uids: list[str],
    faults: list[Fault],
    result: TransferResult,
    recorder: Recorder,
    journal: list[ReceivedStore],
) -> Counter[str]:
    recorder.check_invariants(result, names, same_thread=True)
    by_uid: dict[str, list[ReceivedStore]] = {}
    for store in journal:
        by_uid.setdefault(store.sop_instance_uid, []).append(store)
    assert set(by_uid) <= set(uids), "the mock journaled a store nobody queued"
    seen: Counter[str] = Counter()
    for outcome, uid, fault in zip(result.files, uids, faults, strict=True):
        stores = by_uid.get(uid, [])
        assert len(stores) <= 1, f"{uid} reached the mock {len(stores)} times"
        where = f"{uid} ({fault.name}): {outcome} / {stores}"
        if not stores:  # never reached the mock: an association that could not be had
            assert not outcome.ok and outcome.status is None, where
            seen["not sent"] += 1
            continue
        (store,) = stores
        assert store.action == fault.action, where
        if store.status is not None:
            assert outcome.status == store.status, where
            category = classify(store.status)
            assert outcome.ok is (category is not StatusCategory.FAILURE), where
            assert store.complete, where
        else:
            assert not outcome.ok and outcome.status is None, where
        if fault.name == "stall":
            assert f"dimse_timeout={SCU_DIMSE}s" in (outcome.error or ""), where
        seen[fault.name] += 1
    return seen


@pytest.mark.timeout(600)
@pytest.mark.parametrize("concurrency", [1, 4])
def test_chaos_soak_keeps_every_account(tmp_path: Path, concurrency: int) -> None:
    template, placeholder = _template(tmp_path)
    faults = plan(SEED + concurrency, STORES)
    share = sum(f is not ACCEPT for f in faults) / STORES
    assert 0.15 < share < 0.25, share
    totals: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    with MockScp(seed=SEED, max_associations=8, acse_timeout=5, dimse_timeout=5,
                 network_timeout=5, keep_data=False) as scp:  # fmt: skip
        _install(scp, faults)
        for start in range(0, STORES, BATCH):
            indexes = range(start, min(start + BATCH, STORES))
            uids = [_uid(i) for i in indexes]
            names = [f"store-{i + 1:06d}" for i in indexes]
            scu = StoreScu(
                scp.addr, concurrency=concurrency, dimse_timeout=SCU_DIMSE,
                acse_timeout=5, network_timeout=5, connect_timeout=5,
            )  # fmt: skip
            for name, uid in zip(names, uids, strict=True):
                scu.add_file_from_memory(template.replace(placeholder, uid.encode()), name)
            before = len(scp.received)
            recorder = Recorder()
            try:
                result = scu.send(**recorder.callbacks)
            except AssociationError as exc:  # a transient reject met every attempt
                assert exc.result is not None
                result = exc.result
            assert scp.wait_idle(30), "the mock did not settle after the batch"
            journal = scp.received[before:]
            totals += _check_batch(
                names, uids, [faults[i] for i in indexes], result, recorder, journal
            )
            outcomes["successful"] += result.successful
            outcomes["failed"] += result.failed
        errors = scp.errors
        violations = scp.violations
        threads = threading.active_count()
    assert outcomes["successful"] + outcomes["failed"] == STORES, outcomes
    assert sum(totals.values()) == STORES, totals
    # Every kind of fault happened, and most stores were sent.
    assert {f.name for f in FAULTS} <= set(totals), totals
    assert totals["accept"] > 0.6 * STORES, totals
    assert errors == [], errors
    assert [v for v in violations if v.kind != "dropped-connection"] == [], violations[:5]
    assert threads < 20, threads
    print(f"concurrency {concurrency}: {dict(outcomes)}; {dict(totals)}")
