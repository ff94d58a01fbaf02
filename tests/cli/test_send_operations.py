"""``scukit send`` as an operator runs it on a real study: killed and resumed from the
transfer journal, interrupted with SIGTERM or Ctrl-C, retrying, rate-limited, skipping
what is not DICOM, and reporting every path in JSON.

The sender runs as a real process (``python -m scu.cli``) wherever a signal is part of
the story; the receiver is a MockScp in this process, whose journal is the witness.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from mock_scp import MockScp
from scu.cli import ProgressBar, main
from scu.cli.common import parse_bandwidth, parse_rate
from scu.cli.progress import format_duration, format_rate
from tests.support.scu_helpers import instance_uid, write_series

ROOT = Path(__file__).resolve().parents[2]
COUNT = 300


@pytest.fixture
def study(tmp_path: Path) -> list[str]:
    return write_series(tmp_path / "study", COUNT, rows=16, columns=16)


@pytest.fixture
def scp() -> Iterator[MockScp]:
    with MockScp("PACS") as server:
        yield server


def sender(*args: str) -> subprocess.Popen[str]:
    """``scukit send`` in its own process, the way an operator starts it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "scu.cli", "send", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_stores(scp: MockScp, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while sum(1 for r in scp.received if r.status == 0) < count:
        assert proc.poll() is None, f"the sender ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the sender made no progress"
        time.sleep(0.005)


def acknowledged(journal: Path) -> set[str]:
    """The files the journal says the SCP acknowledged (read with sqlite3 directly)."""
    with sqlite3.connect(journal) as db:
        return {name for (name,) in db.execute("SELECT name FROM outcomes WHERE ok = 1")}


def stored_uids(scp: MockScp) -> list[str]:
    return [r.sop_instance_uid for r in scp.received if r.status == 0]


def test_kill_9_mid_send_then_resume_stores_everything_once_but_what_was_in_flight(
    scp: MockScp, study: list[str], tmp_path: Path
) -> None:
    journal = tmp_path / "send.journal"
    scp.on_store().stall(0.004)  # slow enough to be killed in the middle
    args = [scp.addr, "--called-ae", "PACS", str(tmp_path / "study"), "--concurrency", "2"]
    first = sender(*args, "--journal", str(journal))
    wait_for_stores(scp, COUNT // 3, first)
    first.kill()  # SIGKILL: no handler runs, nothing is flushed on the way out
    first.wait(10)
    assert first.returncode == -signal.SIGKILL
    assert scp.wait_idle(10)

    uid_of = {path: instance_uid(path) for path in study}
    stored_first = Counter(stored_uids(scp))
    acked = acknowledged(journal)
    assert 0 < len(acked) < COUNT
    # No acknowledgement the journal holds is one the SCP did not give.
    assert {uid_of[name] for name in acked} <= set(stored_first)
    in_flight = set(stored_first) - {uid_of[name] for name in acked}

    before = len(scp.received)
    second = sender(*args, "--resume", str(journal), "--json")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    report = json.loads(out)
    assert sorted(report["already_sent"]) == sorted(acked)
    assert report["successful"] == COUNT - len(acked) and report["failed"] == 0

    resent = Counter(r.sop_instance_uid for r in scp.received[before:] if r.status == 0)
    every = Counter(stored_uids(scp))
    assert set(every) == set(uid_of.values())  # none missing
    twice = {uid for uid, n in every.items() if n > 1}
    assert twice <= in_flight  # only what was in flight at the kill went twice
    assert len(twice) < 10
    assert not set(resent) & {uid_of[name] for name in acked}  # no acknowledged file again

    assert main(["journal", "show", str(journal), "--json"]) == 0


def test_journal_show_after_a_kill_says_the_run_never_ended(
    scp: MockScp, study: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "j.sqlite"
    scp.on_store().stall(0.004)
    proc = sender(
        scp.addr, "--called-ae", "PACS", str(tmp_path / "study"), "--journal", str(journal)
    )
    wait_for_stores(scp, 20, proc)
    proc.kill()
    proc.wait(10)
    assert main(["journal", "show", str(journal)]) == 0
    text = capsys.readouterr().out
    destination = f"{scp.addr}/PACS"
    assert destination in text
    assert "never ended (killed, or still running)" in text
    assert main(["journal", "show", str(journal), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    counts = data["destinations"][destination]
    assert counts["acknowledged"] == len(acknowledged(journal)) > 0  # one may be in flight
    assert data["runs"][0]["ended_at"] is None


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_accounts_every_file_writes_json_and_exits_130(
    how: signal.Signals, scp: MockScp, study: list[str], tmp_path: Path
) -> None:
    journal = tmp_path / "j.sqlite"
    scp.on_store().stall(0.004)
    proc = sender(
        scp.addr, "--called-ae", "PACS", str(tmp_path / "study"),
        "--json", "--journal", str(journal),
    )  # fmt: skip
    wait_for_stores(scp, 40, proc)
    proc.send_signal(how)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    report = json.loads(out)  # complete, not cut short
    assert report["interrupted"] is True and report["error"] == "interrupted"
    files = report["files"]
    assert len(files) == report["total_files"] == COUNT
    assert len({f["file"] for f in files}) == COUNT  # each entry exactly once
    not_sent = [f for f in files if f["error"] == "not sent: interrupted"]
    assert not_sent and report["successful"] >= 40
    assert report["successful"] + report["failed"] == COUNT
    assert all(f["attempts"] for f in files if f["ok"])
    line = [ln for ln in err.splitlines() if "interrupted:" in ln]
    assert line == [
        f"scukit send: interrupted: {report['successful']} sent, "
        f"{report['failed'] - len(not_sent)} failed, {len(not_sent)} not sent "
        f"(journal: {journal})"
    ]
    # The journal agrees with the JSON, and the SCP saw an association end, not a drop.
    assert len(acknowledged(journal)) == report["successful"]
    assert scp.wait_idle(10)
    assert {a.ended for a in scp.associations} <= {"released", "aborted"}
    ok_uids = {f["sop_instance_uid"] for f in files if f["ok"]}
    assert ok_uids <= set(stored_uids(scp))


def test_ctrl_c_on_a_terminal_ends_the_bar_before_the_counts(
    scp: MockScp, study: list[str], tmp_path: Path
) -> None:
    scp.on_store().stall(0.004)
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scu.cli", "send", scp.addr, "--called-ae", "PACS",
         str(tmp_path / "study")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=slave, text=True,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_for_stores(scp, 40, proc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        reader.join(10)
        os.close(master)
    assert proc.returncode == 130
    assert out == ""  # no summary on stdout after an interruption
    tty = b"".join(chunks).decode()
    assert tty.startswith("\r[")
    last = tty.split("\r")[-3]  # the bar's last state, before the line ends
    assert "files/s" in last and " not sent " in last
    head, sep, tail = tty.rpartition("scukit send: interrupted:")
    assert sep and head.endswith("\n")  # the counts start on a fresh line
    assert "\r[" not in tail  # the bar is not drawn again after it


# files ------------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A folder as operators find them: upper-case extensions, extension-less DICOM,
    a DICOMDIR, a text file."""
    folder = tmp_path / "mixed"
    written = write_series(folder, 3)
    os.rename(written[0], folder / "A.DCM")
    os.rename(written[1], folder / "IM000012")
    dicomdir = get_testdata_file("DICOMDIR", download=False)
    assert dicomdir is not None
    shutil.copy(dicomdir, folder / "DICOMDIR.dcm")
    (folder / "README.txt").write_text("not DICOM\n")
    return folder


def test_pattern_matches_whatever_the_case_and_lists_what_it_skips(
    scp: MockScp, mixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", scp.addr, "--called-ae", "PACS", str(mixed)]) == 0
    out = capsys.readouterr().out
    assert {Path(r.sop_instance_uid) for r in scp.received} and len(scp.received) == 2
    skipped = [line for line in out.splitlines() if line.startswith("skipped")]
    assert sorted(skipped) == sorted(
        [
            f"skipped 2 files (does not match *.dcm): {mixed / 'IM000012'}, {mixed / 'README.txt'}",
            f"skipped 1 file (a DICOMDIR (media directory)): {mixed / 'DICOMDIR.dcm'}",
        ]
    )


def test_all_files_takes_dicom_by_content(
    scp: MockScp, mixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", scp.addr, "--called-ae", "PACS", str(mixed), "--all-files", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(Path(f["file"]).name for f in report["files"]) == [
        "A.DCM",
        "IM000012",
        "img-002.dcm",
    ]
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert reasons == {
        "DICOMDIR.dcm": "a DICOMDIR (media directory)",
        "README.txt": "not DICOM by its content",
    }
    assert report["error"] is None and len(scp.received) == 3


def test_a_folder_with_nothing_to_send_is_a_usage_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert main(["send", "127.0.0.1:1", str(tmp_path), "--all-files", "--json"]) == 2
    out, err = capsys.readouterr()
    assert f"folder {str(tmp_path)!r} or its sub-folders holds no file DICOM by its content" in err
    assert "(1 skipped)" in err
    assert json.loads(out)["error"].startswith(f"folder {str(tmp_path)!r}")


# retries, rate, JSON on every path ------------------------------------------------------------


def test_retries_recover_a_transient_failure_and_show_the_attempts(
    scp: MockScp, study: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    scp.on_store(nth=2).fail("0xA700")  # Out of Resources: transient
    scp.on_store(nth=4).fail("0xA900")  # Data Set does not match SOP Class: permanent
    argv = ["send", scp.addr, "--called-ae", "PACS", *study[:3]]
    assert main([*argv, "--retries", "2", "--retry-delay", "0", "--json"]) == 1
    files = json.loads(capsys.readouterr().out)["files"]
    attempts = [[a["status"] for a in f["attempts"]] for f in files]
    assert attempts == [[0], [0xA700, 0], [0xA900]]
    assert [f["ok"] for f in files] == [True, True, False]


def test_retries_in_the_summary(
    scp: MockScp, study: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    scp.on_store(nth=1).fail("0xA702")
    assert (
        main(
            [
                "send",
                scp.addr,
                "--called-ae",
                "PACS",
                study[0],
                "--retries",
                "1",
                "--retry-delay",
                "0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "retried            1  (1 more attempts)" in out


def test_max_rate_spaces_the_files(
    scp: MockScp, study: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main(["send", scp.addr, "--called-ae", "PACS", *study[:6], "--max-rate", "20/s"]) == 0
    # A lower bound only (a slow machine can only make it longer): six files at 20/s
    # need at least five intervals of 50 ms once the first token is spent.
    assert time.monotonic() - started >= 0.2
    assert len(scp.received) == 6


def test_association_failure_json_has_the_error_and_every_file(
    study: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with MockScp("PACS") as closed:
        addr = closed.addr  # nothing listens there once it has stopped
    code = main(["send", addr, *study[:2], "--json", "--connect-timeout", "2"])
    assert code == 3
    report = json.loads(capsys.readouterr().out)
    assert report["error"] and "refused" in report["error"].lower()
    assert report["total_files"] == 2 and report["failed"] == 2
    assert report["interrupted"] is False and report["addr"] == addr


def test_a_forced_syntax_that_cannot_be_produced_is_a_usage_error(
    study: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", "127.0.0.1:1", study[0], "--transfer-syntax", "JPEG2000"]) == 2
    err = capsys.readouterr().err
    assert "cannot be forced" in err and "JPEG2000Lossless" in err


def test_journal_and_resume_are_exclusive(study: list[str], tmp_path: Path) -> None:
    j = str(tmp_path / "j")
    assert main(["send", "127.0.0.1:1", study[0], "--journal", j, "--resume", j]) == 2


def test_journal_show_refuses_what_is_not_a_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"not sqlite at all" * 100)
    assert main(["journal", "show", str(bogus)]) == 2
    assert str(bogus) in capsys.readouterr().err
    assert main(["journal", "show", str(tmp_path / "missing")]) == 2
    assert "no such journal file" in capsys.readouterr().err


# parsing and the bar -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("50", 50.0), ("50/s", 50.0), (" 2.5 /s ", 2.5), (".5/S", 0.5)],
)
def test_parse_rate(text: str, value: float) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("20MB/s", 20e6), ("20mb", 20e6), ("512KiB/s", 512 * 1024), ("1000000", 1e6),
        ("1.5GB/s", 1.5e9), ("2MiB/s", 2 * 1024**2), ("100B/s", 100.0), ("3kB/s", 3000.0),
    ],
)  # fmt: skip
def test_parse_bandwidth(text: str, value: float) -> None:
    assert parse_bandwidth(text) == value


@pytest.mark.parametrize("text", ["0", "-1/s", "fast", "1e6", "5/min", ""])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(Exception, match="files per second"):
        parse_rate(text)


@pytest.mark.parametrize("text", ["0MB/s", "iB/s", "20XB/s", "MB/s", "20 M B"])
def test_parse_bandwidth_refuses(text: str) -> None:
    with pytest.raises(Exception, match="expected a positive rate"):
        parse_bandwidth(text)


def test_the_bar_shows_rates_elapsed_and_eta() -> None:
    now = [100.0]
    bar = ProgressBar(_Sink(), clock=lambda: now[0])
    bar.started(_event(total_files=100))
    now[0] += 10.0
    bar.total, bar.successful, bar.failed, bar.bytes_sent = 100, 24, 1, 50_000_000
    bar.current = "IM000012"
    line = bar.render(200)
    assert "25/100 ok 24 failed 1" in line
    assert "2.5 files/s 5.0 MB/s" in line
    assert "0:10 ETA 0:30" in line and line.endswith("IM000012")
    narrow = bar.render(60)  # what does not fit goes: the name first, then the rates
    assert len(narrow) < 60 and "25/100" in narrow and "IM000012" not in narrow


def test_format_helpers() -> None:
    assert [format_duration(s) for s in (0, 7.4, 754, 3723)] == ["0:00", "0:07", "12:34", "1:02:03"]
    assert [format_rate(r) for r in (12, 820_000, 20.6e6, 1.2e9)] == [
        "12 B/s", "820 kB/s", "20.6 MB/s", "1.2 GB/s",
    ]  # fmt: skip


class _Sink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _event(**fields: Any) -> Any:
    from scu import TransferStarted

    return TransferStarted("Transfer started", fields["total_files"])
