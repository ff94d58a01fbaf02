"""The checks the mock makes on what arrives, as pure functions: a request no
A-ASSOCIATE-AC can answer, a data set in the wrong transfer syntax or with another SOP
Instance UID than its command, and an Error Comment that fits its VR."""

from __future__ import annotations

import struct
import zlib

from scu.protocol.dataset import BIG, LITTLE, DatasetError, encoding_problem, leading_uids
from scu.protocol.pdu import MAX_CONTEXTS, AssociateRQ
from scu.protocol.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE

from .journal import ReceivedStore, Violation

__all__ = ["error_comment", "sniff", "uid_mismatch", "unanswerable"]


def unanswerable(request: AssociateRQ) -> str | None:
    """Why no A-ASSOCIATE-AC can answer a request (strict mode refuses it)."""
    ids = [c.context_id for c in request.contexts]
    if len(ids) != len(set(ids)):
        return "presentation context IDs proposed twice"
    if len(ids) > MAX_CONTEXTS:
        return f"{len(ids)} presentation contexts proposed (the standard allows {MAX_CONTEXTS})"
    return None


def error_comment(text: str) -> str:
    """An Error Comment (LO: 64 characters, no backslash or control characters)."""
    clean = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in text)
    return clean[:64]


def uid_mismatch(store: ReceivedStore, dataset_uid: str) -> Violation:
    found = repr(dataset_uid) if dataset_uid else "no SOP Instance UID"
    return Violation(
        "uid-mismatch",
        store.association_id,
        f"command Affected SOP Instance UID {store.sop_instance_uid!r} but the dataset has {found}",
        store.message_id,
    )


def sniff(head: bytes, syntax: str, size: int) -> tuple[str | None, str | None]:
    """``(problem, sop_instance_uid)`` from the first bytes of a data set of ``size``
    bytes: why it cannot be in ``syntax``, and its SOP Instance UID when found among the
    leading elements (``""``: it has none; ``None``: not found cheaply, to be decoded
    later)."""
    if not head:
        return None, None
    problem = encoding_problem(head, syntax)
    if problem is not None:
        return problem, None
    data = head
    if syntax == DEFLATED_EXPLICIT_VR_LE:
        try:
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(head, 1 << 20)
        except zlib.error:
            return None, None
    layout = BIG if syntax == EXPLICIT_VR_BE else LITTLE
    try:
        _sop_class, instance = leading_uids(data, 0, len(data), syntax != IMPLICIT_VR_LE, layout)
    except (DatasetError, struct.error):
        return None, None
    if instance is None:
        whole = size <= len(head) and syntax != DEFLATED_EXPLICIT_VR_LE
        return None, "" if whole else None
    return None, instance
