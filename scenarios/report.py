"""What a run found: each expectation with its level, the verdict of a scenario, and the
verdict on a sender over many scenarios.

Verdicts, from the levels of the expectations that did not hold:

- ``conformant``: every applicable expectation held;
- ``not-robust`` ("conformant but not robust"): only ``recommended`` ones failed;
- ``non-conformant``: a ``required`` one failed (the sender process dying by a signal or
  running past the time limit is one);
- ``not-applicable``: nothing the scenario states could be judged (e.g. the command line
  does not carry a setting every group needs);
- ``error``: the run itself broke on our side (the mock failed); nothing is concluded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from .citations import describe_citation

__all__ = [
    "ExpectationResult",
    "Finding",
    "LevelSummary",
    "ScenarioReport",
    "Verdict",
    "findings",
    "grouped_findings",
    "level_summary",
    "overall_verdict",
    "same_facts",
]


class Verdict(str, Enum):
    """The verdict on one scenario, or on a sender over several."""

    CONFORMANT = "conformant"
    NOT_ROBUST = "not-robust"
    NON_CONFORMANT = "non-conformant"
    NOT_APPLICABLE = "not-applicable"
    ERROR = "error"

    @property
    def label(self) -> str:
        """The verdict in words."""
        return _LABELS[self]


_LABELS = {
    Verdict.CONFORMANT: "conformant",
    Verdict.NOT_ROBUST: "conformant but not robust",
    Verdict.NON_CONFORMANT: "non-conformant",
    Verdict.NOT_APPLICABLE: "not applicable",
    Verdict.ERROR: "could not be judged",
}


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation: ``ok`` is True (held), False (did not hold) or None (not
    applicable; ``observed`` then says why). ``level`` is ``required`` or
    ``recommended``; ``cite`` the PS3.x sections a required one rests on; ``why`` the
    practice a recommended one checks (or the basis of a check the runner adds itself,
    ``implicit``)."""

    name: str
    expected: str
    observed: str
    ok: bool | None
    level: str = "required"
    cite: tuple[str, ...] = ()
    why: str | None = None
    implicit: bool = False

    @property
    def basis(self) -> str:
        """The citations in words, else the reason (for reports)."""
        if self.cite:
            return "; ".join(describe_citation(c) for c in self.cite)
        return self.why or ""


@dataclass
class ScenarioReport:
    """The outcome of running one scenario.

    For an external sender, ``command`` is the command line as run, ``program`` says
    which executable it resolved to, ``exit_status``/``signal`` how it ended and
    ``output`` what it printed; ``settings`` lists the ``scu:`` values the placeholders
    carried and ``not_carried`` the scenario settings the command line does not carry.
    ``associations`` and ``stores`` are the mock's journal (times in seconds since the
    epoch), for sequence diagrams."""

    name: str
    source: str | None
    sender: str
    summary: str = ""
    expectations: list[ExpectationResult] = field(default_factory=list)
    error: str | None = None
    duration_seconds: float = 0.0
    output: str = ""
    command: str | None = None
    program: str | None = None
    exit_status: int | None = None
    signal: str | None = None
    time_limit: float | None = None
    time_scale: float = 1.0
    settings: dict[str, str] = field(default_factory=dict)
    not_carried: list[str] = field(default_factory=list)
    associations: list[dict[str, Any]] = field(default_factory=list)
    stores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every applicable expectation held, at every level, and the run did not break."""
        return self.error is None and all(e.ok is not False for e in self.expectations)

    @property
    def failures(self) -> list[ExpectationResult]:
        """The expectations that did not hold."""
        return [e for e in self.expectations if e.ok is False]

    @property
    def verdict(self) -> Verdict:
        """See the module docstring."""
        if self.error is not None:
            return Verdict.ERROR
        failed = self.failures
        if any(e.level == "required" for e in failed):
            return Verdict.NON_CONFORMANT
        if failed:
            return Verdict.NOT_ROBUST
        stated = [e for e in self.expectations if not e.implicit]
        if stated and all(e.ok is None for e in stated):
            return Verdict.NOT_APPLICABLE
        return Verdict.CONFORMANT

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``ok`` and ``verdict`` included)."""
        out = asdict(self)
        out["ok"] = self.ok
        out["verdict"] = self.verdict.value
        return out

    def describe(self) -> str:
        """A multi-line text naming each expectation that did not hold."""
        lines = [
            f"scenario {self.name!r}: {'passed' if self.ok else 'FAILED'}, "
            f"{self.verdict.label} ({self.sender})"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        for e in self.failures:
            lines.append(
                f"  [{e.level}] {e.name}: expected {e.expected}, observed {e.observed}"
                + (f" ({e.basis})" if e.basis else "")
            )
        if self.program:
            lines.append(f"  program: {self.program}")
        if self.output and not self.ok:
            lines.append("  sender output:\n    " + self.output.strip().replace("\n", "\n    "))
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        """``AssertionError`` with :meth:`describe` unless the scenario passed (for pytest)."""
        if not self.ok:
            raise AssertionError(self.describe())


def overall_verdict(reports: Sequence[ScenarioReport]) -> Verdict:
    """The verdict on a sender over several scenarios: the worst one (non-conformant,
    then could not be judged, then not robust); conformant when at least one scenario
    was judged and none failed; not applicable when none could be judged."""
    verdicts = {r.verdict for r in reports}
    for worst in (Verdict.NON_CONFORMANT, Verdict.ERROR, Verdict.NOT_ROBUST):
        if worst in verdicts:
            return worst
    if Verdict.CONFORMANT in verdicts:
        return Verdict.CONFORMANT
    return Verdict.NOT_APPLICABLE


def findings(
    reports: Sequence[ScenarioReport], level: str
) -> list[tuple[ScenarioReport, ExpectationResult]]:
    """Every expectation of ``level`` that did not hold, with its scenario."""
    return [(r, e) for r in reports for e in r.failures if e.level == level]


@dataclass
class Finding:
    """What failed at one level for one reason (a citation, or a practice), and where:
    scenario name -> the expectations that did not hold there."""

    level: str
    basis: str
    where: dict[str, list[ExpectationResult]] = field(default_factory=dict)


def same_facts(where: dict[str, list[ExpectationResult]]) -> list[tuple[list[str], str]]:
    """A finding's scenarios grouped by identical facts: ``[(names, "facts"), ...]``, so
    that one failure seen in many scenarios is written once."""
    out: dict[str, list[str]] = {}
    for name, items in where.items():
        facts = "; ".join(f"{e.name}: expected {e.expected}, observed {e.observed}" for e in items)
        out.setdefault(facts, []).append(name)
    return [(names, facts) for facts, names in out.items()]


def grouped_findings(reports: Sequence[ScenarioReport], level: str) -> list[Finding]:
    """:func:`findings` of ``level`` grouped by their basis, in first-seen order (one
    entry per practice or set of citations, listing the scenarios it failed in)."""
    out: dict[str, Finding] = {}
    for r, e in findings(reports, level):
        item = out.setdefault(e.basis, Finding(level, e.basis))
        item.where.setdefault(r.name, []).append(e)
    return list(out.values())


@dataclass(frozen=True)
class LevelSummary:
    """One level over many scenarios: how many were judged at that level (at least one
    applicable expectation), how many failed there, and the findings by basis."""

    level: str
    judged: int
    failed: int
    findings: list[Finding]


def level_summary(reports: Sequence[ScenarioReport], level: str) -> LevelSummary:
    """:class:`LevelSummary` of ``level`` over ``reports``."""
    judged = sum(
        1 for r in reports if any(e.level == level and e.ok is not None for e in r.expectations)
    )
    found = grouped_findings(reports, level)
    failed = len({name for f in found for name in f.where})
    return LevelSummary(level, judged, failed, found)
