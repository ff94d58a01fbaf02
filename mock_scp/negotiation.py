"""Presentation-context negotiation, as a PACS (DCMTK storescp) does it.

For each proposed context: Verification is always accepted; another abstract syntax is
accepted when it is in the accepted SOP classes (or unknown classes are accepted).
The transfer syntax is chosen by the SCP, not by the order of the proposal: Explicit
VR Little Endian if proposed and accepted, then Implicit VR Little Endian, then the
first of the SCP's own accepted list that was proposed. Refusals carry the standard's
result codes: 3 abstract syntax not supported, 4 transfer syntaxes not supported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .tables import EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION_SOP_CLASS
from .wire import ProposedContext

__all__ = [
    "RESULT_ABSTRACT_SYNTAX_NOT_SUPPORTED",
    "RESULT_ACCEPTANCE",
    "RESULT_TRANSFER_SYNTAXES_NOT_SUPPORTED",
    "Policy",
    "negotiate",
]

RESULT_ACCEPTANCE = 0
RESULT_USER_REJECTION = 1
RESULT_NO_REASON = 2
RESULT_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
RESULT_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

_PREFERRED = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)


@dataclass(frozen=True)
class Policy:
    """What the SCP accepts. ``transfer_syntaxes`` is the default list (in preference
    order); ``per_sop_class`` overrides it for the SOP classes it names.
    ``sop_classes`` ``None`` with ``accept_unknown`` means anything is accepted."""

    sop_classes: frozenset[str]
    transfer_syntaxes: tuple[str, ...]
    per_sop_class: Mapping[str, tuple[str, ...]]
    accept_unknown: bool = False

    def syntaxes_for(self, abstract_syntax: str) -> tuple[str, ...] | None:
        """Accepted syntaxes for an abstract syntax, ``None`` if the class is refused."""
        if abstract_syntax == VERIFICATION_SOP_CLASS:
            return (EXPLICIT_VR_LE, IMPLICIT_VR_LE, "1.2.840.10008.1.2.2")
        if abstract_syntax in self.per_sop_class:
            return self.per_sop_class[abstract_syntax]
        if abstract_syntax in self.sop_classes or self.accept_unknown:
            return self.transfer_syntaxes
        return None


def choose_syntax(proposed: Sequence[str], accepted: Sequence[str]) -> str | None:
    """The transfer syntax a PACS would pick, or ``None`` when none is acceptable."""
    offered = set(proposed)
    for uid in _PREFERRED:
        if uid in offered and uid in accepted:
            return uid
    for uid in accepted:
        if uid in offered:
            return uid
    return None


def negotiate(contexts: Sequence[ProposedContext], policy: Policy) -> list[tuple[int, int, str]]:
    """``(context_id, result, transfer_syntax)`` for every proposed context."""
    out: list[tuple[int, int, str]] = []
    for ctx in contexts:
        syntaxes = policy.syntaxes_for(ctx.abstract_syntax)
        # A refused context's transfer-syntax sub-item "is not significant" (PS3.8
        # 9.3.3.2); echo a proposed one, since some decoders choke on an empty UID.
        echo = ctx.transfer_syntaxes[0] if ctx.transfer_syntaxes else IMPLICIT_VR_LE
        if syntaxes is None:
            out.append((ctx.context_id, RESULT_ABSTRACT_SYNTAX_NOT_SUPPORTED, echo))
            continue
        chosen = choose_syntax(ctx.transfer_syntaxes, syntaxes)
        if chosen is None:
            out.append((ctx.context_id, RESULT_TRANSFER_SYNTAXES_NOT_SUPPORTED, echo))
        else:
            out.append((ctx.context_id, RESULT_ACCEPTANCE, chosen))
    return out
