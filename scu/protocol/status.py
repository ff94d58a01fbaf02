"""DIMSE status codes for C-STORE (PS3.4 B.2.3, PS3.7 annex C), as one table.

Each code has a category (success, warning, failure), a name for configuration files
and reports (``"out-of-resources"``), and its meaning in words. Warnings count as
successful transfers; every other non-success code (cancel, pending, which is not valid
for C-STORE, and unknown codes included) is a failure.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

__all__ = [
    "STATUS_NAMES",
    "StatusCategory",
    "classify",
    "describe",
    "format_status",
    "parse_status",
    "status_label",
    "status_name",
]


class StatusCategory(str, Enum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


_S, _W, _F = StatusCategory.SUCCESS, StatusCategory.WARNING, StatusCategory.FAILURE

#: (code, category, name, meaning) for every code with a meaning of its own.
_CODES: tuple[tuple[int, StatusCategory, str, str], ...] = (
    (0x0000, _S, "success", "Success"),
    (0x0001, _W, "optional-attributes-not-supported",
     "Warning: requested optional attributes are not supported"),
    (0x0107, _W, "attribute-list-error", "Warning: attribute list error"),
    (0x0116, _W, "attribute-value-out-of-range", "Warning: attribute value out of range"),
    (0xB000, _W, "coercion-of-data-elements", "Warning: coercion of data elements"),
    (0xB006, _W, "elements-discarded", "Warning: elements discarded"),
    (0xB007, _W, "data-set-does-not-match-sop-class-warning",
     "Warning: data set does not match SOP class"),
    (0xA700, _F, "out-of-resources", "Refused: out of resources"),
    (0xA900, _F, "data-set-does-not-match-sop-class", "Error: data set does not match SOP class"),
    (0xC000, _F, "cannot-understand", "Error: cannot understand"),
    (0x0105, _F, "no-such-attribute", "Failure: no such attribute"),
    (0x0106, _F, "invalid-attribute-value", "Failure: invalid attribute value"),
    (0x0110, _F, "processing-failure", "Failure: processing failure"),
    (0x0111, _F, "duplicate-sop-instance", "Failure: duplicate SOP instance"),
    (0x0112, _F, "no-such-sop-instance", "Failure: no such SOP instance"),
    (0x0117, _F, "invalid-sop-instance", "Failure: invalid SOP instance"),
    (0x0118, _F, "no-such-sop-class", "Failure: no such SOP class"),
    (0x0119, _F, "class-instance-conflict", "Failure: class-instance conflict"),
    (0x0120, _F, "missing-attribute", "Failure: missing attribute"),
    (0x0121, _F, "missing-attribute-value", "Failure: missing attribute value"),
    (0x0122, _F, "sop-class-not-supported", "Refused: SOP class not supported"),
    (0x0124, _F, "not-authorized", "Refused: not authorized"),
    (0x0210, _F, "duplicate-invocation", "Failure: duplicate invocation"),
    (0x0211, _F, "unrecognized-operation", "Failure: unrecognized operation"),
    (0x0212, _F, "mistyped-argument", "Failure: mistyped argument"),
    (0x0213, _F, "resource-limitation", "Failure: resource limitation"),
    (0xFE00, _F, "cancel", "Cancel: the operation was cancelled"),
)  # fmt: skip

#: (first, last, category, meaning), inclusive, for codes not in the table above.
_RANGES: tuple[tuple[int, int, StatusCategory, str], ...] = (
    (0xA700, 0xA7FF, _F, "Refused: out of resources"),
    (0xA900, 0xA9FF, _F, "Error: data set does not match SOP class"),
    (0xC000, 0xCFFF, _F, "Error: cannot understand"),
    (0xB000, 0xBFFF, _W, "Warning"),
    (0xFF00, 0xFF01, _F, "Failure: pending status is not valid for C-STORE"),
)

_BY_CODE: Mapping[int, tuple[StatusCategory, str, str]] = MappingProxyType(
    {code: (category, name, meaning) for code, category, name, meaning in _CODES}
)

#: Other spellings accepted wherever a status name is.
_ALIASES: Mapping[str, int] = {
    "warning": 0xB000,
    "refused-out-of-resources": 0xA700,
    "refused-sop-class-not-supported": 0x0122,
    "refused-not-authorized": 0x0124,
    "not-authorised": 0x0124,
    "element-discarded": 0xB006,
}

#: Every status name (the canonical dashed spelling) and its code.
STATUS_NAMES: Mapping[str, int] = MappingProxyType(
    {**{name: code for code, _c, name, _m in _CODES}, **_ALIASES}
)


def _norm(name: str) -> str:
    """Names match whatever their case and separators: ``OutOfResources``,
    ``out_of_resources`` and ``Refused: Out of Resources`` are the same name."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


_BY_NORM: Mapping[str, int] = {_norm(name): code for name, code in STATUS_NAMES.items()}
_HEX = re.compile(r"\A0[xX][0-9a-fA-F]{1,4}\Z")


def _lookup(status: int) -> tuple[StatusCategory, str]:
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 0xFFFF:
        raise ValueError(f"status must be 0x0000..0xFFFF, got {status!r}")
    known = _BY_CODE.get(status)
    if known is not None:
        return known[0], known[2]
    for first, last, category, meaning in _RANGES:
        if first <= status <= last:
            return category, meaning
    return _F, "Failure: unknown status code"


def classify(status: int) -> StatusCategory:
    """Category of a C-STORE response status."""
    return _lookup(status)[0]


def describe(status: int) -> str:
    """The meaning of a status in words, e.g. ``"Refused: out of resources"``."""
    return _lookup(status)[1]


def status_name(status: int) -> str | None:
    """The name of a code with a meaning of its own (``"out-of-resources"``), else ``None``."""
    known = _BY_CODE.get(status)
    return known[1] if known else None


def format_status(status: int, comment: str | None = None) -> str:
    """``"0xA700 (Refused: out of resources): disk full"``."""
    text = f"0x{status:04X} ({describe(status)})"
    return f"{text}: {comment}" if comment else text


def status_label(status: int | None) -> str:
    """``"0xA700 (out-of-resources)"`` for reports; ``"none"`` when there was no status."""
    if status is None:
        return "none"
    name = status_name(status)
    return f"0x{status:04X} ({name})" if name else f"0x{status:04X}"


def parse_status(value: object, *, parameter: str = "status") -> int:
    """A status from an int 0x0000..0xFFFF, a hex string (``"0xA700"``), a decimal
    string, or a name; ``ValueError`` naming ``parameter`` with a did-you-mean."""
    if isinstance(value, bool):
        raise ValueError(f"{parameter}: expected a status code or name, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"{parameter}: {value:#x} is outside 0x0000..0xFFFF")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _HEX.match(text):
            return int(text, 16)
        if text.isascii() and text.isdigit():
            return parse_status(int(text), parameter=parameter)
        code = _BY_NORM.get(_norm(text))
        if code is not None:
            return code
        close = difflib.get_close_matches(_norm(text), list(_BY_NORM), n=1, cutoff=0.6)
        hint = ""
        if close:
            suggestion = next(n for n in STATUS_NAMES if _norm(n) == close[0])
            hint = f"; did you mean {suggestion!r}?"
        raise ValueError(
            f"{parameter}: unknown status {value!r}{hint} (use a code such as 0xA700 or a "
            f"name: {', '.join(STATUS_NAMES)})"
        )
    raise ValueError(f"{parameter}: expected a status code or name, got {value!r}")
