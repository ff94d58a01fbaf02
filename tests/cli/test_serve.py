"""``scukit serve`` as a subprocess, with DCMTK's echoscu/storescu as the clients."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.support.scu_helpers import write_series
from tests.support.serve import WAIT, scukit, serve
from tests.support.tools import dcmtk_env, dcmtk_tool

pytestmark = pytest.mark.interop

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "valid"
CT = FIXTURES / "ct_explicit_le.dcm"
MR = FIXTURES / "mr_explicit_be.dcm"


def dcmtk(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk_tool(tool), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=dcmtk_env(),
        check=False,
    )


def test_text_journal_and_sigterm_summary() -> None:
    with serve() as server:
        assert server.first_line == f"listening on 127.0.0.1:{server.port}"
        assert server.port > 0
        echo = dcmtk("echoscu", "-aec", "MOCK-SCP", server.host, str(server.port))
        assert echo.returncode == 0, echo.stderr
        sent = dcmtk(
            "storescu", "-aec", "MOCK-SCP", server.host, str(server.port), str(CT), str(MR)
        )
        assert sent.returncode == 0, sent.stderr
        server.wait_for("association 2 released")
        code, lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    text = "\n".join(lines)
    assert "association 1 opened: ECHOSCU -> MOCK-SCP" in text
    assert "association 1 released" in text
    ct_uid = pydicom.dcmread(CT).SOPInstanceUID
    assert f"store 1 (association 2, message 1): CTImageStorage {ct_uid}" in text
    assert "store 2 (association 2, message 2): MRImageStorage" in text
    assert "summary: 2 stores, 2 associations, 0 violations, 0 server errors" in text
    assert "  statuses: 0x0000 x2" in text
    assert "  associations: released x2" in text


def test_json_lines_and_sigint_summary() -> None:
    with serve("--json", "--ae-title", "PACS") as server:
        sent = dcmtk("storescu", "-aec", "PACS", server.host, str(server.port), str(CT))
        assert sent.returncode == 0, sent.stderr
        server.wait_for('"association-released"')
        code, lines, err = server.stop(signal.SIGINT)
    assert code == 0, err
    events = [json.loads(line) for line in lines[1:]]  # every line after the first is JSON
    assert [e["event"] for e in events] == [
        "association-opened",
        "store-started",
        "store",
        "association-released",
        "summary",
    ]
    opened, started, store, _, summary = events
    assert (started["nth"], started["sop_instance_uid"]) == (1, store["sop_instance_uid"])
    assert opened["called_ae_title"] == "PACS" and opened["calling_ae_title"] == "STORESCU"
    assert opened["accepted_contexts"]
    assert store["sop_instance_uid"] == pydicom.dcmread(CT).SOPInstanceUID
    assert (store["status"], store["action"]) == (0, "accept")
    assert summary["stores"] == 1
    assert summary["statuses"] == {"0x0000": 1}
    assert summary["association_ends"] == {"released": 1}
    assert summary["violations"] == [] and summary["errors"] == []


def test_store_dir_receives_the_files(tmp_path: Path) -> None:
    out = tmp_path / "received"
    with serve("--store-dir", str(out)) as server:
        sent = dcmtk("storescu", "-aec", "MOCK-SCP", server.host, str(server.port), str(CT))
        assert sent.returncode == 0, sent.stderr
        server.wait_for("released")
        code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    written = list(out.rglob("*"))
    files = [p for p in written if p.is_file()]
    assert len(files) == 1
    assert pydicom.dcmread(files[0]).SOPInstanceUID == pydicom.dcmread(CT).SOPInstanceUID


def test_scenario_rules_reach_dcmtk(tmp_path: Path) -> None:
    scenario = tmp_path / "full-disk.yaml"
    scenario.write_text(
        """\
name: full-disk
description: The second store is refused with Out of Resources.
scp:
  ae_title: PACS
  rules:
    - nth: 2
      fail: {status: 0xA700, comment: "storage area full"}
files:
  - generate: {count: 2, sop_class: CTImageStorage}
expect:
  total: 2
"""
    )
    with serve("--scenario", str(scenario), "--port", "0") as server:
        sent = dcmtk(
            "storescu", "-v", "-aec", "PACS", server.host, str(server.port), str(CT), str(MR)
        )
        server.wait_for("released")
        code, lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    # DCMTK sees exactly the status the rule gave, for the second file only.
    responses = re.findall(r"Received Store Response \(([^)]*)\)", sent.stdout + sent.stderr)
    assert responses == ["Success", "Refused: OutOfResources"], sent.stderr
    text = "\n".join(lines)
    assert 'status 0xA700 (fail) "storage area full"' in text
    assert "statuses: 0x0000 x1, 0xA700 x1" in text


def test_scenario_reject_surfaces_in_echoscu(tmp_path: Path) -> None:
    scenario = tmp_path / "busy.yaml"
    scenario.write_text(
        """\
name: busy
description: Every association is rejected as transient congestion.
scp:
  ae_title: PACS
  reject_associations:
    - {result: transient, source: service-provider-presentation, reason: temporary-congestion}
files:
  - generate: {count: 1}
expect:
  raises: AssociationRejected
"""
    )
    with serve("--scenario", str(scenario)) as server:
        echo = dcmtk("echoscu", "-aec", "PACS", server.host, str(server.port))
        server.wait_for("rejected")
        code, lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert echo.returncode != 0
    assert "reject" in (echo.stdout + echo.stderr).lower()
    assert "associations: rejected x1" in "\n".join(lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "/nonexistent/scenario.yaml"], "scenario.yaml"),
        (["--ae-title", "A" * 17], "ae_title"),
    ],
)
def test_configuration_errors_exit_2_before_listening(args: list[str], message: str) -> None:
    done = subprocess.run(
        [*scukit(), "serve", *args], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert done.returncode == 2
    assert "listening on" not in done.stdout
    assert message in done.stderr


def test_runs_without_the_dispatcher() -> None:
    with serve(command=[sys.executable, "-m", "mock_scp.cli"]) as server:
        echo = dcmtk("echoscu", server.host, str(server.port))
        assert echo.returncode == 0, echo.stderr
        server.wait_for("released")
        code, lines, err = server.stop(signal.SIGINT)
    assert code == 0, err
    assert lines[-4] == "summary: 0 stores, 1 associations, 0 violations, 0 server errors"


def test_invalid_scenario_names_file_line_and_field(tmp_path: Path) -> None:
    scenario = tmp_path / "typo.yaml"
    scenario.write_text("name: typo\ndescription: x\nscp:\n  rulez: []\nfiles: []\nexpect: {}\n")
    done = subprocess.run(
        [*scukit(), "serve", "--scenario", str(scenario)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 2
    assert f"{scenario}:4" in done.stderr and "rulez" in done.stderr


def test_sigterm_with_an_association_open_aborts_it_and_exits_0(tmp_path: Path) -> None:
    scenario = tmp_path / "stall.yaml"
    scenario.write_text(
        """\
name: stall
description: The first store stalls for longer than anyone waits.
scp:
  ae_title: PACS
  rules:
    - nth: 1
      stall: 600
files:
  - generate: {count: 1}
expect:
  total: 1
"""
    )
    with serve("--scenario", str(scenario), "-v") as server:
        sender = subprocess.Popen(
            [dcmtk_tool("storescu"), "-v", "-aec", "PACS", server.host, str(server.port), str(CT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # DCMTK logs to stderr, unbuffered
            text=True,
            env=dcmtk_env(),
        )
        try:
            assert sender.stderr is not None
            log = []
            # Stop the server only once the request is on the wire, so the store is in
            # the journal (stalled) when SIGTERM arrives.
            while not any("Sending Store Request" in line for line in log):
                line = sender.stderr.readline()
                assert line, f"storescu ended early: {log}"
                log.append(line)
            server.wait_for("association 1 opened")
            # storescu logs "Sending Store Request" before the bytes leave; the server's
            # own line says the request has arrived.
            server.wait_for("store 1 started")
            code, lines, err = server.stop(signal.SIGTERM)
            sender_out = "".join(log) + sender.communicate(timeout=WAIT)[1]
        finally:
            if sender.poll() is None:
                sender.kill()
    assert code == 0, err
    text = "\n".join(lines)
    assert "association 1 aborted" in text
    assert "statuses: no response x1" in text
    assert "associations: aborted x1" in text
    # The sender sees an abort for the file in flight, not a hang.
    assert "Store Failed" in sender_out, sender_out


def test_a_reader_that_never_reads_never_holds_up_a_store(tmp_path: Path) -> None:
    """stdout is a pipe nobody reads after the first line: every store is answered
    anyway (the pipe fills after a few hundred lines), and the lines that could not be
    printed are counted in a line of their own, not lost silently."""
    folder = tmp_path / "many"
    write_series(folder, 1500, rows=8, columns=8)
    proc = subprocess.Popen(
        [*scukit(), "serve", "--ae-title", "PACS"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        port = first.rsplit(":", 1)[1].strip()
        sent = dcmtk("storescu", "+sd", "-aec", "PACS", "127.0.0.1", port, str(folder))
        assert sent.returncode == 0, sent.stderr[-2000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    text = out.decode()
    assert "summary: 1500 stores, 1 associations, 0 violations, 0 server errors" in text
    printed = len(re.findall(r"^store \d+ ", text, re.M))
    dropped = sum(int(n) for n in re.findall(r"^\.\.\. (\d+) events not printed", text, re.M))
    assert printed + dropped == 1500 + 0, (printed, dropped)


def test_quiet_prints_associations_and_the_summary_only() -> None:
    with serve("--quiet") as server:
        sent = dcmtk("storescu", "-aec", "MOCK-SCP", server.host, str(server.port), str(CT))
        assert sent.returncode == 0, sent.stderr
        server.wait_for("association 1 released")
        code, lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert not [line for line in lines if line.startswith("store ")]
    assert "summary: 1 stores, 1 associations, 0 violations, 0 server errors" in lines


def test_events_beyond_the_backlog_are_counted_then_reported() -> None:
    """The printer is stuck on a blocked stream while stores keep coming: the server
    thread never waits; what does not fit the backlog is counted and said."""
    import io
    import threading

    from mock_scp.cli import _Reporter
    from mock_scp.journal import ReceivedStore
    from mock_scp.storage import Payload

    gate = threading.Event()

    class Blocked(io.StringIO):
        def write(self, text: str) -> int:
            gate.wait(10)
            return super().write(text)

    class Small(_Reporter):
        BACKLOG = 3

    out = Blocked()
    reporter = Small(out, as_json=False, verbose=False, quiet=False)
    for nth in range(1, 11):
        reporter(
            ReceivedStore(
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=f"1.2.{nth}",
                transfer_syntax="1.2.840.10008.1.2.1", calling_ae_title="A",
                called_ae_title="B", association_id=1, message_id=nth, status=0,
                action="accept", nth=nth, payload=Payload.of(b""),
            )
        )  # fmt: skip
    gate.set()
    reporter.close()
    lines = out.getvalue().splitlines()
    stores = [line for line in lines if line.startswith("store ")]
    (note,) = [line for line in lines if "events not printed" in line]
    dropped = int(note.split()[1])
    assert dropped > 0 and len(stores) + dropped == 10
