"""``send(journal=PATH)`` and ``send(journal=PATH, resume=True)`` against MockScp.

An entry is known by its source (path, size and modification time; the SHA-256 of an
entry given in memory) and its destination (address and called AE title). Resuming
leaves out what this destination acknowledged (success or warning); a failure never
overwrites an acknowledgement; the journal is closed when ``send()`` returns or
raises."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from mock_scp import MockScp, datagen
from scu import AssociationRejected, CallbackError, StoreScu, TransferJournal, TransferResult
from scu.journal import JournalSummary
from tests.support.recorder import Recorder
from tests.support.scu_helpers import FAST, SCP_AE, instance_uid, make_scu, write_series


@pytest.fixture
def pacs() -> Iterator[MockScp]:
    with MockScp(ae_title=SCP_AE, acse_timeout=5, dimse_timeout=5, network_timeout=5) as scp:
        yield scp


def open_files() -> set[str]:
    """What this process has open (files, sockets as 'socket:[n]')."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed while we looked (the listing's own fd)
            pass
    return found


def journal_is_closed(path: Path) -> bool:
    return not any(name.startswith(str(path)) for name in open_files())


def summary(path: Path) -> JournalSummary:
    journal = TransferJournal(path)
    try:
        return journal.summary()
    finally:
        journal.close()


def sender(scp: MockScp, files: list[str], **options: object) -> StoreScu:
    scu = make_scu(scp, **options)
    for path in files:
        scu.add_file(path)
    return scu


def sent_uids(scp: MockScp) -> list[str]:
    scp.wait_idle(5)
    return [store.sop_instance_uid for store in scp.received]


def test_resume_sends_only_what_was_not_acknowledged(pacs: MockScp, tmp_path: Path) -> None:
    """Run 1: file 2 fails (0xA700), file 3 gets a warning (acknowledged), the memory
    entry succeeds. Run 2 with resume: only file 2 goes; the others are listed in
    ``already_sent``, in queue order, and are not in the result's files."""
    journal = tmp_path / "journal.sqlite"
    files = write_series(tmp_path, 4)
    memory = datagen.make_bytes(seed=42)
    pacs.on_store(nth=2).fail("0xA700")
    pacs.on_store(nth=3).warn("0xB000", comment="coerced")
    scu = sender(pacs, files)
    scu.add_file_from_memory(memory, "in-memory")
    first = scu.send(journal=journal)
    assert [o.ok for o in first.files] == [True, False, True, True, True]
    assert first.already_sent == []

    pacs.reset()
    rec = Recorder()
    second = scu.send(**rec.callbacks, journal=journal, resume=True)
    rec.check_invariants(second, [files[1]], in_order=True)
    assert second.total_files == 1 and second.successful == 1
    assert second.already_sent == [files[0], files[2], files[3], "in-memory"]
    assert second.to_dict()["already_sent"] == second.already_sent
    assert sent_uids(pacs) == [instance_uid(files[1])]

    pacs.reset()
    third = scu.send(journal=journal, resume=True)
    assert third.total_files == 0 and len(third.already_sent) == 5
    assert sent_uids(pacs) == []
    assert not pacs.associations  # nothing to send: no association either


def test_a_failure_never_overwrites_an_acknowledgement(pacs: MockScp, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    files = write_series(tmp_path, 3)
    scu = sender(pacs, files)
    assert scu.send(journal=journal).successful == 3
    pacs.on_store().fail("0xA700")
    assert scu.send(journal=journal).failed == 3  # sent again (no resume), all refused
    assert summary(journal).destinations == {
        f"{pacs.addr}/{SCP_AE}": {"acknowledged": 3, "failed": 0}
    }
    pacs.reset()
    assert scu.send(journal=journal, resume=True).already_sent == files
    assert sent_uids(pacs) == []


def test_another_destination_is_not_affected(pacs: MockScp, tmp_path: Path) -> None:
    """Acknowledged by PACS at this address: the same files still go to another called
    AE title, and to another port."""
    journal = tmp_path / "journal.sqlite"
    files = write_series(tmp_path, 2)
    assert sender(pacs, files).send(journal=journal).successful == 2

    pacs.reset()
    other_ae = sender(pacs, files, called_ae_title="OTHER-AE")
    result = other_ae.send(journal=journal, resume=True)
    assert result.already_sent == [] and result.successful == 2
    assert {s.called_ae_title for s in pacs.received} == {"OTHER-AE"}

    with MockScp(ae_title=SCP_AE) as elsewhere:
        result = sender(elsewhere, files).send(journal=journal, resume=True)
        assert result.already_sent == [] and result.successful == 2
        assert len(sent_uids(elsewhere)) == 2
        destinations = summary(journal).destinations
        assert set(destinations) == {
            f"{pacs.addr}/{SCP_AE}",
            f"{pacs.addr}/OTHER-AE",
            f"{elsewhere.addr}/{SCP_AE}",
        }
        assert all(counts == {"acknowledged": 2, "failed": 0} for counts in destinations.values())


def test_a_modified_file_is_sent_again(pacs: MockScp, tmp_path: Path) -> None:
    """A new modification time or size is a new source; the same bytes in memory under
    another name are the same source."""
    journal = tmp_path / "journal.sqlite"
    files = write_series(tmp_path, 3)
    scu = sender(pacs, files)
    scu.add_file_from_memory(datagen.make_bytes(seed=7), "memory-a")
    assert scu.send(journal=journal).successful == 4

    touched, rewritten = files[0], files[1]
    info = os.stat(touched)
    os.utime(touched, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    # rewritten with a longer patient name, its modification time put back: only the
    # size tells the change
    stamp = os.stat(rewritten).st_mtime_ns
    dataset = pydicom.dcmread(rewritten)
    dataset.PatientName = "Changed^After^Sending^Once"
    dataset.save_as(rewritten, enforce_file_format=True)
    os.utime(rewritten, ns=(stamp, stamp))
    again = make_scu(pacs)
    for path in files:
        again.add_file(path)
    again.add_file_from_memory(datagen.make_bytes(seed=7), "memory-b")  # same bytes
    again.add_file_from_memory(datagen.make_bytes(seed=8), "memory-c")  # other bytes
    pacs.reset()
    result = again.send(journal=journal, resume=True)
    assert [o.file for o in result.files] == [touched, rewritten, "memory-c"]
    assert result.already_sent == [files[2], "memory-b"]
    assert result.successful == 3


def test_summary_counts(pacs: MockScp, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    files = write_series(tmp_path, 4)
    pacs.on_store(nth=[2, 3]).fail("0xC000", comment="cannot understand")
    scu = sender(pacs, files)
    scu.send(journal=journal)
    pacs.reset()
    scu.send(journal=journal, resume=True)  # the two failed ones, now accepted

    found = summary(journal)
    destination = f"{pacs.addr}/{SCP_AE}"
    assert found.path == str(journal)
    assert found.destinations == {destination: {"acknowledged": 4, "failed": 0}}
    assert found.failed == []
    assert found.transfers == 2 and len(found.runs) == 2
    assert [run["counts"] for run in found.runs] == [
        {"successful": 2, "failed": 2, "total": 4, "already_sent": 0},
        {"successful": 2, "failed": 0, "total": 2, "already_sent": 2},
    ]
    assert all(run["interrupted"] is False and run["ended_at"] for run in found.runs)
    assert found.last_update is not None
    assert found.to_dict()["destinations"] == found.destinations


def test_summary_lists_the_failures(pacs: MockScp, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    files = write_series(tmp_path, 3)
    pacs.on_store(nth=2).fail("0xA900")
    sender(pacs, files).send(journal=journal)
    found = summary(journal)
    ((destination, name, error),) = found.failed
    assert destination == f"{pacs.addr}/{SCP_AE}" and name == files[1] and "0xA900" in error
    assert found.destinations[destination] == {"acknowledged": 2, "failed": 1}


def test_every_outcome_is_journalled_with_several_associations(
    pacs: MockScp, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    files = write_series(tmp_path, 12)
    pacs.on_store(nth=[3, 7]).fail("0xA700")
    result = sender(pacs, files, concurrency=3).send(journal=journal)
    assert result.failed == 2
    (counts,) = summary(journal).destinations.values()
    assert counts == {"acknowledged": 10, "failed": 2}
    pacs.reset()
    resumed = sender(pacs, files, concurrency=3).send(journal=journal, resume=True)
    assert sorted(o.file for o in resumed.files) == sorted(result.failed_files)


NOT_A_JOURNAL = {
    "random bytes": lambda path: path.write_bytes(os.urandom(4096)),
    "text": lambda path: path.write_text("this is not a database\n" * 50),
    "another program's database": lambda path: _other_database(path),
    "a folder": lambda path: path.mkdir(),
}


def _other_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE outcomes (patient TEXT, result TEXT)")
    db.execute("INSERT INTO outcomes VALUES ('x', 'y')")
    db.commit()
    db.close()


@pytest.mark.parametrize("kind", list(NOT_A_JOURNAL))
def test_a_path_that_is_not_a_journal_is_refused(pacs: MockScp, tmp_path: Path, kind: str) -> None:
    """ValueError naming the file, before anything is sent; the file is left as it
    was and not left open."""
    path = tmp_path / "journal.sqlite"
    NOT_A_JOURNAL[kind](path)
    before = path.read_bytes() if path.is_file() else None
    scu = sender(pacs, write_series(tmp_path, 1))
    with pytest.raises(ValueError, match=str(path)):
        scu.send(journal=path)
    with pytest.raises(ValueError, match=str(path)):
        TransferJournal(path)
    assert not pacs.associations
    if before is not None:
        assert path.read_bytes() == before
    assert journal_is_closed(path)


def test_resume_needs_a_journal(pacs: MockScp, tmp_path: Path) -> None:
    scu = sender(pacs, write_series(tmp_path, 1))
    with pytest.raises(ValueError, match="journal"):
        scu.send(resume=True)


def test_the_journal_is_closed_after_send(pacs: MockScp, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    scu = sender(pacs, write_series(tmp_path, 2))
    scu.send(journal=journal)
    assert journal_is_closed(journal)
    scu.send(journal=journal, resume=True)
    assert journal_is_closed(journal)


def test_the_journal_is_closed_when_send_raises(tmp_path: Path) -> None:
    """Rejected, a callback that raises, a callback that exits: closed every time, and
    what was accounted before is in it."""
    files = write_series(tmp_path, 2)
    journal = tmp_path / "journal.sqlite"
    with MockScp(ae_title=SCP_AE) as scp:
        scp.reject_associations(result="permanent", reason="calling-ae-title-not-recognized")
        with pytest.raises(AssociationRejected):
            sender(scp, files).send(journal=journal)
        assert journal_is_closed(journal)

    with MockScp(ae_title=SCP_AE) as scp:
        scu = sender(scp, files)

        def broken(event: object) -> None:
            raise RuntimeError("display failed")

        with pytest.raises(CallbackError) as caught:
            scu.send(on_file_sent=broken, journal=journal)
        assert caught.value.result.successful == 2
        assert journal_is_closed(journal)

        def leaves(event: object) -> None:
            raise SystemExit(3)

        with pytest.raises(SystemExit):
            scu.send(on_file_sent=leaves, journal=journal)
        assert journal_is_closed(journal)

    destinations = summary(journal).destinations
    assert sum(c["acknowledged"] for c in destinations.values()) == 2
    assert sum(c["failed"] for c in destinations.values()) == 2  # the rejected run


def test_journal_from_memory_entries_only(pacs: MockScp, tmp_path: Path) -> None:
    """Entries in memory are known by their content, so a resume from another process
    (another StoreScu) recognises them."""
    journal = tmp_path / "journal.sqlite"
    data = [datagen.make_bytes(seed=n) for n in range(3)]
    first = StoreScu(pacs.addr, called_ae_title=SCP_AE, **FAST)
    for n, blob in enumerate(data):
        first.add_file_from_memory(blob, f"m{n}")
    pacs.on_store(nth=2).fail("0xA700")
    result: TransferResult = first.send(journal=journal)
    assert [o.ok for o in result.files] == [True, False, True]
    second = StoreScu(pacs.addr, called_ae_title=SCP_AE, **FAST)
    for n, blob in enumerate(data):
        second.add_file_from_memory(blob, f"copy-{n}")
    pacs.reset()
    resumed = second.send(journal=journal, resume=True)
    assert resumed.already_sent == ["copy-0", "copy-2"]
    assert [o.file for o in resumed.files] == ["copy-1"] and resumed.successful == 1
