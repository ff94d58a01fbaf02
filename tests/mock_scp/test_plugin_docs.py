"""docs/pytest-plugin.md cannot drift: every ``python`` block on the page is a test
module that must pass as it stands, run by pytester the way a downstream project runs
it (the plugin loaded through its entry point); every fixture, marker and option the
page names exists; the failure output it shows is what a failing test prints."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

# Imported here so pytester's in-process runs find them in sys.modules instead of
# importing them again for every inner session (it restores sys.modules after each).
import hypothesis  # noqa: F401
import pydicom.pixels  # noqa: F401
import pynetdicom  # noqa: F401
import pytest

import mock_scp.datagen
import mock_scp.strategies  # noqa: F401
import scu  # noqa: F401
from mock_scp import plugin

pytest_plugins = ["pytester"]

PAGE = Path(__file__).resolve().parents[2] / "docs" / "pytest-plugin.md"
INNER_ARGS = ("-p", "no:cacheprovider", "--timeout=60")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[tuple[str, str]]:
    """``(heading, code)`` for each fenced block in ``language``, in page order."""
    text = PAGE.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) != language:
            continue
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.MULTILINE)
        found.append((headings[-1] if headings else "top", match.group(2)))
    return found


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", heading.lower()).strip("_")


PYTHON_BLOCKS = blocks("python")


def test_the_page_has_a_recipe_for_each_situation() -> None:
    headings = {heading for heading, _code in PYTHON_BLOCKS}
    for recipe in (
        "Success",
        "Warning",
        "Failure",
        "Association reject",
        "Abort mid-transfer",
        "Stall past the sender's DIMSE timeout",
        "Content matching",
        "A handler",
        "Ordered expectations",
        "strict_rules",
        "Concurrency",
        "A sender that is not StoreScu",
        "Hypothesis through the factory",
    ):
        assert recipe in headings, f"no python block under '### {recipe}'"


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(code, id=f"{n:02d}-{slug(heading)}")
        for n, (heading, code) in enumerate(PYTHON_BLOCKS)
    ],
)
def test_python_block_passes(pytester: pytest.Pytester, code: str) -> None:
    pytester.makepyfile(test_recipe=code)
    result = pytester.runpytest(*INNER_ARGS)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1, result.stdout.str()
    result.assert_outcomes(passed=outcomes["passed"])  # nothing failed, errored or skipped


def documented(pattern: str) -> set[str]:
    return set(re.findall(pattern, PAGE.read_text(encoding="utf-8"), re.MULTILINE))


def test_documented_fixtures_exist(pytester: pytest.Pytester) -> None:
    rows = re.findall(
        r"^\| `(\w+)` \| (function|session) \| `([^`]+)` \|",
        PAGE.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert {name for name, _scope, _type in rows} == set(plugin.__all__) - {
        "DicomFileFactory",
        "MockScpFactory",
    }
    # As a downstream session sees them (registered by the entry point), with the scope
    # the page gives; the type column is what the fixture function gives.
    fixtures = pytester.runpytest("-p", "no:cacheprovider", "--fixtures").stdout.str()
    for name, scope, kind in rows:
        shown = " [session scope]" if scope == "session" else ""
        assert re.search(rf"^{name}{re.escape(shown)} -- ", fixtures, re.MULTILINE), name
        returns = inspect.signature(getattr(plugin, name)).return_annotation
        short = kind.rpartition(".")[2]
        assert returns in (short, f"Iterator[{short}]"), (name, returns, kind)
        if "." in kind:
            module, _, attribute = kind.rpartition(".")
            assert getattr(importlib.import_module(module), attribute) is not None


def test_documented_marker_and_option_exist(pytester: pytest.Pytester) -> None:
    assert documented(r"@pytest\.mark\.mock_scp\((\w+)=") == set(plugin.MARKER_OPTIONS)
    assert "--mock-scp-journal DIR" in PAGE.read_text(encoding="utf-8")
    markers = pytester.runpytest("-p", "no:cacheprovider", "--markers").stdout.str()
    assert "@pytest.mark.mock_scp(allow_unreleased=False)" in markers
    usage = pytester.runpytest("-p", "no:cacheprovider", "--help").stdout.str()
    assert re.search(r"--mock-scp-journal=DIR", usage)


def test_documented_rule_api_exists() -> None:
    from mock_scp import MockScp, Reply

    page = PAGE.read_text(encoding="utf-8")
    builder = MockScp().on_store()
    for action in re.findall(r"^\| `(\w+)\(", page, re.MULTILINE):
        assert callable(getattr(builder, action)), action
    for reply in re.findall(r"`Reply\.(\w+)\(", page):
        assert callable(getattr(Reply, reply)), reply
    for matcher in re.findall(r"^\| `(\w+)=", page, re.MULTILINE):
        assert matcher in MockScp.on_store.__code__.co_varnames, matcher
    for helper in ("assert_stored", "assert_no_violations", "reject_associations", "reset"):
        assert callable(getattr(MockScp, helper))


FAILING_MODULE = """
def test_expects_a_fourth_file(mock_scp, store_scu, dicom_file_factory):
    mock_scp.on_store(nth=4, expect=1).fail(0xA700)
    for path in dicom_file_factory(count=3):
        store_scu.add_file(path)
    assert store_scu.send().successful == 3
"""


def test_the_failure_shown_is_what_a_failing_test_prints(pytester: pytest.Pytester) -> None:
    ((_heading, shown),) = blocks("text")
    pytester.makepyfile(test_recipe=FAILING_MODULE)
    result = pytester.runpytest(*INNER_ARGS)
    result.assert_outcomes(failed=1)
    # "…" on the page stands for what changes from run to run (UIDs, ports).
    result.stdout.fnmatch_lines(
        ["*" + line.strip().replace("…", "*") for line in shown.splitlines()],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(["*- mock SCP journal -*"])
