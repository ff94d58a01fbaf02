"""DIMSE status codes for C-STORE (PS3.4 B.2.3, PS3.7 annex C) as data.

:func:`classify` says whether a status counts as success, warning or failure, and
:func:`describe` gives its meaning in words. Warnings count as successful transfers;
every other non-success code (cancel and unknown codes included) is a failure.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["StatusCategory", "classify", "describe", "format_status"]


class StatusCategory(str, Enum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


# Exact codes first; ranges below.
_EXACT: dict[int, tuple[StatusCategory, str]] = {
    0x0000: (StatusCategory.SUCCESS, "Success"),
    0x0001: (StatusCategory.WARNING, "Warning: requested optional attributes are not supported"),
    0x0107: (StatusCategory.WARNING, "Warning: attribute list error"),
    0x0116: (StatusCategory.WARNING, "Warning: attribute value out of range"),
    0xB000: (StatusCategory.WARNING, "Warning: coercion of data elements"),
    0xB006: (StatusCategory.WARNING, "Warning: elements discarded"),
    0xB007: (StatusCategory.WARNING, "Warning: data set does not match SOP class"),
    0x0105: (StatusCategory.FAILURE, "Failure: no such attribute"),
    0x0106: (StatusCategory.FAILURE, "Failure: invalid attribute value"),
    0x0110: (StatusCategory.FAILURE, "Failure: processing failure"),
    0x0111: (StatusCategory.FAILURE, "Failure: duplicate SOP instance"),
    0x0112: (StatusCategory.FAILURE, "Failure: no such SOP instance"),
    0x0117: (StatusCategory.FAILURE, "Failure: invalid SOP instance"),
    0x0118: (StatusCategory.FAILURE, "Failure: no such SOP class"),
    0x0119: (StatusCategory.FAILURE, "Failure: class-instance conflict"),
    0x0120: (StatusCategory.FAILURE, "Failure: missing attribute"),
    0x0121: (StatusCategory.FAILURE, "Failure: missing attribute value"),
    0x0122: (StatusCategory.FAILURE, "Refused: SOP class not supported"),
    0x0124: (StatusCategory.FAILURE, "Refused: not authorized"),
    0x0210: (StatusCategory.FAILURE, "Failure: duplicate invocation"),
    0x0211: (StatusCategory.FAILURE, "Failure: unrecognized operation"),
    0x0212: (StatusCategory.FAILURE, "Failure: mistyped argument"),
    0x0213: (StatusCategory.FAILURE, "Failure: resource limitation"),
    0xFE00: (StatusCategory.FAILURE, "Cancel: the operation was cancelled"),
}

# (first, last, category, meaning), inclusive.
_RANGES: tuple[tuple[int, int, StatusCategory, str], ...] = (
    (0xA700, 0xA7FF, StatusCategory.FAILURE, "Refused: out of resources"),
    (0xA900, 0xA9FF, StatusCategory.FAILURE, "Error: data set does not match SOP class"),
    (0xC000, 0xCFFF, StatusCategory.FAILURE, "Error: cannot understand"),
    (0xB000, 0xBFFF, StatusCategory.WARNING, "Warning"),
    (0xFF00, 0xFF01, StatusCategory.FAILURE, "Failure: pending status is not valid for C-STORE"),
)


def _lookup(status: int) -> tuple[StatusCategory, str]:
    if not 0 <= status <= 0xFFFF:
        raise ValueError(f"status must be 0x0000..0xFFFF, got {status!r}")
    if status in _EXACT:
        return _EXACT[status]
    for first, last, category, meaning in _RANGES:
        if first <= status <= last:
            return category, meaning
    return StatusCategory.FAILURE, "Failure: unknown status code"


def classify(status: int) -> StatusCategory:
    """Category of a C-STORE response status."""
    return _lookup(status)[0]


def describe(status: int) -> str:
    """The meaning of a status in words, e.g. ``"Refused: out of resources"``."""
    return _lookup(status)[1]


def format_status(status: int, comment: str | None = None) -> str:
    """``"0xA700 (Refused: out of resources): disk full"``."""
    text = f"0x{status:04X} ({describe(status)})"
    return f"{text}: {comment}" if comment else text
