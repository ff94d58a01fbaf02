"""Run a scenario: in-process against our StoreScu, or against any external SCU command,
and judge what was observed against the scenario's expectation groups."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scu.protocol.acse import describe_rejection
from scu.protocol.status import classify, status_label
from scu.protocol.uids import uid_keyword, uid_name

from .command import CommandTemplate, describe_program
from .events import encode_event
from .expectations import SCU_SETTINGS
from .judge import Observed, judge, short
from .loader import build_mock_scp, load, materialize_files
from .model import Scenario
from .report import ExpectationResult, ScenarioReport

__all__ = ["ExpectationResult", "Observed", "ScenarioReport", "run"]

# How long to wait for the mock's server threads to finish after the sender is done.
_IDLE_TIMEOUT = 15.0
# Kept of a sender's output: the start and the end (where the errors are).
_OUTPUT_HEAD, _OUTPUT_TAIL = 1000, 5000


def _journal(scp: Any, obs: Observed, report: ScenarioReport) -> None:
    """Read the mock's journal into ``obs`` and ``report``; the mock's own failures are
    the run's error (they are not the sender's doing)."""
    problems: list[str] = []
    if not scp.wait_idle(_IDLE_TIMEOUT):
        problems.append(f"the mock did not go idle within {_IDLE_TIMEOUT:g} s")
    obs.received = list(scp.received)
    obs.associations = list(scp.associations)
    obs.violations = list(scp.violations)
    obs.unmet_rules = [u for u in (rule.unmet() for rule in scp.rules) if u]
    problems.extend(f"mock error: {exc!r}" for exc in scp.errors)
    if problems and report.error is None:
        report.error = short("; ".join(problems), 600)
    report.associations = [_association(a) for a in obs.associations]
    report.stores = [_store(r) for r in obs.received]


def _association(a: Any) -> dict[str, Any]:
    rejection = None
    if a.rejection is not None:
        result, source, reason = a.rejection
        rejection = {
            "result": result,
            "source": source,
            "reason": reason,
            "description": describe_rejection(result, source, reason),
        }
    return {
        "id": a.id,
        "calling_ae_title": a.calling_ae_title,
        "called_ae_title": a.called_ae_title,
        "max_pdu_length": a.max_pdu_length,
        "proposed_contexts": len(a.proposed_contexts),
        "accepted_contexts": len(a.accepted_contexts),
        "implementation": a.implementation_version_name or a.implementation_class_uid,
        "started_at": round(a.started_at, 6),
        "ended_at": None if a.ended_at is None else round(a.ended_at, 6),
        "ended": a.ended or "open",
        "end_detail": a.end_detail,
        "ended_by": a.ended_by,
        "rejection": rejection,
    }


def _store(r: Any) -> dict[str, Any]:
    return {
        "association_id": r.association_id,
        "nth": r.nth,
        "message_id": r.message_id,
        "sop_class": uid_keyword(r.sop_class_uid),
        "sop_instance_uid": r.sop_instance_uid,
        "transfer_syntax": uid_name(r.transfer_syntax),
        "requested_at": None if r.requested_at is None else round(r.requested_at, 6),
        "received_at": round(r.received_at, 6),
        "answered_at": None if r.answered_at is None else round(r.answered_at, 6),
        "status": None if r.status is None else status_label(r.status),
        "category": None if r.status is None else classify(r.status).value,
        "action": r.action,
        "comment": r.comment,
        "complete": r.complete,
    }


def _scu_options(sc: Scenario) -> dict[str, Any]:
    cfg = sc.scu
    opts: dict[str, Any] = {
        "calling_ae_title": cfg.calling_ae_title,
        "called_ae_title": sc.called_ae_title,
    }
    for key in SCU_SETTINGS:  # the AE titles are set above (the called one per scenario)
        value = getattr(cfg, key)
        if key not in opts and value is not None:
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
        _journal(scp, obs, report)
    return obs


def _folder_of(files: Sequence[Path], folder: Path) -> Path:
    """``folder`` holding every queued file (hard links where possible), named so that
    sorted order is queue order; a duplicate is a second file."""
    folder.mkdir(parents=True)
    width = max(4, len(str(len(files))))
    for i, path in enumerate(files, 1):
        target = folder / f"{i:0{width}d}-{path.name}"
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
    return folder


def _signal_name(returncode: int) -> str | None:
    """The signal that ended a process: a negative return code from Popen, or 128+N as
    a shell reports it (``sh -c`` waits for its child and exits 128+N)."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    try:
        name = signal.Signals(number).name
    except ValueError:
        return None
    if returncode < 0:
        return f"{name} (signal {number})"
    return f"{name} (signal {number}; the shell reported exit status {returncode})"


def _tail(text: str) -> str:
    if len(text) <= _OUTPUT_HEAD + _OUTPUT_TAIL:
        return text
    cut = len(text) - _OUTPUT_HEAD - _OUTPUT_TAIL
    return f"{text[:_OUTPUT_HEAD]}\n[... {cut} characters left out ...]\n{text[-_OUTPUT_TAIL:]}"


def _run_command(
    sc: Scenario,
    files: list[Path],
    template: CommandTemplate,
    report: ScenarioReport,
    timeout: float | None,
    workdir: Path,
) -> Observed:
    plan = template.plan(sc)
    scaled = plan.scenario
    limit = (timeout or sc.timeout) * plan.scale
    obs = Observed(in_process=False, carried=plan.carried, time_limit=limit)
    report.time_limit, report.time_scale = limit, plan.scale
    report.settings = {p: v for p, v in plan.values.items() if template.uses(p)}
    report.not_carried = list(plan.not_carried)
    folder = _folder_of(files, workdir / "dir") if template.uses("dir") else None
    with build_mock_scp(scaled) as scp:
        cmd = template.render(plan, host=scp.host, port=scp.port, files=files, folder=folder)
        report.command = cmd
        report.program = describe_program(cmd)
        started = time.monotonic()
        # The command is the user's own shell line (it may set variables or use pipes);
        # its own process group lets the time limit kill the sender, not just the shell.
        proc = subprocess.Popen(
            cmd,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            obs.timed_out = True
        obs.duration = time.monotonic() - started
        # A child the sender left behind (detached from its output) must not go on
        # talking to the mock while the journal is read.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        report.output = _tail(output or "")
        if not obs.timed_out:
            obs.exit_status = report.exit_status = proc.returncode
            obs.signal = report.signal = _signal_name(proc.returncode)
        _journal(scp, obs, report)
    return obs


def run(
    scenario: Scenario | str | os.PathLike[str],
    *,
    scu_command: str | None = None,
    timeout: float | None = None,
) -> ScenarioReport:
    """Run one scenario and judge it.

    In-process (default): the scenario's MockScp and our StoreScu. With ``scu_command``:
    the MockScp and that shell command (placeholders: see :mod:`scenarios.command`).
    Either sender is given ``timeout`` seconds (default: the scenario's ``timeout``)
    before the run fails (a command is killed). With a command, SCU-side facts are not
    applicable, and a sender that dies by a signal, runs past the time limit or never
    connects fails the scenario.

    Raises :class:`ScenarioError` for an invalid scenario file and ``ValueError`` for a
    command template with a misspelt placeholder; everything that goes wrong while
    running is recorded in the report instead.
    """
    sc = scenario if isinstance(scenario, Scenario) else load(scenario)
    template = CommandTemplate(scu_command) if scu_command is not None else None
    sender = "in-process StoreScu" if scu_command is None else f"command: {scu_command}"
    report = ScenarioReport(sc.name, str(sc.source) if sc.source else None, sender, sc.summary)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scukit-scenario-") as tmp:
        try:
            files = materialize_files(sc, Path(tmp))
            if template is None:
                obs = _run_in_process(sc, files, report, timeout or sc.timeout)
            else:
                obs = _run_command(sc, files, template, report, timeout, Path(tmp))
            report.expectations.extend(judge(sc, obs))
        except Exception as exc:  # a broken run is a failed scenario with the cause, not a crash
            report.error = f"{type(exc).__name__}: {exc}"
    report.duration_seconds = round(time.monotonic() - started, 3)
    return report
