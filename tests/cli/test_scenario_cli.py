"""`scukit scenario list|show|run`: output formats and exit codes (0 held, 1 not, 2 usage)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import scenarios
from scu.cli import main

FAILING = """\
name: wrong-count
description: |
  Expects a failure that a healthy mock never produces.
files:
  - generate: {count: 2, sop_class: CTImageStorage, seed: 3}
expect:
  failed: 1
"""

MALFORMED = """\
name: malformed
description: x
files:
  - generate: {count: 2, sop_class: CTImageStorage}
expect:
  succesful: 2
"""


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_list_names_every_library_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "list"]) == 0
    out = capsys.readouterr().out
    for entry in scenarios.library():
        assert f"{entry.name}  " in out and entry.summary in out


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "list", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {item["name"] for item in payload} == {e.name for e in scenarios.library()}


def test_show_prints_the_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "show", "dimse-stall"]) == 0
    out = capsys.readouterr().out
    assert out == (scenarios.library_dir() / "dimse-stall.yaml").read_text(encoding="utf-8")


def test_show_unknown_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "show", "no-such-thing"]) == 2
    assert "no such scenario" in capsys.readouterr().err


def test_run_passing_scenario_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "run", "warnings-on-some-stores"]) == 0
    out = capsys.readouterr().out
    assert "warnings-on-some-stores" in out and "PASS" in out
    assert "1 of 1 scenario(s) passed" in out


def test_run_failing_scenario_exits_1_and_shows_expected_vs_observed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, FAILING, "wrong-count")
    assert main(["scenario", "run", str(path), "clean-accept"]) == 1
    out = capsys.readouterr().out
    assert "wrong-count" in out and "FAIL" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("FAIL  required"))
    assert row.split()[2:5] == ["failed", "1", "0"]  # expected 1, observed 0
    assert "1 of 2 scenario(s) passed" in out


def test_validation_error_exits_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, MALFORMED, "malformed")
    assert main(["scenario", "run", "clean-accept", str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{bad}:6: expect.succesful: unknown field 'succesful'" in captured.err
    assert "running" not in captured.err  # clean-accept did not run either
    assert captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["scenario", "run"],
        ["scenario", "run", "no-such-scenario"],
        ["scenario"],
        ["scenario", "run", "--timeout", "0", "clean-accept"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert main(argv) == 2


def test_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FAILING, "wrong-count")
    assert main(["scenario", "run", "--json", "clean-accept", str(path)]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert (payload["ok"], payload["passed"], payload["failed"]) == (False, 1, 1)
    wrong = payload["scenarios"][1]
    assert wrong["name"] == "wrong-count" and wrong["ok"] is False
    failed = [e for e in wrong["expectations"] if e["ok"] is False]
    assert [(e["name"], e["expected"], e["observed"], e["level"]) for e in failed] == [
        ("failed", "1", "0", "required")
    ]
    assert (wrong["verdict"], payload["verdict"]) == ("non-conformant", "non-conformant")


def test_junit_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FAILING, "wrong-count")
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    assert main(["scenario", "run", "--junit", str(junit), "clean-accept", str(path)]) == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["clean-accept"].find("failure") is None
    failure = cases["wrong-count"].find("failure")
    assert failure is not None and "failed: expected 1, observed 0" in (failure.text or "")


def test_scu_command_that_never_connects_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "run", "clean-accept", "--scu-command", "true {files}"]) == 1
    out = capsys.readouterr().out
    assert "sender connected" in out and "0 association(s)" in out


def test_run_all_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "run", "--all", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["passed"] == len(scenarios.library()) and payload["failed"] == 0


def test_console_script_exit_code(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("scukit")
    exe = str(script) if script.exists() else shutil.which("scukit")
    assert exe, "the scukit console script is not installed"
    bad = write(tmp_path, MALFORMED, "malformed")
    proc = subprocess.run(
        [exe, "scenario", "run", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "unknown field 'succesful'" in proc.stderr
