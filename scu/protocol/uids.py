"""UIDs: the rule a UID must follow, the names of transfer syntaxes and SOP classes, and
the storage SOP classes, built on pydicom's and pynetdicom's public tables.

* :func:`uid_problem` / :func:`is_valid_uid`: PS3.5 9.1, digits and dots, no empty or
  leading-zero component, at most 64 characters, nothing after the last digit (a
  trailing newline or NUL included).
* :func:`resolve_uid`: a UID or a keyword (``"CTImageStorage"``,
  ``"ExplicitVRLittleEndian"``, also the older spellings such as ``"JPEGBaseline"``)
  to the UID, optionally checking its kind (transfer syntax or SOP class), with a
  did-you-mean suggestion for a misspelt keyword.
* :func:`uid_name`, :func:`uid_keyword`, :func:`describe_uid`: for messages.
* :data:`STORAGE_SOP_CLASSES`: every storage SOP class pynetdicom knows, the retired
  ones included (what DCMTK ``storescp +xa`` accepts).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from functools import cache

from pydicom import uid as _pydicom_uid
from pydicom.uid import UID

__all__ = [
    "APPLICATION_CONTEXT_NAME",
    "DEFLATED_EXPLICIT_VR_LE",
    "EXPLICIT_VR_BE",
    "EXPLICIT_VR_LE",
    "IMPLICIT_VR_LE",
    "UNCOMPRESSED_SYNTAXES",
    "VERIFICATION_SOP_CLASS",
    "UidKind",
    "check_uid",
    "describe_uid",
    "is_storage_sop_class",
    "is_transfer_syntax",
    "is_valid_uid",
    "resolve_transfer_syntax",
    "resolve_uid",
    "resolve_uids",
    "storage_sop_classes",
    "uid_keyword",
    "uid_name",
    "uid_problem",
]

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
#: The DICOM application context (PS3.7 A.2.1), the only one defined.
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
UNCOMPRESSED_SYNTAXES: frozenset[str] = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE})

_UID = re.compile(r"\A(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*\Z")
_DIGITS_AND_DOTS = re.compile(r"\A[0-9.]+\Z")

#: Older or shorter names of transfer syntaxes, accepted beside pydicom's keywords.
_SYNTAX_ALIASES = {
    "JPEGBaseline": "1.2.840.10008.1.2.4.50",
    "JPEGExtended": "1.2.840.10008.1.2.4.51",
    "JPEGLosslessFirstOrder": "1.2.840.10008.1.2.4.70",
    "DeflatedExplicitVRLittleEndian": DEFLATED_EXPLICIT_VR_LE,
}


class UidKind:
    """What a UID field holds, for :func:`resolve_uid`'s check."""

    TRANSFER_SYNTAX = "transfer syntax"
    SOP_CLASS = "SOP class"


def uid_problem(value: object) -> str | None:
    """Why ``value`` is not a valid UID (PS3.5 9.1), or ``None`` when it is one."""
    if not isinstance(value, str):
        return f"a UID is a string, not {type(value).__name__}"
    if not value:
        return "a UID must not be empty"
    if len(value) > 64:
        return f"a UID has at most 64 characters, this one has {len(value)}"
    if _UID.match(value):
        return None
    if not _DIGITS_AND_DOTS.match(value):
        bad = next(c for c in value if not (c.isascii() and (c.isdigit() or c == ".")))
        return f"a UID holds only digits and dots, this one holds {bad!r}"
    if value.startswith(".") or value.endswith(".") or ".." in value:
        return "a UID has no empty component"
    return "a UID component has no leading zero"


def is_valid_uid(value: object) -> bool:
    """Whether ``value`` is a well-formed UID (see :func:`uid_problem`)."""
    return uid_problem(value) is None


def check_uid(value: object, *, parameter: str) -> str:
    """``value`` if it is a valid UID, else ``ValueError`` naming ``parameter`` and why."""
    problem = uid_problem(value)
    if problem is not None:
        raise ValueError(f"{parameter}: {value!r} is not a valid UID: {problem}")
    assert isinstance(value, str)
    return value


@cache
def storage_sop_classes() -> frozenset[str]:
    """Every storage SOP class pynetdicom knows, the retired ones included."""
    from pynetdicom import AllStoragePresentationContexts, StoragePresentationContexts

    return frozenset(
        str(context.abstract_syntax)
        for context in (*AllStoragePresentationContexts, *StoragePresentationContexts)
    )


def is_storage_sop_class(uid: str) -> bool:
    return uid in storage_sop_classes()


@cache
def _keywords() -> dict[str, str]:
    """Keyword -> UID from the public tables: pydicom's UID constants, pynetdicom's SOP
    classes, and the keywords pydicom gives the storage classes (retired ones included)."""
    from pynetdicom import sop_class

    known: set[str] = {str(v) for v in vars(_pydicom_uid).values() if isinstance(v, UID)}
    known |= {str(v) for v in vars(sop_class).values() if isinstance(v, UID)}
    known |= storage_sop_classes()
    table = {UID(uid).keyword: uid for uid in known if UID(uid).keyword}
    table.update(_SYNTAX_ALIASES)
    return table


@cache
def _lower_keywords() -> dict[str, str]:
    return {keyword.lower(): uid for keyword, uid in _keywords().items()}


def is_transfer_syntax(uid: str) -> bool:
    """Whether pydicom knows ``uid`` as a transfer syntax."""
    return bool(UID(uid).is_transfer_syntax)


def _kind_of(uid: str) -> str | None:
    kind = UID(uid).type
    if kind == "Transfer Syntax":
        return UidKind.TRANSFER_SYNTAX
    if kind in ("SOP Class", "Meta SOP Class") or is_storage_sop_class(uid):
        return UidKind.SOP_CLASS
    return None


_HINTS = {
    UidKind.TRANSFER_SYNTAX: (
        "use a pydicom UID keyword (e.g. ImplicitVRLittleEndian, ExplicitVRLittleEndian, "
        "JPEGBaseline, JPEG2000Lossless, RLELossless) or the UID of a known transfer syntax"
    ),
    UidKind.SOP_CLASS: (
        "use a pydicom UID keyword (e.g. CTImageStorage, MRImageStorage) or a SOP class UID"
    ),
}


def resolve_uid(value: object, *, parameter: str, kind: str | None = None) -> str:
    """The UID for a UID or a keyword, checked against ``kind`` (a :class:`UidKind`)
    when given; ``ValueError`` naming ``parameter``, the value and what would do."""
    what = kind or "UID"
    hint = _HINTS.get(kind or "", "use a UID or a pydicom UID keyword")
    if not isinstance(value, str) or not value.strip(" "):
        raise ValueError(f"{parameter} must be a {what} name or UID, got {value!r}")
    text = value.strip(" ")  # only spaces: a newline or NUL is part of a bad UID
    if text[0].isdigit():
        check_uid(text, parameter=parameter)
        found = _kind_of(text)
        if kind == UidKind.TRANSFER_SYNTAX and found != UidKind.TRANSFER_SYNTAX:
            known = f" ({describe_uid(text)})" if uid_name(text) != text else ""
            raise ValueError(f"{parameter}: unknown transfer syntax {text!r}{known}; {hint}")
        if kind == UidKind.SOP_CLASS and found == UidKind.TRANSFER_SYNTAX:
            raise ValueError(
                f"{parameter}: {text} ({uid_name(text)}) is a transfer syntax, not a SOP class"
            )
        return text
    uid = _keywords().get(text) or _lower_keywords().get(text.lower())
    if uid is None:
        raise ValueError(f"{parameter}: unknown {what} {text!r}{_suggest(text, kind)}; {hint}")
    found = _kind_of(uid)
    if kind is not None and found != kind:
        raise ValueError(
            f"{parameter}: {text!r} is a {found or 'UID'} ({uid}), not a {kind}; {hint}"
        )
    return uid


def resolve_uids(
    values: Iterable[object], *, parameter: str, kind: str | None = None
) -> tuple[str, ...]:
    """Several UIDs or keywords, in order, duplicates dropped; not empty."""
    if isinstance(values, str):
        raise ValueError(f"{parameter}: expected a list, got the single string {values!r}")
    out = tuple(dict.fromkeys(resolve_uid(v, parameter=parameter, kind=kind) for v in values))
    if not out:
        raise ValueError(f"{parameter}: must not be empty")
    return out


def _suggest(text: str, kind: str | None) -> str:
    candidates = [
        keyword for keyword, uid in _keywords().items() if kind is None or _kind_of(uid) == kind
    ]
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(text.lower(), lowered, n=1, cutoff=0.75)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def uid_name(uid: str) -> str:
    """pydicom's name for ``uid`` (``"CT Image Storage"``), or the UID itself."""
    try:
        name = str(UID(uid).name)
    except Exception:  # a malformed UID from the wire is named by itself
        return uid
    return name or uid


def uid_keyword(uid: str) -> str:
    """pydicom's keyword for ``uid`` (``"CTImageStorage"``), or the UID itself."""
    try:
        keyword = str(UID(uid).keyword)
    except Exception:
        return uid
    return keyword or uid


def describe_uid(uid: str) -> str:
    """``"CT Image Storage (1.2.840.10008.5.1.4.1.1.2)"``, or the UID when unknown."""
    name = uid_name(uid)
    return f"{name} ({uid})" if name != uid else uid


def resolve_transfer_syntax(value: object, *, parameter: str = "transfer_syntax") -> str:
    """The UID of a transfer syntax given by keyword or UID (see :func:`resolve_uid`)."""
    return resolve_uid(value, parameter=parameter, kind=UidKind.TRANSFER_SYNTAX)
