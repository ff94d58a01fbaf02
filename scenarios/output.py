"""Render scenario reports: a terminal table (long values wrapped), JSON, JUnit XML."""

from __future__ import annotations

import json
import shutil
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from .report import (
    ExpectationResult,
    ScenarioReport,
    Verdict,
    level_summary,
    overall_verdict,
    same_facts,
)

__all__ = ["render_json", "render_table", "render_verdict", "wrap_table", "write_junit"]

_MARK = {True: "ok", False: "FAIL", None: "n/a"}


def _width() -> int:
    return max(80, min(shutil.get_terminal_size((110, 24)).columns, 160))


def wrap_table(
    rows: Sequence[Sequence[str]], header: Sequence[str], *, width: int | None = None
) -> list[str]:
    """A plain-text table whose cells wrap (at ", " and spaces) so that no line is wider
    than ``width``; the last columns give way first."""
    width = width or _width()
    n = len(header)
    natural = [max(len(str(r[i])) for r in [header, *rows]) for i in range(n)]
    widths = list(natural)
    budget = width - 2 * (n - 1)
    # Shrink the widest column (never below 12 or its header) until the table fits.
    while sum(widths) > budget:
        i = max(range(n), key=lambda k: widths[k])
        floor = max(12, len(header[i]))
        if widths[i] <= floor:
            break
        widths[i] -= 1
    out = []
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = [
            textwrap.wrap(str(text), w, break_on_hyphens=False) or [""]
            for text, w in zip(row, widths, strict=True)
        ]
        for k in range(max(len(c) for c in cells)):
            parts = [
                (c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
            ]
            out.append("  ".join(parts).rstrip())
    return out


def _detail_rows(shown: Sequence[ExpectationResult]) -> list[list[str]]:
    return [
        [
            _MARK[e.ok],
            e.level,
            e.name,
            e.expected,
            e.observed + (f" [{e.basis}]" if e.basis and e.ok is False else ""),
        ]
        for e in shown
    ]


def render_table(reports: Sequence[ScenarioReport], *, verbose: bool = False) -> str:
    """A summary table (one row per scenario, with its verdict), then the expectations of
    each scenario that failed (every expectation of every scenario with ``verbose``,
    and for an external sender the program, command, exit status and output)."""
    rows = []
    for r in reports:
        held = sum(1 for e in r.expectations if e.ok is True)
        judged = sum(1 for e in r.expectations if e.ok is not None)
        rows.append(
            [
                r.name,
                "PASS" if r.ok else "FAIL",
                r.verdict.label,
                f"{held}/{judged}",
                f"{r.duration_seconds:.2f}s",
            ]
        )
    lines = wrap_table(rows, ["scenario", "result", "verdict", "held", "time"])
    for r in reports:
        if r.ok and not verbose:
            continue
        lines += ["", f"{r.name} ({r.sender})" + ("" if r.ok else ": FAILED")]
        if r.error:
            lines.append(f"  error: {r.error}")
        shown = r.expectations if verbose else r.failures
        if shown:
            table = wrap_table(
                _detail_rows(shown),
                ["", "level", "expectation", "expected", "observed"],
                width=_width() - 2,
            )
            lines += ["  " + x for x in table]
        if verbose and r.command is not None:
            lines.append(f"  program: {r.program}")
            lines.append(f"  command: {r.command}")
            if r.not_carried:
                lines.append(f"  not carried by the command line: {', '.join(r.not_carried)}")
            if r.time_scale != 1.0:
                lines.append(
                    f"  timing scaled x{r.time_scale:g} (whole-second timeouts rounded up)"
                )
        if r.output and (verbose or not r.ok):
            lines.append("  sender output:")
            lines += ["    " + x for x in r.output.rstrip().splitlines()[-20:]]
    passed = sum(r.ok for r in reports)
    lines += ["", f"{passed} of {len(reports)} scenario(s) passed"]
    return "\n".join(lines)


def render_verdict(reports: Sequence[ScenarioReport]) -> str:
    """The verdict on the sender over ``reports``, with what failed at each level (the
    citations of the required ones, the practice of the recommended ones)."""
    verdict = overall_verdict(reports)
    width = _width()
    lines = [f"Verdict: {verdict.label.upper()}"]
    for level, title in (
        ("required", "Violations of the DICOM standard (required)"),
        ("recommended", "Less robust than it could be (recommended)"),
    ):
        summary = level_summary(reports, level)
        lines.append(f"{title}: failed in {summary.failed} of {summary.judged} judged scenario(s)")
        for f in summary.findings:
            lines += textwrap.wrap(
                f"{f.basis or 'no basis given'}:",
                width,
                initial_indent="  - ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
            for names, facts in same_facts(f.where):
                lines += textwrap.wrap(
                    f"{', '.join(names)}: {facts}",
                    width,
                    initial_indent="      ",
                    subsequent_indent="        ",
                    break_on_hyphens=False,
                )
    na = [r for r in reports if r.verdict is Verdict.NOT_APPLICABLE]
    if na:
        lines.append("Not applicable: " + ", ".join(r.name for r in na))
        for r in na:
            reason = next((e.observed for e in r.expectations if e.ok is None), "")
            lines += textwrap.wrap(
                f"{r.name}: {reason}", width, initial_indent="  - ", subsequent_indent="    "
            )
    errors = [r for r in reports if r.verdict is Verdict.ERROR]
    for r in errors:
        lines.append(f"Could not be judged: {r.name}: {r.error}")
    return "\n".join(lines)


def render_json(reports: Sequence[ScenarioReport]) -> str:
    """``{"ok", "verdict", "passed", "failed", "scenarios": [report...]}``; each
    expectation carries its ``level``, ``cite`` and ``why``."""
    payload = {
        "ok": all(r.ok for r in reports),
        "verdict": overall_verdict(reports).value,
        "passed": sum(r.ok for r in reports),
        "failed": sum(not r.ok for r in reports),
        "scenarios": [r.to_dict() for r in reports],
    }
    return json.dumps(payload, indent=2)


def _line(e: ExpectationResult) -> str:
    basis = f" ({e.basis})" if e.basis else ""
    return f"[{e.level}] {e.name}: expected {e.expected}; observed {e.observed}{basis}"


def write_junit(reports: Sequence[ScenarioReport], path: str | Path) -> None:
    """A JUnit XML file: one testsuite, one testcase per scenario with its verdict as a
    property; expectations that did not hold are the failure text, each with its level
    and citations (the failure's type is the verdict); not-applicable ones and the
    sender's output go to system-out."""
    suite = ET.Element(
        "testsuite",
        name="scukit-scenarios",
        tests=str(len(reports)),
        failures=str(sum(1 for r in reports if r.failures)),
        errors=str(sum(1 for r in reports if r.error and not r.failures)),
        time=f"{sum(r.duration_seconds for r in reports):.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="verdict", value=overall_verdict(reports).value)
    for r in reports:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="scenarios",
            name=r.name,
            file=r.source or "",
            time=f"{r.duration_seconds:.3f}",
        )
        case_props = ET.SubElement(case, "properties")
        ET.SubElement(case_props, "property", name="verdict", value=r.verdict.value)
        if r.program:
            ET.SubElement(case_props, "property", name="program", value=r.program)
        if r.failures:
            fail = ET.SubElement(
                case,
                "failure",
                message=", ".join(f"[{e.level}] {e.name}" for e in r.failures),
                type=r.verdict.value,
            )
            fail.text = r.describe()
        elif r.error:
            err = ET.SubElement(case, "error", message=r.error, type="run")
            err.text = r.describe()
        na = [e for e in r.expectations if e.ok is None]
        out = "\n".join(_line(e) for e in na)
        if r.output:
            out += ("\n" if out else "") + r.output
        if out:
            ET.SubElement(case, "system-out").text = out
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
