"""StoreScu with object-storage sources, against a real S3 API (moto's server on
loopback, fake credentials in the environment, nothing in the client patched).

Covered: a bucket of pydicom test files sent to MockScp and checked by SOP Instance UID;
the queue ordered by key; events and outcomes carrying the URL as given; add_directory's
rules on prefixes; the header check reading only what it needs and agreeing with the
local check on every pydicom test file (whole and truncated); every bad input (missing
bucket, key, prefix; access denied; revoked access; unreachable endpoint; an object that
changed or vanished between the check and the send), each ending in exactly one outcome;
concurrency with one stream per sender thread; the transfer journal across an
interrupted send and its resume; secrets never in messages.
"""

from __future__ import annotations

import _thread
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from mock_scp import MockScp
from scu import (
    FileError,
    FileSending,
    FileSent,
    Interrupted,
    StoreScu,
    TransferResult,
    remote,
    sparse,
)
from scu.source import EntryError, header_of, read_header
from tests.support.s3 import FAKE_ENV, S3Server, s3, start_s3

__all__ = ["s3"]  # the fixture

WORKTREE = Path(__file__).resolve().parents[2]

#: Several SOP classes and transfer syntaxes: explicit and implicit VR, big endian,
#: deflated, RLE, JPEG 2000, JPEG Extended.
STUDY = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "JPGExtended.dcm",
)


def pydicom_test_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    return Path(path)


def uid_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def upload_study(s3: S3Server, bucket: str, prefix: str = "study/") -> dict[str, str]:
    """The STUDY files under ``prefix``; returns {url: SOP Instance UID}."""
    return {
        s3.put(bucket, f"{prefix}{name}", pydicom_test_file(name)): uid_of(pydicom_test_file(name))
        for name in STUDY
    }


class Events:
    """Every event of a send, in order."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def callbacks(self) -> dict[str, Callable[[Any], None]]:
        return {
            name: self.seen.append
            for name in (
                "on_transfer_started",
                "on_file_sending",
                "on_file_sent",
                "on_file_error",
                "on_transfer_completed",
            )
        }

    def terminal(self) -> dict[str, Any]:
        """file -> its one terminal event (asserting there is exactly one)."""
        found: dict[str, Any] = {}
        for event in self.seen:
            if isinstance(event, FileSent | FileError):
                assert event.file not in found, f"two outcomes for {event.file}"
                found[event.file] = event
        return found


@pytest.fixture
def scp() -> Iterator[MockScp]:
    with MockScp(ae_title="PACS") as server:
        yield server


def sender(scp: MockScp, s3: S3Server, **options: Any) -> StoreScu:
    return StoreScu(scp.addr, called_ae_title="PACS", storage_options=s3.options, **options)


def assert_accounted(result: TransferResult, queued: list[str]) -> None:
    assert [o.file for o in result.files] == queued
    assert result.successful + result.failed == result.total_files == len(queued)


# --- sending ---------------------------------------------------------------------------


def test_a_bucket_of_test_files_reaches_the_scp(s3: S3Server, scp: MockScp) -> None:
    bucket = s3.bucket()
    expected = upload_study(s3, bucket)
    scu = sender(scp, s3)
    assert scu.add_directory(f"s3://{bucket}/study/") == len(STUDY)
    events = Events()
    result = scu.send(**events.callbacks())
    assert result.failed == 0, [o.error for o in result.files if not o.ok]
    assert sorted(r.sop_instance_uid for r in scp.received) == sorted(expected.values())
    # The queue is ordered by key, as a folder is by path; events carry the URL.
    assert scu.files == sorted(expected)
    assert [o.file for o in result.files] == sorted(expected)
    sending = [e.file for e in events.seen if isinstance(e, FileSending)]
    assert sending == sorted(expected)
    for url, event in events.terminal().items():
        assert isinstance(event, FileSent)
        assert event.sop_instance_uid == expected[url]
    scp.check()


def test_url_given_without_trailing_slash_and_single_objects(s3: S3Server, scp: MockScp) -> None:
    bucket = s3.bucket()
    upload_study(s3, bucket, "a/")
    single = s3.put(bucket, "b/one.dcm", pydicom_test_file("CT_small.dcm"))
    scu = sender(scp, s3)
    scu.add_file(single)
    scu.add_directory(f"s3://{bucket}/a", pattern="mr_*.DCM")  # whatever the case
    assert scu.files == [
        single,
        f"s3://{bucket}/a/MR_small.dcm",
        f"s3://{bucket}/a/MR_small_bigendian.dcm",
    ]
    result = scu.send()
    assert result.successful == 3
    assert [r.sop_instance_uid for r in scp.received] == [
        uid_of(pydicom_test_file(n))
        for n in ("CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm")
    ]


def test_prefix_rules_match_the_folder_rules(s3: S3Server) -> None:
    bucket = s3.bucket()
    s3.put(bucket, "p/z.dcm", pydicom_test_file("CT_small.dcm"))
    s3.put(bucket, "p/A.DCM", pydicom_test_file("MR_small.dcm"))
    s3.put(bucket, "p/notes.txt", b"not dicom at all, just words" * 4)
    s3.put(bucket, "p/noext", pydicom_test_file("rtplan.dcm").read_bytes())
    s3.put(bucket, "p/DICOMDIR", pydicom_test_file("DICOMDIR"))
    s3.put(bucket, "p/sub/deep.dcm", pydicom_test_file("SC_rgb_rle.dcm"))
    scu = StoreScu("127.0.0.1:104", storage_options=s3.options)
    assert scu.add_directory(f"s3://{bucket}/p/", recursive=False) == 2
    assert scu.files == [f"s3://{bucket}/p/A.DCM", f"s3://{bucket}/p/z.dcm"]
    assert {s.path: s.reason for s in scu.skipped} == {
        f"s3://{bucket}/p/DICOMDIR": "does not match *.dcm",
        f"s3://{bucket}/p/notes.txt": "does not match *.dcm",
        f"s3://{bucket}/p/noext": "does not match *.dcm",
    }
    scu.clean()
    assert scu.add_directory(f"s3://{bucket}/p/", pattern=None) == 4  # by content
    assert scu.files == [
        f"s3://{bucket}/p/A.DCM",
        f"s3://{bucket}/p/noext",
        f"s3://{bucket}/p/sub/deep.dcm",
        f"s3://{bucket}/p/z.dcm",
    ]
    assert {s.path: s.reason for s in scu.skipped} == {
        f"s3://{bucket}/p/DICOMDIR": "a DICOMDIR (media directory)",
        f"s3://{bucket}/p/notes.txt": "not DICOM by its content",
    }


def test_conversion_reads_the_object_whole_and_sends_it(s3: S3Server) -> None:
    bucket = s3.bucket()
    url = s3.put(bucket, "rle.dcm", pydicom_test_file("SC_rgb_rle.dcm"))
    explicit = "1.2.840.10008.1.2.1"
    with MockScp(ae_title="PACS", transfer_syntaxes=[explicit]) as scp:
        scu = sender(scp, s3)
        scu.add_file(url)
        (item,) = scu.preflight()
        assert (item.file, item.verdict) == (url, "convert")
        result = scu.send()
        assert result.successful == 1
        assert result.files[0].transfer_syntax == explicit
        assert scp.received[0].transfer_syntax == explicit
        scp.check()


def test_concurrency_reads_in_parallel_one_stream_per_sender(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.bucket()
    expected = upload_study(s3, bucket)
    for n in range(12):  # more objects than workers
        s3.put(bucket, f"study/copy-{n:02d}.dcm", pydicom_test_file("CT_small.dcm"))
    opened: list[tuple[int, int]] = []
    original = remote.RemoteObject.open

    def spy(self: remote.RemoteObject) -> Any:
        stream = original(self)
        opened.append((id(stream), threading.get_ident()))
        return stream

    monkeypatch.setattr(remote.RemoteObject, "open", spy)
    with MockScp(ae_title="PACS") as scp:
        scu = sender(scp, s3, concurrency=3)
        scu.add_directory(f"s3://{bucket}/study/")
        result = scu.send()
        assert result.failed == 0, [o.error for o in result.files if not o.ok]
        assert len(scp.received) == len(STUDY) + 12
        assert set(expected.values()) <= {r.sop_instance_uid for r in scp.received}
    # Streams from more than one sender thread; each stream opened anew, never shared.
    assert len({thread for _, thread in opened}) > 1
    assert len(opened) == len(STUDY) + 12


# --- the header check reads only what it needs ----------------------------------------


def test_a_large_object_is_checked_with_one_small_ranged_read(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bench/ is a folder of the checkout, not an installed package.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    from bench import corpus

    path = corpus.big_file(tmp_path, size_bytes=24 << 20)
    bucket = s3.bucket()
    url = s3.put_file(bucket, "big.dcm", path)
    reads: list[tuple[int, int]] = []
    original = remote.RemoteObject.read

    def spy(self: remote.RemoteObject, start: int, stop: int) -> bytes:
        reads.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(remote.RemoteObject, "read", spy)
    scu = StoreScu("127.0.0.1:104", storage_options=s3.options)
    scu.add_file(url)
    header = read_header(scu._entries[0])
    assert header == header_of(path.read_bytes())
    assert sum(stop - start for start, stop in reads) <= 2 * sparse.HEAD, reads


def offline_testdata() -> list[str]:
    base = os.path.realpath(os.path.dirname(pydicom.__file__))
    return sorted(
        p
        for p in get_testdata_files()
        if os.path.isfile(p) and os.path.realpath(p).startswith(base)
    )


def outcome(check: Callable[[], Any]) -> Any:
    try:
        return check()
    except EntryError as exc:
        return f"EntryError: {exc}"


def test_the_lazy_check_agrees_with_the_local_check_on_every_test_file(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tiny thresholds every object goes through the sparse path (head, growth,
    block fetches), whole and cut short: same header or same error as the local check."""
    monkeypatch.setattr(remote, "READ_WHOLE", 0)
    monkeypatch.setattr(sparse, "HEAD", 512)
    monkeypatch.setattr(sparse, "_BLOCK", 4096)
    bucket = s3.bucket()
    scu = StoreScu("127.0.0.1:104", storage_options=s3.options)
    expected: list[Any] = []
    for n, path in enumerate(offline_testdata()):
        data = Path(path).read_bytes()
        for variant, body in (("1-whole", data), ("2-cut", data[: len(data) * 2 // 3])):
            if not body:
                continue
            s3.put(bucket, f"{n:03d}-{variant}", body)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected.append(outcome(lambda b=body: header_of(b)))  # type: ignore[misc]
    scu.add_directory(f"s3://{bucket}/", pattern="*")
    got = [outcome(lambda e=e: read_header(e)) for e in scu._entries]  # type: ignore[misc]
    mismatches = [
        (entry.name, want, have)
        for entry, want, have in zip(scu._entries, expected, got, strict=True)
        if want != have
    ]
    assert not mismatches, mismatches[:5]
    assert len(got) > 300


# --- bad input -------------------------------------------------------------------------


def test_missing_bucket_key_and_prefix_raise_at_add_time(s3: S3Server) -> None:
    bucket = s3.bucket()
    s3.put(bucket, "there/a.dcm", pydicom_test_file("CT_small.dcm"))
    scu = StoreScu("127.0.0.1:104", storage_options=s3.options)
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/there/missing.dcm: no such obj"):
        scu.add_file(f"s3://{bucket}/there/missing.dcm")
    with pytest.raises(FileNotFoundError, match=r"s3://no-such-bucket-x/k\.dcm: no such bucket"):
        scu.add_file("s3://no-such-bucket-x/k.dcm")
    with pytest.raises(FileNotFoundError, match=f"no such prefix: s3://{bucket}/nowhere/"):
        scu.add_directory(f"s3://{bucket}/nowhere/")
    with pytest.raises(FileNotFoundError, match="s3://no-such-bucket-x/: no such bucket"):
        scu.add_directory("s3://no-such-bucket-x/")
    with pytest.raises(IsADirectoryError, match="use add_directory"):
        scu.add_file(f"s3://{bucket}/there")
    with pytest.raises(NotADirectoryError, match="is an object"):
        scu.add_directory(f"s3://{bucket}/there/a.dcm")
    assert len(scu) == 0


def test_access_denied_names_the_url_and_never_the_secret(s3: S3Server) -> None:
    bucket = s3.bucket()
    url = s3.put(bucket, "private/a.dcm", pydicom_test_file("CT_small.dcm"))
    credentials = s3.restricted_user(
        f"lister-{bucket}",
        [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "*"}],
    )
    scu = StoreScu("127.0.0.1:104", storage_options={**s3.options, **credentials})
    with s3.enforce_auth():
        with pytest.raises(PermissionError) as raised:
            scu.add_file(url)
    message = str(raised.value)
    assert f"add_file: {url}: access denied" in message
    assert credentials["secret"] not in message and credentials["secret"] not in repr(scu)


def test_faults_after_queueing_each_end_in_one_outcome(s3: S3Server, scp: MockScp) -> None:
    """Revoked access, a deleted object, an object rewritten between the check and the
    send (same size and a new size): each entry fails with the URL and the reason, the
    others are sent, and every entry has exactly one outcome."""
    bucket = s3.bucket()
    urls = upload_study(s3, bucket)
    ordered = sorted(urls)
    deleted, rewritten, resized = ordered[1], ordered[3], ordered[5]
    scu = sender(scp, s3)
    scu.add_directory(f"s3://{bucket}/study/")
    s3.client().delete_object(Bucket=bucket, Key=deleted.split("/", 3)[3])

    def rewrite(event: FileSending) -> None:
        # After the check, before the stream: the object the SCU is about to send changes.
        key = event.file.split("/", 3)[3]
        body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        if event.file == rewritten:  # the same size, another ETag
            s3.client().put_object(Bucket=bucket, Key=key, Body=b"Z" + body[1:])
        elif event.file == resized:
            s3.client().put_object(Bucket=bucket, Key=key, Body=body + b"\x00\x00")

    events = Events()
    callbacks = events.callbacks()
    callbacks["on_file_sending"] = lambda e: (events.seen.append(e), rewrite(e))  # type: ignore[func-returns-value]
    result = scu.send(**callbacks)
    assert_accounted(result, ordered)
    terminal = events.terminal()
    assert set(terminal) == set(ordered)
    errors = {o.file: o.error for o in result.files if not o.ok}
    assert set(errors) == {deleted, rewritten, resized}
    assert errors[deleted] == f"cannot read {deleted}: no such object"
    for url in (rewritten, resized):
        assert f"cannot read {url}: changed since it was queued" in str(errors[url])
    # The deleted one failed its check (no FileSending); the rewritten ones were aborted.
    sending = {e.file for e in events.seen if isinstance(e, FileSending)}
    assert deleted not in sending and {rewritten, resized} <= sending
    sent_uids = {urls[u] for u in ordered if u not in errors}
    assert {r.sop_instance_uid for r in scp.received if r.status == 0} == sent_uids
    # Access revoked after queueing: every check fails, naming the URL.
    scp.reset()
    with s3.enforce_auth():
        again = scu.send()
    assert again.failed == len(ordered)
    for o in again.files:  # the deleted one too: access is judged first
        assert o.error is not None and o.error.startswith(f"cannot read {o.file}: access denied")


def test_an_unreachable_endpoint_fails_each_entry_with_the_url(s3: S3Server) -> None:
    with start_s3() as doomed:
        bucket = doomed.bucket()
        url = doomed.put(bucket, "a.dcm", pydicom_test_file("CT_small.dcm"))
        with MockScp(ae_title="PACS") as scp:
            scu = StoreScu(scp.addr, called_ae_title="PACS", storage_options=doomed.options)
            scu.add_file(url)
            endpoint = doomed.endpoint
    # The store is gone: the entry fails in its check, naming the URL.
    with MockScp(ae_title="PACS") as scp:
        scu2 = StoreScu(scp.addr, called_ae_title="PACS")
        scu2._entries = list(scu._entries)
        result = scu2.send()
    assert result.failed == 1
    error = result.files[0].error or ""
    assert error.startswith(f"cannot read {url}: cannot reach the store"), error
    with pytest.raises(ConnectionError, match=f"add_file: {url}: cannot reach the store"):
        StoreScu("127.0.0.1:104", storage_options={"endpoint_url": endpoint}).add_file(url)


# --- the transfer journal ---------------------------------------------------------------


def test_an_interrupted_send_resumes_from_the_journal(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket()
    expected = upload_study(s3, bucket)
    journal = tmp_path / "journal.sqlite"
    with MockScp(ae_title="PACS") as scp:
        first = sender(scp, s3)
        first.add_directory(f"s3://{bucket}/study/")

        def ctrl_c(event: FileSending) -> None:
            if event.file == sorted(expected)[3]:
                _thread.interrupt_main()  # Ctrl-C as the fourth one starts

        with pytest.raises(Interrupted) as raised:
            first.send(on_file_sending=ctrl_c, journal=journal)
        done = [o.file for o in raised.value.result.files if o.ok]
        # The store in flight (the fourth) is given its moment to be answered.
        assert done == sorted(expected)[:4]
        # A new sender, the objects listed again: the journal keys are the same.
        second = sender(scp, s3)
        second.add_directory(f"s3://{bucket}/study/")
        result = second.send(journal=journal, resume=True)
        assert result.already_sent == done
        assert result.failed == 0 and result.total_files == len(STUDY) - len(done)
        assert sorted(r.sop_instance_uid for r in scp.received) == sorted(expected.values())
        # An object changed since: its key differs, so it is sent again.
        changed = sorted(expected)[0]
        data = pydicom_test_file("CT_small.dcm").read_bytes()
        s3.put(bucket, changed.split("/", 3)[3], b"Z" + data[1:])  # in the preamble
        third = sender(scp, s3)
        third.add_directory(f"s3://{bucket}/study/")
        again = third.send(journal=journal, resume=True)
        assert [o.file for o in again.files] == [changed]


def test_journal_key_is_url_size_and_etag(s3: S3Server) -> None:
    bucket = s3.bucket()
    url = s3.put(bucket, "k.dcm", pydicom_test_file("MR_small.dcm"))
    scu = StoreScu("127.0.0.1:104", storage_options=s3.options)
    scu.add_file(url)
    scu.add_directory(f"s3://{bucket}/")
    by_head, by_listing = (e.remote for e in scu._entries)
    assert by_head is not None and by_listing is not None
    etag = s3.client().head_object(Bucket=bucket, Key="k.dcm")["ETag"].strip('"')
    size = pydicom_test_file("MR_small.dcm").stat().st_size
    assert by_head.journal_key == by_listing.journal_key == f"url:{url}|{size}|ETag={etag}"


# --- without the extra; secrets ----------------------------------------------------------


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=WORKTREE,
        env={**os.environ, "PYTHONPATH": str(WORKTREE), **env},
    )


def test_import_scu_needs_no_fsspec_and_a_url_without_the_extra_names_it() -> None:
    done = run_python(
        "import sys\n"
        "sys.modules['s3fs'] = None  # as if the extra were not installed\n"
        "import scu\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('fsspec', 'botocore')]\n"
        "try:\n"
        "    scu.StoreScu('127.0.0.1:104').add_file('s3://bucket/key.dcm')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "s3://bucket/key.dcm: reading s3:// sources needs s3fs: pip install 'scukit[s3]'"
    )


def test_storage_options_are_checked_and_kept_private() -> None:
    with pytest.raises(ValueError, match="storage_options must be a mapping"):
        StoreScu("127.0.0.1:104", storage_options=["endpoint_url"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="endpoint_url must be an http"):
        remote.s3_options(endpoint_url="minio:9000")
    with pytest.raises(ValueError, match="region must be"):
        remote.s3_options(region="EU WEST")
    assert remote.s3_options(
        endpoint_url="http://127.0.0.1:9000", region="eu-west-1", anonymous=True
    ) == {
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "anon": True,
    }
    secret = FAKE_ENV["AWS_SECRET_ACCESS_KEY"]
    scu = StoreScu("127.0.0.1:104", storage_options={"key": "id", "secret": secret})
    assert secret not in repr(scu) and secret not in repr(vars(scu).get("endpoint"))
