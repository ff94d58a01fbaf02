"""MockScp's ``store_dir`` under attack: a directory it cannot write (read-only, full,
under a regular file), and links planted where it will write. A store that cannot be
written is answered 0xA700 with the reason and journaled so, and leaves no temporary
file; a link is never followed, and nothing outside the directory is ever written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mock_scp import MockScp, storage
from scu import StoreScu
from tests.support.scu_helpers import instance_uid, write_series
from tests.support.victim import MockProcess, private_tmpfs

OUT_OF_RESOURCES = 0xA700


def _send(addr: str, files: list[str]) -> Any:
    scu = StoreScu(addr, connect_timeout=5, acse_timeout=5, dimse_timeout=10)
    for path in files:
        scu.add_file(path)
    return scu.send()


def _no_temporary_files(names: list[str] | None) -> None:
    assert names is not None
    assert not [n for n in names if n.startswith(".") or n.endswith(".part")], names


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "words"),
    [("read-only", "Read-only file system"), ("full", "No space left on device")],
)
def test_a_store_dir_that_cannot_take_the_file(tmp_path: Path, case: str, words: str) -> None:
    """A read-only file system, or a 1 MiB one that a 3 MB store fills: each store that
    cannot be written is answered 0xA700 with the reason as its Error Comment,
    journaled with it, and leaves no temporary file (on the full disk, the space it
    took comes back: a small store written afterwards succeeds)."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    prefix = private_tmpfs(store_dir, size="1m", read_only=case == "read-only")
    if prefix is None:
        pytest.skip(
            "mounting a small tmpfs needs root or unprivileged user namespaces, and this "
            "machine allows neither (unshare -m and unshare -r -m both failed)"
        )
    big = write_series(tmp_path / "big", 2, prefix="big", rows=1024, columns=1536)
    small = write_series(tmp_path / "small", 1, prefix="small", rows=16, columns=16, seed=1)
    assert os.path.getsize(big[0]) > 3_000_000
    files = [*big, *small]
    with MockProcess(prefix=prefix, store_dir=store_dir) as mock:
        result = _send(mock.addr, files)
        stats = mock.wait_until(lambda s: s["received"] == len(files))
    outcomes = [(o.ok, o.status, o.error or "") for o in result.files]
    expected_failures = 3 if case == "read-only" else 2
    for ok, status, error in outcomes[:expected_failures]:
        assert (ok, status) == (False, OUT_OF_RESOURCES), outcomes
        assert "cannot write" in error and words in error, error
    stores = stats["stores"]
    for store in stores[:expected_failures]:
        assert store["status"] == OUT_OF_RESOURCES and store["path"] is None, store
        assert words in (store["comment"] or ""), store
    if case == "full":
        assert outcomes[2][:2] == (True, 0), outcomes
        assert stores[2]["path"] is not None, stores[2]
        assert stats["store_files"] == [f"{instance_uid(small[0])}.dcm"], stats
    else:
        assert stats["store_files"] == [], stats
    _no_temporary_files(stats["store_files"])


@pytest.mark.timeout(60)
def test_a_store_dir_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"precious")
    files = write_series(tmp_path / "in", 2)
    with MockScp(store_dir=blocker / "store") as scp:
        result = _send(scp.addr, files)
        stored = scp.stored
    assert [(o.ok, o.status) for o in result.files] == [(False, OUT_OF_RESOURCES)] * 2
    assert all("Not a directory" in (o.error or "") for o in result.files), result.files
    assert [(s.status, s.path) for s in stored] == [(OUT_OF_RESOURCES, None)] * 2
    assert all("Not a directory" in (s.write_error or "") for s in stored)
    assert blocker.read_bytes() == b"precious"


@pytest.mark.timeout(60)
def test_links_planted_at_the_final_name_are_never_followed(tmp_path: Path) -> None:
    """``<uid>.dcm`` is a link to a file outside, ``<uid2>.dcm`` a dangling link to a
    path outside, ``<uid3>.dcm`` a directory: each store goes to ``<uid>_2.dcm``, the
    links and what they point at are untouched, and nothing new appears outside."""
    store_dir = tmp_path / "store"
    outside = tmp_path / "outside"
    store_dir.mkdir()
    outside.mkdir()
    precious = outside / "precious.txt"
    precious.write_bytes(b"precious")
    files = write_series(tmp_path / "in", 3)
    uids = [instance_uid(f) for f in files]
    (store_dir / f"{uids[0]}.dcm").symlink_to(precious)
    (store_dir / f"{uids[1]}.dcm").symlink_to(outside / "created-through-a-link.dcm")
    (store_dir / f"{uids[2]}.dcm").mkdir()
    with MockScp(store_dir=store_dir) as scp:
        result = _send(scp.addr, files)
        paths = [s.path for s in scp.stored]
    assert (result.successful, result.failed) == (3, 0)
    assert paths == [store_dir / f"{uid}_2.dcm" for uid in uids]
    for path in paths:
        assert path is not None and path.is_file() and not path.is_symlink()
    assert precious.read_bytes() == b"precious"
    assert sorted(os.listdir(outside)) == ["precious.txt"]
    assert (store_dir / f"{uids[0]}.dcm").is_symlink()
    assert os.readlink(store_dir / f"{uids[1]}.dcm") == str(outside / "created-through-a-link.dcm")
    _no_temporary_files(sorted(os.listdir(store_dir)))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("planted", [5, 100])
def test_links_planted_at_the_temporary_names_are_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: int
) -> None:
    """The temporary names made predictable (a fixed object id) and a link planted at
    each of the first ``planted`` of them, pointing outside: the mock never opens one
    (O_EXCL | O_NOFOLLOW) and takes the next free name; when none of its 100 tries is
    free, the store is answered 0xA700 and nothing is written anywhere."""
    store_dir = tmp_path / "store"
    outside = tmp_path / "outside"
    store_dir.mkdir()
    outside.mkdir()
    monkeypatch.setattr(storage, "id", lambda _obj: 0xBAD, raising=False)
    for attempt in range(planted):
        target = outside / f"victim-{attempt}"
        if attempt % 2:
            target.write_bytes(b"precious")  # an existing file, or a dangling link
        link = store_dir / f".incoming-{os.getpid()}-bad-{attempt}.part"
        link.symlink_to(target)
    files = write_series(tmp_path / "in", 1)
    with MockScp(store_dir=store_dir) as scp:
        result = _send(scp.addr, files)
        (store,) = scp.stored
    if planted < 100:
        assert (result.successful, store.status) == (1, 0), result.files
        assert store.path == store_dir / f"{instance_uid(files[0])}.dcm"
    else:
        assert (result.failed, store.status, store.path) == (1, OUT_OF_RESOURCES, None)
        assert "no free temporary name" in (result.files[0].error or "")
    for attempt in range(planted):
        target = outside / f"victim-{attempt}"
        assert target.read_bytes() == b"precious" if attempt % 2 else not target.exists()
    assert len(os.listdir(outside)) == planted // 2
    links = [n for n in os.listdir(store_dir) if n.endswith(".part")]
    assert len(links) == planted  # the planted links, and no file of the mock's


@pytest.mark.timeout(60)
def test_a_link_planted_between_the_name_check_and_the_rename_is_replaced_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: a link appears at the final name after the mock found it free. The
    rename replaces the link itself; what it pointed at is untouched."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"precious")
    claim = storage.StoreWriter.claim

    def claim_then_plant(self: storage.StoreWriter, uid: str, nth: int) -> Path:
        path = claim(self, uid, nth)
        path.symlink_to(precious)
        return path

    monkeypatch.setattr(storage.StoreWriter, "claim", claim_then_plant)
    files = write_series(tmp_path / "in", 1)
    with MockScp(store_dir=store_dir) as scp:
        result = _send(scp.addr, files)
        (store,) = scp.stored
    assert (result.successful, store.status) == (1, 0)
    assert store.path is not None and store.path.is_file() and not store.path.is_symlink()
    assert store.path.read_bytes()[128:132] == b"DICM"
    assert precious.read_bytes() == b"precious"
