"""The benchmark runner cannot rot: a smoke run (tiny corpora, one round, every run and
check) must produce a figure for each. Shape only: no thresholds, no timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# One worker runs the (module-scoped) smoke run once under `pytest -n 2 --dist loadgroup`.
pytestmark = pytest.mark.xdist_group("bench-smoke")

RUN_NAMES = {
    "reference", "scu-c1", "scu-c2", "scu-c4", "dcmtk-2p", "dcmtk-mock", "scu-mock",
    "dcmtk-user", "dcmtk-serve", "pynetdicom",
}  # fmt: skip


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("bench")
    # cwd=ROOT puts the runner (bench/, not an installed package) on the path; its
    # children import the installed scu and mock_scp.
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", "--workdir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.mark.interop
def test_every_run_on_every_corpus_has_a_figure(smoke_report: dict[str, Any]) -> None:
    assert set(smoke_report["corpora"]) == {"ct", "small", "mixed"}
    seen = {(r["run"], r["corpus"].removesuffix("-smoke")) for r in smoke_report["runs"]}
    assert seen == {(run, c) for run in RUN_NAMES for c in ("ct", "small", "mixed")}
    for r in smoke_report["runs"]:
        where = f"{r['run']} on {r['corpus']}: {r['error']}"
        if r["context"] and r["error"] is not None:
            # Plain pynetdicom (context only) may lose a response to its reactor race;
            # the runner must then say so instead of printing a figure.
            assert "failed" in r["error"] and r["files_per_second"] is None, where
            continue
        assert r["error"] is None, where
        assert r["files_per_second"] > 0, where
        assert r["mb_per_second"] > 0, where
        assert r["ratio"] is not None and r["ratio"] > 0, where
        assert r["peak_rss_mib"] > 0, where
        assert r["cpu_seconds"] >= 0, where
        assert len(r["samples"]) == smoke_report["repeat"] == 1


@pytest.mark.interop
def test_reference_ratio_is_one(smoke_report: dict[str, Any]) -> None:
    refs = [r for r in smoke_report["runs"] if r["run"] == "reference"]
    assert len(refs) == 3
    assert all(r["ratio"] == pytest.approx(1.0) for r in refs)


@pytest.mark.interop
def test_mock_receivers_journaled_every_store(smoke_report: dict[str, Any]) -> None:
    receivers = {r["receiver"] for r in smoke_report["runs"]}
    assert {"mock", "mock-user", "serve"} <= receivers  # the bench's, as shown, scukit serve
    for r in smoke_report["runs"]:
        if r["receiver"] == "storescp":
            continue
        (sample,) = r["samples"]
        assert sample["receiver"]["received"] == r["files"], r["run"]


@pytest.mark.interop
def test_memory_and_scale_checks_report_figures(smoke_report: dict[str, Any]) -> None:
    checks = {c["check"]: c for c in smoke_report["checks"]}
    assert set(checks) == {"queue", "scale", "memory-serve", "memory-mock"}
    queue, scale = checks["queue"], checks["scale"]
    assert queue["error"] is None, queue
    assert queue["queued_rss_mib"] > 0 and queue["files"] > 0
    assert scale["error"] is None, scale
    assert all(v and v > 0 for v in scale["files_per_second"].values())
    assert all(v is not None and v > 0 for v in scale["first_store_seconds"].values())
    assert scale["ratio_long_to_short"] > 0
    for name in ("memory-serve", "memory-mock"):
        memory = checks[name]
        assert memory["error"] is None, memory
        assert memory["stores"] > 0 and memory["bytes"] > 0, memory
        assert memory["peak_rss_mib"] >= memory["baseline_rss_mib"] > 0, memory
    assert checks["memory-mock"]["journaled"] == checks["memory-mock"]["stores"]


def test_table_renders_errors_and_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """The human table shows a failed run's reason instead of a figure."""
    # bench/ is a folder of the checkout, not an installed package.
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.cli import render

    run = {
        "run": "scu-c1",
        "label": "StoreScu c=1 -> DCMTK storescp --fork --ignore",
        "corpus": "ct",
        "files_per_second": None,
        "mb_per_second": None,
        "ratio": None,
        "peak_rss_mib": None,
        "cpu_seconds": None,
        "error": "1/1 failed: connection refused",
    }
    ref = {
        **run,
        "run": "reference",
        "files_per_second": 850.0,
        "mb_per_second": 446.0,
        "ratio": 1.0,
        "peak_rss_mib": 15.0,
        "cpu_seconds": 0.2,
        "error": None,
    }
    report = {
        "machine": {
            "date": "2026-01-01 00:00 UTC",
            "cpus": 2,
            "python": "3.11",
            "dcmtk": "x",
            "pynetdicom": "3.0.4",
        },
        "repeat": 1,
        "smoke": True,
        "corpora": {"ct": {"files": 4, "bytes": 2_000_000, "description": "d"}},
        "runs": [ref, run],
        "checks": [],
    }
    text = render(report)
    assert "850.0" in text and "1.000x" in text
    assert "! 1/1 failed: connection refused" in text


@pytest.mark.interop
def test_compare_measures_two_versions_in_one_invocation(
    tmp_path: Path,
) -> None:
    """``--compare HEAD`` runs HEAD's extracted tree and the worktree side by side; each
    child says which code it imported, and it is the version's."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench", "--smoke", "--json", "--workdir", str(tmp_path),
            "--corpus", "small", "--runs", "scu-c1,dcmtk-mock", "--compare", "HEAD",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    head, worktree = report["compare"]["versions"]
    assert (head["name"], worktree["name"]) == ("HEAD", "worktree")
    assert Path(head["tree"]).parent == tmp_path / "trees"
    assert worktree["tree"] == str(ROOT)
    by = {(r["run"], r["version"]): r for r in report["runs"]}
    assert set(by) == {
        ("reference", None), ("scu-c1", "HEAD"), ("scu-c1", "worktree"),
        ("dcmtk-mock", "HEAD"), ("dcmtk-mock", "worktree"),
    }  # fmt: skip
    for (run, version), r in by.items():
        assert r["error"] is None and r["files_per_second"] > 0, (run, version, r["error"])
    assert by[("scu-c1", "HEAD")]["samples"][0]["scu_file"].startswith(head["tree"])
    assert by[("scu-c1", "worktree")]["samples"][0]["scu_file"].startswith(str(ROOT))
    mock = by[("dcmtk-mock", "HEAD")]["samples"][0]["receiver"]["mock_file"]
    assert mock.startswith(head["tree"])
