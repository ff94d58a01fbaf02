"""Load scenario files (with errors naming file, line and field, and a did-you-mean),
find library scenarios and the scenarios of a folder, materialise the files a scenario
sends, and build its MockScp.

Everything is checked at load time, before anything runs: the format, names (statuses,
UIDs of the right kind, reject reasons), the agreement of each rule's action and status,
the files, and the mock's own checks of the configuration (the MockScp is built, not
started)."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ._suggest import did_you_mean
from ._yaml import Marks, load_with_marks
from .errors import ScenarioError, ScenarioIssue
from .model import EXPECT_TAGS, FileSpec, Rule, Scenario

if TYPE_CHECKING:
    from mock_scp import MockScp

__all__ = [
    "LibraryEntry",
    "build_mock_scp",
    "discover",
    "library",
    "library_dir",
    "load",
    "load_text",
    "materialize_files",
    "pydicom_test_file",
    "resolve",
]


def library_dir() -> Path:
    """The folder of the shipped library scenarios (package data)."""
    return Path(str(resources.files("scenarios") / "library"))


@dataclass(frozen=True)
class LibraryEntry:
    """A shipped scenario: its name, the first line of its description (a one-line
    summary by convention), its file."""

    name: str
    summary: str
    path: Path


def library(directory: str | os.PathLike[str] | None = None) -> list[LibraryEntry]:
    """Every library scenario (or every scenario file under ``directory``), sorted by
    name; each file is loaded and validated, and every problem is raised at once."""
    paths = _yaml_files(Path(directory)) if directory is not None else _yaml_files(library_dir())
    entries = []
    issues: list[ScenarioIssue] = []
    for path in paths:
        try:
            sc = load(path)
        except ScenarioError as exc:
            issues.extend(exc.issues)
            continue
        entries.append(LibraryEntry(sc.name, sc.summary, path))
    if issues:
        raise ScenarioError(issues)
    return sorted(entries, key=lambda e: e.name)


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.yaml") if p.is_file())


def discover(names: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Scenario files for command-line arguments: a file, a folder (every ``*.yaml`` in
    it, recursively, sorted), or a library scenario's name. ``ScenarioError`` for a name
    that is none of these, or a folder without scenario files."""
    out: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = _yaml_files(path)
            if not found:
                raise ScenarioError.single(path, "no scenario files (*.yaml) in this folder")
            out.extend(found)
        else:
            out.append(resolve(name))
    return out


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """A scenario file from a path, or from a library scenario's name (or file stem)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    candidate = library_dir() / f"{text}.yaml"
    if candidate.is_file():
        return candidate
    for entry in sorted(library_dir().glob("*.yaml")):
        data, _ = load_with_marks(entry.read_text(encoding="utf-8"), entry)
        if isinstance(data, dict) and data.get("name") == text:
            return entry
    stems = [p.stem for p in sorted(library_dir().glob("*.yaml"))]
    raise ScenarioError.single(
        text,
        f"no such scenario file, folder or library scenario{did_you_mean(text, stems)} "
        f"(library: {', '.join(stems)})",
    )


# --- validation errors -> file, line, field -------------------------------------------


def _field_name(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a mapping key; the key itself is named
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed_fields(loc: Sequence[str | int]) -> list[str]:
    model: type[BaseModel] | None = Scenario
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _message(err: Any, loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown field {loc[-1]!r}{did_you_mean(str(loc[-1]), allowed)}{hint}"
    if kind == "literal_error" and isinstance(err.get("input"), str):
        expected = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        return (
            f"{err['input']!r} is not one of {', '.join(expected)}"
            f"{did_you_mean(err['input'], expected)}"
        )
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    given = err.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(given, dict | list):
        msg += f" (got {given!r})"
    return msg


def _issues(exc: ValidationError, file: str, marks: Marks) -> list[ScenarioIssue]:
    out = []
    seen = set()
    for err in exc.errors():
        # pydantic adds the union member or validator to loc for some errors; keep data keys
        loc = tuple(
            p
            for p in err["loc"]
            if isinstance(p, int) or not (str(p).startswith("function-") or p in EXPECT_TAGS)
        )
        issue = ScenarioIssue(file, marks.line(loc), _field_name(loc), _message(err, loc))
        if issue not in seen:
            seen.add(issue)
            out.append(issue)
    return out


@cache
def _pydicom_files() -> dict[str, str]:
    """Names of pydicom's bundled test files that are present offline."""
    import pydicom
    from pydicom.data import get_testdata_files

    base = Path(pydicom.__file__).parent.resolve()
    found: dict[str, str] = {}
    for p in get_testdata_files():
        path = Path(p).resolve()
        if path.is_relative_to(base) and path.is_file():
            found.setdefault(path.name, str(path))
    return found


def pydicom_test_file(name: str) -> Path:
    """Path of a pydicom test file available offline; ``KeyError`` if there is none."""
    return Path(_pydicom_files()[name])


def _check_files(sc: Scenario, file: str, marks: Marks) -> list[ScenarioIssue]:
    issues = []
    for i, spec in enumerate(sc.files):
        if spec.path is not None:
            path = sc.base_dir / spec.path
            if not path.is_file():
                issues.append(
                    ScenarioIssue(
                        file,
                        marks.line(("files", i, "path")),
                        f"files[{i}].path",
                        f"file not found: {spec.path} (looked for {path})",
                    )
                )
        elif spec.pydicom is not None and spec.pydicom not in _pydicom_files():
            issues.append(
                ScenarioIssue(
                    file,
                    marks.line(("files", i, "pydicom")),
                    f"files[{i}].pydicom",
                    f"pydicom has no test file {spec.pydicom!r} available offline",
                )
            )
    return issues


def _check_mock(sc: Scenario, file: str, marks: Marks) -> list[ScenarioIssue]:
    """Build the scenario's MockScp without starting it, so that whatever the mock itself
    refuses (a rule whose ``expect`` can never be met, ...) is found now, at its line."""
    try:
        scp = _new_mock(sc)
    except ValueError as exc:
        return [ScenarioIssue(file, marks.line(("scp",)), "scp", str(exc))]
    issues = []
    for i, rule in enumerate(sc.scp.rules):
        try:
            _apply_rule(scp, rule)
        except ValueError as exc:
            where = ("scp", "rules", i)
            issues.append(ScenarioIssue(file, marks.line(where), f"scp.rules[{i}]", str(exc)))
    return issues


def load_text(
    text: str, file: str | Path = "<scenario>", *, base_dir: Path | None = None
) -> Scenario:
    """Validate scenario YAML ``text``; ``file`` names it in errors and anchors relative
    paths (``base_dir`` overrides the anchor)."""
    name = str(file)
    data, marks = load_with_marks(text, name)
    if not isinstance(data, dict):
        raise ScenarioError.single(name, "a scenario file is a YAML mapping", line=1)
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_issues(exc, name, marks)) from None
    anchor = (base_dir / "scenario.yaml") if base_dir is not None else Path(file)
    sc._source = anchor.resolve() if anchor.name != "<scenario>" else None
    issues = _check_files(sc, name, marks) + _check_mock(sc, name, marks)
    if issues:
        raise ScenarioError(issues)
    return sc


def load(path: str | os.PathLike[str]) -> Scenario:
    """Load and validate one scenario file (a path, or a library scenario's name).

    Raises :class:`ScenarioError` listing every problem with file, line and field.
    """
    file = resolve(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError.single(file, f"cannot read: {exc}") from exc
    return load_text(text, file)


# --- running parts ---------------------------------------------------------------------


def _generate(spec: FileSpec, directory: Path) -> list[Path]:
    from mock_scp import datagen

    gen = spec.generate
    assert gen is not None
    directory.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = gen.model_dump(exclude_none=True, exclude={"count"})
    written = datagen.write_files(directory, count=gen.count, **options)
    return [Path(p) for p in written]


def materialize_files(scenario: Scenario, workdir: Path) -> list[Path]:
    """The files the scenario sends, in queue order; generated ones are written to
    ``workdir``."""
    out: list[Path] = []
    for i, spec in enumerate(scenario.files):
        if spec.path is not None:
            paths = [scenario.base_dir / spec.path]
        elif spec.pydicom is not None:
            paths = [pydicom_test_file(spec.pydicom)]
        else:
            paths = _generate(spec, workdir / f"files-{i:03d}")
        for _ in range(spec.repeat):
            out.extend(paths)
    return out


def _expect_arg(rule: Rule) -> int | tuple[int, int | None] | None:
    if rule.expect is None or isinstance(rule.expect, int):
        return rule.expect
    return (rule.expect.min, rule.expect.max)


def _apply_rule(scp: MockScp, rule: Rule) -> None:
    builder = scp.on_store(
        nth=rule.nth,
        every=rule.every,
        offset=rule.offset,
        sop_class_uid=rule.sop_class_uid,
        sop_instance_uid=rule.sop_instance_uid,
        transfer_syntax=rule.transfer_syntax,
        calling_ae_title=rule.calling_ae_title,
        probability=rule.probability,
        times=rule.times,
        expect=_expect_arg(rule),
    )
    if rule.respond is not None:
        builder.respond(rule.respond.status, comment=rule.respond.comment)
    elif rule.warn is not None:
        builder.warn(rule.warn.status, comment=rule.warn.comment)
    elif rule.fail is not None:
        builder.fail(rule.fail.status, comment=rule.fail.comment)
    elif rule.stall is not None:
        builder.stall(rule.stall)
    elif rule.slow_read is not None:
        builder.slow_read(rule.slow_read)
    elif rule.abort is not None:
        builder.abort(during_dataset=rule.abort.during_dataset)
    elif rule.disconnect is not None:
        builder.disconnect(rst=rule.disconnect.rst)
    elif rule.garbage is not None:
        data = bytes.fromhex(rule.garbage.data) if rule.garbage.data is not None else None
        builder.garbage(data)
    else:
        builder.accept()


def _new_mock(
    sc: Scenario,
    *,
    host: str | None = None,
    port: int | None = None,
    ae_title: str | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> MockScp:
    from mock_scp import MockScp

    cfg = sc.scp
    options: dict[str, Any] = {}
    for key in (
        "max_pdu_length",
        "transfer_syntaxes",
        "sop_classes",
        "accept_unknown_sop_classes",
        "require_called_ae_title",
        "require_calling_ae_titles",
        "max_associations",
        "seed",
        "strict",
        "acse_timeout",
        "dimse_timeout",
        "network_timeout",
    ):
        value = getattr(cfg, key)
        if value is not None:
            options[key] = value
    # An override comes from the caller (relative to its cwd); the file's own store_dir
    # is relative to the scenario file, like every path in it.
    if store_dir is not None:
        options["store_dir"] = str(store_dir)
    elif cfg.store_dir is not None:
        options["store_dir"] = str(sc.base_dir / cfg.store_dir)
    options.update(overrides)
    return MockScp(
        ae_title or cfg.ae_title,
        host=host or cfg.host or "127.0.0.1",
        port=port if port is not None else (cfg.port or 0),
        **options,
    )


def build_mock_scp(
    path_or_scenario: Scenario | str | os.PathLike[str],
    *,
    host: str | None = None,
    port: int | None = None,
    ae_title: str | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> MockScp:
    """A configured, **unstarted** MockScp for a scenario (its options, rules and
    association rejects). Start it with ``with scp:`` (or ``scp.start()``). Keyword
    arguments override the scenario (``scukit serve`` options given on the command line);
    ``overrides`` are any other ``MockScp`` keyword arguments.
    """
    sc = path_or_scenario if isinstance(path_or_scenario, Scenario) else load(path_or_scenario)
    scp = _new_mock(sc, host=host, port=port, ae_title=ae_title, store_dir=store_dir, **overrides)
    for rule in sc.scp.rules:
        _apply_rule(scp, rule)
    for rej in sc.scp.reject_associations:
        scp.reject_associations(
            result=rej.result, source=rej.source, reason=rej.reason, times=rej.times
        )
    return scp
