"""The scenarios package's exceptions, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ScenarioError", "ScenarioIssue"]


@dataclass(frozen=True)
class ScenarioIssue:
    """One problem in a scenario file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ScenarioError(ValueError):
    """A scenario file is malformed (YAML syntax, unknown field, wrong type, unknown name,
    missing file). Raised before anything runs; the CLI maps it to exit code 2.

    ``issues`` lists every problem found, each naming the file, the line and the field.
    """

    def __init__(self, issues: list[ScenarioIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def single(
        cls, file: str | Path, message: str, *, line: int | None = None, field: str = ""
    ) -> ScenarioError:
        """An error with one issue."""
        return cls([ScenarioIssue(str(file), line, field, message)])
