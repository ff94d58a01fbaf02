"""``scukit serve`` fed text meant for a terminal: UIDs holding a newline, ANSI escapes
and bytes that are not ASCII, and AE titles that try the same. The store is recorded as
the SCU's violation and answered (the UID echoed as it came), and nothing in the output
can forge a line or reach the terminal as a control sequence. Also: binding another
address than loopback prints a warning."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from scu.protocol import dimse, pdu
from scu.protocol.pdu import PduType
from scu.protocol.stream import CommandReceived
from tests.support.hostile import CT, EXPLICIT, RawConn, p_data
from tests.support.serve import serve

#: An Affected SOP Instance UID that tries to end the store line, forge the end of an
#: association and clear the screen, with two bytes that are not ASCII.
FORGED = (
    b"1.2.3\nassociation 99 released: EVIL -> MOCK-SCP, 0 stores\n\x1b[2J\x1b]0;owned\x07\xff\xfe"
)
#: What the data set says (a well-formed UID: the command is the liar).
DATASET = (
    b"\x08\x00\x16\x00UI\x1a\x00" + CT.encode() + b"\x00"
    + b"\x08\x00\x18\x00UI\x06\x001.2.3\x00"
)  # fmt: skip


def _store_forged_uid(port: int) -> tuple[int, bytes]:
    """Associate, store with the forged UID, release; the status and the UID echoed."""
    conn = RawConn.connect(port)
    try:
        assert conn.associate(((1, CT, (EXPLICIT,)),)).pdu_type is PduType.ASSOCIATE_AC
        command = dimse.encode_command(
            [
                (dimse.Tag.AFFECTED_SOP_CLASS_UID, CT),
                (dimse.Tag.COMMAND_FIELD, dimse.C_STORE_RQ),
                (dimse.Tag.MESSAGE_ID, 1),
                (dimse.Tag.PRIORITY, 0),
                (dimse.Tag.DATA_SET_TYPE, 0x0000),
                (dimse.Tag.AFFECTED_SOP_INSTANCE_UID, FORGED),
            ]
        )
        conn.send(p_data(1, command, command=True, last=True))
        conn.send(p_data(1, DATASET, command=False, last=True))
        while True:
            event = conn.next_event()
            if isinstance(event, CommandReceived):
                break
        status = event.command.status
        echoed = event.command.elements[dimse.Tag.AFFECTED_SOP_INSTANCE_UID]
        conn.send(pdu.encode_release_rq())
        assert conn.read_control().pdu_type is PduType.RELEASE_RP
    finally:
        conn.close()
    assert status is not None
    return status, echoed


@pytest.mark.timeout(60)
def test_forged_uids_are_escaped_in_the_text_journal(tmp_path: Path) -> None:
    with serve("--store-dir", str(tmp_path)) as server:
        status, echoed = _store_forged_uid(server.port)
        server.wait_for("association 1 released")
        code, lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert "warning" not in err  # loopback, the default: nothing to warn about
    assert status == 0x0000
    assert echoed.rstrip(b"\x00") == FORGED  # answered with the UID exactly as it came
    text = "\n".join(lines)
    assert not any(ch in text for ch in "\x1b\x07\r"), "a control character reached the output"
    assert text.isascii(), "a non-ASCII byte reached the output"
    # No forged line: every line starts as serve starts its lines.
    starts = re.compile(r"^(listening on |association 1 |store 1 |summary: |  )")
    assert all(starts.match(line) for line in lines), lines
    assert [ln for ln in lines if ln.startswith("association ")] == [
        ln for ln in lines if ln.startswith("association 1 ")
    ]
    assert "1.2.3\\nassociation 99 released" in text
    assert "\\x1b[2J" in text and "\\xff\\xfe" in text
    assert "invalid-uid" in text  # the summary lists the SCU's violation
    # The file is named for the store, not for what the peer claims to be its UID.
    assert sorted(os.listdir(tmp_path)) == ["store-000001.dcm"]


@pytest.mark.timeout(60)
def test_forged_uids_stay_inside_their_json_string() -> None:
    with serve("--json") as server:
        status, _ = _store_forged_uid(server.port)
        server.wait_for('"association-released"')
        code, lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert status == 0x0000
    events = [json.loads(line) for line in lines[1:]]
    assert [e["event"] for e in events] == [
        "association-opened",
        "store-started",
        "store",
        "association-released",
        "summary",
    ]
    assert all(line.isascii() and "\x1b" not in line for line in lines)
    store = events[2]
    assert store["sop_instance_uid"].startswith("1.2.3\nassociation 99 released")
    assert any(v.startswith("invalid-uid") for v in events[-1]["violations"])


@pytest.mark.timeout(60)
def test_forged_ae_titles_are_escaped_too() -> None:
    """AE titles are 16 bytes; a newline, an escape and a non-ASCII byte fit."""
    with serve() as server:
        conn = RawConn.connect(server.port)
        try:
            request = pdu.encode_associate_rq(
                pdu.AssociateRQ("MOCK-SCP", "X", (pdu.ContextProposal(1, CT, (EXPLICIT,)),), 0)
            )
            calling = b"A\nassociation 7\x1b"  # 16 bytes in the calling AE title field
            forged = request[:26] + calling.ljust(16, b" ")[:16] + request[42:]
            conn.send(forged)
            answer = conn.read_control()
            if answer.pdu_type is PduType.ASSOCIATE_AC:
                conn.send(pdu.encode_release_rq())
                conn.read_control()
        finally:
            conn.close()
        server.wait_for("association 1 ")
        code, lines, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    text = "\n".join(lines)
    assert "\x1b" not in text and text.isascii()
    assert not any(line.startswith("association 7") for line in lines), lines
    assert "A\\nassociation 7\\x1b" in text, text  # shown, escaped


@pytest.mark.timeout(60)
def test_serve_on_every_address_warns() -> None:
    with serve("--host", "0.0.0.0") as server:
        assert server.host == "0.0.0.0"
        code, _lines, err = server.stop(signal.SIGTERM)
    assert code == 0
    assert "scukit serve: warning: MockScp binds 0.0.0.0, not a loopback address" in err
