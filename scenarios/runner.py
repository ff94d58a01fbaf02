"""Run a scenario: in-process against our StoreScu, or against any external SCU command,
and compare what was observed with the scenario's expectations."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scu.protocol.status import status_label

from .events import Outcome, compile_pattern, encode_event
from .loader import build_mock_scp, load, materialize_files
from .model import Scenario, ScpExpect

__all__ = ["ExpectationResult", "Observed", "ScenarioReport", "format_command", "run"]

NOT_APPLICABLE = "not applicable: external SCU (only the SCP journal is observed)"
# How long to wait for the mock's server threads to finish after the sender is done.
_IDLE_TIMEOUT = 15.0


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation: ``ok`` is True (held), False (did not hold) or None (not
    applicable, e.g. SCU-side facts when the sender is an external program)."""

    name: str
    expected: str
    observed: str
    ok: bool | None


@dataclass
class ScenarioReport:
    """The outcome of running one scenario."""

    name: str
    source: str | None
    sender: str
    expectations: list[ExpectationResult] = field(default_factory=list)
    error: str | None = None
    duration_seconds: float = 0.0
    output: str = ""

    @property
    def ok(self) -> bool:
        """Every applicable expectation held and the run itself did not break."""
        return self.error is None and all(e.ok is not False for e in self.expectations)

    @property
    def failures(self) -> list[ExpectationResult]:
        """The expectations that did not hold."""
        return [e for e in self.expectations if e.ok is False]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``ok`` included)."""
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def describe(self) -> str:
        """A multi-line text naming each expectation that did not hold."""
        lines = [f"scenario {self.name!r}: {'passed' if self.ok else 'FAILED'} ({self.sender})"]
        if self.error:
            lines.append(f"  error: {self.error}")
        for e in self.failures:
            lines.append(f"  {e.name}: expected {e.expected}, observed {e.observed}")
        if self.output and not self.ok:
            lines.append("  sender output:\n    " + self.output.strip().replace("\n", "\n    "))
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        """``AssertionError`` with :meth:`describe` unless the scenario passed (for pytest)."""
        if not self.ok:
            raise AssertionError(self.describe())


@dataclass
class Observed:
    """What a run saw: SCU-side (None for an external sender) and the SCP journal."""

    result: Any = None
    events: list[str] | None = None
    exception: BaseException | None = None
    received: list[Any] = field(default_factory=list)
    associations: list[Any] = field(default_factory=list)
    violations: list[Any] = field(default_factory=list)
    scp_errors: list[Any] = field(default_factory=list)
    check_error: str | None = None
    in_process: bool = True


# --- judging ---------------------------------------------------------------------------


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def _statuses(values: Sequence[int | None]) -> str:
    return "[" + ", ".join(status_label(v) for v in values) + "]"


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


def _judge_scu(sc: Scenario, obs: Observed) -> list[ExpectationResult]:
    exp = sc.expect
    out: list[ExpectationResult] = []
    checks: list[tuple[str, Any]] = [
        ("successful", exp.successful),
        ("failed", exp.failed),
        ("warnings", exp.warnings),
        ("total", exp.total),
    ]
    applicable = obs.in_process
    result = obs.result
    for name, want in checks:
        if want is None:
            continue
        if not applicable:
            out.append(ExpectationResult(name, str(want), NOT_APPLICABLE, None))
            continue
        if result is None:
            out.append(ExpectationResult(name, str(want), "no result", False))
            continue
        got = {
            "successful": result.successful,
            "failed": result.failed,
            "warnings": len(result.warnings),
            "total": result.total_files,
        }[name]
        out.append(ExpectationResult(name, str(want), str(got), got == want))

    if exp.events is not None:
        if isinstance(exp.events, str):
            name, expected = "events", exp.events
        else:
            name, expected = "outcomes", _short(", ".join(exp.events))
        if not applicable:
            out.append(ExpectationResult(name, expected, NOT_APPLICABLE, None))
        elif isinstance(exp.events, str):
            encoded = obs.events or []
            held = compile_pattern(exp.events).fullmatch("".join(encoded)) is not None
            out.append(ExpectationResult(name, expected, _short(_event_names(encoded)), held))
        else:
            wanted = exp.outcomes() or []
            files = list(result.files) if result is not None else []
            got = [_outcome_of(f) for f in files]
            held = len(got) == len(wanted) and all(
                w.matches(g) for w, g in zip(wanted, got, strict=True)
            )
            out.append(
                ExpectationResult(name, expected, _short(", ".join(str(g) for g in got)), held)
            )

    # In-process, an exception nobody expected is always an expectation that failed.
    want_exc = exp.raises or "none"
    if not applicable:
        if exp.raises is not None:
            out.append(ExpectationResult("raises", want_exc, NOT_APPLICABLE, None))
    else:
        exc = obs.exception
        got_exc = "none" if exc is None else type(exc).__name__
        names = {"none"} if exc is None else {c.__name__ for c in type(exc).__mro__}
        shown = got_exc if exc is None else f"{got_exc}: {_short(str(exc), 200)}"
        out.append(ExpectationResult("raises", want_exc, shown, want_exc in names))

    if exp.rejection is not None:
        want = exp.rejection
        expected = ", ".join(
            f"{k}={v}"
            for k, v in (("result", want.result), ("source", want.source), ("reason", want.reason))
            if v is not None
        )
        if not applicable:
            out.append(ExpectationResult("rejection", expected, NOT_APPLICABLE, None))
        else:
            rej = getattr(obs.exception, "rejection", None)
            if rej is None:
                out.append(ExpectationResult("rejection", expected, "no rejection reported", False))
            else:
                held = all(
                    v is None or int(getattr(rej, k)) == v
                    for k, v in (
                        ("result", want.result),
                        ("source", want.source),
                        ("reason", want.reason),
                    )
                )
                seen = (
                    f"result={rej.result}, source={rej.source}, reason={rej.reason}"
                    f" ({rej.description})"
                )
                out.append(ExpectationResult("rejection", expected, seen, held))
    return out


def _judge_scp(want: ScpExpect | None, obs: Observed) -> list[ExpectationResult]:
    out: list[ExpectationResult] = []
    received = obs.received
    assocs = obs.associations
    if want is not None:
        if want.stores is not None:
            out.append(
                ExpectationResult(
                    "scp.stores", str(want.stores), str(len(received)), len(received) == want.stores
                )
            )
        if want.statuses is not None:
            got = [r.status for r in received if r.status is not None]
            out.append(
                ExpectationResult(
                    "scp.statuses",
                    _short(_statuses(want.statuses)),
                    _short(_statuses(got)),
                    got == list(want.statuses),
                )
            )
        if want.status_counts is not None:
            got_c = Counter(r.status for r in received if r.status is not None)
            out.append(
                ExpectationResult(
                    "scp.status_counts",
                    _counts(want.status_counts, status_label),
                    _counts(dict(got_c), status_label),
                    dict(got_c) == dict(want.status_counts),
                )
            )
        if want.associations is not None:
            out.append(
                ExpectationResult(
                    "scp.associations",
                    str(want.associations),
                    str(len(assocs)),
                    len(assocs) == want.associations,
                )
            )
        if want.min_associations is not None:
            out.append(
                ExpectationResult(
                    "scp.min_associations",
                    f">= {want.min_associations}",
                    str(len(assocs)),
                    len(assocs) >= want.min_associations,
                )
            )
        if want.ended is not None:
            got_e = Counter(a.ended or "open" for a in assocs)
            want_e = {k: v for k, v in want.ended.items() if v}
            out.append(
                ExpectationResult(
                    "scp.ended", _counts(want_e), _counts(dict(got_e)), dict(got_e) == want_e
                )
            )
        if want.violations is not None:
            n = 0 if want.violations == "none" else want.violations
            shown = (
                "none"
                if not obs.violations
                else f"{len(obs.violations)}: " + _short("; ".join(map(str, obs.violations)), 200)
            )
            out.append(
                ExpectationResult(
                    "scp.violations", str(want.violations), shown, len(obs.violations) == n
                )
            )
        if want.transfer_syntaxes is not None:
            got_ts = sorted({r.transfer_syntax for r in received})
            out.append(
                ExpectationResult(
                    "scp.transfer_syntaxes",
                    str(sorted(set(want.transfer_syntaxes))),
                    str(got_ts),
                    got_ts == sorted(set(want.transfer_syntaxes)),
                )
            )
        if want.distinct_instances is not None:
            n_inst = len({r.sop_instance_uid for r in received})
            out.append(
                ExpectationResult(
                    "scp.distinct_instances",
                    str(want.distinct_instances),
                    str(n_inst),
                    n_inst == want.distinct_instances,
                )
            )
        if want.max_pdu_length is not None:
            got_pdu = sorted({a.max_pdu_length for a in assocs if a.ended != "rejected"})
            out.append(
                ExpectationResult(
                    "scp.max_pdu_length",
                    str([want.max_pdu_length]),
                    str(got_pdu),
                    got_pdu == [want.max_pdu_length],
                )
            )
    # Implicit: the mock itself must not have failed, and its rules' `expect` counts hold.
    errors = "none" if not obs.scp_errors else _short("; ".join(map(repr, obs.scp_errors)), 300)
    out.append(ExpectationResult("scp.handler_errors", "none", errors, not obs.scp_errors))
    expecting_violations = want is not None and want.violations not in (None, "none", 0)
    if not expecting_violations:
        out.append(
            ExpectationResult(
                "scp.check", "passes", obs.check_error or "passes", obs.check_error is None
            )
        )
    if not obs.in_process:
        out.append(
            ExpectationResult(
                "sender connected",
                ">= 1 association",
                f"{len(assocs)} association(s)",
                len(assocs) >= 1,
            )
        )
    return out


def judge(scenario: Scenario, observed: Observed) -> list[ExpectationResult]:
    """Every expectation of ``scenario`` against ``observed``, SCU-side ones first."""
    return _judge_scu(scenario, observed) + _judge_scp(scenario.expect.scp, observed)


# --- running ---------------------------------------------------------------------------


def _journal(scp: Any, obs: Observed) -> None:
    if not scp.wait_idle(_IDLE_TIMEOUT):
        obs.scp_errors.append(f"the mock did not go idle within {_IDLE_TIMEOUT:g} s")
    obs.received = list(scp.received)
    obs.associations = list(scp.associations)
    obs.violations = list(scp.violations)
    obs.scp_errors.extend(list(getattr(scp, "errors", [])))
    try:
        scp.check()
    except Exception as exc:  # check() raises MockScpError; its text is the observation
        obs.check_error = str(exc) or type(exc).__name__


def _scu_options(sc: Scenario) -> dict[str, Any]:
    cfg = sc.scu
    opts: dict[str, Any] = {
        "calling_ae_title": cfg.calling_ae_title,
        "called_ae_title": sc.called_ae_title,
    }
    for key in (
        "max_pdu_length",
        "verbose",
        "transfer_syntax",
        "concurrency",
        "connect_timeout",
        "acse_timeout",
        "dimse_timeout",
        "network_timeout",
        "never_transcode",
        "fail_fast",
    ):
        value = getattr(cfg, key)
        if value is not None:
            opts[key] = value
    return opts


def _run_in_process(
    sc: Scenario, files: list[Path], report: ScenarioReport, timeout: float
) -> Observed:
    from scu import ScuError, StoreScu

    obs = Observed(events=[])
    events = obs.events
    assert events is not None

    with build_mock_scp(sc) as scp:
        sender = StoreScu(scp.addr, **_scu_options(sc))
        for path in files:
            sender.add_file(path)

        def transfer() -> None:
            try:
                obs.result = sender.send(
                    on_transfer_started=lambda ev: events.append(encode_event("started")),
                    on_file_sending=lambda ev: events.append(encode_event("sending")),
                    on_file_sent=lambda ev: events.append(
                        encode_event("sent", ev.status, ev.warning is not None)
                    ),
                    on_file_error=lambda ev: events.append(
                        encode_event("error", getattr(ev, "status", None))
                    ),
                    on_transfer_completed=lambda ev: events.append(encode_event("completed")),
                )
            except ScuError as exc:
                obs.exception = exc
                obs.result = getattr(exc, "result", None)
            except BaseException as exc:  # re-raised in the caller's thread below
                crashed.append(exc)

        # A watchdog thread: a sender that hangs (a bug in it, or in the mock) fails the
        # scenario after `timeout` instead of hanging the suite; stopping the mock closes
        # its sockets, which unblocks the sender.
        crashed: list[BaseException] = []
        worker = threading.Thread(target=transfer, name=f"scenario-{sc.name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            report.error = f"the transfer did not finish within {timeout:g} s"
            scp.stop()
            worker.join(_IDLE_TIMEOUT)
        if crashed:
            raise crashed[0]
        _journal(scp, obs)
    return obs


_PLACEHOLDER = re.compile(r"\{(host|port|addr|calling_ae|called_ae|files)\}")


def format_command(
    template: str, *, host: str, port: int, calling_ae: str, called_ae: str, files: Sequence[Path]
) -> str:
    """Fill ``{host} {port} {addr} {calling_ae} {called_ae} {files}`` (each value shell-quoted;
    ``{files}`` is every file, each quoted). Other braces are left alone."""
    values = {
        "host": shlex.quote(host),
        "port": str(port),
        "addr": shlex.quote(f"{host}:{port}"),
        "calling_ae": shlex.quote(calling_ae),
        "called_ae": shlex.quote(called_ae),
        "files": " ".join(shlex.quote(str(f)) for f in files),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _run_command(
    sc: Scenario, files: list[Path], command: str, report: ScenarioReport, timeout: float
) -> Observed:
    obs = Observed(in_process=False)
    with build_mock_scp(sc) as scp:
        host, port = scp.host, scp.port
        cmd = format_command(
            command,
            host=host,
            port=port,
            calling_ae=sc.scu.calling_ae_title,
            called_ae=sc.called_ae_title,
            files=files,
        )
        # The command is the user's own shell line (it may set variables or use pipes);
        # its own process group lets a timeout kill the sender, not just the shell.
        proc = subprocess.Popen(
            cmd,
            shell=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            report.error = f"the sender did not finish within {timeout:g} s (killed)"
        report.output = _short(output or "", 4000)
        report.expectations.append(
            ExpectationResult("sender exit code", "(informational)", str(proc.returncode), None)
        )
        _journal(scp, obs)
    return obs


def run(
    scenario: Scenario | str | os.PathLike[str],
    *,
    scu_command: str | None = None,
    timeout: float | None = None,
) -> ScenarioReport:
    """Run one scenario and judge it.

    In-process (default): the scenario's MockScp and our StoreScu. With ``scu_command``:
    the MockScp and that shell command (placeholders ``{host} {port} {addr} {calling_ae}
    {called_ae} {files}``). Either sender is given ``timeout`` seconds (default: the
    scenario's ``timeout``) before the run fails (a command is killed). With a command,
    only SCP-journal facts are judged, SCU-side ones are reported as not applicable, and
    a sender that never connects fails the scenario.

    Raises :class:`ScenarioError` for an invalid scenario file; everything that goes wrong
    while running is recorded in the report instead.
    """
    sc = scenario if isinstance(scenario, Scenario) else load(scenario)
    sender = "in-process StoreScu" if scu_command is None else f"command: {scu_command}"
    report = ScenarioReport(sc.name, str(sc.source) if sc.source else None, sender)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scukit-scenario-") as tmp:
        try:
            files = materialize_files(sc, Path(tmp))
            if scu_command is None:
                obs = _run_in_process(sc, files, report, timeout or sc.timeout)
            else:
                obs = _run_command(sc, files, scu_command, report, timeout or sc.timeout)
            report.expectations.extend(judge(sc, obs))
        except Exception as exc:  # a broken run is a failed scenario with the cause, not a crash
            report.error = f"{type(exc).__name__}: {exc}"
    report.duration_seconds = round(time.monotonic() - started, 3)
    return report
