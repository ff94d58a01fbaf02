"""`scukit demo`: a self-contained tour that works from any folder."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path


def scukit() -> str:
    beside = Path(sys.executable).with_name("scukit")
    found = str(beside) if beside.exists() else shutil.which("scukit")
    assert found, "the scukit console script is not installed (pip install -e .)"
    return found


def test_demo_sends_and_prints_summary_and_journal(tmp_path: Path) -> None:
    proc = subprocess.run(
        [scukit(), "demo", "--count", "8"],
        cwd=tmp_path,  # no repository files needed
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "listening on 127.0.0.1:" in out
    assert "sent 8 of 8 files (0 failed, 0 warnings)" in out
    journal = [line for line in out.splitlines() if "0x0000 (success)" in line]
    assert len(journal) == 8
    assert sum("CT Image Storage" in line for line in journal) == 4
    assert sum("JPEG 2000" in line for line in journal) == 4
    assert "SCUKIT-DEMO -> DEMO-PACS" in out and "ended: released" in out
    assert "violations: none" in out
    assert "scukit scenario run" in out and "scukit serve" in out
    assert "[#" not in proc.stderr  # no progress bar when stderr is not a terminal
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_demo_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [scukit(), "demo", "--count", "4"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    bar = b"".join(chunks).decode(errors="replace")
    assert "4/4" in bar and "#" * 30 in bar


def test_demo_rejects_a_bad_count() -> None:
    from scu.cli import main

    assert main(["demo", "--count", "0"]) == 2
