"""The event-pattern language and per-file outcome lists (pure logic)."""

from __future__ import annotations

import pytest

from scenarios.events import Outcome, PatternError, compile_pattern, encode_event, parse_outcome

S, C = encode_event("started"), encode_event("completed")
SENDING = encode_event("sending")
OK = encode_event("sent", 0x0000)
WARN = encode_event("sent", 0xB000, warned=True)
FAIL = encode_event("error", 0xA700)
ABORTED = encode_event("error", None)


def matches(pattern: str, *events: str) -> bool:
    return compile_pattern(pattern).fullmatch("".join(events)) is not None


def test_sequence_alternation_and_star() -> None:
    p = "started, (sending, sent|error)*, completed"
    assert matches(p, S, C)
    assert matches(p, S, SENDING, OK, SENDING, FAIL, SENDING, WARN, C)
    # an error without a preceding sending does not fit this pattern...
    assert not matches(p, S, FAIL, C)
    # ...but fits one that allows it
    assert matches("started, (sending?, sent|error)*, completed", S, FAIL, SENDING, OK, C)


def test_the_whole_sequence_must_match() -> None:
    assert not matches("started, (sending, sent)*", S, SENDING, OK, C)
    assert not matches("(sending, sent)*, completed", S, SENDING, OK, C)


def test_counts_and_ranges() -> None:
    assert matches("started, (sending, sent){2}, completed", S, SENDING, OK, SENDING, OK, C)
    assert not matches("started, (sending, sent){3}, completed", S, SENDING, OK, SENDING, OK, C)
    assert matches("started, (sending, sent){1,3}, completed", S, SENDING, OK, C)
    assert matches("started, error+, completed", S, FAIL, ABORTED, C)


def test_warned_and_status_filters() -> None:
    assert matches("started, sending, warned, completed", S, SENDING, WARN, C)
    assert not matches("started, sending, warned, completed", S, SENDING, OK, C)
    assert matches("started, sending, sent, completed", S, SENDING, WARN, C)  # a warning is sent
    assert matches("started, sending, sent[0xB000], completed", S, SENDING, WARN, C)
    assert matches("started, sending, error[OutOfResources], completed", S, SENDING, FAIL, C)
    assert not matches("started, sending, error[none], completed", S, SENDING, FAIL, C)
    assert matches("started, sending, error[none], completed", S, SENDING, ABORTED, C)
    assert matches("started, sending, sent[Success], completed", S, SENDING, OK, C)


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        ("", "empty"),
        ("started, (sending", "missing ')'"),
        ("started, sent[NoSuchStatus]", "unknown status"),
        ("started, boom", "unknown event name"),
        ("started,, completed", "expected an event name"),
        ("started, completed)", "unexpected ')'"),
        ("started; completed", "unexpected"),
    ],
)
def test_pattern_errors(pattern: str, needle: str) -> None:
    with pytest.raises(PatternError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        compile_pattern(pattern)


def test_outcomes() -> None:
    assert parse_outcome("success") == Outcome("success")
    assert parse_outcome("failed 0xA700") == Outcome("failed", 0xA700, any_status=False)
    assert parse_outcome("warning ElementsDiscarded") == Outcome(
        "warning", 0xB006, any_status=False
    )
    assert parse_outcome("failed none") == Outcome("failed", None, any_status=False)
    observed = Outcome("failed", 0xA700, any_status=False)
    assert parse_outcome("failed").matches(observed)
    assert parse_outcome("failed 0xA700").matches(observed)
    assert not parse_outcome("failed none").matches(observed)
    assert not parse_outcome("warning").matches(observed)
    with pytest.raises(ValueError, match="success, warning or failed"):
        parse_outcome("sent")
