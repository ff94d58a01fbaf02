"""Compare what a run observed with a scenario's expectation groups, fact by fact, each
result carrying its group's level, citations and reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scu.protocol.status import status_label

from .citations import VIOLATION_CITATIONS
from .command import SETTING_PLACEHOLDERS, needed_settings
from .events import Outcome, compile_pattern
from .expectations import Expect, ScpExpect
from .model import Scenario
from .report import ExpectationResult

__all__ = ["EXTERNAL_SCU", "Observed", "judge", "short"]

EXTERNAL_SCU = "not applicable: external SCU (only the SCP journal is observed)"
IN_PROCESS = "not applicable: in-process StoreScu (no sender process)"


@dataclass
class Observed:
    """What a run saw: SCU-side (None for an external sender), the sender process (None
    in-process) and the SCP journal."""

    result: Any = None
    events: list[str] | None = None
    exception: BaseException | None = None
    received: list[Any] = field(default_factory=list)
    associations: list[Any] = field(default_factory=list)
    violations: list[Any] = field(default_factory=list)
    unmet_rules: list[str] = field(default_factory=list)
    in_process: bool = True
    exit_status: int | None = None
    signal: str | None = None
    timed_out: bool = False
    time_limit: float = 0.0
    duration: float = 0.0
    carried: frozenset[str] = frozenset()


# --- formatting ------------------------------------------------------------------------


def short(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def _statuses(values: Sequence[int | None]) -> str:
    """Statuses in order, repeats folded and each code named once: ``0x0000 (success)
    x2, 0xA700 (out-of-resources), 0x0000 x3``."""
    out: list[str] = []
    named: set[int | None] = set()
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        value = values[i]
        text = status_label(value) if value not in named else _code(value)
        named.add(value)
        out.append(text + (f" x{j - i}" if j - i > 1 else ""))
        i = j
    return "[" + ", ".join(out) + "]"


def _code(value: int | None) -> str:
    return "none" if value is None else f"0x{value:04X}"


def _counts(counter: dict[Any, int], label: Callable[[Any], str] = str) -> str:
    return "{" + ", ".join(f"{label(k)}: {v}" for k, v in sorted(counter.items(), key=str)) + "}"


def _outcome_of(entry: Any) -> Outcome:
    if not entry.ok:
        kind = "failed"
    elif entry.warning or (entry.status not in (None, 0)):
        kind = "warning"
    else:
        kind = "success"
    return Outcome(kind, entry.status, any_status=False)  # type: ignore[arg-type]


def _event_names(encoded: list[str]) -> str:
    """Observed events in the pattern language, repeats folded: ``(sending, sent){9}``."""
    names = []
    for e in encoded:
        kind, status, warned = e.rstrip(";").split("/")
        name = "warned" if warned == "w" else kind
        names.append(
            f"{name}[{status}]" if kind in ("sent", "error") and status != "0x0000" else name
        )
    out: list[str] = []
    i = 0
    while i < len(names):
        for width in (1, 2):
            unit = names[i : i + width]
            count = 1
            while names[i + count * width : i + (count + 1) * width] == unit:
                count += 1
            if count > 1:
                text = ", ".join(unit)
                out.append(f"({text}){{{count}}}" if width > 1 else f"{text}{{{count}}}")
                i += count * width
                break
        else:
            out.append(names[i])
            i += 1
    return ", ".join(out)


# --- facts -----------------------------------------------------------------------------

# (name, expected, observed, ok); ok None = not applicable (observed says why)
_Fact = tuple[str, str, str, bool | None]


def _scu_facts(group: Expect, obs: Observed) -> Iterable[_Fact]:
    result = obs.result
    for name in ("successful", "failed", "warnings", "total"):
        want = getattr(group, name)
        if want is None:
            continue
        if not obs.in_process:
            yield name, str(want), EXTERNAL_SCU, None
        elif result is None:
            yield name, str(want), "no result", False
        else:
            got = {
                "successful": result.successful,
                "failed": result.failed,
                "warnings": len(result.warnings),
                "total": result.total_files,
            }[name]
            yield name, str(want), str(got), got == want
    if group.events is not None:
        if isinstance(group.events, str):
            name, expected = "events", group.events
        else:
            name, expected = "outcomes", short(", ".join(group.events))
        if not obs.in_process:
            yield name, expected, EXTERNAL_SCU, None
        elif isinstance(group.events, str):
            encoded = obs.events or []
            held = compile_pattern(group.events).fullmatch("".join(encoded)) is not None
            yield name, expected, short(_event_names(encoded)), held
        else:
            wanted = group.outcomes() or []
            got = [_outcome_of(f) for f in (result.files if result is not None else [])]
            held = len(got) == len(wanted) and all(
                w.matches(g) for w, g in zip(wanted, got, strict=True)
            )
            yield name, expected, short(", ".join(str(g) for g in got)), held
    if group.raises is not None:
        if not obs.in_process:
            yield "raises", group.raises, EXTERNAL_SCU, None
        else:
            yield _raises(group.raises, obs.exception)
    if group.rejection is not None:
        want = group.rejection
        pairs = (("result", want.result), ("source", want.source), ("reason", want.reason))
        expected = ", ".join(f"{k}={v}" for k, v in pairs if v is not None)
        rej = getattr(obs.exception, "rejection", None)
        if not obs.in_process:
            yield "rejection", expected, EXTERNAL_SCU, None
        elif rej is None:
            yield "rejection", expected, "no rejection reported", False
        else:
            held = all(v is None or int(getattr(rej, k)) == v for k, v in pairs)
            seen = (
                f"result={rej.result}, source={rej.source}, reason={rej.reason} ({rej.description})"
            )
            yield "rejection", expected, seen, held


def _raises(want: str, exc: BaseException | None) -> _Fact:
    got = "none" if exc is None else type(exc).__name__
    names = {"none"} if exc is None else {c.__name__ for c in type(exc).__mro__}
    shown = got if exc is None else f"{got}: {short(str(exc), 200)}"
    return "raises", want, shown, want in names


def _violations_text(violations: Sequence[Any]) -> str:
    if not violations:
        return "none"
    parts = [
        f"{v} [{VIOLATION_CITATIONS[v.kind]}]" if v.kind in VIOLATION_CITATIONS else str(v)
        for v in violations
    ]
    return f"{len(violations)}: " + short("; ".join(parts), 400)


def _violated_sections(violations: Sequence[Any]) -> tuple[str, ...]:
    found = (VIOLATION_CITATIONS.get(v.kind) for v in violations)
    return tuple(dict.fromkeys(c for c in found if c is not None))


def _scp_facts(want: ScpExpect, obs: Observed) -> Iterable[_Fact]:
    received, assocs = obs.received, obs.associations
    if want.stores is not None:
        yield "scp.stores", str(want.stores), str(len(received)), len(received) == want.stores
    if want.statuses is not None:
        got = [r.status for r in received if r.status is not None]
        yield (
            "scp.statuses",
            _statuses(want.statuses),
            _statuses(got),
            got == list(want.statuses),
        )
    if want.status_counts is not None:
        got_c = dict(Counter(r.status for r in received if r.status is not None))
        yield (
            "scp.status_counts",
            _counts(want.status_counts, status_label),
            _counts(got_c, status_label),
            got_c == dict(want.status_counts),
        )
    if want.associations is not None:
        n = len(assocs)
        yield "scp.associations", str(want.associations), str(n), n == want.associations
    if want.min_associations is not None:
        n = len(assocs)
        yield (
            "scp.min_associations",
            f">= {want.min_associations}",
            str(n),
            (n >= want.min_associations),
        )
    if want.ended is not None:
        got_e = dict(Counter(a.ended or "open" for a in assocs))
        want_e = {k: v for k, v in want.ended.items() if v}
        yield "scp.ended", _counts(want_e), _counts(got_e), got_e == want_e
    if want.violations is not None:
        n = 0 if want.violations == "none" else want.violations
        yield (
            "scp.violations",
            str(want.violations),
            _violations_text(obs.violations),
            len(obs.violations) == n,
        )
    if want.transfer_syntaxes is not None:
        got_ts = sorted({r.transfer_syntax for r in received})
        want_ts = sorted(set(want.transfer_syntaxes))
        yield "scp.transfer_syntaxes", str(want_ts), str(got_ts), got_ts == want_ts
    if want.distinct_instances is not None:
        n_inst = len({r.sop_instance_uid for r in received})
        yield (
            "scp.distinct_instances",
            str(want.distinct_instances),
            str(n_inst),
            n_inst == want.distinct_instances,
        )
    if want.max_pdu_length is not None:
        got_pdu = sorted({a.max_pdu_length for a in assocs if a.ended != "rejected"})
        yield (
            "scp.max_pdu_length",
            str([want.max_pdu_length]),
            str(got_pdu),
            got_pdu == [want.max_pdu_length],
        )


def _sender_facts(group: Expect, obs: Observed) -> Iterable[_Fact]:
    if group.sender is None or group.sender.exit == "any":
        return
    want = group.sender.exit
    if obs.in_process:
        yield "sender.exit", want, IN_PROCESS, None
        return
    status = obs.exit_status
    shown = "none (killed)" if status is None else str(status)
    held = status is not None and ((status == 0) == (want == "zero"))
    yield "sender.exit", want, shown, held


def _group_results(group: Expect, obs: Observed) -> Iterable[_Fact]:
    yield from _scu_facts(group, obs)
    if group.scp is not None:
        yield from _scp_facts(group.scp, obs)
    yield from _sender_facts(group, obs)


# --- groups and the checks the runner adds -----------------------------------------------


def _not_carried_reason(scenario: Scenario, missing: Sequence[str]) -> str:
    by_setting = {s: p for p, s in SETTING_PLACEHOLDERS.items()}
    parts = []
    for setting in missing:
        value = getattr(scenario.scu, setting, None)
        if setting == "called_ae_title":
            value = scenario.called_ae_title
        parts.append(f"{{{by_setting[setting]}}} (scu.{setting}: {value})")
    return "not applicable: the command line does not carry " + ", ".join(parts)


def judge(scenario: Scenario, obs: Observed) -> list[ExpectationResult]:
    """Every expectation group of ``scenario`` against ``obs``, then the checks every run
    gets: the rules' expected hits, and for an external sender its process and whether it
    connected at all."""
    out: list[ExpectationResult] = []
    default_needs = needed_settings(scenario)
    for group in scenario.groups:
        needs = set(group.needs) if group.needs is not None else default_needs
        missing = sorted(needs - obs.carried) if not obs.in_process else []
        for name, expected, observed, ok in _group_results(group, obs):
            if missing and ok is not None:
                observed, ok = _not_carried_reason(scenario, missing), None
            cite = tuple(group.cite)
            if name == "scp.violations" and ok is False:
                # Cite what was violated, not every section the group covers.
                cite = _violated_sections(obs.violations) or cite
            out.append(
                ExpectationResult(
                    name, expected, observed, ok, level=group.level, cite=cite, why=group.why
                )
            )
    out.extend(_implicit(scenario, obs))
    return out


def _implicit(scenario: Scenario, obs: Observed) -> list[ExpectationResult]:
    out = []
    if obs.in_process and all(g.raises is None for g in scenario.groups):
        # In-process, an exception nobody expected always fails the scenario.
        out.append(
            ExpectationResult(
                *_raises("none", obs.exception),
                why="StoreScu.send() raises only the exceptions the scenario expects",
                implicit=True,
            )
        )
    if obs.unmet_rules:
        out.append(
            ExpectationResult(
                "scp.rule_hits",
                "every rule's expect count",
                short("; ".join(obs.unmet_rules), 300),
                False,
                level="recommended",
                why="carry the transfer as far as every fault the scenario sets up",
                implicit=True,
            )
        )
    if obs.in_process:
        return out
    if obs.signal is not None:
        observed, ok = f"killed by {obs.signal}", False
    elif obs.timed_out:
        observed, ok = f"still running at the time limit of {obs.time_limit:g} s (killed)", False
    else:
        observed, ok = f"exit status {obs.exit_status} after {obs.duration:.2f} s", True
    out.append(
        ExpectationResult(
            "sender process",
            f"ends by itself within {obs.time_limit:g} s",
            observed,
            ok,
            why="a sender killed by a signal or stopped at the time limit has not "
            "completed its work, whatever the journal shows",
            implicit=True,
        )
    )
    out.append(
        ExpectationResult(
            "sender connected",
            ">= 1 association",
            f"{len(obs.associations)} association(s)",
            len(obs.associations) >= 1,
            why="a sender that never asks for an association has not attempted the transfer",
            implicit=True,
        )
    )
    return out
