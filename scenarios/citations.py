"""Citations of the DICOM standard in scenario files: their form, the titles of the
sections the library cites (for reports), and the section each kind of violation the
mock detects breaks.

A citation is ``PS3.<part> <section>``: ``PS3.4 B.2.3``, ``PS3.8 9.3.4``, ``PS3.7 A.6``.
Any well-formed section may be cited; reports add the title when it is known here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from mock_scp import ViolationKind

__all__ = ["SECTION_TITLES", "VIOLATION_CITATIONS", "check_citation", "describe_citation"]

_CITATION = re.compile(
    r"\APS3\.(?P<part>[1-9][0-9]?) (?P<section>(?:[A-Z]{1,3}|[1-9][0-9]*)(?:\.[0-9]+)*)\Z"
)

#: Titles of the sections the library scenarios cite (PS3.x as published by NEMA).
SECTION_TITLES: Mapping[str, str] = MappingProxyType(
    {
        "PS3.4 B.2.3": "Storage Service Class: Statuses",
        "PS3.5 10": "Transfer Syntax",
        "PS3.7 7.4": "Association Services",
        "PS3.7 9.1.1": "C-STORE Service",
        "PS3.7 9.3.1": "C-STORE Protocol",
        "PS3.7 A.6": "Association Abort for DICOM AE",
        "PS3.7 D.3.2": "Presentation Contexts Negotiation",
        "PS3.7 D.3.3.1": "Maximum Length Application PDU Notification",
        "PS3.7 D.3.3.3": "Asynchronous Operations Window Negotiation",
        "PS3.8 7.1.1.13": "Presentation Context Definition List",
        "PS3.8 7.2.2": "A-RELEASE Service Procedure",
        "PS3.8 7.4": "A-P-ABORT Service",
        "PS3.8 9.3": "DICOM Upper Layer Protocol Data Units (PDUs)",
        "PS3.8 9.3.4": "A-ASSOCIATE-RJ PDU Structure",
        "PS3.8 9.3.5": "P-DATA-TF PDU Structure",
        "PS3.8 9.3.8": "A-ABORT PDU Structure",
        "PS3.8 D.1": "Maximum Length Negotiation",
        "PS3.8 E.1": "Encapsulation Rules",
    }
)

#: The section each kind of :class:`mock_scp.Violation` breaks.
VIOLATION_CITATIONS: Mapping[str, str] = MappingProxyType(
    {
        ViolationKind.UID_MISMATCH: "PS3.7 9.3.1",
        ViolationKind.WRONG_TRANSFER_SYNTAX: "PS3.7 D.3.2",
        ViolationKind.PDU_TOO_LARGE: "PS3.8 D.1",
        ViolationKind.DUPLICATE_MESSAGE_ID: "PS3.7 9.1.1",
        ViolationKind.OPERATIONS_WINDOW: "PS3.7 D.3.3.3",
        ViolationKind.DROPPED_CONNECTION: "PS3.7 7.4",
        ViolationKind.UNKNOWN_CONTEXT: "PS3.8 7.1.1.13",
        ViolationKind.CONTEXT_MISMATCH: "PS3.7 D.3.2",
        ViolationKind.PROTOCOL: "PS3.8 9.3",
    }
)


def check_citation(value: object) -> str:
    """``value`` if it is a well-formed citation (``PS3.4 B.2.3``), else ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError(f"a citation is text such as 'PS3.4 B.2.3', not {value!r}")
    text = " ".join(value.split())
    if not _CITATION.match(text):
        raise ValueError(
            f"{value!r} is not a citation of the standard; write 'PS3.<part> <section>', "
            "e.g. 'PS3.4 B.2.3' (C-STORE statuses) or 'PS3.8 9.3.4' (A-ASSOCIATE-RJ)"
        )
    return text


def describe_citation(citation: str) -> str:
    """``"PS3.4 B.2.3 (Storage Service Class: Statuses)"``, or the citation alone."""
    title = SECTION_TITLES.get(citation)
    return f"{citation} ({title})" if title else citation
