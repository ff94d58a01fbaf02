"""``max_rate`` (files/s) and ``max_bandwidth`` (bytes/s): one limiter shared by every
association of a transfer.

The spacing is checked on :class:`scu.ratelimit.RateLimiter` with a fake clock (no
waiting, nothing that could flake); end to end only lower bounds on the duration are
asserted, which a slow machine cannot break."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_scp import MockScp
from scu import StoreScu
from scu.ratelimit import RateLimiter
from tests.support.recorder import Recorder
from tests.support.scu_helpers import SCP_AE, make_scu, write_series


class FakeClock:
    """``time.monotonic`` and ``time.sleep`` for a limiter: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter slept for nothing (a busy loop)"
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def go_times(limiter: RateLimiter, clock: FakeClock, sizes: list[int]) -> list[float]:
    """When each file of ``sizes`` was let through, from the clock's start."""
    start = clock.now
    times = []
    for size in sizes:
        assert limiter.acquire(size)
        times.append(round(clock.now - start, 9))
    return times


def test_files_per_second_are_spaced_from_the_first_file() -> None:
    """4 files/s: one every 0.25 s, the first at once, no burst at the start."""
    clock = FakeClock()
    limiter = RateLimiter(4, None, clock=clock, sleep=clock.sleep)
    assert go_times(limiter, clock, [1000] * 6) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert max(clock.sleeps) <= RateLimiter.POLL  # it looks at stop() now and then


def test_bytes_per_second_pay_for_each_file_before_the_next() -> None:
    """1000 B/s: a file waits for the bytes of the files before it (500 B: 0.5 s)."""
    clock = FakeClock()
    limiter = RateLimiter(None, 1000, clock=clock, sleep=clock.sleep)
    assert go_times(limiter, clock, [500, 1500, 200, 10]) == [0.0, 0.5, 2.0, 2.2]


def test_both_limits_the_slower_one_wins() -> None:
    """2 files/s and 1000 B/s: small files are held by the file rate, big ones by bytes."""
    clock = FakeClock()
    limiter = RateLimiter(2, 1000, clock=clock, sleep=clock.sleep)
    assert go_times(limiter, clock, [100, 100, 2000, 100]) == [0.0, 0.5, 1.0, 3.0]


def test_no_burst_after_a_pause() -> None:
    """Idle time is not saved up: after 5 s with nothing to send, 10 files/s still
    means one file every 0.1 s (a token bucket that refills would let 10 go at once)."""
    clock = FakeClock()
    limiter = RateLimiter(10, None, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(1)
    clock.now += 5.0
    assert go_times(limiter, clock, [1, 1, 1, 1]) == [0.0, 0.1, 0.2, 0.3]


def test_no_limit_never_sleeps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, None, clock=clock, sleep=clock.sleep)
    assert not limiter.active
    assert go_times(limiter, clock, [10**9] * 5) == [0.0] * 5
    assert clock.sleeps == []


def test_stop_ends_the_wait_and_takes_nothing() -> None:
    """``stop()`` true while waiting: ``False``, and the slot is still free for the
    next file (an interrupted file does not use up the rate)."""
    clock = FakeClock()
    limiter = RateLimiter(1, None, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(1)
    assert limiter.acquire(1, stop=lambda: True) is False
    assert clock.sleeps == []  # it did not wait before giving up
    start = clock.now
    assert limiter.acquire(1)
    assert clock.now - start == pytest.approx(1.0)


def test_one_limit_shared_by_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three threads (three associations) share the limit: the moments at which files
    are let through, all threads together, are at least 1/rate apart."""
    from scu import ratelimit

    taken: list[float] = []
    original = ratelimit._Limit.take

    def recording_take(self: ratelimit._Limit, amount: float, now: float) -> None:
        taken.append(now)  # called under the limiter's lock
        original(self, amount, now)

    monkeypatch.setattr(ratelimit._Limit, "take", recording_take)
    clock = FakeClock()
    limiter = RateLimiter(10, None, clock=clock, sleep=clock.sleep)

    def worker() -> None:
        for _ in range(4):
            assert limiter.acquire(1)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(taken) == 12
    gaps = [b - a for a, b in zip(sorted(taken), sorted(taken)[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9, gaps


@pytest.mark.parametrize("option", ["max_rate", "max_bandwidth"])
@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, "10", "10/s", True, [5]])
def test_invalid_rates_are_refused_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        StoreScu("127.0.0.1:104", **{option: value})


@pytest.mark.parametrize("option", ["max_rate", "max_bandwidth"])
def test_valid_rates_are_kept(option: str) -> None:
    assert getattr(StoreScu("127.0.0.1:104", **{option: 2.5}), option) == 2.5
    assert getattr(StoreScu("127.0.0.1:104", **{option: 3}), option) == 3
    assert getattr(StoreScu("127.0.0.1:104"), option) is None


# --- end to end: lower bounds only ------------------------------------------------------


@pytest.fixture
def pacs() -> Iterator[MockScp]:
    with MockScp(ae_title=SCP_AE, acse_timeout=5, dimse_timeout=5, network_timeout=5) as scp:
        yield scp


def test_max_rate_is_shared_by_all_associations(pacs: MockScp, tmp_path: Path) -> None:
    """10 files at 20 files/s over 3 associations: the 10th cannot start before
    9/20 s. (Three limiters of 20/s, one per association, would take about 0.15 s.)"""
    files = write_series(tmp_path, 10)
    scu = make_scu(pacs, concurrency=3, max_rate=20)
    for path in files:
        scu.add_file(path)
    rec = Recorder()
    started = time.monotonic()
    result = scu.send(**rec.callbacks)
    elapsed = time.monotonic() - started
    rec.check_invariants(result, files)
    assert result.successful == 10
    assert elapsed >= 0.4, f"10 files at 20/s took {elapsed:.3f} s"
    assert len({s.association_id for s in pacs.received}) == 3  # really 3 associations


def test_max_bandwidth_is_shared_by_all_associations(pacs: MockScp, tmp_path: Path) -> None:
    """Each file waits for the bytes before it: the last one cannot start before all
    the others' bytes at ``max_bandwidth``, however many associations share them."""
    files = write_series(tmp_path, 5)
    scu = make_scu(pacs, concurrency=2, max_bandwidth=60_000)
    for path in files:
        scu.add_file(path)
    started = time.monotonic()
    result = scu.send()
    elapsed = time.monotonic() - started
    assert result.successful == 5
    sizes = [outcome.size for outcome in result.files]
    assert all(size > 8000 for size in sizes)  # 64x64 16-bit pixels at least
    floor = (sum(sizes) - max(sizes)) / 60_000
    assert elapsed >= floor, f"{sum(sizes)} bytes at 60 kB/s took {elapsed:.3f} s"
