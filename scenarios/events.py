"""The compact event-pattern language of ``expect.events`` and per-file outcome lists.

A pattern is a regular expression over the StoreScu events of one transfer, written with
event names instead of characters::

    started, (sending, sent|error)*, completed

- names: ``started``, ``sending``, ``sent`` (any FileSent), ``warned`` (a FileSent that
  carried a warning status), ``error`` (FileError), ``completed``;
- a status filter in brackets: ``sent[0xB000]``, ``error[OutOfResources]``,
  ``error[none]`` (a FileError without a DIMSE status, e.g. after an A-ABORT);
- ``,`` is sequence (lowest precedence), ``|`` is alternation (binds tighter than ``,``,
  so ``sending, sent|error`` is ``sending`` followed by ``sent`` or ``error``);
- postfix ``*``, ``+``, ``?``, ``{n}``, ``{n,m}``; parentheses group.

The whole event sequence must match (not a prefix). An outcome list is the exact result
per queued file in queue order: ``success``, ``warning`` or ``failed``, optionally with a
status (``failed 0xA700``, ``warning ElementsDiscarded``, ``failed none``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from scu.protocol.status import parse_status

__all__ = [
    "EVENT_NAMES",
    "Outcome",
    "PatternError",
    "compile_pattern",
    "encode_event",
    "parse_outcome",
]

# name -> (event kind, needs a warning)
EVENT_NAMES: dict[str, tuple[str, bool]] = {
    "started": ("started", False),
    "sending": ("sending", False),
    "sent": ("sent", False),
    "warned": ("sent", True),
    "error": ("error", False),
    "completed": ("completed", False),
}

_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_]+)(?:\[(?P<status>[^\]]*)\])?"
    r"|(?P<rep>\{\s*\d+\s*(?:,\s*\d*\s*)?\})|(?P<op>[(),|*+?]))"
)


class PatternError(ValueError):
    """An ``expect.events`` pattern that does not parse."""


def _status_text(status: int | None) -> str:
    return "none" if status is None else f"0x{status:04X}"


def encode_event(kind: str, status: int | None = None, warned: bool = False) -> str:
    """One event as the text the compiled pattern runs over."""
    return f"{kind}/{_status_text(status)}/{'w' if warned else '-'};"


def _tokens(pattern: str) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    pos = 0
    text = pattern.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise PatternError(f"unexpected {text[pos:].strip()[:12]!r} at column {pos + 1}")
        if m.group("name") is not None:
            out.append(("name", m.group("name"), m.group("status")))
        elif m.group("rep") is not None:
            out.append(("rep", re.sub(r"\s", "", m.group("rep")), None))
        else:
            out.append(("op", m.group("op"), None))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.toks = _tokens(pattern)
        self.i = 0

    def peek(self) -> tuple[str, str, str | None] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take_op(self, op: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] == op:
            self.i += 1
            return True
        return False

    def seq(self) -> str:
        parts = [self.alt()]
        while self.take_op(","):
            parts.append(self.alt())
        return "".join(parts)

    def alt(self) -> str:
        parts = [self.post()]
        while self.take_op("|"):
            parts.append(self.post())
        return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"

    def post(self) -> str:
        out = self.atom()
        while True:
            tok = self.peek()
            if tok is not None and tok[0] == "op" and tok[1] in "*+?":
                out = f"(?:{out}){tok[1]}"
            elif tok is not None and tok[0] == "rep":
                out = f"(?:{out}){tok[1]}"
            else:
                return out
            self.i += 1

    def atom(self) -> str:
        tok = self.peek()
        if tok is None:
            raise PatternError("the pattern ends where an event name or '(' was expected")
        if tok[0] == "op" and tok[1] == "(":
            self.i += 1
            inner = self.seq()
            if not self.take_op(")"):
                raise PatternError("missing ')'")
            return f"(?:{inner})"
        if tok[0] != "name":
            raise PatternError(f"expected an event name or '(', found {tok[1]!r}")
        self.i += 1
        name, status = tok[1], tok[2]
        if name not in EVENT_NAMES:
            raise PatternError(f"unknown event name {name!r}; use one of {', '.join(EVENT_NAMES)}")
        kind, warned = EVENT_NAMES[name]
        if status is None:
            status_re = r"[^/;]*"
        elif status.strip().lower() == "none":
            status_re = "none"
        else:
            try:
                status_re = _status_text(parse_status(status.strip()))
            except ValueError as exc:
                raise PatternError(str(exc)) from None
        return f"{kind}/{status_re}/{'w' if warned else '[^;]'};"


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an ``expect.events`` pattern; raises :class:`PatternError` with the reason."""
    parser = _Parser(pattern)
    if not parser.toks:
        raise PatternError("the pattern is empty")
    body = parser.seq()
    if parser.peek() is not None:
        raise PatternError(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return re.compile(body)


OutcomeKind = Literal["success", "warning", "failed"]
_KIND_ALIASES: dict[str, OutcomeKind] = {
    "success": "success",
    "ok": "success",
    "warning": "warning",
    "warned": "warning",
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
}


@dataclass(frozen=True)
class Outcome:
    """One expected per-file result; ``status`` is not compared when ``any_status``."""

    kind: OutcomeKind
    status: int | None = None
    any_status: bool = True

    def __str__(self) -> str:
        return self.kind if self.any_status else f"{self.kind} {_status_text(self.status)}"

    def matches(self, other: Outcome) -> bool:
        """``other`` is an observed outcome (always with its status)."""
        return self.kind == other.kind and (self.any_status or self.status == other.status)


def parse_outcome(text: str) -> Outcome:
    """``"failed 0xA700"`` -> Outcome("failed", 0xA700)."""
    parts = text.split(None, 1)
    if not parts or parts[0].lower() not in _KIND_ALIASES:
        raise ValueError(f"an outcome is success, warning or failed (then a status), not {text!r}")
    kind = _KIND_ALIASES[parts[0].lower()]
    if len(parts) == 1:
        return Outcome(kind)
    if parts[1].strip().lower() == "none":
        return Outcome(kind, None, any_status=False)
    return Outcome(kind, parse_status(parts[1].strip()), any_status=False)
