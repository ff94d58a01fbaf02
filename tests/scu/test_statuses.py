"""Statuses: how each C-STORE status a real SCP answers is accounted."""

from __future__ import annotations

from pathlib import Path

import pytest

from scu import FileError, FileSent, TransferResult
from tests.support.pynetdicom_scp import HarnessScp, Respond
from tests.support.recorder import Recorder
from tests.support.scu_helpers import make_scu, write_series

#: (status, words its meaning must contain), warning codes: counted successful.
WARNINGS = [
    (0x0001, "optional attributes"),
    (0x0107, "attribute list"),
    (0x0116, "out of range"),
    (0xB000, "coercion"),
    (0xB006, "discarded"),
    (0xB007, "does not match"),
    (0xB123, "warning"),  # "the rest of 0xBxxx"
]

#: (status, words its meaning must contain), failures, unknown codes included.
FAILURES = [
    (0xA700, "out of resources"),
    (0xA7F3, "out of resources"),
    (0xA900, "does not match"),
    (0xC000, "cannot understand"),
    (0xC123, "cannot understand"),
    (0x0122, "sop class not supported"),
    (0x0124, "not authorized"),
    (0x0110, "processing failure"),
    (0x0111, "duplicate"),
    (0x0213, "resource limitation"),
    (0xFE00, "cancel"),
    (0xFF00, "pending"),
    (0xD123, "unknown"),
    (0x1234, "unknown"),
]


def _send_one(scp: HarnessScp, path: str, answer: Respond) -> tuple[Recorder, TransferResult]:
    scp.actions({}, default=answer)
    scu = make_scu(scp)
    scu.add_file(path)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, [path])
    return rec, result


@pytest.mark.parametrize(("status", "words"), WARNINGS, ids=[f"{s:04X}" for s, _ in WARNINGS])
def test_warning_status_counts_as_success_with_one_warning(
    scp: HarnessScp, tmp_path: Path, status: int, words: str
) -> None:
    (path,) = write_series(tmp_path, 1)
    rec, result = _send_one(scp, path, Respond(status, "coerced PatientName"))

    assert (result.successful, result.failed) == (1, 0)
    assert len(result.warnings) == 1
    line = result.warnings[0]
    assert path in line
    assert f"0x{status:04X}" in line
    assert "coerced PatientName" in line
    assert words in line.lower()
    (sent,) = rec.of(FileSent)
    assert sent.status == status
    assert sent.warning is not None and "coerced PatientName" in sent.warning
    outcome = result.files[0]
    assert outcome.ok and outcome.status == status and outcome.warning == sent.warning


def test_warning_without_comment_still_reported(scp: HarnessScp, tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, 1)
    _rec, result = _send_one(scp, path, Respond(0xB000))
    assert result.successful == 1
    assert len(result.warnings) == 1 and "0xB000" in result.warnings[0]


def test_one_warning_entry_per_file(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 4)
    scp.actions({1: Respond(0xB000, "a"), 3: Respond(0x0107, "b")})
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    result = scu.send()
    assert result.successful == 4
    assert len(result.warnings) == 2
    assert files[0] in result.warnings[0] and files[2] in result.warnings[1]
    assert [o.warning is not None for o in result.files] == [True, False, True, False]


@pytest.mark.parametrize(("status", "words"), FAILURES, ids=[f"{s:04X}" for s, _ in FAILURES])
def test_failure_status_fails_the_file_with_code_and_meaning(
    scp: HarnessScp, tmp_path: Path, status: int, words: str
) -> None:
    (path,) = write_series(tmp_path, 1)
    rec, result = _send_one(scp, path, Respond(status, "storage said no"))

    assert (result.successful, result.failed, result.warnings) == (0, 1, [])
    (error,) = rec.of(FileError)
    assert error.status == status
    assert f"0x{status:04X}" in error.error
    assert words in error.error.lower()
    assert "storage said no" in error.error
    outcome = result.files[0]
    assert not outcome.ok and outcome.status == status and outcome.error == error.error
    assert len(scp.received) == 1  # it was sent; the SCP refused it


def test_failure_does_not_stop_the_transfer(scp: HarnessScp, tmp_path: Path) -> None:
    files = write_series(tmp_path, 4)
    scp.actions({2: Respond(0xA700, "disk full")})
    scu = make_scu(scp)
    for f in files:
        scu.add_file(f)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [True, False, True, True]
    assert len(scp.received) == 4
    assert len(scp.associations) == 1  # a refused store does not end the association
