"""`scukit conformance`: one external sender against a folder of scenarios; exit 0
conformant (or not robust without --strict), 1 otherwise, 2 invalid input; reports."""

from __future__ import annotations

import json
import shlex
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scu.cli import main

SEND = f"{shlex.quote(sys.executable)} -m scu.cli send {{addr}} {{files}}"

REFUSAL = """\
name: refusal
description: |
  The 2nd of 3 stores is refused with 0xA700.
scp:
  ae_title: PACS
  rules:
    - {nth: 2, fail: OutOfResources, expect: 1}
files:
  - generate: {count: 3, sop_class: CTImageStorage, seed: 5}
expect:
  - level: required
    cite: PS3.8 9.3
    scp: {violations: none}
  - level: recommended
    why: a nonzero exit status when a file was not stored
    sender: {exit: nonzero}
"""

CLEAN = """\
name: clean
description: |
  Two stores, both accepted.
files:
  - generate: {count: 2, sop_class: CTImageStorage, seed: 6}
expect:
  - level: required
    cite: PS3.8 9.3
    scp: {violations: none, stores: 2}
  - level: recommended
    why: exit status 0 when every file was stored
    sender: {exit: zero}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "refusal.yaml").write_text(REFUSAL, encoding="utf-8")
    (site / "clean.yaml").write_text(CLEAN, encoding="utf-8")
    return site


def flat(text: str) -> str:
    """The text with its wrapping undone (the width follows the terminal)."""
    return " ".join(text.split())


def conformance(folder: Path, command: str, *extra: str) -> int:
    return main(["conformance", "--scenarios", str(folder), "--scu-command", command, *extra])


def test_an_honest_sender_is_conformant(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html, report, junit = tmp_path / "r.html", tmp_path / "r.json", tmp_path / "r.xml"
    code = conformance(
        folder, SEND, "--html", str(html), "--json", str(report), "--junit", str(junit)
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "Verdict: CONFORMANT" in captured.out
    assert f"program: {sys.executable}" in captured.err  # which program ran, up front
    assert "Verdict: CONFORMANT" in html.read_text(encoding="utf-8")
    payload = json.loads(report.read_text(encoding="utf-8"))
    assert payload["verdict"] == "conformant"
    assert {s["name"]: s["verdict"] for s in payload["scenarios"]} == {
        "clean": "conformant",
        "refusal": "conformant",
    }
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    verdicts = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert verdicts["verdict"] == "conformant"


def test_a_sender_hiding_failures_is_not_robust_and_strict_fails_it(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "r.xml"
    quiet = f"{SEND}; exit 0"
    assert conformance(folder, quiet, "--junit", str(junit)) == 0
    out = flat(capsys.readouterr().out)
    assert "Verdict: CONFORMANT BUT NOT ROBUST" in out
    assert "a nonzero exit status when a file was not stored:" in out
    assert "refusal: sender.exit: expected nonzero, observed 0" in out
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    failure = cases["refusal"].find("failure")
    assert failure is not None and failure.get("type") == "not-robust"
    assert "[recommended] sender.exit" in (failure.get("message") or "")
    assert conformance(folder, quiet, "--strict") == 1


def test_a_sender_that_never_connects_is_non_conformant(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert conformance(folder, "true {files}") == 1
    out = flat(capsys.readouterr().out)
    assert "Verdict: NON-CONFORMANT" in out
    assert "sender connected: expected >= 1 association, observed 0 association(s)" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scu-command", "x {dimse_timout}"], "did you mean {dimse_timeout}"),
        (["--scu-command", SEND, "--scenarios", "/no/such/folder"], "not a folder"),
        (["--scu-command", SEND, "--html", "/no/such/folder/r.html"], "does not exist"),
        (["--scu-command", SEND, "--timeout", "0"], "--timeout must be positive"),
    ],
)
def test_invalid_input_exits_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["conformance", *args]) == 2
    assert needle in capsys.readouterr().err


def test_an_invalid_scenario_exits_2_before_anything_runs(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "bad.yaml").write_text(CLEAN.replace("stores: 2", "storez: 2"), encoding="utf-8")
    assert conformance(folder, SEND) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:9: expect[0].scp.storez: unknown field 'storez'; did you mean 'stores'?" in err
    assert "running" not in err
