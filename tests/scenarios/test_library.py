"""Every library scenario passes with our StoreScu, in-process; the library is well formed."""

from __future__ import annotations

from pathlib import Path

import pytest

import scenarios


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
        # Judgeable for an external SCU too: every scenario states journal facts.
        assert sc.expect.scp is not None and not sc.expect.scp.is_empty(), sc.name
        assert sc.expect.total is not None, sc.name


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
