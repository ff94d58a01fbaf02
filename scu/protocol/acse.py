"""Association control facts as data: A-ASSOCIATE-RJ results, sources and reasons
(PS3.8 9.3.4), A-ABORT sources and reasons (PS3.8 9.3.8), presentation context results
(PS3.8 9.3.3.2), with the names configuration files use and the words reports use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = [
    "ABORT_REASONS",
    "ABORT_SOURCES",
    "CONTEXT_RESULTS",
    "REJECT_REASONS",
    "REJECT_RESULTS",
    "REJECT_SOURCES",
    "describe_abort",
    "describe_context_result",
    "describe_rejection",
    "parse_reject",
    "parse_reject_reason",
    "parse_reject_result",
    "parse_reject_source",
]

#: A-ASSOCIATE-RJ result by name.
REJECT_RESULTS: Mapping[str, int] = MappingProxyType(
    {"permanent": 1, "rejected-permanent": 1, "transient": 2, "rejected-transient": 2}
)
#: A-ASSOCIATE-RJ source by name; the short "provider-..." forms are aliases.
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
#: A-ASSOCIATE-RJ reasons by source number, by name; British spellings are aliases.
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
#: Reason numbers a source may send, reserved values included (an SCU's handling of odd
#: but legal codes is worth testing).
_REASON_RANGES: Mapping[int, range] = MappingProxyType(
    {1: range(1, 11), 2: range(1, 3), 3: range(0, 8)}
)

_REJECT_WORDS: Mapping[tuple[int, int], str] = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 0): "reserved",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
_RESULT_WORDS = {1: "rejected-permanent", 2: "rejected-transient"}
_SOURCE_WORDS = {
    1: "service user",
    2: "service provider (ACSE)",
    3: "service provider (presentation)",
}

ABORT_SOURCES: Mapping[int, str] = MappingProxyType(
    {0: "service user", 1: "reserved", 2: "service provider"}
)
ABORT_REASONS: Mapping[int, str] = MappingProxyType(
    {
        0: "reason not specified",
        1: "unrecognised PDU",
        2: "unexpected PDU",
        4: "unrecognised PDU parameter",
        5: "unexpected PDU parameter",
        6: "invalid PDU parameter value",
    }
)

CONTEXT_RESULTS: Mapping[int, str] = MappingProxyType(
    {
        0: "acceptance",
        1: "user rejection",
        2: "no reason (provider rejection)",
        3: "abstract syntax not supported (provider rejection)",
        4: "transfer syntaxes not supported (provider rejection)",
    }
)


def describe_rejection(result: int, source: int, reason: int) -> str:
    """``"called AE title not recognised (rejected-permanent, source: service user)"``."""
    words = _REJECT_WORDS.get((source, reason), f"reason {reason}")
    return (
        f"{words} ({_RESULT_WORDS.get(result, f'result {result}')}, "
        f"source: {_SOURCE_WORDS.get(source, f'source {source}')})"
    )


def describe_abort(source: int, reason: int) -> str:
    text = f"source: {ABORT_SOURCES.get(source, source)}"
    if source == 2:
        text += f", reason: {ABORT_REASONS.get(reason, reason)}"
    return text


def describe_context_result(result: int) -> str:
    return CONTEXT_RESULTS.get(result, f"result {result}")


def _names(table: Mapping[str, int]) -> str:
    return ", ".join(repr(k) for k in table)


def _norm(name: str) -> str:
    return (
        name.strip().lower().replace("_", "-").replace(" ", "-").replace("recognised", "recognized")
    )


def _parse_named(value: object, table: Mapping[str, int], valid: Iterable[int], what: str) -> int:
    allowed = sorted(set(valid))
    if isinstance(value, int) and not isinstance(value, bool):
        if value in allowed:
            return value
        raise ValueError(f"{what}: {value!r} is not one of {allowed} or {_names(table)}")
    if isinstance(value, str):
        normalised = {_norm(k): v for k, v in table.items()}
        if _norm(value) in normalised:
            return normalised[_norm(value)]
    raise ValueError(f"{what}: unknown value {value!r}; use one of {_names(table)} or {allowed}")


def parse_reject_result(value: object) -> int:
    """A-ASSOCIATE-RJ result: ``"permanent"``/``"transient"`` or 1/2."""
    return _parse_named(value, REJECT_RESULTS, (1, 2), "result")


def parse_reject_source(value: object) -> int:
    """A-ASSOCIATE-RJ source by name or number (1..3)."""
    return _parse_named(value, REJECT_SOURCES, (1, 2, 3), "source")


def parse_reject_reason(source: int, value: object) -> int:
    """A-ASSOCIATE-RJ reason by name or number, valid for ``source``."""
    return _parse_named(
        value, REJECT_REASONS[source], _REASON_RANGES[source], f"reason (source {source})"
    )


def parse_reject(result: object, source: object, reason: object) -> tuple[int, int, int]:
    """An A-ASSOCIATE-RJ ``(result, source, reason)`` from names or numbers."""
    s = parse_reject_source(source)
    return parse_reject_result(result), s, parse_reject_reason(s, reason)
