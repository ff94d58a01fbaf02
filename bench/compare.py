"""``python -m bench --compare A[,B]``: two versions of the code measured side by side in
one invocation, rounds alternating, so that a change's effect is a ratio taken under the
same load.

A version is a git revision (anything ``git rev-parse`` takes) or ``worktree`` (the
files as they are now, committed or not). A revision's ``scu``, ``mock_scp`` and
``scenarios`` are extracted with ``git archive`` under ``WORKDIR/trees/<sha>``; our
child processes import them through ``PYTHONPATH`` (each reports the file it imported,
and a run on the wrong code is an error, not a figure). The benchmark's own code (the
runner, the child process driver) is the current one for both.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = "worktree"
_PACKAGES = ("scu", "mock_scp", "scenarios")


class CompareError(RuntimeError):
    """A version that cannot be materialised (unknown revision, no git)."""


@dataclass(frozen=True)
class Version:
    """One side of the comparison: its name as given, what it resolved to, its tree."""

    name: str
    resolved: str
    tree: Path


def parse(spec: str) -> list[str]:
    """``A`` (A against the worktree) or ``A,B``."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if len(names) == 1:
        names.append(WORKTREE)
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"--compare takes A or A,B (two different versions), got {spec!r}")
    return names


def _git(*argv: str) -> str:
    try:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
    except OSError as exc:
        raise CompareError(f"git: {exc}") from None
    if done.returncode != 0:
        raise CompareError(f"git {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout.strip()


def materialise(name: str, workdir: Path) -> Version:
    """The tree of ``name``: the checkout itself for ``worktree``, else an extracted copy
    of that revision's packages (cached by commit)."""
    if name == WORKTREE:
        dirty = bool(_git("status", "--porcelain", "--", *_PACKAGES))
        head = _git("rev-parse", "--short", "HEAD")
        return Version(name, f"{head}{' + edits' if dirty else ''}", ROOT)
    sha = _git("rev-parse", "--verify", "--short", f"{name}^{{commit}}")
    tree = workdir / "trees" / sha
    if not (tree / "scu" / "__init__.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, *_PACKAGES],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise CompareError(f"git archive {sha}: {archive.stderr.decode().strip()}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tree, filter="data")
    return Version(name, sha, tree)


def render(report: dict[str, Any]) -> str:
    """Per run and corpus: files/s of each version, their ratios to the reference, and
    the second version's figure as a ratio to the first's."""
    a, b = report["compare"]["versions"]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in report["runs"]:
        if r["version"] is None:
            continue
        rows.setdefault((r["run"], r["corpus"]), {})[r["version"]] = r
    head = (
        f"{'run':<11} {'corpus':<12} {a['name'][:16]:>16} {'ratio':>7} "
        f"{b['name'][:16]:>16} {'ratio':>7} {'B / A':>7}"
    )
    lines = [
        f"compare: A = {a['name']} ({a['resolved']}), B = {b['name']} ({b['resolved']}); "
        "files/s, ratio to the reference run, and B's files/s over A's",
        "",
        head,
        "-" * len(head),
    ]
    for (run, corpus_name), by in rows.items():
        ra, rb = by.get(a["name"]), by.get(b["name"])

        def cell(r: dict[str, Any] | None) -> str:
            if r is None or r["files_per_second"] is None:
                return f"{'-':>16} {'-':>7}"
            ratio = f"{r['ratio']:.3f}x" if r["ratio"] else "-"
            return f"{r['files_per_second']:>16.1f} {ratio:>7}"

        change = "-"
        if ra and rb and ra["files_per_second"] and rb["files_per_second"]:
            change = f"{rb['files_per_second'] / ra['files_per_second']:.3f}x"
        lines.append(f"{run:<11} {corpus_name:<12} {cell(ra)} {cell(rb)} {change:>7}")
    return "\n".join(lines)
