"""Data tables of the mock SCP: status names, association-reject names, default
SOP classes and transfer syntaxes, and the validators that turn user arguments
(names or numbers, keywords or UIDs) into wire values at configuration time.

Every validator raises :class:`ValueError` naming the argument and the accepted values,
so a typo in a test fails where it was written, not in a server thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from types import MappingProxyType

from pydicom.uid import UID
from pynetdicom import sop_class as _sop_class

__all__ = [
    "DEFAULT_SOP_CLASSES",
    "DEFAULT_TRANSFER_SYNTAXES",
    "EXPLICIT_VR_LE",
    "IMPLICIT_VR_LE",
    "REJECT_REASONS",
    "REJECT_RESULTS",
    "REJECT_SOURCES",
    "STATUS_NAMES",
    "VERIFICATION_SOP_CLASS",
    "is_failure_status",
    "is_warning_status",
    "parse_ae_title",
    "parse_reject",
    "parse_status",
    "parse_uid",
]

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"

#: C-STORE status names (PS3.4 annex B, PS3.7 annex C) accepted wherever a status is.
STATUS_NAMES: Mapping[str, int] = MappingProxyType(
    {
        "success": 0x0000,
        # warnings
        "optional-attributes-not-supported": 0x0001,
        "attribute-list-error": 0x0107,
        "attribute-value-out-of-range": 0x0116,
        "coercion-of-data-elements": 0xB000,
        "elements-discarded": 0xB006,
        "data-set-does-not-match-sop-class-warning": 0xB007,
        # failures
        "out-of-resources": 0xA700,
        "data-set-does-not-match-sop-class": 0xA900,
        "cannot-understand": 0xC000,
        "no-such-attribute": 0x0105,
        "invalid-attribute-value": 0x0106,
        "processing-failure": 0x0110,
        "duplicate-sop-instance": 0x0111,
        "no-such-sop-instance": 0x0112,
        "invalid-sop-instance": 0x0117,
        "no-such-sop-class": 0x0118,
        "class-instance-conflict": 0x0119,
        "missing-attribute": 0x0120,
        "missing-attribute-value": 0x0121,
        "sop-class-not-supported": 0x0122,
        "not-authorized": 0x0124,
        "duplicate-invocation": 0x0210,
        "unrecognized-operation": 0x0211,
        "mistyped-argument": 0x0212,
        "resource-limitation": 0x0213,
        "cancel": 0xFE00,
    }
)

_WARNING_EXACT = frozenset({0x0001, 0x0107, 0x0116})

#: A-ASSOCIATE-RJ result (PS3.8 9.3.4).
REJECT_RESULTS: Mapping[str, int] = MappingProxyType(
    {"permanent": 1, "rejected-permanent": 1, "transient": 2, "rejected-transient": 2}
)
#: A-ASSOCIATE-RJ source; the short "provider-..." forms are aliases.
REJECT_SOURCES: Mapping[str, int] = MappingProxyType(
    {
        "service-user": 1,
        "user": 1,
        "service-provider-acse": 2,
        "provider-acse": 2,
        "service-provider-presentation": 3,
        "provider-presentation": 3,
    }
)
#: A-ASSOCIATE-RJ reasons by source number; British spellings are aliases.
REJECT_REASONS: Mapping[int, Mapping[str, int]] = MappingProxyType(
    {
        1: MappingProxyType(
            {
                "no-reason-given": 1,
                "application-context-name-not-supported": 2,
                "calling-ae-title-not-recognized": 3,
                "calling-ae-title-not-recognised": 3,
                "called-ae-title-not-recognized": 7,
                "called-ae-title-not-recognised": 7,
            }
        ),
        2: MappingProxyType({"no-reason-given": 1, "protocol-version-not-supported": 2}),
        3: MappingProxyType({"temporary-congestion": 1, "local-limit-exceeded": 2}),
    }
)
# Numeric reasons allowed per source (reserved values included, so an SCU's handling
# of odd but legal codes can be tested).
_REASON_RANGES: Mapping[int, range] = MappingProxyType(
    {1: range(1, 11), 2: range(1, 3), 3: range(0, 8)}
)


def _storage_classes() -> tuple[str, ...]:
    # pynetdicom's table of the Storage Service Class (every storage SOP class it knows).
    table: Mapping[str, str] = _sop_class._STORAGE_CLASSES
    return tuple(dict.fromkeys(str(uid) for uid in table.values()))


#: Every storage SOP class known to pynetdicom.
DEFAULT_SOP_CLASSES: tuple[str, ...] = _storage_classes()

#: Accepted by default, in the mock's own preference order (used only after Explicit
#: and Implicit VR Little Endian, which are always preferred when proposed).
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a well-formed UID (PS3.5 9.1): digits and dots, no leading
    zeros in a component, at most 64 characters."""
    return len(value) <= 64 and _UID_RE.match(value) is not None


@cache
def _keywords() -> dict[str, str]:
    from pydicom._uid_dict import UID_dictionary  # deferred: the table is large

    return {entry[4]: str(UID(uid)) for uid, entry in UID_dictionary.items() if entry[4]}


def parse_uid(value: object, *, argument: str) -> str:
    """A UID or a pydicom UID keyword (``"CTImageStorage"``,
    ``"ExplicitVRLittleEndian"``) -> the UID string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{argument}: expected a UID or a UID keyword, got {value!r}")
    if value[0].isdigit():
        if not is_valid_uid(value):
            raise ValueError(
                f"{argument}: malformed UID {value!r} (digits and dots, no leading zeros, "
                "at most 64 characters)"
            )
        return value
    found = _keywords().get(value)
    if found is not None:
        return found
    raise ValueError(
        f"{argument}: {value!r} is neither a UID nor a known UID keyword "
        "(e.g. 'CTImageStorage', 'ExplicitVRLittleEndian')"
    )


def parse_uids(values: Iterable[object], *, argument: str) -> tuple[str, ...]:
    """Several UIDs or keywords, order kept, duplicates dropped."""
    if isinstance(values, str):
        raise ValueError(f"{argument}: expected a list of UIDs, got the single string {values!r}")
    out = tuple(dict.fromkeys(parse_uid(v, argument=argument) for v in values))
    if not out:
        raise ValueError(f"{argument}: must not be empty")
    return out


def parse_ae_title(value: object, *, argument: str) -> str:
    """An AE title: 1-16 characters of the default repertoire, no backslash or control
    characters, not only spaces. Returned stripped."""
    if not isinstance(value, str):
        raise ValueError(f"{argument}: expected a string of 1-16 characters, got {value!r}")
    stripped = value.strip(" ")
    if not stripped or len(value) > 16:
        raise ValueError(f"{argument}: must be 1-16 characters and not only spaces, got {value!r}")
    if any(c == "\\" or ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise ValueError(
            f"{argument}: only printable ASCII without backslash is allowed, got {value!r}"
        )
    return stripped


def _names(table: Mapping[str, int]) -> str:
    return ", ".join(repr(k) for k in table)


def parse_status(value: object, *, argument: str = "status") -> int:
    """A status as an int 0x0000-0xFFFF or a name from :data:`STATUS_NAMES`."""
    if isinstance(value, bool):
        raise ValueError(f"{argument}: expected an int or a status name, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"{argument}: must be within 0x0000..0xFFFF, got {value:#x}")
        return value
    if isinstance(value, str) and value in STATUS_NAMES:
        return STATUS_NAMES[value]
    raise ValueError(
        f"{argument}: unknown status {value!r}; use an int 0x0000..0xFFFF or one of "
        f"{_names(STATUS_NAMES)}"
    )


def is_warning_status(status: int) -> bool:
    """A C-STORE warning: 0x0001, 0x0107, 0x0116 or 0xBxxx."""
    return status in _WARNING_EXACT or 0xB000 <= status <= 0xBFFF


def is_failure_status(status: int) -> bool:
    """Anything but success, warning or pending."""
    return status != 0 and not is_warning_status(status) and status not in (0xFF00, 0xFF01)


def _parse_named(
    value: object, table: Mapping[str, int], valid: Iterable[int], argument: str
) -> int:
    allowed = sorted(set(valid))
    if isinstance(value, int) and not isinstance(value, bool):
        if value in allowed:
            return value
        raise ValueError(f"{argument}: {value!r} is not one of {allowed} or {_names(table)}")
    if isinstance(value, str) and value in table:
        return table[value]
    raise ValueError(
        f"{argument}: unknown value {value!r}; use one of {_names(table)} or {allowed}"
    )


def parse_reject(result: object, source: object, reason: object) -> tuple[int, int, int]:
    """Validate an A-ASSOCIATE-RJ triple given by names or numbers."""
    r = _parse_named(result, REJECT_RESULTS, (1, 2), "result")
    s = _parse_named(source, REJECT_SOURCES, (1, 2, 3), "source")
    reason_names = REJECT_REASONS[s]
    reason_number = _parse_named(reason, reason_names, _REASON_RANGES[s], f"reason (source {s})")
    return r, s, reason_number
