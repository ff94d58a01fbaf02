"""``StoreScu.preflight()``: negotiate without sending, and say per queued entry what
``send()`` would do with it (accept, convert, refuse, unreadable)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scu.association import Endpoint
from scu.convert import ConversionError, convert
from scu.planning import (
    AssociationPlan,
    NegotiatedContext,
    Refusal,
    SyntaxPolicy,
    plan_associations,
)
from scu.result import PreflightItem
from scu.source import Entry, EntryError, Header
from scu.streaming import safe_header

__all__ = ["preflight"]


def _plan(
    headers: Iterable[Header | EntryError], policy: SyntaxPolicy
) -> tuple[list[AssociationPlan], dict[str, int]]:
    """The associations to open, and which one serves each SOP class."""
    needs = [(h.sop_class_uid, h.transfer_syntax) for h in headers if isinstance(h, Header)]
    plans = plan_associations(needs, policy)
    plan_of = {sop_class: i for i, p in enumerate(plans) for sop_class in p.sop_classes}
    return plans, plan_of


def preflight(
    entries: Sequence[Entry], *, endpoint: Endpoint, policy: SyntaxPolicy
) -> list[PreflightItem]:
    """Raises :class:`ConnectionFailed` / :class:`AssociationRejected` like ``send()``."""
    headers = [safe_header(e) for e in entries]
    plans, plan_of = _plan(headers, policy)
    negotiated: dict[int, tuple[NegotiatedContext, ...]] = {}
    for index, association_plan in enumerate(plans):
        assoc = endpoint.open(association_plan)
        negotiated[index] = assoc.negotiated
        assoc.release()
    items: list[PreflightItem] = []
    for entry, header in zip(entries, headers, strict=True):
        if isinstance(header, EntryError):
            items.append(PreflightItem(entry.name, "unreadable", reason=str(header)))
            continue
        common = {
            "sop_class_uid": header.sop_class_uid,
            "sop_instance_uid": header.sop_instance_uid,
            "file_transfer_syntax": header.transfer_syntax,
        }
        choice = policy.select(
            negotiated[plan_of[header.sop_class_uid]], header.sop_class_uid, header.transfer_syntax
        )
        if isinstance(choice, Refusal):
            items.append(PreflightItem(entry.name, "refuse", reason=choice.reason, **common))
            continue
        reason = None
        if choice.convert:
            try:
                convert(entry, header, choice.wire_syntax)
            except ConversionError as exc:
                items.append(PreflightItem(entry.name, "refuse", reason=str(exc), **common))
                continue
            reason = policy.why_convert(header.transfer_syntax, choice.wire_syntax)
        items.append(
            PreflightItem(
                entry.name,
                "convert" if choice.convert else "accept",
                transfer_syntax=choice.wire_syntax,
                reason=reason,
                **common,
            )
        )
    return items
