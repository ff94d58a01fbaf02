"""Declarative scenarios: a mock PACS's behaviour, what to send, and what must be observed.

>>> import scenarios
>>> report = scenarios.run("clean-accept")          # a library name or a path
>>> report.ok, report.verdict, [(e.level, e.name, e.observed) for e in report.failures]

- :func:`load` validates a YAML file (errors name file, line and field: :class:`ScenarioError`);
- :func:`discover` turns names, files and folders into scenario files;
- :func:`build_mock_scp` gives the scenario's configured, unstarted ``MockScp``;
- :func:`run` runs it in-process or against an external sender (``scu_command``, see
  :mod:`scenarios.command` for the placeholders); every expectation carries its level
  (``required`` by the standard, or ``recommended``), and :attr:`ScenarioReport.verdict`
  and :func:`overall_verdict` turn them into a :class:`Verdict`;
- :func:`pytest_params` parametrises a downstream pytest suite over a folder;
- :func:`json_schema` is the published schema of the format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ScenarioError, ScenarioIssue
from .loader import (
    LibraryEntry,
    build_mock_scp,
    discover,
    library,
    library_dir,
    load,
    load_text,
    resolve,
)
from .model import Scenario
from .pytest_support import pytest_params
from .report import ExpectationResult, ScenarioReport, Verdict, overall_verdict
from .runner import run

__all__ = [
    "ExpectationResult",
    "LibraryEntry",
    "Scenario",
    "ScenarioError",
    "ScenarioIssue",
    "ScenarioReport",
    "Verdict",
    "build_mock_scp",
    "discover",
    "json_schema",
    "library",
    "library_dir",
    "load",
    "load_text",
    "overall_verdict",
    "pytest_params",
    "resolve",
    "run",
    "write_json_schema",
]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file, generated from the pydantic models (the same
    document is shipped as ``scenarios/scenario.schema.json`` for editors and CI)."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "scukit scenario"
    return schema


def write_json_schema(path: str | Path) -> None:
    """Write :func:`json_schema` to ``path``; the shipped file is regenerated with
    ``scenarios.write_json_schema("scenarios/scenario.schema.json")``."""
    Path(path).write_text(
        json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
