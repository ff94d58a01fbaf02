"""``StoreScu(retries=N, retry_backoff=S)`` against a MockScp on loopback.

Retries apply to transient outcomes only (a transient association rejection, an
A-ABORT, a dropped connection, a DIMSE timeout, 0xA7xx Out of Resources), are bounded
(N + 1 attempts), wait an exponential back-off with jitter between attempts, and leave
the callback grammar as it is: one ``on_file_sending``, then one terminal event, per
entry. The back-off sleep is patched: tests record the delays instead of waiting."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_scp import MockScp
from scu import AssociationRejected, FileError, FileSent, StoreScu, TransferResult
from scu.cli import main
from scu.worker import RetryPolicy, Worker
from tests.support.recorder import Recorder
from tests.support.scu_helpers import SCP_AE, instance_uid, make_scu, write_series


@pytest.fixture
def pacs() -> Iterator[MockScp]:
    with MockScp(ae_title=SCP_AE, acse_timeout=5, dimse_timeout=5, network_timeout=5) as scp:
        yield scp


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The back-off delays the workers asked for (nobody waits for them)."""
    asked: list[float] = []

    def no_wait(self: Worker, seconds: float) -> bool:
        asked.append(seconds)
        return not self.interruption.interrupted

    monkeypatch.setattr(Worker, "_sleep", no_wait)
    return asked


def seen_per_uid(scp: MockScp) -> Counter[str]:
    """How many C-STORE requests the mock received per SOP Instance UID."""
    scp.wait_idle(5)
    return Counter(store.sop_instance_uid for store in scp.received)


def send(scu: StoreScu, files: list[str]) -> tuple[Recorder, TransferResult]:
    for path in files:
        scu.add_file(path)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files, in_order=scu.concurrency == 1)
    return rec, result


TRANSIENT_FAULTS = {
    "out-of-resources": lambda rule: rule.fail("0xA700", comment="disk full"),
    "out-of-resources-A7FF": lambda rule: rule.fail("0xA7FF"),
    "a-abort": lambda rule: rule.abort(),
    "a-abort-during-data-set": lambda rule: rule.abort(during_dataset=True),
    "dropped-connection": lambda rule: rule.disconnect(),
    "dimse-timeout": lambda rule: rule.stall(1.0),
}


@pytest.mark.parametrize("fault", list(TRANSIENT_FAULTS))
def test_each_transient_fault_is_retried_and_recovers(
    pacs: MockScp, tmp_path: Path, delays: list[float], fault: str
) -> None:
    """The 2nd of 3 files meets the fault once: it is tried again (a new association
    where the old one is gone) and succeeds; the attempts are in the result, the event,
    to_dict() and the mock's journal, and no other file is sent twice."""
    files = write_series(tmp_path, 3)
    TRANSIENT_FAULTS[fault](pacs.on_store(nth=2, times=1))
    rec, result = send(make_scu(pacs, retries=2, retry_backoff=0.5, dimse_timeout=0.3), files)

    assert result.successful == 3 and result.failed == 0
    first, retried, last = result.files
    assert [len(first.attempts), len(retried.attempts), len(last.attempts)] == [1, 2, 1]
    failed_try, good_try = retried.attempts
    assert (failed_try.number, failed_try.ok, good_try.number, good_try.ok) == (1, False, 2, True)
    assert good_try.status == 0x0000 and good_try.error is None
    if fault.startswith("out-of-resources"):
        assert failed_try.status is not None and 0xA700 <= failed_try.status <= 0xA7FF
        assert "out of resources" in (failed_try.error or "").lower()
    else:
        assert failed_try.status is None and failed_try.error
    sent = {event.file: event for event in rec.of(FileSent)}
    assert sent[files[1]].attempts == retried.attempts
    as_dict = result.to_dict()["files"][1]["attempts"]
    assert [(a["number"], a["ok"], a["status"]) for a in as_dict] == [
        (1, False, failed_try.status),
        (2, True, 0),
    ]
    json.dumps(result.to_dict())  # JSON-ready
    assert seen_per_uid(pacs) == Counter(
        {instance_uid(files[0]): 1, instance_uid(files[1]): 2, instance_uid(files[2]): 1}
    )
    assert len(delays) == 1 and 0.25 <= delays[0] <= 0.5  # the first back-off: S/2..S
    pacs.assert_no_violations()


def test_transient_rejection_at_the_start_is_retried(
    pacs: MockScp, tmp_path: Path, delays: list[float]
) -> None:
    """A busy PACS rejects the first association (rejected-transient, congestion): the
    SCU associates again after a back-off and sends everything."""
    files = write_series(tmp_path, 3)
    pacs.reject_associations(
        result="transient",
        source="service-provider-presentation",
        reason="temporary-congestion",
        times=1,
    )
    _, result = send(make_scu(pacs, retries=1, retry_backoff=0.5), files)
    assert result.successful == 3
    assert [a.ended for a in pacs.associations] == ["rejected", "released"]
    assert pacs.associations[0].rejection == (2, 3, 1)
    assert seen_per_uid(pacs) == Counter({instance_uid(f): 1 for f in files})
    assert len(delays) == 1 and 0.25 <= delays[0] <= 0.5


def test_transient_rejection_of_the_reassociation_is_retried(
    pacs: MockScp, tmp_path: Path, delays: list[float]
) -> None:
    """After an A-ABORT the SCU re-associates; that association is rejected
    transiently once; it tries again and the aborted file is sent on the third one."""
    files = write_series(tmp_path, 3)
    pacs.on_store(nth=2, times=1).abort()

    def arm_the_reject(event: FileSent) -> None:
        if event.file == files[0]:  # the first association is up: reject the next one
            pacs.reject_associations(result="transient", reason="no-reason-given", times=1)

    scu = make_scu(pacs, retries=2, retry_backoff=0.5)
    for path in files:
        scu.add_file(path)
    result = scu.send(on_file_sent=arm_the_reject)
    assert result.successful == 3
    assert [len(o.attempts) for o in result.files] == [1, 2, 1]
    assert [a.ended for a in pacs.associations] == ["aborted", "rejected", "released"]
    assert seen_per_uid(pacs)[instance_uid(files[1])] == 2
    assert len(delays) == 2  # one after the abort, one after the rejection


PERMANENT_STATUSES = ["0xA900", "0xA9FF", "0xC000", "0xC123", "0x0122", "0x0211"]


@pytest.mark.parametrize("status", PERMANENT_STATUSES)
def test_failure_statuses_other_than_out_of_resources_are_not_retried(
    pacs: MockScp, tmp_path: Path, delays: list[float], status: str
) -> None:
    files = write_series(tmp_path, 3)
    pacs.on_store(nth=2).fail(status)
    rec, result = send(make_scu(pacs, retries=3, retry_backoff=0.5), files)
    assert [o.ok for o in result.files] == [True, False, True]
    failed = result.files[1]
    assert len(failed.attempts) == 1 and failed.status == int(status, 16)
    assert rec.of(FileError)[0].attempts == failed.attempts
    assert seen_per_uid(pacs)[instance_uid(files[1])] == 1
    assert delays == []


def test_permanent_rejection_is_not_retried(
    pacs: MockScp, tmp_path: Path, delays: list[float]
) -> None:
    files = write_series(tmp_path, 2)
    pacs.reject_associations(result="permanent", reason="called-ae-title-not-recognized")
    scu = make_scu(pacs, retries=3, retry_backoff=0.5)
    for path in files:
        scu.add_file(path)
    with pytest.raises(AssociationRejected) as caught:
        scu.send()
    assert caught.value.rejection.result == 1 and not caught.value.transient
    assert caught.value.result is not None and caught.value.result.failed == 2
    assert [a.ended for a in pacs.associations] == ["rejected"]
    assert delays == []


def test_refused_connection_is_not_retried(tmp_path: Path, delays: list[float]) -> None:
    """Nothing listens: a refused connection is not transient (a wrong port stays
    wrong), so no back-off is waited."""
    with MockScp() as scp:
        addr = scp.addr  # a port that was free a moment ago and is closed now
    scu = StoreScu(addr, retries=3, retry_backoff=0.5, connect_timeout=2)
    scu.add_file(write_series(tmp_path, 1)[0])
    with pytest.raises(Exception, match="could not establish association"):
        scu.send()
    assert delays == []


RETRY_FOREVER = {
    "out-of-resources": lambda rule: rule.fail("0xA700"),
    "a-abort": lambda rule: rule.abort(),
    "dropped-connection": lambda rule: rule.disconnect(),
}


@pytest.mark.parametrize("fault", list(RETRY_FOREVER))
def test_retries_are_bounded(
    pacs: MockScp, tmp_path: Path, delays: list[float], fault: str
) -> None:
    """A file that always meets the fault: N + 1 attempts, then its error; the files
    after it are still sent."""
    files = write_series(tmp_path, 3)
    victim = instance_uid(files[1])
    RETRY_FOREVER[fault](pacs.on_store(sop_instance_uid=victim))
    rec, result = send(make_scu(pacs, retries=3, retry_backoff=0.5), files)
    assert [o.ok for o in result.files] == [True, False, True]
    failed = result.files[1]
    assert [a.number for a in failed.attempts] == [1, 2, 3, 4]
    assert not any(a.ok for a in failed.attempts)
    if fault == "out-of-resources":
        assert failed.status == 0xA700
        assert all(a.status == 0xA700 for a in failed.attempts)
    error = rec.of(FileError)[0]
    assert error.file == files[1] and error.attempts == failed.attempts
    assert len(rec.of(FileError)) == 1  # one terminal event, not one per attempt
    assert seen_per_uid(pacs)[victim] == 4
    assert len(delays) == 3


def test_transient_rejection_retries_are_bounded(
    pacs: MockScp, tmp_path: Path, delays: list[float]
) -> None:
    files = write_series(tmp_path, 2)
    pacs.reject_associations(result="transient", reason="no-reason-given")
    scu = make_scu(pacs, retries=2, retry_backoff=0.5)
    for path in files:
        scu.add_file(path)
    with pytest.raises(AssociationRejected) as caught:
        scu.send()
    assert caught.value.transient
    assert [a.ended for a in pacs.associations] == ["rejected"] * 3
    assert len(delays) == 2
    result = caught.value.result
    assert result is not None and result.failed == 2 and result.successful == 0


def test_no_retries_by_default(pacs: MockScp, tmp_path: Path, delays: list[float]) -> None:
    files = write_series(tmp_path, 2)
    pacs.on_store(nth=1).fail("0xA700")
    _, result = send(make_scu(pacs), files)
    assert [o.ok for o in result.files] == [False, True]
    assert len(result.files[0].attempts) == 1
    assert seen_per_uid(pacs)[instance_uid(files[0])] == 1
    assert delays == []


def test_back_off_grows_exponentially_with_jitter(
    pacs: MockScp, tmp_path: Path, delays: list[float]
) -> None:
    """retry_backoff=1: the delays before tries 2, 3, 4, 5 are drawn from [0.5, 1],
    [1, 2], [2, 4], [4, 8]."""
    files = write_series(tmp_path, 1)
    pacs.on_store(nth=[1, 2, 3, 4]).fail("0xA700")
    _, result = send(make_scu(pacs, retries=4, retry_backoff=1.0), files)
    assert result.successful == 1 and len(result.files[0].attempts) == 5
    assert len(delays) == 4
    for n, delay in enumerate(delays):
        assert 2.0**n / 2 <= delay <= 2.0**n, delays


def test_a_long_back_off_is_not_cut_short() -> None:
    """The delays double up to 30 s, or up to retry_backoff when that is longer."""
    assert StoreScu("127.0.0.1:104", retry_backoff=2).retry.max_backoff == 30.0
    long = StoreScu("127.0.0.1:104", retry_backoff=120).retry
    assert long.delay(1, draw=lambda: 1.0) == 120.0
    assert long.delay(3, draw=lambda: 1.0) == 120.0


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(retries=10, backoff=0.5, max_backoff=5.0)
    assert [policy.delay(n, draw=lambda: 1.0) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
    assert [policy.delay(n, draw=lambda: 0.0) for n in range(1, 5)] == [0.25, 0.5, 1, 2]
    assert policy.delay(3, draw=lambda: 0.5) == pytest.approx(1.5)


def test_retries_with_several_associations(
    pacs: MockScp, tmp_path: Path, delays: list[float]
) -> None:
    """concurrency=3: the 2nd and 6th files meet a fault once, on whichever association
    carries them; each is sent twice, every other file once, all succeed."""
    files = write_series(tmp_path, 9)
    uids = [instance_uid(path) for path in files]
    pacs.on_store(sop_instance_uid=uids[1], times=1).abort()
    pacs.on_store(sop_instance_uid=uids[5], times=1).fail("0xA701")
    _, result = send(make_scu(pacs, retries=2, retry_backoff=0.5, concurrency=3), files)
    assert result.successful == 9
    assert [len(o.attempts) for o in result.files] == [1, 2, 1, 1, 1, 2, 1, 1, 1]
    assert seen_per_uid(pacs) == Counter(
        {uid: 2 if uid in (uids[1], uids[5]) else 1 for uid in uids}
    )
    assert len(delays) == 2
    assert len({s.association_id for s in pacs.received}) >= 3


@pytest.mark.parametrize("value", [-1, 101, 1.5, True, "2", None])
def test_invalid_retries(value: object) -> None:
    with pytest.raises(ValueError, match="retries"):
        StoreScu("127.0.0.1:104", retries=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.1, float("nan"), float("inf"), 3601, "1", None, True])
def test_invalid_retry_backoff(value: object) -> None:
    with pytest.raises(ValueError, match="retry_backoff") as caught:
        StoreScu("127.0.0.1:104", retry_backoff=value)  # type: ignore[arg-type]
    assert "None" not in str(caught.value).split("got")[0]  # None is not offered


def test_zero_back_off_retries_at_once(pacs: MockScp, tmp_path: Path) -> None:
    """retry_backoff=0 (what ``scukit send --retry-delay 0`` asks for): no wait."""
    files = write_series(tmp_path, 1)
    pacs.on_store(nth=[1, 2]).fail("0xA700")
    scu = make_scu(pacs, retries=2, retry_backoff=0)
    assert scu.retry.backoff == 0.0
    _, result = send(scu, files)
    assert result.successful == 1 and len(result.files[0].attempts) == 3


def test_send_json_lists_the_attempts_per_file(
    pacs: MockScp, tmp_path: Path, delays: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_series(tmp_path, 2)
    pacs.on_store(nth=1, times=1).fail("0xA700")
    code = main(
        ["send", pacs.addr, "--called-ae", SCP_AE, "--retries", "2", "--retry-delay", "0.1",
         "--json", *files]
    )  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [len(f["attempts"]) for f in data["files"]] == [2, 1]
    first = data["files"][0]["attempts"]
    assert (first[0]["ok"], first[0]["status"], first[1]["ok"]) == (False, 0xA700, True)
