"""The HTML conformance report, rendered by a real browser (Debian's headless Chromium):
the screenshot is not blank, the verdict banner is painted, and the verdict, the findings
and the sequence diagrams are in the rendered page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from scu.cli import main
from tests.support.senders import dcmtk_storescu
from tests.support.tools import chromium_binary, dcmtk_tool

pytestmark = [pytest.mark.interop, pytest.mark.xdist_group("chromium")]

#: The not-robust banner's background (scenarios.html_report's CSS), as painted.
NOT_ROBUST_BANNER = (0xFF, 0xF4, 0xD6)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium as root on a fresh profile, nothing fetched from the network."""
    return subprocess.run(
        [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DCMTK storescu judged on two library scenarios: conformant on one, not robust on
    the other (it does not re-associate after an A-ABORT)."""
    dcmtk_tool("storescu")
    work = tmp_path_factory.mktemp("report")
    folder = work / "scenarios"
    folder.mkdir()
    library = Path(__file__).resolve().parents[2] / "scenarios" / "library"
    for name in ("clean-accept", "abort-before-response"):
        shutil.copy(library / f"{name}.yaml", folder)
    html = work / "report.html"
    code = main(
        [
            "conformance",
            "--scenarios",
            str(folder),
            "--scu-command",
            dcmtk_storescu().command,
            "--html",
            str(html),
        ]
    )
    assert code == 0  # not robust is still conformant without --strict
    return html


def test_the_rendered_page_shows_the_verdict_and_the_diagrams(report: Path, tmp_path: Path) -> None:
    done = chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'id="verdict">Verdict: CONFORMANT BUT NOT ROBUST</div>' in dom
    assert "re-associate after an A-ABORT and deliver the rest of the queue" in dom
    assert dom.count("<svg") == 2  # one association each (storescu does not retry)
    assert "A-ABORT instead of the response" in dom


def test_the_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        assert pixels.size == (1200, 1600)
        colours = pixels.getcolors(maxcolors=1 << 20) or []
    counts = {colour: n for n, colour in colours}
    total = sum(counts.values())
    white = counts.get((255, 255, 255), 0)
    assert len(counts) > 50, "a page of text, tables and diagrams has many shades"
    assert total - white > total // 20, "more than 5 % of the page is painted"
    assert counts.get(NOT_ROBUST_BANNER, 0) > 10_000, "the verdict banner is painted"
