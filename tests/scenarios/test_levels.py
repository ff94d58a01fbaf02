"""Expectation groups and their levels, and the verdicts they lead to."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import scenarios
from scenarios import ScenarioError, Verdict
from scenarios.report import ExpectationResult, ScenarioReport, grouped_findings, overall_verdict

HEAD = """\
name: levels
description: |
  Two failures from the 2nd store on.
scp:
  ae_title: PACS
  rules:
    - {every: 1, offset: 1, fail: OutOfResources, times: 2}
files:
  - generate: {count: 3, sop_class: CTImageStorage, seed: 7}
"""


def load(tmp_path: Path, expect: str) -> scenarios.Scenario:
    path = tmp_path / "levels.yaml"
    path.write_text(HEAD + "expect:\n" + textwrap.indent(expect, "  "), encoding="utf-8")
    return scenarios.load(path)


def load_error(tmp_path: Path, expect: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load(tmp_path, expect)
    return info.value


def test_a_plain_mapping_is_one_required_group(tmp_path: Path) -> None:
    sc = load(tmp_path, "total: 3\n")
    [group] = sc.groups
    assert (group.level, group.cite, group.needs) == ("required", [], None)


def test_a_list_of_groups_keeps_levels_citations_and_reasons(tmp_path: Path) -> None:
    sc = load(
        tmp_path,
        "- level: required\n  cite: PS3.4  B.2.3\n  failed: 2\n"
        "- level: recommended\n  why: go on after a refusal\n  needs: []\n  total: 3\n",
    )
    required, recommended = sc.groups
    assert required.cite == ["PS3.4 B.2.3"]  # spaces normalised
    assert (recommended.level, recommended.why, recommended.needs) == (
        "recommended",
        "go on after a refusal",
        [],
    )


@pytest.mark.parametrize(
    ("expect", "field", "needle"),
    [
        ("- level: required\n  cite: section 4\n  total: 3\n", "expect[0].cite", "PS3.<part>"),
        ("- level: recommended\n  total: 3\n", "expect[0]", "says why"),
        ("- level: requried\n  total: 3\n", "expect[0].level", "did you mean 'required'"),
        ("- level: required\n  needs: [dimse_timout]\n  total: 3\n", "expect[0].needs[0]",
         "did you mean 'dimse_timeout'"),
        ("- level: required\n  why: nothing\n", "expect[0]", "at least one expectation"),
        ("[]\n", "expect", "at least one group"),
        ("- sender: {exit: sometimes}\n", "expect[0].sender.exit", "zero, nonzero, any"),
    ],
)  # fmt: skip
def test_group_errors_name_the_field(tmp_path: Path, expect: str, field: str, needle: str) -> None:
    err = load_error(tmp_path, expect)
    assert any(i.field == field and needle in i.message for i in err.issues), err
    assert all(i.line is not None for i in err.issues)


def test_in_process_results_carry_their_group_level(tmp_path: Path) -> None:
    sc = load(
        tmp_path,
        "- level: required\n  cite: PS3.4 B.2.3\n  failed: 2\n"
        "- level: recommended\n  why: one refusal only\n  failed: 1\n",
    )
    report = scenarios.run(sc)
    by = {(e.name, e.level): e for e in report.expectations}
    held = by[("failed", "required")]
    assert (held.ok, held.cite, held.basis) == (
        True,
        ("PS3.4 B.2.3",),
        "PS3.4 B.2.3 (Storage Service Class: Statuses)",
    )
    missed = by[("failed", "recommended")]
    assert (missed.ok, missed.why, missed.basis) == (False, "one refusal only", "one refusal only")
    assert report.verdict is Verdict.NOT_ROBUST
    assert not report.ok  # `scenario run` wants every level to hold


def result(ok: bool | None, level: str = "required", implicit: bool = False) -> ExpectationResult:
    return ExpectationResult("x", "1", "2", ok, level=level, implicit=implicit, why="w")


@pytest.mark.parametrize(
    ("results", "error", "verdict"),
    [
        ([result(True), result(True, "recommended")], None, Verdict.CONFORMANT),
        ([result(True), result(False, "recommended")], None, Verdict.NOT_ROBUST),
        ([result(False), result(False, "recommended")], None, Verdict.NON_CONFORMANT),
        ([result(None), result(None, "recommended"), result(True, implicit=True)], None,
         Verdict.NOT_APPLICABLE),
        ([result(None), result(True)], None, Verdict.CONFORMANT),
        ([result(True)], "the mock failed", Verdict.ERROR),
        ([result(None), result(False, implicit=True)], None, Verdict.NON_CONFORMANT),
    ],
)  # fmt: skip
def test_scenario_verdicts(
    results: list[ExpectationResult], error: str | None, verdict: Verdict
) -> None:
    report = ScenarioReport("s", None, "test", expectations=results, error=error)
    assert report.verdict is verdict


def test_the_verdict_on_a_sender_is_its_worst_scenario() -> None:
    def rep(name: str, *results: ExpectationResult) -> ScenarioReport:
        return ScenarioReport(name, None, "test", expectations=list(results))

    ok, robustless, broken = (
        rep("a", result(True)),
        rep("b", result(False, "recommended")),
        rep("c", result(False)),
    )
    na = rep("d", result(None))
    assert overall_verdict([ok, na]) is Verdict.CONFORMANT
    assert overall_verdict([ok, robustless]) is Verdict.NOT_ROBUST
    assert overall_verdict([broken, robustless, ok]) is Verdict.NON_CONFORMANT
    assert overall_verdict([na]) is Verdict.NOT_APPLICABLE
    grouped = grouped_findings([robustless, rep("e", result(False, "recommended"))], "recommended")
    assert [(g.basis, list(g.where)) for g in grouped] == [("w", ["b", "e"])]
