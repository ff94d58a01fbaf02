"""Names the scenario format accepts, as data: DIMSE statuses, A-ASSOCIATE-RJ fields, UIDs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from mock_scp.tables import REJECT_REASONS as _MOCK_REJECT_REASONS
from mock_scp.tables import REJECT_RESULTS as _MOCK_REJECT_RESULTS
from mock_scp.tables import REJECT_SOURCES as _MOCK_REJECT_SOURCES
from mock_scp.tables import STATUS_NAMES as _MOCK_STATUS_NAMES

__all__ = [
    "REJECT_REASONS",
    "REJECT_RESULTS",
    "REJECT_SOURCES",
    "STATUS_NAMES",
    "parse_reject_reason",
    "parse_reject_result",
    "parse_reject_source",
    "parse_status",
    "parse_uid",
    "status_label",
]

# The names come from mock_scp's tables (one source of truth for the mock's Python API
# and the scenario format); scenario files may also write them CamelCase or with
# spaces/underscores/colons ("OutOfResources", "Refused: Out of Resources").
_ALIASES: Mapping[str, int] = {
    "warning": 0xB000,
    "refusedoutofresources": 0xA700,
    "refusedsopclassnotsupported": 0x0122,
    "refusednotauthorized": 0x0124,
    "notauthorised": 0x0124,
    "elementdiscarded": 0xB006,
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_:\-]", "", name).lower()


STATUS_NAMES: Mapping[str, int] = {
    **{_norm(k): v for k, v in _MOCK_STATUS_NAMES.items()},
    **_ALIASES,
}

# The preferred spelling of each code, for reports: the mock's first name for it.
_LABELS: Mapping[int, str] = {
    code: name for name, code in reversed(list(_MOCK_STATUS_NAMES.items()))
}

REJECT_RESULTS = _MOCK_REJECT_RESULTS
REJECT_SOURCES = _MOCK_REJECT_SOURCES
REJECT_REASONS = _MOCK_REJECT_REASONS

_HEX = re.compile(r"^0[xX][0-9a-fA-F]{1,4}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _norm_dashed(name: str) -> str:
    return re.sub(r"[\s_]", "-", name.strip()).lower().replace("recognised", "recognized")


def parse_status(value: object) -> int:
    """A DIMSE status from an int, a hex string ("0xA700") or a standard name."""
    if isinstance(value, bool):
        raise ValueError("a status is a number, a hex string like '0xA700' or a name")
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"status {value} is outside 0x0000..0xFFFF")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _HEX.match(text):
            return int(text, 16)
        if text.isdigit():
            return parse_status(int(text))
        code = STATUS_NAMES.get(_norm(text))
        if code is not None:
            return code
        known = ", ".join(sorted({_LABELS.get(c, hex(c)) for c in STATUS_NAMES.values()}))
        raise ValueError(f"unknown status name {value!r}; use a number, '0xA700' or one of {known}")
    raise ValueError("a status is a number, a hex string like '0xA700' or a name")


def status_label(code: int | None) -> str:
    """``0xA700 (OutOfResources)``; ``none`` when there was no status."""
    if code is None:
        return "none"
    name = _LABELS.get(code)
    return f"0x{code:04X} ({name})" if name else f"0x{code:04X}"


def _lookup(table: Mapping[str, int], value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in table.values():
            raise ValueError(f"{what} {value} is not one of {sorted(set(table.values()))}")
        return value
    if isinstance(value, str):
        code = table.get(_norm_dashed(value))
        if code is not None:
            return code
    raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(table)} or its number")


def parse_reject_result(value: object) -> int:
    """A-ASSOCIATE-RJ result: "permanent"/"transient" or 1/2."""
    return _lookup(REJECT_RESULTS, value, "reject result")


def parse_reject_source(value: object) -> int:
    """A-ASSOCIATE-RJ source by name or number."""
    return _lookup(REJECT_SOURCES, value, "reject source")


def parse_reject_reason(source: int, value: object) -> int:
    """A-ASSOCIATE-RJ reason by name or number, valid for ``source``."""
    return _lookup(REJECT_REASONS[source], value, "reject reason for this source")


@cache
def _uid_keywords() -> dict[str, str]:
    from pydicom._uid_dict import UID_dictionary

    return {entry[4].lower(): uid for uid, entry in UID_dictionary.items() if entry[4]}


def parse_uid(value: object, what: str = "UID") -> str:
    """A UID from a dotted string or a pydicom keyword ("CTImageStorage", "JPEG2000Lossless")."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a {what} is a dotted UID or a keyword such as 'CTImageStorage'")
    text = value.strip()
    if _UID.match(text):
        if len(text) > 64:
            raise ValueError(f"{what} {text!r} is longer than 64 characters")
        return text
    uid = _uid_keywords().get(text.lower())
    if uid is None:
        raise ValueError(f"unknown {what} keyword {text!r} (not a pydicom UID keyword)")
    return uid
