"""Unit tests of the status table (scu.protocol.status): every code StoreScu documents,
classified and described."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scu.protocol.status import StatusCategory, classify, describe, format_status

# Reproducible and quick: these are unit tests, the property suite hunts harder.
_FAST = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SUCCESS, WARNING, FAILURE = StatusCategory.SUCCESS, StatusCategory.WARNING, StatusCategory.FAILURE


@pytest.mark.parametrize(
    ("status", "category", "meaning"),
    [
        (0x0000, SUCCESS, "Success"),
        # Warnings (counted successful).
        (0x0001, WARNING, "optional attributes"),
        (0x0107, WARNING, "attribute list error"),
        (0x0116, WARNING, "out of range"),
        (0xB000, WARNING, "coercion of data elements"),
        (0xB006, WARNING, "elements discarded"),
        (0xB007, WARNING, "does not match SOP class"),
        (0xB001, WARNING, "Warning"),
        (0xB123, WARNING, "Warning"),
        (0xBFFF, WARNING, "Warning"),
        # Failures.
        (0xA700, FAILURE, "out of resources"),
        (0xA7FF, FAILURE, "out of resources"),
        (0xA900, FAILURE, "does not match SOP class"),
        (0xA9FF, FAILURE, "does not match SOP class"),
        (0xC000, FAILURE, "cannot understand"),
        (0xC123, FAILURE, "cannot understand"),
        (0xCFFF, FAILURE, "cannot understand"),
        (0x0122, FAILURE, "SOP class not supported"),
        (0x0110, FAILURE, "processing failure"),
        (0x0111, FAILURE, "duplicate SOP instance"),
        (0x0124, FAILURE, "not authorized"),
        (0x0211, FAILURE, "unrecognized operation"),
        (0x0213, FAILURE, "resource limitation"),
        (0xFE00, FAILURE, "cancelled"),
        (0xFF00, FAILURE, "pending"),
        (0xFF01, FAILURE, "pending"),
        # Unknown codes are failures, never silently successes.
        (0x0002, FAILURE, "unknown status code"),
        (0xA800, FAILURE, "unknown status code"),
        (0xD000, FAILURE, "unknown status code"),
        (0xFE01, FAILURE, "unknown status code"),
        (0xFFFF, FAILURE, "unknown status code"),
    ],
)
def test_classify_and_describe(status: int, category: StatusCategory, meaning: str) -> None:
    assert classify(status) is category
    assert meaning.lower() in describe(status).lower()


@pytest.mark.parametrize("status", [0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007])
def test_exact_warning_texts_say_warning(status: int) -> None:
    assert describe(status).startswith("Warning")


def test_failure_descriptions_are_not_warnings_or_success() -> None:
    for status in (0xA700, 0xA900, 0xC000, 0x0122, 0x0110, 0xFE00, 0x1234):
        text = describe(status)
        assert not text.startswith(("Warning", "Success")), (hex(status), text)


@pytest.mark.parametrize("status", [-1, 0x10000, 0x1FFFF, -0x8000])
def test_out_of_range_raises(status: int) -> None:
    with pytest.raises(ValueError, match=r"status must be 0x0000\.\.0xFFFF"):
        classify(status)
    with pytest.raises(ValueError, match=r"status must be 0x0000\.\.0xFFFF"):
        describe(status)


@_FAST
@given(st.integers(min_value=0, max_value=0xFFFF))
def test_only_0000_is_success_and_warnings_are_the_documented_ones(status: int) -> None:
    category = classify(status)
    assert (category is SUCCESS) == (status == 0)
    documented_warning = status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF
    assert (category is WARNING) == documented_warning
    assert describe(status)


@pytest.mark.parametrize(
    ("status", "comment", "expected"),
    [
        (0x0000, None, "0x0000 (Success)"),
        (0xA700, "disk full", "0xA700 (Refused: out of resources): disk full"),
        (0xB000, "", "0xB000 (Warning: coercion of data elements)"),
        (0xC00F, None, "0xC00F (Error: cannot understand)"),
        (0x0ABC, "x", "0x0ABC (Failure: unknown status code): x"),
    ],
)
def test_format_status(status: int, comment: str | None, expected: str) -> None:
    assert format_status(status, comment) == expected
