"""The journal of a mock SCP in words and as data: what ``check()`` and the assertion
helpers show when something is wrong, what the pytest plugin writes for a failing test,
and what ``scukit serve`` prints. Every text a peer sent goes through
:func:`mock_scp.journal.printable`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from scu.protocol.identity import UserIdentity
from scu.protocol.status import status_label
from scu.protocol.uids import uid_keyword

from .journal import AssociationRecord, ReceivedStore, printable

if TYPE_CHECKING:
    from .server import MockScp

__all__ = ["association_dict", "format_journal", "identity_dict", "journal_dict", "store_dict"]


class Journaled(Protocol):
    """Anything with a journal to show (a MockScp)."""

    @property
    def associations(self) -> list[AssociationRecord]: ...

    @property
    def received(self) -> list[ReceivedStore]: ...


#: Stores listed per association before the rest is summed up.
MAX_LISTED = 50


#: What stands for a secret (a passcode, a token) in every output.
REDACTED = "<redacted>"


def identity_dict(identity: UserIdentity | None) -> dict[str, Any] | None:
    """The user identity an SCU presented, as JSON-ready data: its kind and username;
    a passcode or a token only as ``<redacted>`` and its length."""
    if identity is None:
        return None
    named = identity.kind in (1, 2)
    secret = identity.secondary if named else identity.primary
    return {
        "type": identity.kind,
        "kind": UserIdentity.KINDS.get(identity.kind, "unknown"),
        "username": printable(identity.primary.decode("utf-8", "replace")) if named else None,
        "secret": REDACTED if secret else None,
        "secret_length": len(secret),
        "positive_response_requested": identity.positive_response_requested,
    }


def _identity_text(identity: UserIdentity) -> str:
    data = identity_dict(identity)
    assert data is not None
    who = f" {data['username']!r}" if data["username"] is not None else ""
    secret = f", {data['secret_length']} bytes {REDACTED}" if data["secret"] else ""
    return f", user identity: {data['kind']}{who}{secret}"


def association_dict(record: AssociationRecord, *, contexts: bool = True) -> dict[str, Any]:
    """An association as JSON-ready data; ``contexts`` adds the proposed and accepted
    presentation contexts (128 of them from storescu: not worth repeating everywhere)."""
    data: dict[str, Any] = {
        "id": record.id,
        "calling_ae_title": record.calling_ae_title,
        "called_ae_title": record.called_ae_title,
        "peer": record.peer,
        "ended": record.ended,
        "ended_by": record.ended_by,
        "end_detail": record.end_detail,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "max_pdu_length": record.max_pdu_length,
        "rejection": list(record.rejection) if record.rejection else None,
        "stores": record.stores,
        "proposed": len(record.proposed_contexts),
        "accepted": len(record.accepted_contexts),
        "user_identity": identity_dict(record.user_identity),
    }
    if contexts:
        data["proposed_contexts"] = [
            {"id": cid, "abstract_syntax": sop, "transfer_syntaxes": list(syntaxes)}
            for cid, sop, syntaxes in record.proposed_contexts
        ]
        data["accepted_contexts"] = [
            {"id": cid, "abstract_syntax": sop, "transfer_syntax": syntax}
            for cid, sop, syntax in record.accepted_contexts
        ]
    return data


def store_dict(store: ReceivedStore) -> dict[str, Any]:
    """A store as JSON-ready data (without its data set)."""
    return {
        "nth": store.nth,
        "association_id": store.association_id,
        "message_id": store.message_id,
        "sop_class_uid": store.sop_class_uid,
        "sop_instance_uid": store.sop_instance_uid,
        "transfer_syntax": store.transfer_syntax,
        "calling_ae_title": store.calling_ae_title,
        "called_ae_title": store.called_ae_title,
        "status": store.status,
        "action": store.action,
        "comment": store.comment,
        "complete": store.complete,
        "size": store.size,
        "path": str(store.path) if store.path else None,
        "write_error": store.write_error,
        "requested_at": store.requested_at,
        "answered_at": store.answered_at,
    }


def journal_dict(scp: MockScp) -> dict[str, Any]:
    """Everything the server saw, as JSON-ready data."""
    return {
        "ae_title": scp.ae_title,
        "address": scp.addr,
        "associations": [association_dict(a) for a in scp.associations],
        # In the order the requests arrived (the journal keeps them as they ended).
        "stores": [store_dict(s) for s in sorted(scp.received, key=lambda s: s.nth)],
        "violations": [
            {
                "kind": v.kind,
                "association_id": v.association_id,
                "message_id": v.message_id,
                "detail": v.detail,
            }
            for v in scp.violations
        ],
        "errors": [f"{type(e).__name__}: {e}" for e in scp.errors],
        "rules": [
            {
                "rule": r.description,
                "hits": r.hits,
                # (min, max) hits; max None when open-ended
                "expect": [r.expect[0], r.expect[1] if r.expect[1] < 2**31 else None]
                if r.expect
                else None,
                "unmet": r.unmet(),
            }
            for r in scp.rules
        ],
        "unreleased": scp.unreleased(),
    }


def _store_line(store: ReceivedStore) -> str:
    answer = status_label(store.status) if store.status is not None else "no response"
    partial = "" if store.complete else ", incomplete"
    return (
        f"    store {store.nth} (message {store.message_id}): "
        f"{printable(uid_keyword(store.sop_class_uid))} {printable(store.sop_instance_uid)} "
        f"in {printable(uid_keyword(store.transfer_syntax))} -> {answer} ({store.action}"
        f"{partial})"
    )


def _association_line(record: AssociationRecord) -> str:
    state = record.ended or "still open"
    by = f" by the {record.ended_by.upper()}" if record.ended_by in ("scu", "mock") else ""
    detail = f": {printable(record.end_detail)}" if record.end_detail else ""
    identity = "" if record.user_identity is None else _identity_text(record.user_identity)
    return (
        f"  association {record.id}: {printable(record.calling_ae_title)} -> "
        f"{printable(record.called_ae_title)} from {record.peer or '?'}, "
        f"{len(record.accepted_contexts)}/{len(record.proposed_contexts)} contexts accepted"
        f"{identity}, {state}{by}{detail}"
    )


def format_journal(scp: Journaled) -> str:
    """The journal per association, with each store's status and each end."""
    associations = scp.associations
    stores = sorted(scp.received, key=lambda s: s.nth)
    if not associations:
        return "  (no association was attempted)"
    lines: list[str] = []
    for record in associations:
        lines.append(_association_line(record))
        mine = [s for s in stores if s.association_id == record.id]
        for store in mine[:MAX_LISTED]:
            lines.append(_store_line(store))
        if len(mine) > MAX_LISTED:
            lines.append(f"    ... and {len(mine) - MAX_LISTED} more stores")
    return "\n".join(lines)
