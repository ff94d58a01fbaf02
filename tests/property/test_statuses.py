"""Every C-STORE status a PACS may answer, counted as the README's "Statuses" says.

Cheap and direct (one association per example, one rule per file): success and
warnings (0x0001, 0x0107, 0x0116, 0xBxxx) count as successful with one warning line
each; everything else, cancel and unknown codes included, is a failure whose error
names the code. The state machine covers statuses mixed with faults; this test covers
the status table itself, densely.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from mock_scp import strategies as ms
from mock_scp.strategies import FileSpec, ScpPolicy, StoreRule
from scu import StoreScu
from tests.property.harness import Queued, check_against_model, check_grammar, check_journal
from tests.property.model import Codecs, Options, Scp, predict
from tests.property.profiles import profile_settings
from tests.support.recorder import Recorder

CT = ms.SOP_CLASSES["CTImageStorage"]
EXPLICIT = ms.UNCOMPRESSED_SYNTAXES["ExplicitVRLittleEndian"]
POLICY = ScpPolicy.of({CT: [EXPLICIT]})
CODECS = Codecs.installed()


def _queued(index: int) -> Queued:
    spec = FileSpec(CT, EXPLICIT, 64, index, 16, f"2.25.{9000 + index}")
    return Queued.of_spec(f"s{index}", spec)


@pytest.mark.timeout(600)  # room for shrinking a failure
@profile_settings(150)
@given(
    answers=st.lists(
        st.tuples(ms.statuses(), st.one_of(st.none(), st.sampled_from(["coerced", "disk full"]))),
        min_size=1,
        max_size=5,
    )
)
def test_each_status_counts_as_spec_says(
    mock_scp_factory: Any, answers: list[tuple[int, str | None]]
) -> None:
    scp = mock_scp_factory.shared(ae_title="STATUSES", **POLICY.mock_kwargs())
    assert scp.wait_idle(5)
    scp.reset()
    queued = [_queued(i) for i in range(len(answers))]
    rules = tuple(
        StoreRule("respond", status, comment, sop_instance_uid=q.entry.sop_instance_uid)
        for q, (status, comment) in zip(queued, answers, strict=True)
    )
    for rule in rules:
        rule.apply(scp)
    predicted = predict([q.entry for q in queued], Scp(POLICY, rules), Options(), CODECS)
    note(f"model: {[(o.name, o.fate.value, o.status) for o in predicted.outcomes]}")
    scu = StoreScu(scp.addr, connect_timeout=5, acse_timeout=5, dimse_timeout=5, network_timeout=5)
    for q in queued:
        scu.add_file_from_memory(q.data, q.entry.name)
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    assert scp.wait_idle(5)
    check_grammar(rec, result, [q.entry.name for q in queued], in_order=True)
    check_against_model(rec, result, queued, predicted)
    check_journal(scp, result, queued, predicted)
