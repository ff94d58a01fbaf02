"""A self-contained HTML report on one sender: the verdict per level, per scenario what
was expected and what was observed, the sender's process, and a sequence diagram of
each association. No external assets: styles inline, diagrams inline SVG."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from pathlib import Path

from .diagram import sequence_svg
from .report import (
    ExpectationResult,
    ScenarioReport,
    Verdict,
    level_summary,
    overall_verdict,
    same_facts,
)

__all__ = ["render_html", "write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1100px;padding:24px;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin:0 0 .3em}h2{font-size:1.25em;margin:1.6em 0 .4em}
h3{font-size:1.05em;margin:1.2em 0 .3em}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
pre{background:#f5f5f7;padding:10px;white-space:pre-wrap;overflow-wrap:anywhere;max-height:30em;overflow:auto}
table{border-collapse:collapse;width:100%;table-layout:fixed;margin:.4em 0 1em}
th,td{border:1px solid #d2d2d7;padding:5px 7px;text-align:left;vertical-align:top;
 overflow-wrap:break-word}
td.value{overflow-wrap:anywhere}
th{background:#f5f5f7}
.verdict{font-size:1.5em;font-weight:700;padding:14px 18px;border-radius:8px;margin:.6em 0}
.v-conformant{background:#e3f5e8;color:#14532d}
.v-not-robust{background:#fff4d6;color:#6b4500}
.v-non-conformant{background:#fde2e0;color:#7f1d1d}
.v-not-applicable,.v-error{background:#ececf0;color:#333}
.badge{display:inline-block;font-size:.8em;font-weight:600;padding:2px 8px;border-radius:10px;
 margin-left:.5em;vertical-align:middle}
.ok{color:#14532d;font-weight:600}.fail{color:#b3261e;font-weight:700}.na{color:#666}
.scenario{border-top:2px solid #d2d2d7;margin-top:2em}
.muted{color:#555}
svg.sequence{max-width:100%;height:auto;display:block;margin:.5em 0 1em;border:1px solid #e5e5ea;
 border-radius:6px;background:#fff}
svg .life{fill:#f5f5f7;stroke:#888}svg .lifeline{stroke:#aaa;stroke-dasharray:3 3}
svg text{font-family:ui-monospace,Menlo,Consolas,monospace}
svg .t-head{font-size:12px;fill:#333;font-weight:600}svg .t-life{font-size:12px;fill:#111}
svg .t-time{font-size:11px;fill:#666}svg .t-msg{font-size:11.5px}
svg .t-note{font-size:11.5px;font-style:italic}
@media print{.scenario{page-break-inside:avoid}pre{max-height:none}}
"""

_MEANING = {
    Verdict.CONFORMANT: "Every expectation that could be judged held: what the DICOM standard "
    "requires, and the robust practices the scenarios recommend.",
    Verdict.NOT_ROBUST: "The sender did what the DICOM standard requires, but not everything "
    "robust practice recommends (listed below). It conforms; it may lose or delay studies "
    "where a more robust sender would not.",
    Verdict.NON_CONFORMANT: "The sender did something the DICOM standard forbids, or failed to "
    "do something it requires (listed below, with the sections of the standard), or its "
    "process crashed or hung.",
    Verdict.NOT_APPLICABLE: "Nothing could be judged: the command line does not carry the "
    "settings the scenarios depend on.",
    Verdict.ERROR: "A run broke on the test side (the mock PACS failed); no conclusion is "
    "drawn for the scenarios concerned.",
}


def _e(text: object) -> str:
    return escape(str(text))


def _badge(verdict: Verdict) -> str:
    return f'<span class="badge v-{verdict.value}">{_e(verdict.label)}</span>'


def _result(e: ExpectationResult) -> str:
    if e.ok is True:
        return '<span class="ok">held</span>'
    if e.ok is False:
        return '<span class="fail">FAILED</span>'
    return '<span class="na">n/a</span>'


def _levels(reports: Sequence[ScenarioReport]) -> str:
    rows = []
    for level, meaning in (
        ("required", "The DICOM standard requires it; each finding cites the PS3.x section."),
        (
            "recommended",
            "Robust practice beyond the standard (re-associating after an A-ABORT, going "
            "on after a refused store, an honest exit status).",
        ),
    ):
        summary = level_summary(reports, level)
        items = "".join(
            f"<li><b>{_e(f.basis or 'no basis given')}</b>: failed in {len(f.where)} "
            f"scenario(s)<ul>"
            + "".join(
                "<li>"
                + ", ".join(f"<a href='#s-{_e(n)}'>{_e(n)}</a>" for n in names)
                + f": {_e(facts)}</li>"
                for names, facts in same_facts(f.where)
            )
            + "</ul></li>"
            for f in summary.findings
        )
        state = f"failed in {summary.failed}" if summary.failed else "held in every judged scenario"
        rows.append(
            f"<tr><td><b>{level}</b></td><td>{_e(meaning)}</td>"
            f"<td>{summary.judged} judged, {_e(state)}</td>"
            f"<td>{'<ul>' + items + '</ul>' if items else 'none'}</td></tr>"
        )
    return (
        "<table><colgroup><col style='width:13%'><col style='width:22%'><col style='width:13%'>"
        "<col></colgroup><tr><th>level</th><th>what it means</th><th>scenarios</th>"
        "<th>findings, by citation or practice</th></tr>" + "".join(rows) + "</table>"
    )


def _summary(reports: Sequence[ScenarioReport]) -> str:
    rows = "".join(
        f'<tr><td><a href="#s-{_e(r.name)}">{_e(r.name)}</a></td><td>{_e(r.summary)}</td>'
        f"<td>{_badge(r.verdict)}</td>"
        f"<td>{sum(e.ok is True for e in r.expectations)} of "
        f"{sum(e.ok is not None for e in r.expectations)}</td>"
        f"<td>{r.duration_seconds:.2f} s</td></tr>"
        for r in reports
    )
    return (
        "<table><colgroup><col style='width:22%'><col><col style='width:17%'>"
        "<col style='width:9%'><col style='width:8%'></colgroup><tr><th>scenario</th>"
        "<th>what the PACS does</th><th>verdict</th><th>held</th><th>time</th></tr>"
        + rows
        + "</table>"
    )


def _rows(items: Sequence[ExpectationResult]) -> str:
    return "".join(
        f"<tr><td>{_result(e)}</td><td>{_e(e.level)}</td><td>{_e(e.name)}</td>"
        f"<td class='value'>{_e(e.expected)}</td><td class='value'>{_e(e.observed)}</td>"
        f"<td>{_e(e.basis)}</td></tr>"
        for e in items
    )


_TABLE = (
    "<table><colgroup><col style='width:8%'><col style='width:13%'><col style='width:17%'>"
    "<col style='width:19%'><col style='width:20%'><col></colgroup><tr><th>result</th>"
    "<th>level</th><th>expectation</th><th>expected</th><th>observed</th>"
    "<th>basis (standard, or practice)</th></tr>"
)


def _expectations(r: ScenarioReport) -> str:
    judged = [e for e in r.expectations if e.ok is not None]
    na = [e for e in r.expectations if e.ok is None]
    out = _TABLE + _rows(judged) + "</table>" if judged else "<p>Nothing could be judged.</p>"
    if na:
        out += (
            f"<details><summary>{len(na)} expectation(s) not applicable to this sender"
            f"</summary>{_TABLE}{_rows(na)}</table></details>"
        )
    return out


def _process(r: ScenarioReport) -> str:
    if r.command is None:
        return "<p class='muted'>In-process StoreScu: no sender process.</p>"
    if r.signal:
        ended = f"killed by {r.signal}"
    elif r.exit_status is None:
        ended = f"killed at the time limit of {r.time_limit:g} s"
    else:
        ended = f"exit status {r.exit_status}"
    items = [
        ("program", r.program or ""),
        ("command line", r.command),
        ("ended", ended),
        ("time limit", f"{r.time_limit:g} s" if r.time_limit else ""),
        ("settings carried", ", ".join(f"{{{k}}}={v!r}" for k, v in r.settings.items()) or "none"),
    ]
    if r.not_carried:
        items.append(("not carried", ", ".join(r.not_carried)))
    if r.time_scale != 1.0:
        items.append(
            (
                "timing",
                f"scaled x{r.time_scale:g}: whole-second timeouts were rounded up, so "
                "the mock's stalls and the time limit were scaled to stay beyond them",
            )
        )
    rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in items)
    output = r.output.strip() or "(no output)"
    return (
        "<table><colgroup><col style='width:16%'><col></colgroup>" + rows + "</table>"
        f"<details><summary>sender output ({len(r.output)} characters)</summary>"
        f"<pre>{_e(output)}</pre></details>"
    )


def _scenario(r: ScenarioReport) -> str:
    diagrams = "".join(sequence_svg(a, r.stores) for a in r.associations)
    error = f"<p class='fail'>Run error: {_e(r.error)}</p>" if r.error else ""
    return (
        f'<section class="scenario" id="s-{_e(r.name)}"><h2>{_e(r.name)} {_badge(r.verdict)}</h2>'
        f"<p>{_e(r.summary)}</p>{error}<h3>Expected and observed</h3>{_expectations(r)}"
        f"<h3>Sender process</h3>{_process(r)}"
        f"<h3>Associations ({len(r.associations)})</h3>"
        + (diagrams or "<p class='muted'>The sender never asked for an association.</p>")
        + "</section>"
    )


def render_html(reports: Sequence[ScenarioReport], *, title: str | None = None) -> str:
    """The report as one HTML document."""
    verdict = overall_verdict(reports)
    sender = next((r.sender for r in reports), "").removeprefix("command: ")
    program = next((r.program for r in reports if r.program), None)
    heading = title or "DICOM C-STORE conformance report"
    program_html = f"<p>Program: <code>{_e(program)}</code></p>" if program else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(heading)}: {_e(sender)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(heading)}</h1><p>Sender: <code>{_e(sender)}</code></p>{program_html}"
        f'<div class="verdict v-{verdict.value}" id="verdict">Verdict: '
        f"{_e(verdict.label.upper())}</div><p>{_e(_MEANING[verdict])}</p>"
        f"<h2>By level</h2>{_levels(reports)}<h2>Scenarios ({len(reports)})</h2>"
        f"{_summary(reports)}"
        + "".join(_scenario(r) for r in reports)
        + f"<p class='muted'>Generated by scukit on {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}. "
        "Each scenario runs an in-process mock PACS (scukit's MockScp) that records every "
        "association and C-STORE; the sender is judged from that journal and its process."
        "</p></body></html>\n"
    )


def write_html(reports: Sequence[ScenarioReport], path: str | Path, **kwargs: str) -> None:
    """Write :func:`render_html` to ``path`` (UTF-8)."""
    Path(path).write_text(render_html(reports, **kwargs), encoding="utf-8")
