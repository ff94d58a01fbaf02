"""The SCU's transfer syntax policy, and context planning and selection: pure functions,
no I/O.

:class:`SyntaxPolicy` is ``transfer_syntax`` and ``never_transcode`` resolved once; the
proposal, the choice of a context per file and the conversion all ask it. Three
syntaxes are told apart by name: the *file's* syntax (how its data set is encoded),
the *accepted* syntax of a context (what the SCP chose), and the syntax *on the wire*
(what the data set goes out in: the file's, or the one it is converted to).

Proposal (per SOP class in the queue, in order of first appearance):

* forced syntax: one context ``(class, [forced])``;
* auto: one context per distinct file syntax ``(class, [file syntax])``, so that a
  file goes out as it is whenever the SCP accepts its syntax, plus, unless
  ``never_transcode``, one fallback context ``(class, [Explicit VR LE, Implicit VR LE])``
  to convert to when the file's own syntax is refused.

More than 128 contexts are split across associations; a SOP class's contexts stay on
one association. A file is only ever sent on a context whose abstract syntax is its own
SOP class, never on one that merely has the right transfer syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scu.protocol.acse import describe_context_result
from scu.protocol.pdu import MAX_CONTEXTS, ContextProposal
from scu.protocol.uids import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UidKind,
    describe_uid,
    resolve_uid,
    uid_keyword,
)

__all__ = [
    "FALLBACK_SYNTAXES",
    "MAX_CONTEXTS",
    "AssociationPlan",
    "NegotiatedContext",
    "Refusal",
    "Selection",
    "SyntaxPolicy",
    "plan_associations",
]

#: What the SCU proposes for a SOP class when the file's own syntax may be refused, in
#: order of preference.
FALLBACK_SYNTAXES: tuple[str, ...] = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)


@dataclass(frozen=True)
class AssociationPlan:
    """The contexts one association proposes and the SOP classes it serves."""

    contexts: tuple[ContextProposal, ...]

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
    #: The accepted syntax, ``None`` when the context was refused.
    accepted_syntax: str | None

    @property
    def accepted(self) -> bool:
        return self.result == 0 and self.accepted_syntax is not None


@dataclass(frozen=True)
class Selection:
    """Where a file goes: its context, the syntax on the wire, whether to convert."""

    context_id: int
    wire_syntax: str
    convert: bool


@dataclass(frozen=True)
class Refusal:
    reason: str


@dataclass(frozen=True)
class SyntaxPolicy:
    """``transfer_syntax`` (forced, or ``None`` for auto) and ``never_transcode``."""

    forced: str | None = None
    never_transcode: bool = False

    @classmethod
    def from_options(cls, transfer_syntax: str | None, never_transcode: bool) -> SyntaxPolicy:
        if transfer_syntax is None:
            return cls(None, never_transcode)
        from scu.convert import FORCEABLE_SYNTAXES

        forced = resolve_uid(
            transfer_syntax, parameter="transfer_syntax", kind=UidKind.TRANSFER_SYNTAX
        )
        if forced not in FORCEABLE_SYNTAXES:
            names = ", ".join(uid_keyword(uid) for uid in FORCEABLE_SYNTAXES)
            raise ValueError(
                f"transfer_syntax: {uid_keyword(forced)} ({forced}) cannot be forced: StoreScu "
                f"has no encoder for it that needs no lossy quality setting; the syntaxes "
                f"that can be forced are {names}"
            )
        return cls(forced, never_transcode)

    def proposals(
        self, sop_class: str, file_syntaxes: Sequence[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """The ``(abstract syntax, transfer syntaxes)`` contexts proposed for a class."""
        if self.forced is not None:
            return [(sop_class, (self.forced,))]
        groups: list[tuple[str, tuple[str, ...]]] = [(sop_class, (ts,)) for ts in file_syntaxes]
        if not self.never_transcode:
            groups.append((sop_class, FALLBACK_SYNTAXES))
        return groups

    def select(
        self, negotiated: Iterable[NegotiatedContext], sop_class: str, file_syntax: str
    ) -> Selection | Refusal:
        """The context a file goes out on and whether it must be converted; or why not."""
        mine = [c for c in negotiated if c.abstract_syntax == sop_class]
        accepted = [c for c in mine if c.accepted]
        if self.forced is None:
            exact = [c for c in accepted if c.accepted_syntax == file_syntax]
            if exact:
                return Selection(exact[0].context_id, file_syntax, convert=False)
            if self.never_transcode:
                return Refusal(
                    _refusal_text(mine, sop_class)
                    if not accepted
                    else f"the SCP did not accept the file's transfer syntax "
                    f"{uid_keyword(file_syntax)} for {describe_uid(sop_class)} "
                    "and never_transcode forbids converting it"
                )
            for syntax in FALLBACK_SYNTAXES:
                for context in accepted:
                    if context.accepted_syntax == syntax:
                        return Selection(context.context_id, syntax, convert=True)
            return Refusal(_refusal_text(mine, sop_class))
        for context in accepted:
            if context.accepted_syntax == self.forced:
                if self.forced != file_syntax and self.never_transcode:
                    return Refusal(
                        f"the file is in {uid_keyword(file_syntax)}; sending it in "
                        f"{uid_keyword(self.forced)} needs a conversion and never_transcode "
                        "forbids it"
                    )
                return Selection(
                    context.context_id, self.forced, convert=self.forced != file_syntax
                )
        return Refusal(_refusal_text(mine, sop_class))

    def why_convert(self, file_syntax: str, wire_syntax: str) -> str:
        """Why a file is converted, in words (for preflight)."""
        cause = (
            "the transfer syntax is forced"
            if self.forced is not None
            else "the SCP did not accept the file's own transfer syntax"
        )
        return f"{uid_keyword(file_syntax)} -> {uid_keyword(wire_syntax)}: {cause}"


def plan_associations(
    needs: Iterable[tuple[str, str]],
    policy: SyntaxPolicy = SyntaxPolicy(),
    *,
    max_contexts: int = MAX_CONTEXTS,
) -> list[AssociationPlan]:
    """Plans for ``needs``: (SOP class, file syntax) pairs, in queue order."""
    by_class: dict[str, list[str]] = {}
    for sop_class, syntax in needs:
        seen = by_class.setdefault(sop_class, [])
        if syntax not in seen:
            seen.append(syntax)
    plans: list[list[tuple[str, tuple[str, ...]]]] = [[]]
    for sop_class, syntaxes in by_class.items():
        groups = policy.proposals(sop_class, syntaxes)
        if len(plans[-1]) + len(groups) > max_contexts and plans[-1]:
            plans.append([])
        for group in groups:
            if len(plans[-1]) >= max_contexts:
                plans.append([])
            plans[-1].append(group)
    return [
        AssociationPlan(
            tuple(
                ContextProposal(2 * i + 1, abstract, syntaxes)
                for i, (abstract, syntaxes) in enumerate(groups)
            )
        )
        for groups in plans
        if groups
    ]


def _refusal_text(mine: Sequence[NegotiatedContext], sop_class: str) -> str:
    if not mine:
        return f"no presentation context was proposed for {describe_uid(sop_class)}"
    refused = [c for c in mine if not c.accepted]
    refused_syntaxes = sorted({uid_keyword(ts) for c in refused for ts in c.proposed})
    reasons = sorted({describe_context_result(c.result) for c in refused})
    accepted = sorted({uid_keyword(c.accepted_syntax) for c in mine if c.accepted_syntax})
    if not accepted:
        return (
            f"the SCP refused {describe_uid(sop_class)} in every proposed transfer syntax "
            f"({', '.join(refused_syntaxes)}): {'; '.join(reasons)}"
        )
    return (
        f"the SCP accepted {describe_uid(sop_class)} only in {', '.join(accepted)}, which "
        f"this file cannot be sent in (auto mode converts only to Explicit or Implicit VR "
        f"Little Endian); refused: {', '.join(refused_syntaxes)} ({'; '.join(reasons)})"
    )
