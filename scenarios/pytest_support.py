"""Run scenario files from a downstream pytest suite.

Parametrise a test over a folder of scenario files::

    import pytest
    import scenarios

    @pytest.mark.parametrize("scenario_file", scenarios.pytest_params("tests/scenario_files"))
    def test_scenario(scenario_file):
        scenarios.run(scenario_file).raise_for_failure()

``pytest_params()`` without a folder gives the shipped library. Files are loaded in the
test (not at collection), so one malformed file fails its own test with the
:class:`~scenarios.ScenarioError` naming file, line and field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .loader import library_dir

__all__ = ["pytest_params"]


def pytest_params(
    directory: str | os.PathLike[str] | None = None, *, pattern: str = "*.yaml"
) -> list[Any]:
    """``pytest.param(path, id=stem)`` for every scenario file in ``directory`` (sorted,
    recursive; the library when None). An empty folder is an error, not zero tests."""
    import pytest

    folder = Path(directory) if directory is not None else library_dir()
    paths = sorted(p for p in folder.rglob(pattern) if p.is_file())
    if not paths:
        raise FileNotFoundError(f"no scenario files matching {pattern!r} in {folder}")
    return [pytest.param(p, id=str(p.relative_to(folder).with_suffix(""))) for p in paths]
