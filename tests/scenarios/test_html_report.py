"""The HTML report: self-contained, a verdict per level, and a sequence diagram of every
association drawn from the mock's journal (runs of real associations, in-process)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import scenarios
from scenarios.diagram import sequence_svg
from scenarios.html_report import render_html, write_html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def reports() -> list[scenarios.ScenarioReport]:
    names = ["abort-before-response", "busy-pacs-transient-reject", "dimse-stall", "large-study"]
    return [scenarios.run(name) for name in names]


def parse(html: str) -> _Collect:
    parser = _Collect()
    parser.feed(html)
    parser.close()
    return parser


def test_the_report_is_self_contained(reports: list[scenarios.ScenarioReport]) -> None:
    html = render_html(reports)
    doc = parse(html)
    assert not {"script", "link", "img", "iframe", "object"} & set(doc.tags)
    external = [
        (k, v)
        for k, v in doc.attrs
        if k in ("src", "href") and v is not None and not v.startswith("#")
    ]
    assert external == []
    assert "@import" not in html and "url(http" not in html
    assert doc.tags.count("svg") == sum(len(r.associations) for r in reports) == 6


def test_the_report_states_the_verdict_per_level_and_per_scenario(
    reports: list[scenarios.ScenarioReport],
) -> None:
    text = " ".join(parse(render_html(reports)).text)
    assert "Verdict: CONFORMANT" in text
    assert "required" in text and "recommended" in text
    for r in reports:
        assert r.name in text and r.summary in text
    # What was expected and what was observed, with the citation.
    assert "PS3.7 A.6 (Association Abort for DICOM AE)" in text
    assert "In-process StoreScu: no sender process." in text


def test_sequence_diagrams_show_the_exchange(reports: list[scenarios.ScenarioReport]) -> None:
    abort, busy, stall, large = reports
    first, second = (sequence_svg(a, abort.stores) for a in abort.associations)
    assert "A-ASSOCIATE-RQ STORE-SCU -&gt; PACS" in first
    assert "A-ASSOCIATE-AC: " in first
    assert "C-STORE-RSP #1 0x0000 (success)" in first
    assert "A-ABORT instead of the response" in first
    assert "A-RELEASE-RQ" in second and "A-RELEASE-RP" in second
    assert re.search(r"\+\d+\.\d ms", first)
    rejected = sequence_svg(busy.associations[0], busy.stores)
    assert "A-ASSOCIATE-RJ: temporary congestion (rejected-transient" in rejected
    assert "C-STORE-RQ" not in rejected
    stalled = sequence_svg(stall.associations[0], stall.stores)
    assert "A-ABORT from the sender" in stalled
    # 250 plain successes: the edges are drawn, the middle folded into one line.
    folded = sequence_svg(large.associations[0], large.stores)
    assert folded.count("C-STORE-RQ #") == 6
    assert "... 244 more C-STORE exchanges, each 0x0000 (success) ..." in folded


def test_write_html(tmp_path: Path, reports: list[scenarios.ScenarioReport]) -> None:
    target = tmp_path / "report.html"
    write_html(reports[:1], target)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
