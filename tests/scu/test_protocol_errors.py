"""Malformed or unexpected answers from the SCP (a raw-socket SCP): the file in flight
fails with a clear reason, the SCU aborts that association, re-associates and goes on."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from scu import AssociationError, StoreScu
from scu.protocol import pdu as wire
from tests.support.raw_scp import Answer, RawScp, StoreSeen, response_command
from tests.support.recorder import Recorder
from tests.support.scu_helpers import FAST, write_series


def _rsp(seen: StoreSeen, **wrong: int | None) -> tuple[bytes, bool]:
    cmd = response_command(seen, **wrong)  # type: ignore[arg-type]
    return wire.encode_p_data(seen.context_id, cmd, command=True, max_pdu_length=16384), False


def _as_data_set(seen: StoreSeen) -> tuple[bytes, bool]:
    cmd = response_command(seen)
    return wire.encode_p_data(seen.context_id, cmd, command=False, max_pdu_length=16384), False


def _other_context(seen: StoreSeen) -> tuple[bytes, bool]:
    cmd = response_command(seen)
    return wire.encode_p_data(seen.context_id + 2, cmd, command=True, max_pdu_length=16384), False


def _raw(data: bytes, close: bool = False) -> Answer:
    return lambda _seen: (data, close)


#: (answer to the first C-STORE, words the file's error must contain)
MALFORMED: list[tuple[str, Answer, str]] = [
    ("wrong-message-id", lambda s: _rsp(s, message_id=s.message_id + 7), "message"),
    ("no-status", lambda s: _rsp(s, status=None), "status"),
    ("c-find-rsp", lambda s: _rsp(s, command_field=0x8020), "0x8020"),
    ("response-as-data-set", _as_data_set, "data set"),
    ("response-on-another-context", _other_context, "context"),
    ("release-request", _raw(bytes((0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0))), "a-release-rq"),
    ("unknown-pdu-type", _raw(bytes((0x09, 0, 0, 0, 0, 2, 0, 0))), "0x09"),
    ("absurd-pdu-length", _raw(struct.pack(">BxL", 0x04, 0x7FFFFFFF)), "byte pdu"),
    ("garbage-command", _raw(bytes((4, 0, 0, 0, 0, 10, 0, 0, 0, 6, 1, 3, 1, 2, 3, 4))), ""),
    ("half-a-pdu-then-close", _raw(bytes((0x04, 0, 0, 0, 0, 100, 1, 2)), close=True), "clos"),
    ("close-without-answer", _raw(b"", close=True), "closed the connection"),
]


@pytest.mark.parametrize(
    ("answer", "words"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_answer_fails_the_file_and_the_transfer_goes_on(
    tmp_path: Path, answer: Answer, words: str
) -> None:
    files = write_series(tmp_path, 3)
    with RawScp(answers={1: answer}) as scp:
        scu = StoreScu(scp.addr, **FAST)
        for f in files:
            scu.add_file(f)
        rec = Recorder()
        result = scu.send(**rec.callbacks)

    rec.check_invariants(result, files)
    assert [o.ok for o in result.files] == [False, True, True], [o.error for o in result.files]
    error = result.files[0].error or ""
    assert error and words in error.lower(), error
    assert result.files[0].status is None
    assert len(scp.stores) == 3
    assert scp.associations == 2


def test_well_formed_raw_answers_all_succeed(tmp_path: Path) -> None:
    """The raw SCP itself is right: with no fault every file succeeds on one association."""
    files = write_series(tmp_path, 3)
    with RawScp() as scp:
        scu = StoreScu(scp.addr, **FAST)
        for f in files:
            scu.add_file(f)
        result = scu.send()
    assert result.successful == 3
    assert scp.associations == 1


def test_response_in_many_small_fragments_is_reassembled(tmp_path: Path) -> None:
    """A response command split over several P-DATA-TF PDUs (a small max PDU on the
    SCP's side of the wire) is a valid response."""

    def fragmented(seen: StoreSeen) -> tuple[bytes, bool]:
        cmd = response_command(seen, status=0xB000)
        return wire.encode_p_data(seen.context_id, cmd, command=True, max_pdu_length=16), False

    files = write_series(tmp_path, 2)
    with RawScp(answers={1: fragmented}) as scp:
        scu = StoreScu(scp.addr, **FAST)
        for f in files:
            scu.add_file(f)
        result = scu.send()
    assert [o.ok for o in result.files] == [True, True], [o.error for o in result.files]
    assert result.files[0].status == 0xB000 and len(result.warnings) == 1


def test_context_accepted_in_a_syntax_never_offered(tmp_path: Path) -> None:
    """An SCP that accepts a context in a transfer syntax the SCU did not propose: no
    file may go out on it; each fails with a reason, nothing is sent."""
    files = write_series(tmp_path, 2)
    with RawScp(accept_syntax="1.2.840.10008.1.2.4.50") as scp:  # JPEG Baseline
        scu = StoreScu(scp.addr, **FAST)
        for f in files:
            scu.add_file(f)
        rec = Recorder()
        result = scu.send(**rec.callbacks)
    rec.check_invariants(result, files)
    assert result.failed == 2
    assert not scp.stores
    assert all("refused" in (o.error or "") for o in result.files), result.files[0].error


def test_absurd_peer_max_pdu_is_a_clear_error(tmp_path: Path) -> None:
    """An A-ASSOCIATE-AC announcing a Maximum Length of 6 bytes (no room for any PDV
    data): the SCU cannot send, and must say so, not fail with an internal error."""
    files = write_series(tmp_path, 1)
    with RawScp(max_pdu_length=6) as scp:
        scu = StoreScu(scp.addr, **FAST)
        scu.add_file(files[0])
        try:
            result = scu.send()
        except AssociationError as exc:  # refusing the association is fine too
            assert exc.result is not None
            result = exc.result
    error = result.files[0].error or ""
    assert not result.files[0].ok
    assert "internal error" not in error, error


def test_release_never_answered_does_not_hang_or_fail(tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    with RawScp(answer_release=False) as scp:
        scu = StoreScu(scp.addr, **{**FAST, "acse_timeout": 0.5})
        for f in files:
            scu.add_file(f)
        result = scu.send()
    assert result.successful == 2  # the stores were answered; the release is housekeeping
