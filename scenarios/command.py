"""An external sender's command line: placeholders for every ``scu:`` setting, which
settings a command carries, whole-second timeouts, and which program it runs.

Placeholders (each value shell-quoted):

=====================  ============================================================
``{host} {port}``      the mock's address; ``{addr}`` is ``host:port``
``{files}``            every queued file, in queue order (duplicates repeated)
``{dir}``              a folder holding the queued files (duplicates as copies),
                       named so that sorted order is queue order
``{calling_ae}``       ``scu.calling_ae_title``
``{called_ae}``        ``scu.called_ae_title`` (default: the mock's AE title)
``{max_pdu}``          ``scu.max_pdu_length`` (default: StoreScu's, 16384)
``{transfer_syntax}``  ``scu.transfer_syntax`` as a UID ('' when none is forced)
``{*_timeout}``        ``connect``, ``acse``, ``dimse``, ``network``: whole seconds,
                       rounded up (DCMTK takes nothing else); when that rounds a
                       scenario's value up, the SCP's stalls, its own timeouts and the
                       time limit are scaled by the same factor, so a stall meant to
                       outlast the sender's timeout still does
``{concurrency}``      ``scu.concurrency`` (default 1)
``{never_transcode}``  ``true``/``false``; also ``{fail_fast}``, ``{verbose}``
=====================  ============================================================

``{name:PREFIX}`` renders PREFIX followed by the value, or nothing when the value is
empty or false; for a flag, PREFIX alone when true: ``{never_transcode:--never-transcode}``,
``{transfer_syntax:--transfer-syntax=}``.

Unset settings render StoreScu's defaults. A setting the scenario sets that the command
does not carry makes the expectation groups that need it not applicable.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ._suggest import suggestion
from .model import Scenario

__all__ = [
    "PLACEHOLDERS",
    "SETTING_PLACEHOLDERS",
    "CommandPlan",
    "CommandTemplate",
    "describe_program",
    "needed_settings",
]

#: Placeholder -> the ``scu:`` setting it carries.
SETTING_PLACEHOLDERS: Mapping[str, str] = {
    "calling_ae": "calling_ae_title",
    "called_ae": "called_ae_title",
    "max_pdu": "max_pdu_length",
    "transfer_syntax": "transfer_syntax",
    "concurrency": "concurrency",
    "connect_timeout": "connect_timeout",
    "acse_timeout": "acse_timeout",
    "dimse_timeout": "dimse_timeout",
    "network_timeout": "network_timeout",
    "never_transcode": "never_transcode",
    "fail_fast": "fail_fast",
    "verbose": "verbose",
}
_PLACES = ("host", "port", "addr", "files", "dir")
PLACEHOLDERS: tuple[str, ...] = (*_PLACES, *SETTING_PLACEHOLDERS)
_TIMEOUTS = ("connect_timeout", "acse_timeout", "dimse_timeout", "network_timeout")
# `{name}` or `{name:PREFIX}`, not preceded by `$` (a shell's `${HOME}` is left alone).
_BRACED = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")


@cache
def _store_scu_defaults() -> dict[str, Any]:
    """StoreScu's own defaults, read from its signature (not copied here)."""
    from scu import StoreScu

    return {
        name: p.default
        for name, p in inspect.signature(StoreScu.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def needed_settings(scenario: Scenario) -> set[str]:
    """The ``scu:`` settings a group needs unless it says otherwise: those the scenario
    sets (``verbose`` aside: it changes no outcome), and the AE titles the mock checks."""
    needed = set(scenario.scu.model_fields_set) - {"verbose"}
    if scenario.scp.require_called_ae_title:
        needed.add("called_ae_title")
    if scenario.scp.require_calling_ae_titles:
        needed.add("calling_ae_title")
    return needed


@dataclass(frozen=True)
class CommandPlan:
    """A template applied to one scenario: the setting values it renders, the factor the
    SCP's timing is scaled by, and the scenario as the mock will run it."""

    values: dict[str, str]
    scale: float
    scenario: Scenario
    carried: frozenset[str]
    not_carried: tuple[str, ...] = field(default=())


class CommandTemplate:
    """A ``--scu-command`` line. Raises ``ValueError`` for a placeholder that is almost a
    known one (``{dimse_timout}``); other braces are left to the shell."""

    def __init__(self, template: str) -> None:
        if not isinstance(template, str) or not template.strip():
            raise ValueError("--scu-command: the command is empty")
        self.template = template
        used: set[str] = set()
        for name, _prefix in _BRACED.findall(template):
            if name in PLACEHOLDERS:
                used.add(name)
                continue
            close = suggestion(name, PLACEHOLDERS, cutoff=0.8)
            if close is not None:
                raise ValueError(
                    f"--scu-command: unknown placeholder {{{name}}}; did you mean {{{close}}}? "
                    f"(placeholders: {' '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
        self.used = frozenset(used)
        self.carried = frozenset(SETTING_PLACEHOLDERS[p] for p in used if p in SETTING_PLACEHOLDERS)

    def uses(self, placeholder: str) -> bool:
        return placeholder in self.used

    def plan(self, scenario: Scenario) -> CommandPlan:
        """The values this command gives ``scenario``'s settings, and the timing scale."""
        defaults = _store_scu_defaults()
        cfg = scenario.scu
        values: dict[str, str] = {}
        scale = 1.0
        for placeholder, setting in SETTING_PLACEHOLDERS.items():
            if setting == "called_ae_title":
                value: Any = scenario.called_ae_title
            else:
                value = getattr(cfg, setting)
                if value is None:
                    value = defaults.get(setting)
            if setting in _TIMEOUTS and value is not None:
                whole = max(1, math.ceil(value))
                if placeholder in self.used and whole != value:
                    scale = max(scale, whole / value)
                value = whole
            if isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = "" if value is None else str(value)
            values[placeholder] = text
        not_carried = tuple(sorted(needed_settings(scenario) - self.carried))
        return CommandPlan(values, scale, _scaled(scenario, scale), self.carried, not_carried)

    def render(
        self, plan: CommandPlan, *, host: str, port: int, files: Sequence[Path], folder: Path | None
    ) -> str:
        """The command line for one run (every value shell-quoted)."""
        raw = dict(plan.values)
        raw.update(host=host, port=str(port), addr=f"{host}:{port}")
        raw["dir"] = str(folder) if folder is not None else ""
        quoted = {k: shlex.quote(v) for k, v in raw.items()}
        quoted["files"] = " ".join(shlex.quote(str(f)) for f in files)

        def fill(m: re.Match[str]) -> str:
            name, prefix = m.group(1), m.group(2)
            if name not in quoted:
                return m.group(0)
            if prefix is None:
                return quoted[name]
            value = raw.get(name, quoted[name])
            if value in ("", "false"):
                return ""
            return prefix if value == "true" else prefix + quoted[name]

        return _BRACED.sub(fill, self.template)


def _scaled(scenario: Scenario, factor: float) -> Scenario:
    """``scenario`` with the SCP's stalls, its timeouts and the time limit times ``factor``."""
    if factor == 1.0:
        return scenario
    scp = scenario.scp
    rules = [
        r.model_copy(update={"stall": r.stall * factor}) if r.stall is not None else r
        for r in scp.rules
    ]
    update: dict[str, Any] = {"rules": rules}
    for key in ("acse_timeout", "dimse_timeout", "network_timeout"):
        if getattr(scp, key) is not None:
            update[key] = getattr(scp, key) * factor
    return scenario.model_copy(
        update={"scp": scp.model_copy(update=update), "timeout": scenario.timeout * factor}
    )


# --- which program runs ----------------------------------------------------------------

_ASSIGNMENT = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*=")
_INTERPRETERS = re.compile(r"\A(python[0-9.]*|node(js)?|perl|ruby|bash|sh|dash)\Z")
_SHELL_SYNTAX = re.compile(r"[|;&]|\$\(|`")


def describe_program(command: str, env: Mapping[str, str] | None = None) -> str:
    """Which executable ``command`` (a shell line) runs, resolved as the shell would
    (``PATH`` order), and what it is: a native program, or a script and its interpreter
    (for a Python console script, the module it calls). For a bare ``storescu`` that
    resolves to pynetdicom's app, the note says DCMTK's is another program."""
    env = dict(os.environ if env is None else env)
    try:
        words = shlex.split(command)
    except ValueError:
        return "unknown (the command line does not parse as shell words)"
    while words and (_ASSIGNMENT.match(words[0]) or words[0] in ("env", "exec", "command")):
        if _ASSIGNMENT.match(words[0]):
            name, _, value = words[0].partition("=")
            env[name] = value
        words.pop(0)
    if not words:
        return "unknown (no program named)"
    argv0 = words[0]
    path: str | None
    if "/" in argv0:
        absolute = str(Path(argv0).absolute())
        path = absolute if os.access(absolute, os.X_OK) else None
    else:
        path = shutil.which(argv0, path=env.get("PATH"))
    if path is None:
        return f"{argv0}: not found (PATH={env.get('PATH', '')})"
    text = path
    real = os.path.realpath(path)
    if real != path:
        text += f" -> {real}"
    text += f" ({_kind(real, words)})"
    base = os.path.basename(argv0)
    if base in ("storescu", "storescp", "echoscu") and "python" in text.lower():
        text += (
            f"; note: this is pynetdicom's {base} app from a Python environment, not "
            f"DCMTK's (use /usr/bin/{base} for DCMTK)"
        )
    if _SHELL_SYNTAX.search(command):
        text += "; a shell line: only its first program is named"
    return text


def _kind(path: str, words: list[str]) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "unreadable"
    name = os.path.basename(path)
    if head.startswith(b"\x7fELF"):
        if _INTERPRETERS.match(name):
            return f"{name} interpreter{_script_of(words)}"
        return "native executable"
    if head.startswith(b"#!"):
        interpreter = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
        found = re.search(rb"^from ([\w.]+) import (\w+)", head, re.MULTILINE)
        if found and "python" in interpreter:
            entry = f"{found.group(1).decode()}:{found.group(2).decode()}"
            return f"Python console script for {entry}, run by {interpreter}"
        return f"script run by {interpreter}"
    return "executable"


def _script_of(words: list[str]) -> str:
    rest = words[1:]
    for i, word in enumerate(rest):
        if word == "-m" and i + 1 < len(rest):
            return f" running module {rest[i + 1]}"
        if not word.startswith("-"):
            path = Path(word)
            return f" running {path.absolute()}" if path.is_file() else ""
    return ""
