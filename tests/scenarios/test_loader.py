"""Scenario files: validation errors name file, line and field; names and forms parse."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import scenarios
from scenarios import ScenarioError
from scenarios.loader import build_mock_scp, materialize_files, resolve

VALID = """\
name: tiny
description: |
  One file, one accept.
files:
  - generate: {count: 1, sop_class: CTImageStorage, seed: 1}
expect:
  successful: 1
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> ScenarioError:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        scenarios.load(path)
    return info.value


def only_issue(err: ScenarioError) -> tuple[int | None, str, str]:
    assert len(err.issues) == 1, err
    issue = err.issues[0]
    return issue.line, issue.field, issue.message


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    sc = scenarios.load(write(tmp_path, VALID))
    assert sc.name == "tiny"
    assert sc.source == (tmp_path / "s.yaml").resolve()
    assert sc.scp.ae_title == "MOCK-SCP"
    # The SCU calls the mock by its own AE title unless told otherwise.
    assert sc.called_ae_title == "MOCK-SCP"
    assert sc.files[0].generate is not None
    assert sc.files[0].generate.sop_class == "1.2.840.10008.5.1.4.1.1.2"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: x\ndescription: y\nfiles: [a.dcm\nexpect: {}\n")
    line, _, message = only_issue(err)
    assert "YAML syntax error" in message
    assert line == 4
    assert str(tmp_path / "s.yaml") in str(err)


def test_unknown_field_names_line_field_and_allowed_fields(tmp_path: Path) -> None:
    err = load_error(
        tmp_path, VALID.replace("expect:", "scp:\n  ae_title: P\n  colour: red\nexpect:")
    )
    line, field, message = only_issue(err)
    assert (line, field) == (8, "scp.colour")
    assert "unknown field 'colour'" in message
    assert "require_called_ae_title" in message  # the allowed fields are listed


def test_wrong_type_names_line_field_and_value(tmp_path: Path) -> None:
    err = load_error(tmp_path, VALID.replace("expect:", "scu:\n  concurrency: four\nexpect:"))
    line, field, message = only_issue(err)
    assert (line, field) == (7, "scu.concurrency")
    assert "integer" in message and "'four'" in message


def test_unknown_status_name_names_the_rule(tmp_path: Path) -> None:
    text = VALID.replace(
        "expect:", "scp:\n  rules:\n    - nth: 1\n      fail: {status: DiskOnFire}\nexpect:"
    )
    err = load_error(tmp_path, text)
    line, field, message = only_issue(err)
    assert (line, field) == (9, "scp.rules[0].fail.status")
    assert "unknown status 'DiskOnFire'" in message
    assert "out-of-resources" in message  # the accepted names are listed


def test_missing_fixture_file_names_line_and_the_path_looked_for(tmp_path: Path) -> None:
    text = VALID.replace(
        "  - generate: {count: 1, sop_class: CTImageStorage, seed: 1}", "  - study/ct1.dcm"
    )
    err = load_error(tmp_path, text)
    line, field, message = only_issue(err)
    assert (line, field) == (5, "files[0].path")
    assert "file not found: study/ct1.dcm" in message
    assert str(tmp_path / "study" / "ct1.dcm") in message


def test_unknown_pydicom_test_file(tmp_path: Path) -> None:
    text = VALID.replace(
        "generate: {count: 1, sop_class: CTImageStorage, seed: 1}", "pydicom: nope.dcm"
    )
    line, field, message = only_issue(load_error(tmp_path, text))
    assert (line, field) == (5, "files[0].pydicom")
    assert "nope.dcm" in message


@pytest.mark.parametrize(
    ("snippet", "field", "needle"),
    [
        ("scp:\n  rules:\n    - nth: 1\n", "scp.rules[0]", "exactly one action"),
        (
            "scp:\n  rules:\n    - {nth: 1, accept: true, abort: true}\n",
            "scp.rules[0]",
            "found accept, abort",
        ),
        ("scp:\n  rules:\n    - {nth: 1, fail: 0}\n", "scp.rules[0].fail", "failure status"),
        (
            "scp:\n  sop_classes: [NoSuchStorage]\n",
            "scp.sop_classes[0]",
            "unknown SOP class 'NoSuchStorage'",
        ),
        ("scp:\n  max_pdu_length: 100\n", "scp.max_pdu_length", "1024"),
        ("scu:\n  max_pdu_length: 200000\n", "scu.max_pdu_length", "4096..131072"),
        ("scu:\n  calling_ae_title: MUCH-TOO-LONG-AE-TITLE\n", "scu.calling_ae_title", "16"),
        (
            "scp:\n  reject_associations:\n    - {result: permanent, source: service-user,\n"
            "       reason: temporary-congestion}\n",
            "scp.reject_associations[0]",
            "reason (source 1)",
        ),
    ],
)
def test_configuration_errors(tmp_path: Path, snippet: str, field: str, needle: str) -> None:
    err = load_error(tmp_path, VALID.replace("expect:", snippet + "expect:"))
    _, got_field, message = only_issue(err)
    assert got_field == field
    assert needle in message


@pytest.mark.parametrize(
    ("expect", "field", "needle"),
    [
        ("expect: {}\n", "expect", "at least one expectation"),
        ("expect:\n  events: 'started, sent['\n", "expect.events", "bad event pattern"),
        ("expect:\n  events: 'started, exploded'\n", "expect.events", "unknown event name"),
        ("expect:\n  events: [success, maybe]\n", "expect.events", "success, warning or failed"),
        ("expect:\n  raises: KeyError\n", "expect.raises", "AssociationRejected"),
        ("expect:\n  scp: {violations: some}\n", "expect.scp.violations", ""),
        ("expect:\n  scp: {ended: {vanished: 1}}\n", "expect.scp.ended", ""),
    ],
)
def test_expectation_errors(tmp_path: Path, expect: str, field: str, needle: str) -> None:
    text = VALID.split("expect:")[0] + expect
    err = load_error(tmp_path, text)
    assert any(i.field.startswith(field) and needle in i.message for i in err.issues), err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace(
        "expect:", "scu:\n  concurrency: x\n  fail_fast: maybe\n  bogus: 1\nexpect:"
    )
    err = load_error(tmp_path, text)
    assert [i.line for i in err.issues] == [7, 8, 9]
    assert str(err).count(str(tmp_path / "s.yaml")) == 3


def test_not_a_mapping_and_empty_file(tmp_path: Path) -> None:
    assert "mapping" in str(load_error(tmp_path, "- a\n- b\n"))
    assert "empty" in str(load_error(tmp_path, ""))


def test_unknown_scenario_name_lists_the_library() -> None:
    with pytest.raises(ScenarioError, match="clean-accept"):
        resolve("no-such-scenario")


@pytest.mark.parametrize(
    "form", ["0xA700", 42752, "OutOfResources", "out-of-resources", "Refused: Out of Resources"]
)
def test_status_forms_are_equivalent(tmp_path: Path, form: object) -> None:
    text = VALID.replace(
        "expect:", f"scp:\n  rules:\n    - {{nth: 1, fail: {json.dumps(form)}}}\nexpect:"
    )
    sc = scenarios.load(write(tmp_path, text))
    assert sc.scp.rules[0].fail is not None
    assert sc.scp.rules[0].fail.status == 0xA700


def test_library_names_resolve_by_name_and_stem() -> None:
    path = resolve("clean-accept")
    assert path.parent == scenarios.library_dir()
    assert scenarios.load("clean-accept").name == "clean-accept"


def test_relative_paths_resolve_against_the_scenario_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mock_scp import datagen

    study = tmp_path / "cases" / "study"
    datagen.write_file(study / "a.dcm", sop_class="CTImageStorage", seed=5)
    path = write(
        tmp_path / "cases",
        VALID.replace(
            "  - generate: {count: 1, sop_class: CTImageStorage, seed: 1}",
            "  - study/a.dcm\n  - {path: study/a.dcm, repeat: 2}",
        ),
    )
    monkeypatch.chdir(tmp_path)  # anywhere but the scenario's folder
    sc = scenarios.load(path)
    files = materialize_files(sc, tmp_path / "work")
    assert files == [study / "a.dcm"] * 3


def test_build_mock_scp_is_configured_and_unstarted(tmp_path: Path) -> None:
    text = VALID.replace(
        "expect:",
        "scp:\n  ae_title: PACS\n  max_pdu_length: 4096\n"
        "  rules:\n    - {nth: 2, fail: OutOfResources}\n"
        "  reject_associations:\n    - {result: transient, source: service-provider-presentation,\n"
        "       reason: local-limit-exceeded, times: 1}\n"
        "expect:",
    )
    scp = build_mock_scp(write(tmp_path, text), ae_title="OVERRIDE")
    assert not scp.running
    assert scp.ae_title == "OVERRIDE"
    assert scp.max_pdu_length == 4096
    assert len(scp.rules) == 1


def test_json_schema_is_published() -> None:
    schema = scenarios.json_schema()
    assert set(schema["required"]) >= {"name", "description", "files", "expect"}
    assert "additionalProperties" in json.dumps(schema)


def test_public_api_matches_all() -> None:
    for name in scenarios.__all__:
        assert hasattr(scenarios, name), name


def test_shipped_json_schema_is_current() -> None:
    shipped = scenarios.library_dir().parent / "scenario.schema.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == scenarios.json_schema(), (
        'regenerate: python -c "import scenarios; '
        "scenarios.write_json_schema('scenarios/scenario.schema.json')\""
    )


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, VALID + "name: again\n")
    line, _, message = only_issue(err)
    assert line == 8
    assert "duplicate key 'name'" in message
