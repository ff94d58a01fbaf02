"""Every library scenario passes with our StoreScu, in-process; the library is well formed."""

from __future__ import annotations

from pathlib import Path

import pytest

import scenarios
from scenarios.citations import SECTION_TITLES
from scenarios.command import needed_settings


@pytest.mark.parametrize("scenario_file", scenarios.pytest_params())
def test_library_scenario_passes_in_process(scenario_file: Path) -> None:
    report = scenarios.run(scenario_file)
    report.raise_for_failure()
    # Not vacuous: SCU-side and SCP-side expectations were judged, and all of them held.
    judged = {e.name for e in report.expectations if e.ok is not None}
    assert "raises" in judged
    assert any(
        name.startswith("scp.") and name not in ("scp.check", "scp.handler_errors")
        for name in judged
    )


def test_library_is_complete_and_well_formed() -> None:
    entries = scenarios.library()
    names = [e.name for e in entries]
    assert len(names) == len(set(names)) >= 20
    for entry in entries:
        sc = scenarios.load(entry.path)
        assert entry.path.stem == sc.name
        assert entry.summary.endswith(".") and len(entry.summary) <= 80, entry.summary
        assert len(sc.description.split()) >= 20, f"{sc.name}: describe the real-world situation"
        groups = sc.groups
        assert any(g.total is not None for g in groups), sc.name
        levels = {g.level for g in groups}
        assert levels == {"required", "recommended"}, f"{sc.name}: both levels are stated"
        for g in groups:
            if g.level == "required":
                # The standard, cited: every section the library cites is one whose title
                # the reports can show (a section outside that table is a typo or new).
                assert g.cite, f"{sc.name}: a required group cites the standard"
                assert set(g.cite) <= set(SECTION_TITLES), (sc.name, g.cite)
            else:
                assert g.why and not g.cite, f"{sc.name}: a recommended group says why"
        # Judgeable for any external SCU: a required journal fact that needs no setting
        # the command line might not carry.
        assert any(
            g.level == "required"
            and g.scp is not None
            and g.scp.violations == "none"
            and (g.needs == [] or not needed_settings(sc))
            for g in groups
        ), sc.name


def test_pytest_params_ids_and_empty_folder(tmp_path: Path) -> None:
    params = scenarios.pytest_params()
    assert "clean-accept" in [p.id for p in params]
    with pytest.raises(FileNotFoundError):
        scenarios.pytest_params(tmp_path)


def test_pytest_params_over_a_downstream_folder(tmp_path: Path) -> None:
    source = (scenarios.library_dir() / "clean-accept.yaml").read_text(encoding="utf-8")
    (tmp_path / "pacs-a").mkdir()
    (tmp_path / "pacs-a" / "accept.yaml").write_text(source, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a scenario", encoding="utf-8")
    params = scenarios.pytest_params(tmp_path)
    assert [p.id for p in params] == ["pacs-a/accept"]
    assert params[0].values == (tmp_path / "pacs-a" / "accept.yaml",)
    assert scenarios.load(params[0].values[0]).name == "clean-accept"
