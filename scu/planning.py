"""Presentation context planning and selection: pure functions, no I/O.

Proposal (per SOP class in the queue, in order of first appearance):

* forced syntax: one context ``(class, [forced])``;
* auto: one context per distinct file syntax ``(class, [file syntax])``, so that a
  file goes out as it is whenever the SCP accepts its syntax, plus, unless
  ``never_transcode``, one fallback context ``(class, [Explicit VR LE, Implicit VR LE])``
  to convert to when the file's own syntax is refused.

More than 128 contexts are split across associations; a SOP class's contexts stay on
one association. A file is only ever sent on a context whose abstract syntax is its
own SOP class (the anchor's bug: matching on transfer syntax alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.uid import UID

from scu.syntaxes import FALLBACK_SYNTAXES, syntax_name
from scu.wire import CONTEXT_RESULTS

__all__ = [
    "MAX_CONTEXTS",
    "AssociationPlan",
    "NegotiatedContext",
    "ProposedContext",
    "Refusal",
    "Selection",
    "plan_associations",
    "select_context",
    "sop_class_name",
]

MAX_CONTEXTS = 128


@dataclass(frozen=True)
class ProposedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class AssociationPlan:
    """The contexts one association proposes and the SOP classes it serves."""

    contexts: tuple[ProposedContext, ...]

    @property
    def sop_classes(self) -> frozenset[str]:
        return frozenset(c.abstract_syntax for c in self.contexts)


@dataclass(frozen=True)
class NegotiatedContext:
    """A proposed context and what the SCP answered (result 0 = accepted)."""

    context_id: int
    abstract_syntax: str
    proposed: tuple[str, ...]
    result: int
    transfer_syntax: str | None

    @property
    def accepted(self) -> bool:
        return self.result == 0 and self.transfer_syntax is not None


@dataclass(frozen=True)
class Selection:
    context_id: int
    transfer_syntax: str
    convert: bool


@dataclass(frozen=True)
class Refusal:
    reason: str


def sop_class_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def _class_contexts(
    sop_class: str, syntaxes: Sequence[str], forced: str | None, never_transcode: bool
) -> list[tuple[str, tuple[str, ...]]]:
    if forced is not None:
        return [(sop_class, (forced,))]
    groups: list[tuple[str, tuple[str, ...]]] = [(sop_class, (ts,)) for ts in syntaxes]
    if not never_transcode:
        groups.append((sop_class, FALLBACK_SYNTAXES))
    return groups


def plan_associations(
    needs: Iterable[tuple[str, str]],
    *,
    forced: str | None = None,
    never_transcode: bool = False,
    max_contexts: int = MAX_CONTEXTS,
) -> list[AssociationPlan]:
    """Plans for ``needs``: (SOP class, file transfer syntax) pairs, in queue order."""
    by_class: dict[str, list[str]] = {}
    for sop_class, syntax in needs:
        seen = by_class.setdefault(sop_class, [])
        if syntax not in seen:
            seen.append(syntax)
    plans: list[list[tuple[str, tuple[str, ...]]]] = [[]]
    for sop_class, syntaxes in by_class.items():
        groups = _class_contexts(sop_class, syntaxes, forced, never_transcode)
        if len(plans[-1]) + len(groups) > max_contexts and plans[-1]:
            plans.append([])
        for group in groups:
            if len(plans[-1]) >= max_contexts:
                plans.append([])
            plans[-1].append(group)
    return [
        AssociationPlan(
            tuple(
                ProposedContext(2 * i + 1, abstract, syntaxes)
                for i, (abstract, syntaxes) in enumerate(groups)
            )
        )
        for groups in plans
        if groups
    ]


def select_context(
    negotiated: Iterable[NegotiatedContext],
    sop_class: str,
    file_syntax: str,
    *,
    forced: str | None = None,
    never_transcode: bool = False,
) -> Selection | Refusal:
    """The context a file goes out on, and whether it must be converted; or why not."""
    mine = [c for c in negotiated if c.abstract_syntax == sop_class]
    accepted = [c for c in mine if c.accepted]
    target = forced
    if target is None:
        exact = [c for c in accepted if c.transfer_syntax == file_syntax]
        if exact:
            return Selection(exact[0].context_id, file_syntax, convert=False)
        if never_transcode:
            return Refusal(
                _refusal_text(mine, sop_class)
                if not accepted
                else f"the SCP did not accept the file's transfer syntax "
                f"{syntax_name(file_syntax)} for {sop_class_name(sop_class)} "
                "and never_transcode forbids converting it"
            )
        for syntax in FALLBACK_SYNTAXES:
            for context in accepted:
                if context.transfer_syntax == syntax:
                    return Selection(context.context_id, syntax, convert=True)
        return Refusal(_refusal_text(mine, sop_class))
    for context in accepted:
        if context.transfer_syntax == target:
            if target != file_syntax and never_transcode:
                return Refusal(
                    f"the file is in {syntax_name(file_syntax)}; sending it in "
                    f"{syntax_name(target)} needs a conversion and never_transcode forbids it"
                )
            return Selection(context.context_id, target, convert=target != file_syntax)
    return Refusal(_refusal_text(mine, sop_class))


def _refusal_text(mine: Sequence[NegotiatedContext], sop_class: str) -> str:
    if not mine:
        return f"no presentation context was proposed for {sop_class_name(sop_class)}"
    refused = [c for c in mine if not c.accepted]
    refused_syntaxes = sorted({syntax_name(ts) for c in refused for ts in c.proposed})
    reasons = sorted({CONTEXT_RESULTS.get(c.result, f"result {c.result}") for c in refused})
    accepted = sorted({syntax_name(c.transfer_syntax) for c in mine if c.transfer_syntax})
    if not accepted:
        return (
            f"the SCP refused {sop_class_name(sop_class)} in every proposed transfer syntax "
            f"({', '.join(refused_syntaxes)}): {'; '.join(reasons)}"
        )
    return (
        f"the SCP accepted {sop_class_name(sop_class)} only in {', '.join(accepted)}, which "
        f"this file cannot be sent in (auto mode converts only to Explicit or Implicit VR "
        f"Little Endian); refused: {', '.join(refused_syntaxes)} ({'; '.join(reasons)})"
    )
