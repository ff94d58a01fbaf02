"""The reference model on its own: hand-worked cases from the README, then its own invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_scp import strategies as ms
from mock_scp.strategies import ScpPolicy, StoreRule
from tests.property.model import (
    EXPLICIT,
    IMPLICIT,
    Codecs,
    Entry,
    Fate,
    Options,
    Scp,
    order_independent,
    predict,
    proposed_contexts,
)
from tests.property.profiles import profile_settings

CT = ms.SOP_CLASSES["CTImageStorage"]
MR = ms.SOP_CLASSES["MRImageStorage"]
RLE = ms.COMPRESSED_SYNTAXES["RLELossless"]
J2K = ms.COMPRESSED_SYNTAXES["JPEG2000Lossless"]
JPEG = ms.COMPRESSED_SYNTAXES["JPEGBaseline8Bit"]
CODECS = Codecs(
    decodable=frozenset({IMPLICIT, EXPLICIT, RLE, J2K, JPEG}), encodable=frozenset({RLE, J2K, JPEG})
)
EVERYTHING = ScpPolicy.of({CT: [IMPLICIT, EXPLICIT, RLE, J2K, JPEG], MR: [IMPLICIT, EXPLICIT]})


def entry(n: int, sop: str = CT, ts: str = EXPLICIT, **kw: object) -> Entry:
    return Entry(f"f{n}", sop, f"2.25.{n}", ts, **kw)  # type: ignore[arg-type]


def fates(entries: list[Entry], scp: Scp, options: Options | None = None) -> list[Fate]:
    return [o.fate for o in predict(entries, scp, options or Options(), CODECS).outcomes]


def test_own_syntax_goes_out_when_accepted() -> None:
    p = predict([entry(1, ts=RLE), entry(2, MR, IMPLICIT)], Scp(EVERYTHING), Options(), CODECS)
    assert [(o.fate, o.transfer_syntax) for o in p.outcomes] == [
        (Fate.SUCCESS, RLE),
        (Fate.SUCCESS, IMPLICIT),
    ]
    assert (p.successful, p.failed, p.total_files, p.stores) == (2, 0, 2, 2)


@pytest.mark.parametrize(
    ("accepted", "never_transcode", "expected"),
    [
        ([EXPLICIT, IMPLICIT], False, (Fate.SUCCESS, EXPLICIT)),
        ([IMPLICIT], False, (Fate.SUCCESS, IMPLICIT)),
        ([EXPLICIT], True, (Fate.NO_CONTEXT, None)),
        ([J2K], False, (Fate.NO_CONTEXT, None)),
    ],
    ids=["explicit-first", "implicit-fallback", "never-transcode", "nothing-usable"],
)
def test_auto_falls_back_to_explicit_then_implicit(
    accepted: list[str], never_transcode: bool, expected: tuple[Fate, str | None]
) -> None:
    scp = Scp(ScpPolicy.of({CT: accepted}))
    (outcome,) = predict(
        [entry(1, ts=RLE)], scp, Options(never_transcode=never_transcode), CODECS
    ).outcomes
    assert (outcome.fate, outcome.transfer_syntax) == expected


def test_forced_syntax_is_the_only_one_and_conversion_can_fail() -> None:
    scp = Scp(ScpPolicy.of({CT: [RLE, JPEG, EXPLICIT], MR: [EXPLICIT]}))
    cases = {
        RLE: [Fate.SUCCESS, Fate.NO_CONTEXT, Fate.SUCCESS],
        JPEG: [Fate.CONVERSION, Fate.NO_CONTEXT, Fate.SUCCESS],
    }
    never = Options(transfer_syntax=RLE, never_transcode=True)
    assert fates([entry(1, ts=RLE), entry(2)], scp, never) == [Fate.SUCCESS, Fate.CONVERSION]
    entries = [entry(1, bits_allocated=16), entry(2, MR), entry(3, ts=JPEG, bits_allocated=8)]
    for forced, expected in cases.items():
        assert fates(entries, scp, Options(transfer_syntax=forced)) == expected
    no_encoder = Codecs(CODECS.decodable, frozenset())
    (outcome,) = predict([entry(1)], scp, Options(transfer_syntax=RLE), no_encoder).outcomes
    assert outcome.fate is Fate.CONVERSION
    small_j2k = Codecs(CODECS.decodable, CODECS.encodable, ((J2K, 32),))
    j2k = Scp(ScpPolicy.of({CT: [J2K]}))
    sizes = [entry(1, min_side=31), entry(2, min_side=32), entry(3, ts=J2K, min_side=8)]
    got = [o.fate for o in predict(sizes, j2k, Options(transfer_syntax=J2K), small_j2k).outcomes]
    assert got == [Fate.CONVERSION, Fate.SUCCESS, Fate.SUCCESS]


@pytest.mark.parametrize(
    ("status", "fate"),
    [
        (0x0000, Fate.SUCCESS),
        (0x0001, Fate.WARNING),
        (0x0107, Fate.WARNING),
        (0x0116, Fate.WARNING),
        (0xB000, Fate.WARNING),
        (0xB123, Fate.WARNING),
        (0xA700, Fate.STATUS),
        (0xA900, Fate.STATUS),
        (0xC000, Fate.STATUS),
        (0xFE00, Fate.STATUS),
        (0x0002, Fate.STATUS),
        (0xD123, Fate.STATUS),
    ],
    ids=lambda v: f"0x{v:04X}" if isinstance(v, int) else v.name,
)
def test_status_decides_success(status: int, fate: Fate) -> None:
    p = predict([entry(1)], Scp(EVERYTHING, (StoreRule("respond", status),)), Options(), CODECS)
    assert p.outcomes[0].fate is fate
    assert p.successful == int(fate.ok)
    assert p.warnings == ((("f1", status),) if fate is Fate.WARNING else ())


@pytest.mark.parametrize("action", ["abort", "disconnect"])
def test_broken_association_fails_only_the_entry_in_flight(action: str) -> None:
    rules = (StoreRule(action, nth=2),)  # type: ignore[arg-type]
    got = fates([entry(i) for i in range(4)], Scp(EVERYTHING, rules))
    broken = Fate.ABORTED if action == "abort" else Fate.DROPPED
    assert got == [Fate.SUCCESS, broken, Fate.SUCCESS, Fate.SUCCESS]


def test_stalls_add_up_and_the_next_rule_answers() -> None:
    rules = (
        StoreRule("stall", seconds=2.0, nth=1),
        StoreRule("stall", seconds=0.01, nth=2),
        StoreRule("stall", seconds=0.3, nth=3),
        StoreRule("respond", 0xB000, nth=(2)),
        StoreRule("stall", seconds=0.2, nth=3),
        StoreRule("respond", 0xA700, sop_class_uid=CT, times=2),
    )
    got = fates([entry(i) for i in range(4)], Scp(EVERYTHING, rules), Options(dimse_timeout=0.4))
    # 1: timed out, yet its answering rule (0xA700, times=2) was used up, as the SCP does
    assert got == [Fate.TIMEOUT, Fate.WARNING, Fate.TIMEOUT, Fate.SUCCESS]


def test_nth_counts_only_stores_that_went_out() -> None:
    entries = [
        entry(0, readable=False),
        entry(1, MR, RLE),  # MR accepts only uncompressed: converted, still sent
        entry(2, "1.2.3.4"),  # SOP class refused: never sent
        entry(3),
    ]
    scp = Scp(EVERYTHING, (StoreRule("respond", 0xA700, nth=2),))
    p = predict(entries, scp, Options(), CODECS)
    assert [o.fate for o in p.outcomes] == [
        Fate.UNREADABLE,
        Fate.SUCCESS,
        Fate.NO_CONTEXT,
        Fate.STATUS,
    ]
    assert p.outcomes[1].transfer_syntax == EXPLICIT
    assert p.stores == 2


def test_first_matching_rule_wins_and_times_runs_out() -> None:
    rules = (
        StoreRule("respond", 0xA700, sop_class_uid=CT, times=1),
        StoreRule("respond", 0xB006, sop_class_uid=CT),
        StoreRule("respond", 0xC000),
    )
    got = fates([entry(1), entry(2), entry(3, MR)], Scp(EVERYTHING, rules))
    assert got == [Fate.STATUS, Fate.WARNING, Fate.STATUS]


def test_fail_fast_stops_at_the_first_failure_of_any_kind() -> None:
    entries = [entry(i) for i in range(4)]
    scp = Scp(EVERYTHING, (StoreRule("respond", 0xA700, nth=2),))
    assert fates(entries, scp, Options(fail_fast=True)) == [
        Fate.SUCCESS,
        Fate.STATUS,
        Fate.FAIL_FAST,
        Fate.FAIL_FAST,
    ]
    unreadable_first = [entry(0, readable=False), *entries[1:]]
    assert fates(unreadable_first, Scp(EVERYTHING), Options(fail_fast=True)) == [
        Fate.UNREADABLE,
        *[Fate.FAIL_FAST] * 3,
    ]
    warned = Scp(EVERYTHING, (StoreRule("respond", 0xB000),))
    assert fates(entries, warned, Options(fail_fast=True)) == [Fate.WARNING] * 4


def test_rejected_association_fails_everything_and_raises() -> None:
    entries = [entry(0, readable=False), entry(1), entry(2, readable=False), entry(3)]
    p = predict(entries, Scp(EVERYTHING, reject_first=1), Options(), CODECS)
    assert p.raises
    assert [o.fate for o in p.outcomes] == [Fate.UNREADABLE, *[Fate.REJECTED] * 3]
    assert (p.successful, p.failed, p.stores) == (0, 4, 0)
    # fail_fast stops at the unreadable entry: no association is ever attempted
    stopped = predict(entries, Scp(EVERYTHING, reject_first=1), Options(fail_fast=True), CODECS)
    assert not stopped.raises
    assert [o.fate for o in stopped.outcomes] == [Fate.UNREADABLE, *[Fate.FAIL_FAST] * 3]
    nothing = predict(
        [entry(1, readable=False)], Scp(EVERYTHING, reject_first=1), Options(), CODECS
    )
    assert not nothing.raises


def test_proposed_contexts() -> None:
    entries = [entry(1, ts=RLE), entry(2, MR, IMPLICIT), entry(3, readable=False)]
    assert proposed_contexts(entries, Options()) == {
        (CT, RLE), (CT, EXPLICIT), (CT, IMPLICIT), (MR, IMPLICIT), (MR, EXPLICIT)
    }  # fmt: skip
    assert proposed_contexts(entries, Options(never_transcode=True)) == {(CT, RLE), (MR, IMPLICIT)}
    assert proposed_contexts(entries, Options(transfer_syntax=J2K)) == {(CT, J2K), (MR, J2K)}


def test_order_independence() -> None:
    entries = [entry(1), entry(2)]
    keyed = Scp(EVERYTHING, (StoreRule("abort", sop_instance_uid="2.25.2", times=1),))
    assert order_independent(entries, keyed, Options(concurrency=3))
    assert not order_independent(entries, Scp(EVERYTHING, (StoreRule("abort", nth=1),)), Options())
    shared = Scp(EVERYTHING, (StoreRule("abort", sop_class_uid=CT, times=1),))
    assert not order_independent(entries, shared, Options())
    assert not order_independent(entries, Scp(EVERYTHING), Options(fail_fast=True))


def test_installed_codecs_decode_what_datagen_makes() -> None:
    codecs = Codecs.installed()
    assert {IMPLICIT, EXPLICIT, RLE, J2K, JPEG} <= codecs.decodable
    assert JPEG in codecs.encodable  # through Pillow: pydicom has no JPEG Baseline encoder


# --- the model's own invariants, over drawn setups --------------------------------

entries_st = st.lists(
    st.builds(
        Entry,
        name=st.just(""),
        sop_class_uid=ms.sop_classes(),
        transfer_syntax=ms.transfer_syntaxes(),
        readable=st.booleans(),
        bits_allocated=st.sampled_from([8, 16]),
    ),
    max_size=8,
).map(
    lambda es: [
        Entry(
            f"f{i}", e.sop_class_uid, f"2.25.{i}", e.transfer_syntax, e.readable, e.bits_allocated
        )
        for i, e in enumerate(es)
    ]
)
setups = st.builds(
    Scp,
    policy=ms.scp_policies(per_sop_class=True),
    rules=st.lists(ms.store_rules(), max_size=4).map(tuple),
    reject_first=st.sampled_from([0, 0, 0, 1]),
)
options_st = st.builds(
    Options,
    transfer_syntax=st.one_of(st.none(), ms.transfer_syntaxes()),
    never_transcode=st.booleans(),
    fail_fast=st.booleans(),
)


@profile_settings()
@given(entries=entries_st, scp=setups, options=options_st)
def test_model_accounts_for_every_entry(entries: list[Entry], scp: Scp, options: Options) -> None:
    p = predict(entries, scp, options, CODECS)
    assert [o.name for o in p.outcomes] == [e.name for e in entries]
    assert p.successful + p.failed == p.total_files == len(entries)
    assert len(p.warnings) == sum(o.fate is Fate.WARNING for o in p.outcomes)
    assert p.stores == sum(o.transfer_syntax is not None for o in p.outcomes)
    for o in p.outcomes:
        assert (o.transfer_syntax is not None) == (
            o.status is not None or o.fate in (Fate.TIMEOUT, Fate.ABORTED, Fate.DROPPED)
        )
    if p.raises:
        assert p.successful == 0 and p.stores == 0


@profile_settings()
@given(entries=entries_st, scp=setups, options=options_st)
def test_fail_fast_is_a_prefix_of_the_full_run(
    entries: list[Entry], scp: Scp, options: Options
) -> None:
    full = predict(entries, scp, Options(options.transfer_syntax, options.never_transcode), CODECS)
    fast = predict(
        entries,
        scp,
        Options(options.transfer_syntax, options.never_transcode, fail_fast=True),
        CODECS,
    )
    first_failure = next((i for i, o in enumerate(full.outcomes) if not o.ok), len(entries))
    assert fast.outcomes[: first_failure + 1] == full.outcomes[: first_failure + 1]
    # after a rejected association the rest fail with the rejection, not with fail_fast
    rest = Fate.REJECTED if fast.raises else Fate.FAIL_FAST
    assert all(o.fate is rest for o in fast.outcomes[first_failure + 1 :])


@profile_settings()
@given(entries=entries_st, scp=setups)
def test_a_sent_entry_goes_out_on_a_proposed_context_of_its_own_sop_class(
    entries: list[Entry], scp: Scp
) -> None:
    for options in (Options(), Options(never_transcode=True)):
        p = predict(entries, scp, options, CODECS)
        for e, o in zip(entries, p.outcomes, strict=True):
            if o.transfer_syntax is not None:
                assert (e.sop_class_uid, o.transfer_syntax) in p.proposed
                assert scp.policy.accepts(e.sop_class_uid, o.transfer_syntax)
