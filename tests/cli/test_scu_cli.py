"""``scukit send | echo | preflight`` against DCMTK storescp: exit codes, output, JSON.

Most runs call ``scu.cli.main([...])`` in-process; one runs the installed ``scukit``
console script in a subprocess, the way a user does.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from scu import cli
from scu.cli import ProgressBar, main
from tests.support.dcmtk import StoreScp, storescp_starter
from tests.support.tools import free_port

StoreScpFactory = Callable[..., StoreScp]

pytestmark = pytest.mark.interop


@pytest.fixture
def storescp_factory(tmp_path: Path) -> Iterator[StoreScpFactory]:
    with storescp_starter(tmp_path) as start:
        yield start


def pydicom_file(name: str) -> str:
    """A pydicom test file shipped with the installed package (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    return str(path)


CT = pydicom_file("CT_small.dcm")
MR = pydicom_file("MR_small.dcm")
TRUNCATED = pydicom_file("MR_truncated.dcm")
JPEG2000 = pydicom_file("JPEG2000.dcm")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# send ---------------------------------------------------------------------------------


def test_send_all_ok_exit_0_with_summary(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory()
    code, out, err = run(["send", scp.addr, CT, MR], capsys)
    assert code == 0, err
    assert "successful         2" in out and "failed             0" in out
    assert "ExplicitVRLittleEndian" in out
    assert sorted(scp.received_sop_instance_uids()) == sorted(
        [
            "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
            "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457",
        ]
    )
    assert "\r" not in err  # stderr is not a terminal here: no progress bar


def test_send_some_failed_exit_1_names_file_and_reason(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory()
    code, out, _ = run(["send", scp.addr, CT, TRUNCATED], capsys)
    assert code == 1
    assert "failed             1" in out
    failed_section = out.split("Failed files:")[1]
    assert TRUNCATED in failed_section
    assert "truncated" in failed_section.lower()
    assert len(scp.received_files()) == 1


def test_send_directory_with_pattern(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    shutil.copy(CT, tmp_path / "a.dcm")
    shutil.copy(MR, tmp_path / "sub" / "b.dcm")
    shutil.copy(MR, tmp_path / "notes.txt")
    scp = storescp_factory()
    assert run(["send", scp.addr, str(tmp_path), "--json"], capsys)[0] == 0
    assert len(scp.received_files()) == 2
    code, out, _ = run(["send", scp.addr, str(tmp_path), "--no-recursive", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["total_files"] == 1


def test_send_json_shape(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory()
    code, out, _ = run(["send", scp.addr, CT, TRUNCATED, "--json"], capsys)
    assert code == 1
    data = json.loads(out)  # JSON only on stdout
    assert {"successful", "failed", "warnings", "total_files", "files", "duration_seconds"} <= set(
        data
    )
    assert (data["successful"], data["failed"], data["total_files"]) == (1, 1, 2)
    assert [f["file"] for f in data["files"]] == [CT, TRUNCATED]
    first, second = data["files"]
    assert set(first) >= {"file", "ok", "status", "error", "transfer_syntax", "sop_instance_uid"}
    assert first["ok"] is True and first["status"] == 0 and first["error"] is None
    assert first["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert second["ok"] is False and "truncated" in second["error"]


def test_send_forced_transfer_syntax_and_concurrency(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory(extra_args=["--fork"])
    argv = ["send", scp.addr, CT, MR, JPEG2000, "--json", "--concurrency", "2"]
    code, out, err = run([*argv, "--transfer-syntax", "ImplicitVRLittleEndian"], capsys)
    assert code == 0, out + err
    data = json.loads(out)
    assert {f["transfer_syntax"] for f in data["files"]} == {"1.2.840.10008.1.2"}


def test_send_rejected_exit_3_json(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory(refuse=True)
    code, out, err = run(["send", scp.addr, CT, MR, "--json"], capsys)
    assert code == 3
    assert "rejected" in err.lower()
    data = json.loads(out)
    assert data["rejection"]["result"] == 1 and data["rejection"]["source"] == 1
    assert "rejected" in data["error"].lower()
    assert data["failed"] == data["total_files"] == 2
    assert all(f["error"] for f in data["files"])


def test_send_connection_refused_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, out, err = run(["send", f"127.0.0.1:{port}", CT, "--connect-timeout", "2"], capsys)
    assert code == 3
    assert "could not establish association" in err
    assert f"127.0.0.1:{port}" in err
    assert out == ""


def test_send_fail_fast_stops_at_the_first_failure(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory()
    code, out, _ = run(["send", scp.addr, CT, TRUNCATED, MR, "--fail-fast", "--json"], capsys)
    assert code == 1
    files = json.loads(out)["files"]
    assert [f["ok"] for f in files] == [True, False, False]
    assert "fail_fast" in files[2]["error"]
    assert len(scp.received_files()) == 1


def test_send_verbose_logs_the_exchange_once(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory()
    code, out, err = run(["send", "-v", scp.addr, CT], capsys)
    assert code == 0
    assert "successful         1" in out  # the summary stays on stdout
    assert "A-ASSOCIATE" in err
    # The CLI's handler replaces the library's own: each protocol line appears once.
    assert err.count("A-RELEASE-RP") == 1, err


# usage errors: exit 2, the message names the input ------------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--calling-ae", "A-TITLE-THAT-IS-TOO-LONG"], ["calling_ae_title", "A-TITLE-THAT-IS"]),
        (["--called-ae", "BAD\\AE"], ["called_ae_title", "BAD\\\\AE"]),
        (["--max-pdu", "100"], ["max_pdu_length", "100"]),
        (["--max-pdu", "abc"], ["--max-pdu", "abc"]),
        (["--concurrency", "0"], ["concurrency", "0"]),
        (["--transfer-syntax", "NoSuchSyntax"], ["transfer_syntax", "NoSuchSyntax"]),
        (["--dimse-timeout", "-1"], ["dimse_timeout", "-1"]),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], words: list[str]
) -> None:
    code, out, err = run(["send", "127.0.0.1:11112", CT, *extra], capsys)
    assert code == 2
    assert out == ""
    for word in words:
        assert word in err, err


@pytest.mark.parametrize(
    ("command", "extra", "words"),
    [
        ("send", ["--bogus", "1"], "unrecognized arguments: --bogus 1"),
        ("send", ["--max-rate", "x"], "argument --max-rate: 'x'"),
        ("echo", ["--dimse-timeout"], "argument --dimse-timeout: expected one argument"),
    ],
)
def test_usage_errors_found_by_the_parser_still_give_json(
    capsys: pytest.CaptureFixture[str], command: str, extra: list[str], words: str
) -> None:
    """``--json`` promises JSON on stdout on every exit path, a mistyped option too:
    its ``error`` is what the parser said (also on stderr, with the usage)."""
    paths = [CT] if command == "send" else []
    code, out, err = run([command, "--json", "127.0.0.1:11112", *paths, *extra], capsys)
    assert code == 2
    data = json.loads(out)
    assert data["exit_code"] == 2 and words in data["error"], data
    assert words in err and "usage:" in err


def test_called_ae_in_the_address(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory(ignore=True)
    code, out, _ = run(["echo", f"STORESCP@{scp.addr}"], capsys)
    assert code == 0 and "0x0000" in out
    # Two different called AE titles: a usage error naming both, before any connection.
    code, _, err = run(["echo", f"STORESCP@{scp.addr}", "--called-ae", "OTHER"], capsys)
    assert code == 2 and "OTHER" in err and "STORESCP" in err


def test_bad_address_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["send", "no-port-here", CT], capsys)
    assert code == 2 and "no-port-here" in err


def test_missing_path_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.dcm")
    code, out, err = run(["send", "127.0.0.1:11112", CT, missing], capsys)
    assert code == 2 and out == ""
    assert missing in err


def test_folder_without_matching_files_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copy(CT, tmp_path / "a.dcm")
    code, _, err = run(["send", "127.0.0.1:11112", str(tmp_path), "--pattern", "*.ima"], capsys)
    assert code == 2
    assert str(tmp_path) in err and "*.ima" in err


def test_no_subcommand_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], capsys)[0] == 2
    code, out, _ = run(["send", "--help"], capsys)
    assert code == 0 and "--transfer-syntax" in out and "--never-transcode" in out


# echo -----------------------------------------------------------------------------------


def test_echo_ok_and_json(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory(ignore=True)
    code, out, _ = run(["echo", scp.addr], capsys)
    assert code == 0 and "0x0000" in out
    code, out, _ = run(["echo", scp.addr, "--json", "--called-ae", "STORESCP"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["status"] == 0 and data["addr"] == scp.addr
    assert data["duration_seconds"] >= 0


def test_echo_rejected_and_refused_exit_3(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory(refuse=True, ignore=True)
    code, out, err = run(["echo", scp.addr, "--json"], capsys)
    assert code == 3 and "rejected" in err.lower()
    assert json.loads(out)["rejection"]["reason"] == 1
    code, _, err = run(["echo", f"127.0.0.1:{free_port()}", "--connect-timeout", "2"], capsys)
    assert code == 3 and "could not establish association" in err


# preflight ------------------------------------------------------------------------------


def test_preflight_verdicts_and_exit_codes(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory()  # uncompressed syntaxes only
    code, out, _ = run(["preflight", scp.addr, CT, JPEG2000], capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if CT in line or JPEG2000 in line}
    assert "accept" in lines and "convert" in lines
    assert "ExplicitVRLittleEndian" in lines["convert"]

    code, out, _ = run(["preflight", scp.addr, CT, JPEG2000, "--never-transcode"], capsys)
    assert code == 1
    assert any(line.split()[:1] == ["refuse"] for line in out.splitlines())

    code, out, _ = run(["preflight", scp.addr, CT, TRUNCATED, "--json"], capsys)
    assert code == 1
    data = json.loads(out)
    assert [f["verdict"] for f in data["files"]] == ["accept", "unreadable"]
    assert data["counts"] == {"accept": 1, "unreadable": 1}
    assert "truncated" in data["files"][1]["reason"]
    assert scp.received_files() == []  # preflight sends nothing


def test_preflight_rejected_exit_3(
    storescp_factory: StoreScpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    scp = storescp_factory(refuse=True)
    assert run(["preflight", scp.addr, CT], capsys)[0] == 3


# progress bar -------------------------------------------------------------------------


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(
    storescp_factory: StoreScpFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    scp = storescp_factory()
    tty, stdout = FakeTty(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["send", scp.addr, CT, MR, TRUNCATED]) == 1
    drawn = tty.getvalue()
    assert drawn.startswith("\r[") and drawn.endswith("\n")
    assert "3/3 ok 2 failed 1" in drawn
    assert "\r" not in stdout.getvalue()  # the summary stays clean


def test_progress_bar_render_fits_the_terminal() -> None:
    bar = ProgressBar(io.StringIO())
    bar.total, bar.successful, bar.failed = 200, 99, 1
    bar.current = "a-very-long-file-name-" * 10 + ".dcm"
    for columns in (20, 40, 80, 200):
        line = bar.render(columns)
        assert len(line) < columns
        assert line.startswith("[")
    assert "100/200 ok 99 failed 1" in bar.render(120)
    wide = bar.render(120)
    bar_part = wide[1 : wide.index("]")]
    assert bar_part.count("#") == len(bar_part) // 2  # 100 of 200 done: half full


# plugins ---------------------------------------------------------------------------------


def test_broken_plugin_does_not_break_other_subcommands(
    storescp_factory: StoreScpFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = cli.entry_points

    def with_broken(**kwargs: Any) -> list[EntryPoint]:
        broken = EntryPoint("broken", "no_such_module_here:register", "scukit.commands")
        return [*real(**kwargs), broken]

    monkeypatch.setattr(cli, "entry_points", with_broken)
    code, _, err = run(["broken", "--some", "args"], capsys)
    assert code == 2
    assert "broken" in err and "no_such_module_here" in err
    scp = storescp_factory(ignore=True)
    assert run(["echo", scp.addr], capsys)[0] == 0


def test_console_script_in_a_subprocess(storescp_factory: StoreScpFactory) -> None:
    script = shutil.which("scukit")
    assert script, "the scukit console script is not installed (pip install -e .)"
    scp = storescp_factory()
    done = subprocess.run(
        [script, "send", scp.addr, CT, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["successful"] == 1
    assert scp.received_sop_instance_uids() == ["1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"]
