"""Everything is validated before anything runs: exit 2, file:line:field and a did-you-mean;
`scenario run` and `scenario list` take folders; the every-Nth matcher."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import scenarios
from scenarios import ScenarioError
from scu.cli import main

VALID = """\
name: tiny
description: |
  One file, one accept.
files:
  - generate: {count: 1, sop_class: CTImageStorage, seed: 1}
expect:
  successful: 1
"""


def write(folder: Path, text: str, name: str = "s.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def with_scp(snippet: str) -> str:
    return VALID.replace("expect:", "scp:\n" + textwrap.indent(snippet, "  ") + "expect:")


@pytest.mark.parametrize(
    ("text", "line", "field", "needle"),
    [
        # action and status must agree (the mock would refuse it at run time)
        (with_scp("rules:\n  - {nth: 1, warn: OutOfResources}\n"), 8,
         "scp.rules[0].warn", "warn needs a warning status, but 0xA700 (out-of-resources)"),
        (with_scp("rules:\n  - {nth: 1, fail: 0xB000}\n"), 8,
         "scp.rules[0].fail", "fail needs a failure status"),
        # the kind of each UID field
        (with_scp("transfer_syntaxes: [CTImageStorage]\n"), 7,
         "scp.transfer_syntaxes[0]", "is a SOP class (1.2.840.10008.5.1.4.1.1.2), not a transfer"),
        (with_scp("rules:\n  - {sop_class_uid: ExplicitVRLittleEndian, accept: true}\n"), 8,
         "scp.rules[0].sop_class_uid", "not a SOP class"),
        (with_scp("rules:\n  - {sop_instance_uid: 1.2.03, accept: true}\n"), 8,
         "scp.rules[0].sop_instance_uid", "leading zero"),
        (VALID.replace("seed: 1}", "seed: 1, transfer_syntax: MRImageStorage}"), 5,
         "files[0].generate.transfer_syntax", "not a transfer syntax"),
        # did-you-mean, wherever a name is looked up
        (VALID.replace("successful", "succesful"), 7,
         "expect.succesful", "did you mean 'successful'?"),
        (with_scp("rules:\n  - {nth: 1, fail: OutOfResorces}\n"), 8,
         "scp.rules[0].fail.status", "did you mean 'out-of-resources'?"),
        (with_scp("reject_associations:\n  - {result: transient, source: 3,\n"
                  "     reason: temporary-congestoin}\n"), 8,
         "scp.reject_associations[0]", "did you mean 'temporary-congestion'?"),
        (with_scp("reject_associations:\n  - {result: transent, source: 1, reason: 1}\n"), 8,
         "scp.reject_associations[0]", "did you mean 'transient'?"),
        (VALID.replace("successful: 1", "raises: AssociationRejcted"), 7,
         "expect.raises", "did you mean 'AssociationRejected'?"),
        (VALID.replace("successful: 1", "scp: {ended: {relased: 1}}"), 7,
         "expect.scp.ended.relased", "did you mean 'released'?"),
        # what the mock itself refuses, found by building it (not started)
        (with_scp("rules:\n  - {nth: 1, expect: 2, accept: true}\n"), 8,
         "scp.rules[0]", "at least 2 hit(s) can never happen with nth=1"),
        (with_scp("rules:\n  - {offset: 2, accept: true}\n"), 8,
         "scp.rules[0]", "offset only means something with every: N"),
        (VALID.replace("count: 1, sop_class", "count: 2, sop_instance_uid: 1.2.3, sop_class"), 5,
         "files[0].generate", "sop_instance_uid can be fixed only with count: 1"),
    ],
)  # fmt: skip
def test_errors_name_file_line_field_and_suggest(
    tmp_path: Path, text: str, line: int, field: str, needle: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        scenarios.load(path)
    issues = [i for i in info.value.issues if i.field == field]
    assert issues, info.value
    assert (issues[0].file, issues[0].line) == (str(path), line)
    assert needle in issues[0].message, issues[0].message


def test_a_bad_file_exits_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, with_scp("rules:\n  - {nth: 1, warn: OutOfResources}\n"))
    assert main(["scenario", "run", "clean-accept", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:8: scp.rules[0].warn: warn needs a warning status" in err
    assert "running" not in err


def test_a_misspelt_placeholder_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "run", "clean-accept", "--scu-command", "x {dimse_timout}"]) == 2
    assert "did you mean {dimse_timeout}" in capsys.readouterr().err


def test_an_unknown_scenario_name_suggests_the_library_one() -> None:
    with pytest.raises(ScenarioError, match="did you mean 'clean-accept'"):
        scenarios.resolve("clean-acept")


def test_run_and_list_take_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "site"
    write(folder, VALID, "a.yaml")
    write(folder / "more", VALID.replace("name: tiny", "name: tiny-two"), "b.yaml")
    write(folder, "not a scenario", "notes.txt")
    assert main(["scenario", "list", str(folder), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in listed] == ["tiny", "tiny-two"]
    assert main(["scenario", "run", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in report["scenarios"]] == ["tiny", "tiny-two"]
    assert report["verdict"] == "conformant"


def test_a_folder_with_a_bad_file_or_no_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["scenario", "run", str(empty)]) == 2
    assert main(["scenario", "list", str(empty)]) == 2
    write(tmp_path / "bad", VALID.replace("successful", "succesful"))
    assert main(["scenario", "list", str(tmp_path / "bad")]) == 2
    assert "did you mean 'successful'" in capsys.readouterr().err


def test_every_nth_matcher_with_an_offset(tmp_path: Path) -> None:
    text = VALID.replace("count: 1", "count: 8").replace(
        "expect:\n  successful: 1",
        "scp:\n  rules:\n    - {every: 3, offset: 1, warn: ElementsDiscarded, expect: 2}\n"
        "expect:\n  warnings: 2\n  scp:\n"
        "    statuses: [0, 0, 0, 0xB006, 0, 0, 0xB006, 0]\n",
    )
    report = scenarios.run(write(tmp_path, text))
    report.raise_for_failure()
