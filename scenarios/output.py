"""Render scenario reports: a terminal table, JSON, JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from .runner import ScenarioReport

__all__ = ["render_json", "render_table", "write_junit"]

_MARK = {True: "ok", False: "FAIL", None: "n/a"}


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*r).rstrip() for r in rows
    ]


def render_table(reports: Sequence[ScenarioReport], *, verbose: bool = False) -> str:
    """A summary table (one row per scenario), then the expectations of each scenario that
    failed (all expectations of every scenario with ``verbose``)."""
    rows = []
    for r in reports:
        held = sum(1 for e in r.expectations if e.ok is True)
        judged = sum(1 for e in r.expectations if e.ok is not None)
        rows.append(
            [r.name, "PASS" if r.ok else "FAIL", f"{held}/{judged}", f"{r.duration_seconds:.2f}s"]
        )
    lines = _table(rows, ["scenario", "result", "held", "time"])
    for r in reports:
        if r.ok and not verbose:
            continue
        lines += ["", f"{r.name} ({r.sender})" + ("" if r.ok else ": FAILED")]
        if r.error:
            lines.append(f"  error: {r.error}")
        shown = r.expectations if verbose else [e for e in r.expectations if e.ok is False]
        if shown:
            detail = [[_MARK[e.ok], e.name, e.expected, e.observed] for e in shown]
            lines += ["  " + x for x in _table(detail, ["", "expectation", "expected", "observed"])]
        if r.output and (verbose or not r.ok):
            lines.append("  sender output:")
            lines += ["    " + x for x in r.output.rstrip().splitlines()[-20:]]
    passed = sum(r.ok for r in reports)
    lines += ["", f"{passed} of {len(reports)} scenario(s) passed"]
    return "\n".join(lines)


def render_json(reports: Sequence[ScenarioReport]) -> str:
    """``{"ok": bool, "passed": n, "failed": n, "scenarios": [report...]}``."""
    payload = {
        "ok": all(r.ok for r in reports),
        "passed": sum(r.ok for r in reports),
        "failed": sum(not r.ok for r in reports),
        "scenarios": [r.to_dict() for r in reports],
    }
    return json.dumps(payload, indent=2)


def write_junit(reports: Sequence[ScenarioReport], path: str | Path) -> None:
    """A JUnit XML file: one testsuite, one testcase per scenario; expectations that did
    not hold are the failure text, not-applicable ones go to system-out."""
    suite = ET.Element(
        "testsuite",
        name="scukit-scenarios",
        tests=str(len(reports)),
        failures=str(sum(1 for r in reports if r.failures)),
        errors=str(sum(1 for r in reports if r.error and not r.failures)),
        time=f"{sum(r.duration_seconds for r in reports):.3f}",
    )
    for r in reports:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="scenarios",
            name=r.name,
            file=r.source or "",
            time=f"{r.duration_seconds:.3f}",
        )
        if r.failures:
            fail = ET.SubElement(
                case, "failure", message=", ".join(e.name for e in r.failures), type="expectation"
            )
            fail.text = r.describe()
        elif r.error:
            err = ET.SubElement(case, "error", message=r.error, type="run")
            err.text = r.describe()
        na = [e for e in r.expectations if e.ok is None]
        out = "\n".join(f"{e.name}: expected {e.expected}; {e.observed}" for e in na)
        if r.output:
            out += ("\n" if out else "") + r.output
        if out:
            ET.SubElement(case, "system-out").text = out
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
