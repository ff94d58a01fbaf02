"""Unit tests of scu.planning: what the SCU proposes, how it splits above 128 contexts,
and which accepted context each file goes out on (never another SOP class's)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from scu.planning import (
    MAX_CONTEXTS,
    AssociationPlan,
    NegotiatedContext,
    Refusal,
    Selection,
    SyntaxPolicy,
)
from scu.planning import plan_associations as _plan_associations
from scu.protocol.uids import EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE
from scu.protocol.uids import describe_uid as sop_class_name


def plan_associations(
    needs: Sequence[tuple[str, str]],
    *,
    forced: str | None = None,
    never_transcode: bool = False,
    max_contexts: int = MAX_CONTEXTS,
) -> list[AssociationPlan]:
    return _plan_associations(
        needs, SyntaxPolicy(forced, never_transcode), max_contexts=max_contexts
    )


def select_context(
    negotiated: Sequence[NegotiatedContext],
    sop_class: str,
    file_syntax: str,
    *,
    forced: str | None = None,
    never_transcode: bool = False,
) -> Selection | Refusal:
    return SyntaxPolicy(forced, never_transcode).select(negotiated, sop_class, file_syntax)


# Reproducible and quick: these are unit tests, the property suite hunts harder.
_FAST = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
ELE, ILE, EBE = EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE
JPEG = "1.2.840.10008.1.2.4.50"
J2K = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
FALLBACK = (ELE, ILE)


def _contexts(plans: Sequence[AssociationPlan]) -> list[list[tuple[int, str, tuple[str, ...]]]]:
    return [
        [(c.context_id, c.abstract_syntax, c.transfer_syntaxes) for c in p.contexts] for p in plans
    ]


# --- proposals -----------------------------------------------------------------------


def test_auto_proposes_each_file_syntax_then_one_fallback_context_per_class() -> None:
    needs = [(CT, J2K), (MR, ILE), (CT, J2K), (CT, ELE), (MR, ILE)]
    assert _contexts(plan_associations(needs)) == [
        [
            (1, CT, (J2K,)),
            (3, CT, (ELE,)),
            (5, CT, FALLBACK),
            (7, MR, (ILE,)),
            (9, MR, FALLBACK),
        ]
    ]


def test_never_transcode_proposes_only_the_files_own_syntaxes() -> None:
    needs = [(CT, J2K), (CT, RLE), (MR, ILE)]
    assert _contexts(plan_associations(needs, never_transcode=True)) == [
        [(1, CT, (J2K,)), (3, CT, (RLE,)), (5, MR, (ILE,))]
    ]


@pytest.mark.parametrize("never_transcode", [False, True])
def test_forced_proposes_one_context_per_class_with_only_that_syntax(never_transcode: bool) -> None:
    needs = [(CT, J2K), (CT, RLE), (MR, ILE), (SC, JPEG)]
    plans = plan_associations(needs, forced=JPEG, never_transcode=never_transcode)
    assert _contexts(plans) == [[(1, CT, (JPEG,)), (3, MR, (JPEG,)), (5, SC, (JPEG,))]]


def test_no_needs_no_association() -> None:
    assert plan_associations([]) == []


def test_plan_sop_classes() -> None:
    (plan,) = plan_associations([(CT, ELE), (MR, J2K)])
    assert plan.sop_classes == frozenset({CT, MR})


def _classes(n: int) -> list[str]:
    return [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("never_transcode", "forced", "per_class", "sizes"),
    [
        # 100 classes x 2 syntaxes, auto: 3 contexts per class, 42 classes (126) fit.
        (False, None, 3, [126, 126, 48]),
        # never_transcode: 2 per class, 64 classes fill exactly 128.
        (True, None, 2, [128, 72]),
        # forced: 1 per class.
        (False, JPEG, 1, [100]),
    ],
)
def test_more_than_128_contexts_split_keeping_a_class_on_one_association(
    never_transcode: bool, forced: str | None, per_class: int, sizes: list[int]
) -> None:
    classes = _classes(100)
    needs = [(c, ts) for c in classes for ts in (ELE, J2K)]
    plans = plan_associations(needs, forced=forced, never_transcode=never_transcode)
    assert [len(p.contexts) for p in plans] == sizes
    owner: dict[str, int] = {}
    for index, plan in enumerate(plans):
        ids = [c.context_id for c in plan.contexts]
        assert ids == list(range(1, 2 * len(ids), 2))  # odd, unique, from 1
        assert max(ids) <= 255
        for c in plan.contexts:
            assert owner.setdefault(c.abstract_syntax, index) == index
    assert sorted(owner) == sorted(classes)
    # Classes keep queue order across associations.
    assert [
        c for p in plans for c in dict.fromkeys(x.abstract_syntax for x in p.contexts)
    ] == classes
    assert all(
        sum(1 for p in plans for c in p.contexts if c.abstract_syntax == k) == per_class
        for k in classes
    )


def test_exactly_128_contexts_stay_on_one_association() -> None:
    plans = plan_associations([(c, ELE) for c in _classes(128)], forced=ELE)
    assert [len(p.contexts) for p in plans] == [128]
    assert plans[0].contexts[-1].context_id == 255
    plans = plan_associations([(c, ELE) for c in _classes(129)], forced=ELE)
    assert [len(p.contexts) for p in plans] == [128, 1]
    assert plans[1].contexts[0].context_id == 1


_SYNTAXES = [ELE, ILE, EBE, JPEG, J2K, RLE]


@_FAST
@given(
    needs=st.lists(
        st.tuples(st.sampled_from(_classes(60)), st.sampled_from(_SYNTAXES)), max_size=250
    ),
    forced=st.none() | st.sampled_from(_SYNTAXES),
    never_transcode=st.booleans(),
)
def test_plan_properties(
    needs: list[tuple[str, str]], forced: str | None, never_transcode: bool
) -> None:
    plans = plan_associations(needs, forced=forced, never_transcode=never_transcode)
    seen_classes: set[str] = set()
    for plan in plans:
        assert 1 <= len(plan.contexts) <= MAX_CONTEXTS
        ids = [c.context_id for c in plan.contexts]
        assert len(set(ids)) == len(ids)
        assert all(i % 2 == 1 and 1 <= i <= 255 for i in ids)
        assert not (plan.sop_classes & seen_classes)  # a class on one association only
        seen_classes |= plan.sop_classes
    for sop_class, syntax in needs:
        (plan,) = [p for p in plans if sop_class in p.sop_classes]
        offered = {
            ts
            for c in plan.contexts
            if c.abstract_syntax == sop_class
            for ts in c.transfer_syntaxes
        }
        if forced is not None:
            assert offered == {forced}
        else:
            assert syntax in offered
            assert (ELE in offered and ILE in offered) or never_transcode
            if never_transcode:
                assert offered == {ts for k, ts in needs if k == sop_class}


# --- selection -----------------------------------------------------------------------


def ctx(
    cid: int, abstract: str, proposed: Sequence[str], result: int = 0, ts: str | None = ""
) -> NegotiatedContext:
    """A negotiated context; accepted ones default to the first proposed syntax."""
    chosen = (proposed[0] if result == 0 else None) if ts == "" else ts
    return NegotiatedContext(cid, abstract, tuple(proposed), result, chosen)


def test_negotiated_context_accepted_needs_result_zero_and_a_syntax() -> None:
    assert ctx(1, CT, [ELE]).accepted
    assert not ctx(1, CT, [ELE], result=3).accepted
    assert not NegotiatedContext(1, CT, (ELE,), 0, None).accepted


def test_exact_match_is_preferred_over_a_fallback_listed_first() -> None:
    negotiated = [ctx(1, CT, FALLBACK), ctx(3, CT, [J2K])]
    assert select_context(negotiated, CT, J2K) == Selection(3, J2K, convert=False)


def test_exact_match_on_the_fallback_context_needs_no_conversion() -> None:
    negotiated = [ctx(1, CT, [J2K], result=4), ctx(3, CT, FALLBACK, ts=ILE)]
    assert select_context(negotiated, CT, ILE) == Selection(3, ILE, convert=False)


def test_fallback_explicit_before_implicit_whatever_the_order() -> None:
    negotiated = [
        ctx(1, CT, [J2K], result=4),
        ctx(3, CT, [ILE]),
        ctx(5, CT, [ELE]),
    ]
    assert select_context(negotiated, CT, J2K) == Selection(5, ELE, convert=True)
    only_implicit = [ctx(1, CT, [J2K], result=4), ctx(3, CT, FALLBACK, ts=ILE)]
    assert select_context(only_implicit, CT, J2K) == Selection(3, ILE, convert=True)


def test_another_sop_class_context_is_never_used() -> None:
    # The bug of picking a context by syntax alone: MR's context carries the file's
    # syntax, CT's was refused.
    negotiated = [ctx(1, CT, [J2K], result=3), ctx(3, MR, [J2K]), ctx(5, MR, FALLBACK)]
    choice = select_context(negotiated, CT, J2K)
    assert isinstance(choice, Refusal)
    assert "refused CT Image Storage (1.2.840.10008.5.1.4.1.1.2)" in choice.reason
    assert "abstract syntax not supported" in choice.reason


def test_class_never_proposed_is_named_in_the_refusal() -> None:
    choice = select_context([ctx(1, MR, [ELE])], CT, ELE)
    assert choice == Refusal(
        "no presentation context was proposed for CT Image Storage (1.2.840.10008.5.1.4.1.1.2)"
    )


def test_refusal_lists_the_proposed_syntaxes_and_results_in_words() -> None:
    negotiated = [ctx(1, CT, [J2K], result=4), ctx(3, CT, FALLBACK, result=1)]
    choice = select_context(negotiated, CT, J2K)
    assert isinstance(choice, Refusal)
    assert choice.reason == (
        "the SCP refused CT Image Storage (1.2.840.10008.5.1.4.1.1.2) in every proposed "
        "transfer syntax (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless): "
        "transfer syntaxes not supported (provider rejection); user rejection"
    )


def test_unknown_result_code_is_shown_as_a_number() -> None:
    choice = select_context([ctx(1, CT, [ELE], result=9)], CT, ELE)
    assert isinstance(choice, Refusal) and "result 9" in choice.reason


def test_refusal_text_when_only_an_unusable_syntax_was_accepted() -> None:
    negotiated = [ctx(1, CT, [JPEG]), ctx(3, CT, [RLE], result=4), ctx(5, CT, FALLBACK, result=4)]
    choice = select_context(negotiated, CT, RLE)
    assert isinstance(choice, Refusal)
    assert "acceptance" not in choice.reason
    assert "every proposed transfer syntax" not in choice.reason


def test_never_transcode_refuses_instead_of_converting() -> None:
    negotiated = [ctx(1, CT, [J2K], result=4), ctx(3, CT, [ELE])]
    choice = select_context(negotiated, CT, J2K, never_transcode=True)
    assert isinstance(choice, Refusal)
    assert "JPEG2000Lossless" in choice.reason
    assert "never_transcode" in choice.reason
    assert "CT Image Storage" in choice.reason
    # ... but an exact match still goes out.
    assert select_context(negotiated, CT, ELE, never_transcode=True) == Selection(3, ELE, False)


def test_never_transcode_with_nothing_accepted_gives_the_refusal_text() -> None:
    choice = select_context([ctx(1, CT, [J2K], result=3)], CT, J2K, never_transcode=True)
    assert isinstance(choice, Refusal) and choice.reason.startswith("the SCP refused")


def test_forced_syntax_converts_when_the_file_differs() -> None:
    negotiated = [ctx(1, CT, [JPEG])]
    assert select_context(negotiated, CT, ELE, forced=JPEG) == Selection(1, JPEG, convert=True)
    assert select_context(negotiated, CT, JPEG, forced=JPEG) == Selection(1, JPEG, convert=False)


def test_forced_syntax_never_falls_back() -> None:
    negotiated = [ctx(1, CT, [JPEG], result=4), ctx(3, CT, FALLBACK)]
    choice = select_context(negotiated, CT, ELE, forced=JPEG)
    assert isinstance(choice, Refusal)


def test_forced_with_never_transcode_refuses_a_needed_conversion() -> None:
    negotiated = [ctx(1, CT, [JPEG])]
    choice = select_context(negotiated, CT, ELE, forced=JPEG, never_transcode=True)
    assert isinstance(choice, Refusal)
    assert "needs a conversion and never_transcode forbids it" in choice.reason
    assert select_context(negotiated, CT, JPEG, forced=JPEG, never_transcode=True) == Selection(
        1, JPEG, False
    )


def test_accepted_syntax_the_scp_made_up_is_not_taken_for_the_forced_one() -> None:
    # A non-conformant SCP answering a syntax we never proposed.
    negotiated = [ctx(1, CT, [JPEG], ts=ELE)]
    assert isinstance(select_context(negotiated, CT, ELE, forced=JPEG), Refusal)


def test_sop_class_name() -> None:
    assert sop_class_name(CT) == f"CT Image Storage ({CT})"
    assert sop_class_name("1.2.3.4") == "1.2.3.4"


# -- property: selection never crosses SOP classes and prefers the exact syntax ---------

_CLASSES = [CT, MR, SC]


@st.composite
def negotiations(draw: st.DrawFn) -> list[NegotiatedContext]:
    count = draw(st.integers(min_value=0, max_value=10))
    contexts = []
    for i in range(count):
        abstract = draw(st.sampled_from(_CLASSES))
        proposed = draw(st.lists(st.sampled_from(_SYNTAXES), min_size=1, max_size=3, unique=True))
        result = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4]))
        chosen = draw(st.sampled_from(proposed)) if result == 0 else None
        contexts.append(NegotiatedContext(2 * i + 1, abstract, tuple(proposed), result, chosen))
    return contexts


@_FAST
@given(
    negotiated=negotiations(),
    sop_class=st.sampled_from(_CLASSES),
    file_syntax=st.sampled_from(_SYNTAXES),
    forced=st.none() | st.sampled_from(_SYNTAXES),
    never_transcode=st.booleans(),
)
def test_selection_properties(
    negotiated: list[NegotiatedContext],
    sop_class: str,
    file_syntax: str,
    forced: str | None,
    never_transcode: bool,
) -> None:
    choice = select_context(
        negotiated, sop_class, file_syntax, forced=forced, never_transcode=never_transcode
    )
    note(f"choice={choice}")
    by_id = {c.context_id: c for c in negotiated}
    usable = [c for c in negotiated if c.abstract_syntax == sop_class and c.accepted]
    if isinstance(choice, Refusal):
        assert choice.reason
        if forced is None and not never_transcode:
            assert not any(c.accepted_syntax in (file_syntax, ELE, ILE) for c in usable)
        return
    context = by_id[choice.context_id]
    assert context.abstract_syntax == sop_class  # never another class's context
    assert context.accepted
    assert context.accepted_syntax == choice.wire_syntax
    assert choice.convert == (choice.wire_syntax != file_syntax)
    if never_transcode:
        assert not choice.convert
    if forced is not None:
        assert choice.wire_syntax == forced
    elif any(c.accepted_syntax == file_syntax for c in usable):
        assert choice == Selection(choice.context_id, file_syntax, convert=False)
    else:
        assert choice.wire_syntax in (ELE, ILE)
        if any(c.accepted_syntax == ELE for c in usable):
            assert choice.wire_syntax == ELE
