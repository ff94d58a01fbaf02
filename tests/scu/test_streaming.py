"""The queue is checked while it is sent and the contexts are planned from what has
been checked so far (scu.streaming): the first store leaves before the check pass
ends, late SOP classes and more than 128 late contexts still go out on contexts of
their own class, in queue order, and a bad file deep in a long queue ends in its place.

No timing: what happened when is read from counters and from the order of events.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import scu.streaming as streaming
from mock_scp import MockScp, datagen
from scu import FileError, FileSending, FileSent, StoreScu
from scu.planning import SyntaxPolicy
from scu.protocol.pdu import MAX_CONTEXTS
from scu.protocol.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, storage_sop_classes
from scu.source import Entry, Header
from tests.support.recorder import Recorder

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
#: A UID of fixed length: copies with another number in its place keep every length.
_TEMPLATE_UID = "2.25.100000000000"


def series(count: int, *, sop_class: str = "CTImageStorage", start: int = 0) -> Iterator[bytes]:
    """``count`` distinct small instances of one class, made from one encoded template
    (its SOP Instance UID replaced by one of the same length)."""
    template = datagen.make_bytes(sop_class=sop_class, sop_instance_uid=_TEMPLATE_UID, rows=8,
                                  columns=8)  # fmt: skip
    needle = _TEMPLATE_UID.encode()
    for i in range(start, start + count):
        uid = f"2.25.{100000000000 + i}".encode()
        assert len(uid) == len(needle)
        yield template.replace(needle, uid)


def uid_of(n: int) -> str:
    return f"2.25.{100000000000 + n}"


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many entries have been checked so far (one counter, in a list)."""
    count = [0]
    real = streaming.read_header

    def counting(entry: Entry, keep: list[tuple[bytes, os.stat_result]] | None = None) -> Header:
        count[0] += 1
        return real(entry, keep)

    monkeypatch.setattr(streaming, "read_header", counting)
    return count


def test_the_first_store_leaves_before_the_queue_is_checked(
    mock_scp: MockScp, store_scu: StoreScu, checked: list[int]
) -> None:
    """3,000 entries: when the first file is announced only the entries the first
    association was planned from (and those its worker checked before opening it)
    have been read; in the end each entry was checked exactly once."""
    for n, data in enumerate(series(3000)):
        store_scu.add_file_from_memory(data, f"f{n:05d}")
    at_first: list[int] = []
    rec = Recorder()
    callbacks = rec.callbacks
    record_sending = callbacks["on_file_sending"]

    def on_sending(event: FileSending) -> None:
        record_sending(event)
        if not at_first:
            at_first.append(checked[0])

    callbacks["on_file_sending"] = on_sending
    result = store_scu.send(**callbacks)

    rec.check_invariants(result, store_scu.files, in_order=True)
    assert result.successful == 3000
    assert at_first[0] <= streaming.FIRST_PLAN_ENTRIES + streaming.REPLAN_AHEAD < 3000
    assert checked[0] == 3000
    assert len(mock_scp.associations) == 1


def test_a_sop_class_first_seen_late_gets_an_association_of_its_own_class(
    mock_scp: MockScp, store_scu: StoreScu
) -> None:
    """A MR instance after 700 CT instances (beyond what the first association was
    planned from): the first association proposes CT only; the MR goes out on a later
    association planned from everything seen by then, on an MR context, in its place in
    the queue; the CT instances after it stay on that association."""
    position = 700
    blobs = [*series(position), *series(1, sop_class="MRImageStorage", start=position),
             *series(50, start=position + 1)]  # fmt: skip
    for n, data in enumerate(blobs):
        store_scu.add_file_from_memory(data, f"f{n:05d}")
    rec = Recorder()
    result = store_scu.send(**rec.callbacks)

    rec.check_invariants(result, store_scu.files, in_order=True)
    assert result.successful == len(blobs)
    first, second = mock_scp.associations
    assert {abstract for _, abstract, _ in first.proposed_contexts} == {CT}
    assert {abstract for _, abstract, _ in second.proposed_contexts} == {CT, MR}
    by_uid = {r.sop_instance_uid: r for r in mock_scp.received}
    assert by_uid[uid_of(position)].sop_class_uid == MR
    assert by_uid[uid_of(position)].association_id == second.id
    assert by_uid[uid_of(position - 1)].association_id == first.id
    assert by_uid[uid_of(position + 1)].association_id == second.id
    assert [r.sop_instance_uid for r in mock_scp.received] == [uid_of(n) for n in range(751)]
    assert [ended for ended in (first.ended, second.ended)] == ["released", "released"]


def _classes(count: int) -> list[tuple[str, bytes]]:
    """``count`` storage SOP classes other than CT that the generator can make, with
    one small instance each."""
    found: list[tuple[str, bytes]] = []
    for n, uid in enumerate(sorted(storage_sop_classes())):
        if uid == CT:
            continue
        try:
            data = datagen.make_bytes(sop_class=uid, rows=8, columns=8, seed=n,
                                      sop_instance_uid=f"2.25.{900000 + n}")  # fmt: skip
        except (ValueError, NotImplementedError, KeyError, AttributeError, TypeError):
            continue
        found.append((uid, data))
        if len(found) == count:
            return found
    pytest.fail(f"only {len(found)} SOP classes could be generated")


@pytest.mark.timeout(300)
def test_more_than_128_contexts_appearing_late_are_split_across_associations(
    mock_scp: MockScp, store_scu: StoreScu
) -> None:
    """600 CT instances, then one instance of each of 70 other classes (141 contexts
    with the CT ones and the fallbacks), then CT again: no association proposes more
    than 128 contexts, every file goes out on a context of its own class, and the
    entries keep their queue order."""
    others = _classes(70)
    blobs = [*series(600)]
    blobs += [data for _, data in others]
    blobs += [*series(20, start=600)]
    for n, data in enumerate(blobs):
        store_scu.add_file_from_memory(data, f"f{n:05d}")
    rec = Recorder()
    result = store_scu.send(**rec.callbacks)

    rec.check_invariants(result, store_scu.files, in_order=True)
    assert result.successful == len(blobs), [o.error for o in result.files if not o.ok][:3]
    associations = mock_scp.associations
    assert len(associations) >= 3  # CT alone first, then the late classes, split in two
    assert all(len(a.proposed_contexts) <= MAX_CONTEXTS for a in associations)
    assert {abstract for _, abstract, _ in associations[0].proposed_contexts} == {CT}
    proposed = {abstract for a in associations for _, abstract, _ in a.proposed_contexts}
    assert proposed == {CT, *(uid for uid, _ in others)}
    accepted = {a.id: {abstract for _, abstract, _ in a.accepted_contexts} for a in associations}
    for record in mock_scp.received:
        assert record.sop_class_uid in accepted[record.association_id]
    sent_classes = [e.sop_class_uid for e in rec.of(FileSent)]
    assert sent_classes[600:670] == [uid for uid, _ in others]


@pytest.mark.timeout(300)
def test_a_bad_file_deep_in_a_10000_file_queue_fails_in_its_place(
    mock_scp: MockScp, store_scu: StoreScu
) -> None:
    """Entry 7,777 of 10,000 is cut short: it ends in on_file_error, without
    on_file_sending, between the entries around it; everything else is sent."""
    bad = 7777
    for n, data in enumerate(series(10_000)):
        if n == bad:
            data = data[: len(data) - 100]
        store_scu.add_file_from_memory(data, f"f{n:05d}")
    rec = Recorder()
    result = store_scu.send(**rec.callbacks)

    rec.check_invariants(result, store_scu.files, in_order=True)
    assert (result.successful, result.failed) == (9_999, 1)
    assert not result.files[bad].ok and "truncated" in (result.files[bad].error or "")
    names = [getattr(e, "file", None) for e in rec.events]
    where = names.index(f"f{bad:05d}")
    assert isinstance(rec.events[where], FileError)
    assert names.count(f"f{bad:05d}") == 1  # no FileSending for it
    assert isinstance(rec.events[where - 1], FileSent) and names[where - 1] == f"f{bad - 1:05d}"
    assert isinstance(rec.events[where + 1], FileSending) and names[where + 1] == f"f{bad + 1:05d}"
    assert len(mock_scp.received) == 9_999


def test_files_read_once_are_read_again_when_they_changed(tmp_path: Path) -> None:
    """A small file's bytes are kept from its check for its store, unless the file
    changed since (size or modification time): then the store reads it again."""
    path = tmp_path / "a.dcm"
    path.write_bytes(next(series(1)))
    entries = [Entry(str(path), path=str(path))]
    headers = streaming.Headers(entries, streaming.Planner(SyntaxPolicy()))
    assert isinstance(headers.get(0), Header)
    assert headers.unchanged_bytes(0) == path.read_bytes()
    os.utime(path, ns=(1, 1))  # same bytes, another modification time
    assert headers.unchanged_bytes(0) is None
    headers.forget(0)
    assert headers.peek(0) is None and headers.unchanged_bytes(0) is None


def test_planner_plans_again_only_when_the_proposal_changes() -> None:
    ct_explicit = Header(CT, "1.2.3", EXPLICIT_VR_LE, 0, 10, True)
    ct_implicit = Header(CT, "1.2.4", IMPLICIT_VR_LE, 0, 10, True)
    mr = Header(MR, "1.2.5", EXPLICIT_VR_LE, 0, 10, True)
    auto = streaming.Planner(SyntaxPolicy())
    auto.note(ct_explicit)
    plan = auto.plan_for(ct_explicit)
    assert streaming.need_of(auto.policy, ct_explicit) in streaming.own_contexts(plan)
    assert streaming.need_of(auto.policy, ct_implicit) not in streaming.own_contexts(plan)
    auto.note(ct_explicit)
    assert auto.plan_for(ct_explicit) is plan and auto.replans == 1
    auto.note(ct_implicit)  # a new file syntax: proposed on a context of its own
    again = auto.plan_for(ct_implicit)
    assert auto.replans == 2
    assert streaming.need_of(auto.policy, ct_implicit) in streaming.own_contexts(again)
    forced = streaming.Planner(SyntaxPolicy.from_options("ExplicitVRLittleEndian", False))
    forced.note(ct_explicit)
    plan = forced.plan_for(ct_explicit)
    forced.note(ct_implicit)  # the forced syntax is proposed whatever the file's
    assert forced.plan_for(ct_implicit) is plan and forced.replans == 1
    assert streaming.need_of(forced.policy, ct_implicit) in streaming.own_contexts(plan)
    forced.note(mr)
    assert streaming.need_of(forced.policy, mr) in streaming.own_contexts(forced.plan_for(mr))
