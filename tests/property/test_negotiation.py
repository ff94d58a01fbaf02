"""Transfer-syntax negotiation, drawn: what the SCP accepts per SOP class x the files'
own syntaxes x forced or auto syntax (x never_transcode).

For every draw, against a MockScp with that policy: the contexts proposed, the syntax
each file goes out in and the files refused equal the reference model; each file goes
out on an accepted context of its own SOP class (the mock records a violation
otherwise); ``preflight()`` predicts what ``send()`` then does.
"""

from __future__ import annotations

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from mock_scp import MockScp
from mock_scp import strategies as ms
from mock_scp.strategies import FileSpec, ScpPolicy
from scu import StoreScu
from tests.property.harness import Queued, check_against_model, check_grammar, check_journal
from tests.property.model import Codecs, Fate, Options, Prediction, Scp, predict
from tests.property.profiles import profile_settings
from tests.support.recorder import Recorder

CODECS = Codecs.installed()
SOPS = ms.SOP_CLASSES
#: The SCP accepts some of these; files also come in a class it never accepts.
POLICY_SOPS = [SOPS["CTImageStorage"], SOPS["MRImageStorage"], SOPS["SecondaryCaptureImageStorage"]]
FILE_SOPS = [*POLICY_SOPS, SOPS["UltrasoundImageStorage"]]


@st.composite
def queues(draw: st.DrawFn) -> list[Queued]:
    specs = draw(
        st.lists(
            ms.file_specs(sop_class=st.sampled_from(FILE_SOPS), size=st.integers(16, 1200)),
            min_size=1,
            max_size=6,
        )
    )
    return [
        Queued.of_spec(
            f"n{i}",
            FileSpec(
                s.sop_class_uid,
                s.transfer_syntax,
                s.size,
                s.seed,
                s.bits_allocated,
                f"2.25.{5000 + i}",
            ),
        )
        for i, s in enumerate(specs)
    ]


def check_preflight(items: list[object], predicted: Prediction, queued: list[Queued]) -> None:
    for item, outcome, q in zip(items, predicted.outcomes, queued, strict=True):
        verdict, syntax = item.verdict, item.transfer_syntax
        where = f"{q.entry.name}: preflight {item}, model {outcome}"
        if outcome.ok:
            own = outcome.transfer_syntax == q.entry.transfer_syntax
            assert verdict == ("accept" if own else "convert"), where
            assert syntax == outcome.transfer_syntax, where
        else:
            assert outcome.fate in (Fate.NO_CONTEXT, Fate.CONVERSION), where
            assert verdict == "refuse" and item.reason, where


@pytest.mark.timeout(600)  # room for shrinking a failure
@profile_settings(100)
@given(
    policy=ms.scp_policies(sop_class_pool=POLICY_SOPS, per_sop_class=True),
    queued=queues(),
    forced=st.one_of(st.none(), ms.transfer_syntaxes()),
    never_transcode=st.booleans(),
)
def test_negotiated_syntax_and_context_match_the_model(
    policy: ScpPolicy, queued: list[Queued], forced: str | None, never_transcode: bool
) -> None:
    options = Options(forced, never_transcode, dimse_timeout=5.0)
    predicted = predict([q.entry for q in queued], Scp(policy), options, CODECS)
    note(f"model: {[(o.name, o.fate.value, o.transfer_syntax) for o in predicted.outcomes]}")
    with MockScp(ae_title="NEGOTIATION", **policy.mock_kwargs()) as scp:
        scu = StoreScu(
            scp.addr, transfer_syntax=forced, never_transcode=never_transcode,
            connect_timeout=5, acse_timeout=5, dimse_timeout=5, network_timeout=5,
        )  # fmt: skip
        for q in queued:
            scu.add_file_from_memory(q.data, q.entry.name)
        check_preflight(list(scu.preflight()), predicted, queued)
        scp.wait_idle(5)
        scp.reset()
        rec = Recorder()
        result = scu.send(**rec.callbacks)
        scp.wait_idle(5)
        check_grammar(rec, result, [q.entry.name for q in queued], in_order=True)
        check_against_model(rec, result, queued, predicted)
        check_journal(scp, result, queued, predicted)
