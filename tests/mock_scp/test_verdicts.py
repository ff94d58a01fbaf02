"""What a test reads back from the mock: ``assert_stored`` and ``assert_no_violations``
(and their messages), ``unreleased()``, the reprs, the journal as JSON, and the help
text of the rule builder."""

from __future__ import annotations

import json
import pydoc
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from mock_scp import MockScp, MockScpError, datagen
from mock_scp.report import journal_dict
from scu import StoreScu
from scu.result import TransferResult

CT_UID = "1.2.840.10008.5.1.4.1.1.2"


def send(scp: MockScp, *files: dict[str, Any], **options: Any) -> TransferResult:
    sender = StoreScu(scp.addr, called_ae_title=scp.ae_title, **options)
    for n, file in enumerate(files):
        sender.add_file_from_memory(datagen.make_bytes(**{"seed": n, **file}), f"{n}.dcm")
    result = sender.send()
    assert scp.wait_idle(5)
    return result


CT: dict[str, Any] = {"sop_class": "CTImageStorage"}
MR: dict[str, Any] = {"sop_class": "MRImageStorage"}


def title(info: pytest.ExceptionInfo[MockScpError]) -> str:
    return str(info.value).splitlines()[0]


# --- assert_stored ------------------------------------------------------------------


def test_assert_stored_returns_the_matching_stores(scp: MockScp) -> None:
    scp.on_store(nth=2).warn()
    scp.on_store(nth=3).fail("0xA700")
    result = send(scp, CT, MR, CT, calling_ae_title="SENDER")
    assert scp.assert_stored(3) == scp.stored
    assert scp.assert_stored() == scp.stored
    (mr,) = scp.assert_stored(1, sop_class_uid="MRImageStorage", status="0xB000")
    assert mr.sop_instance_uid == result.files[1].sop_instance_uid
    assert scp.assert_stored(2, sop_class_uid=CT_UID) == [scp.stored[0], scp.stored[2]]
    assert scp.assert_stored(1, status="out-of-resources") == [scp.stored[2]]
    assert scp.assert_stored(3, calling_ae_title="SENDER", transfer_syntax="ExplicitVRLittleEndian")
    assert scp.assert_stored(1, sop_instance_uid=result.files[0].sop_instance_uid)
    assert scp.assert_stored(0, status=0xC000) == []


def test_assert_stored_counts_only_answered_stores(scp: MockScp) -> None:
    scp.on_store(nth=1).abort()
    scp.on_store(nth=2).abort(during_dataset=True)
    send(scp, {**CT, "size": 100_000}, {**CT, "size": 100_000}, CT)
    assert len(scp.received) == 3
    assert scp.assert_stored(1) == [scp.received[2]]
    with pytest.raises(MockScpError) as info:
        scp.assert_stored(3)
    assert title(info) == "assert_stored(3): expected 3, found 1 (1 answered of 3 received)"


def test_assert_stored_message_shows_filters_counts_and_journal(scp: MockScp) -> None:
    send(scp, CT, CT)
    with pytest.raises(MockScpError) as info:
        scp.assert_stored(2, sop_class_uid="MRImageStorage", status="warning")
    lines = str(info.value).splitlines()
    assert lines[0] == (
        "assert_stored(2, sop_class_uid=MRImageStorage, "
        "status=0xB000 (coercion-of-data-elements)): expected 2, found 0 matching "
        "(2 answered of 2 received)"
    )
    assert lines[1] == "what the mock SCP saw:"
    assert re.fullmatch(
        r"  association 1: STORE-SCU -> MOCK-SCP from 127\.0\.0\.1:\d+, 2/2 contexts accepted,"
        r" released by the SCU: A-RELEASE by the SCU",
        lines[2],
    )
    assert re.fullmatch(
        r"    store 2 \(message 2\): CTImageStorage [\d.]+ in ExplicitVRLittleEndian"
        r" -> 0x0000 \(success\) \(accept\)",
        lines[4],
    )
    assert info.value.journal == "\n".join(lines[2:])


def test_assert_stored_without_count_wants_at_least_one(scp: MockScp) -> None:
    with pytest.raises(MockScpError) as info:
        scp.assert_stored()
    assert title(info) == "assert_stored(): expected at least 1, found 0 (0 answered of 0 received)"
    assert str(info.value).splitlines()[2] == "  (no association was attempted)"
    send(scp, CT)
    with pytest.raises(MockScpError) as info:
        scp.assert_stored(calling_ae_title="SOMEONE", transfer_syntax="1.2.840.10008.1.2")
    assert title(info) == (
        "assert_stored(transfer_syntax=ImplicitVRLittleEndian, calling_ae_title=SOMEONE): "
        "expected at least 1, found 0 matching (1 answered of 1 received)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count: expected an int >= 0"),
        ({"count": True}, "count: expected an int >= 0"),
        ({"sop_class_uid": "CTImage"}, "sop_class_uid"),
        ({"status": "warnings"}, "did you mean 'warning'"),
    ],
)
def test_assert_stored_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockScp().assert_stored(**kwargs)


# --- assert_no_violations -----------------------------------------------------------


def test_assert_no_violations(scp: MockScp, raw: Callable[[int], Any], h: Any) -> None:
    send(scp, CT)
    scp.assert_no_violations()
    client = raw(scp.port)
    client.associate(calling="RAW")
    client.store(1, CT_UID, "1.2.3.4", h.explicit_dataset("1.2.3.999"))
    assert client.read_status() == 0
    client.release()
    with pytest.raises(MockScpError) as info:
        scp.assert_no_violations()
    lines = str(info.value).splitlines()
    assert lines[:2] == [
        "1 violation(s) by the SCU:",
        "  SCU violation: uid-mismatch (association 2, message 1): " + scp.violations[0].detail,
    ]
    assert "1.2.3.999" in lines[1]
    assert lines[2] == "what the mock SCP saw:"
    assert any(line.startswith("  association 2: RAW -> ANY-SCP") for line in lines)
    assert info.value.violations == scp.violations


# --- unreleased ---------------------------------------------------------------------


def _pynetdicom_association(scp: MockScp) -> Any:
    ae = AE(ae_title="THEIRS")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    return assoc


def test_unreleased_names_aborted_dropped_and_open_associations(
    scp: MockScp, raw: Callable[[int], Any]
) -> None:
    _pynetdicom_association(scp).release()  # 1: released, fine
    _pynetdicom_association(scp).abort()  # 2: aborted by the SCU
    dropped = raw(scp.port)
    dropped.associate(calling="DROPPER")  # 3: TCP closed without A-RELEASE
    dropped.close()
    scp.on_store().abort()
    send(scp, CT)  # 4: aborted by the mock (a rule): not the SCU's doing
    left_open = raw(scp.port)
    left_open.associate(calling="LINGERER")  # 5: still open
    assert not scp.wait_idle(0.1)

    assert scp.unreleased() == [
        "association 2 (THEIRS) aborted: A-ABORT from the SCU (source 0, reason 0)",
        "association 3 (DROPPER) dropped: TCP connection closed by the SCU",
        "association 5 (LINGERER) is still open",
    ]
    assert [v.kind for v in scp.violations] == ["dropped-connection"]
    with pytest.raises(MockScpError, match="SCU violation: dropped-connection"):
        scp.check()
    scp.check(ignore_violations={"dropped-connection"})  # unreleased: allowed unless asked
    with pytest.raises(ValueError, match="ignore_violations: expected a collection"):
        scp.check(ignore_violations="dropped-connection")
    with pytest.raises(MockScpError) as info:
        scp.check(violations=False, allow_unreleased=False)
    assert info.value.unreleased == scp.unreleased()
    assert "  not released: association 5 (LINGERER) is still open" in str(info.value)
    left_open.release()
    assert scp.wait_idle(5)
    assert len(scp.unreleased()) == 2


def test_an_association_left_silent_until_the_mock_timed_it_out_is_unreleased(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any]
) -> None:
    scp = scp_factory(network_timeout=0.3, acse_timeout=0.3)
    idle = raw(scp.port)
    idle.associate(calling="IDLE")  # associates, then says nothing
    raw(scp.port)  # connects, never asks for an association
    assert scp.wait_idle(5)
    peer = scp.associations[1].peer
    assert sorted(scp.unreleased()) == [
        "association 1 (IDLE) left silent until the mock gave up: A-ABORT by the mock: "
        "network timeout: no message within 0.3 s",
        f"connection 2 from {peer} left silent until the mock gave up: ACSE timeout: "
        "no A-ASSOCIATE-RQ within 0.3 s",
    ]
    assert [a.ended_by for a in scp.associations] == ["mock", "mock"]


def test_a_rejected_association_is_not_unreleased(scp: MockScp) -> None:
    scp.reject_associations(times=1)
    with pytest.raises(Exception, match="rejected"):
        send(scp, CT)
    assert scp.associations[0].ended == "rejected"
    scp.check(allow_unreleased=False)


# --- reprs --------------------------------------------------------------------------


def test_reprs() -> None:
    scp = MockScp(ae_title="PACS")
    assert repr(scp) == (
        "<MockScp 'PACS' stopped: 0 rules, 0 stores received, 0 associations, 0 violations>"
    )
    with scp:
        rule = scp.on_store(nth=2, expect=1).fail("out-of-resources", comment="disk full")
        scp.on_store(expect=(1, None)).warn()
        scp.on_store(expect=range(0, 3), sop_class_uid=CT_UID).respond(0xC000)
        send(scp, CT, CT)
        assert repr(scp) == (
            f"<MockScp 'PACS' listening on 127.0.0.1:{scp.port}: 3 rules, 2 stores received, "
            "1 associations, 0 violations>"
        )
        assert [repr(r) for r in scp.rules] == [
            "<Rule #1 on_store(nth=2).fail(0xA700, comment='disk full'): 1 hits, expect 1>",
            "<Rule #2 on_store().warn(0xB000): 1 hits, expect >= 1>",
            "<Rule #3 on_store(sop_class_uid='CTImageStorage').respond(0xC000): 0 hits, "
            "expect 0..2>",
        ]
        assert rule.hits == 1
        first, second = scp.received
        assert repr(first) == (
            f"<ReceivedStore #1 {first.sop_instance_uid} (association 1, message 1): "
            f"warn 0xB000 (coercion-of-data-elements), {first.size} bytes>"
        )
        assert repr(second).endswith(f": fail 0xA700 (out-of-resources), {second.size} bytes>")
        (association,) = scp.associations
        assert re.fullmatch(
            r"<AssociationRecord #1 STORE-SCU -> PACS from 127\.0\.0\.1:\d+: 2/2 contexts, "
            r"2 stores, released \(A-RELEASE by the SCU\)>",
            repr(association),
        )
        scp.check()
    assert "stopped" in repr(scp)


def test_rule_reprs_name_every_action_and_matcher() -> None:
    scp = MockScp()

    def is_big(request: object) -> bool:
        return True

    def pacs(store: object) -> int:
        return 0

    made = [
        scp.on_store().accept(),
        scp.on_store(every=2, offset=1).stall(1.5),
        scp.on_store(transfer_syntax="1.2.840.10008.1.2").slow_read(1000),
        scp.on_store(when=is_big).abort(during_dataset=True),
        scp.on_store(calling_ae_title="X", probability=0.5).disconnect(rst=True),
        scp.on_store(nth=[1, 3], times=2).garbage(),
        scp.on_store(dataset={"Modality": ["CT", "MR"], "PatientID": is_big}).respond_with(pacs),
        scp.on_store(sop_instance_uid="1.2.3", ordered=True).abort(),
    ]
    assert [r.description for r in made] == [
        "#1 on_store().accept()",
        "#2 on_store(every=2, offset=1).stall(1.5)",
        "#3 on_store(transfer_syntax='ImplicitVRLittleEndian').slow_read(1000)",
        "#4 on_store(when=is_big).abort(during_dataset=True)",
        "#5 on_store(calling_ae_title='X', probability=0.5).disconnect(rst=True)",
        "#6 on_store(nth=[1, 3], times=2).garbage()",
        "#7 on_store(dataset={'Modality': one of ['CT', 'MR'], 'PatientID': is_big})"
        ".respond_with(pacs)",
        "#8 on_store(sop_instance_uid='1.2.3', times=1, ordered=True).abort()",
    ]


def test_help_shows_the_warning_default_as_hex() -> None:
    text = pydoc.render_doc(MockScp().on_store().warn, renderer=pydoc.plaintext)
    assert "status: 'int | str' = '0xB000'" in text
    assert "45056" not in text


# --- the journal as data ------------------------------------------------------------


def test_journal_dict_is_json_with_rules_and_unreleased(
    scp: MockScp, raw: Callable[[int], Any]
) -> None:
    scp.on_store(nth=1, expect=1).warn(comment="coerced")
    scp.on_store(nth=9, expect=(1, None)).fail("0xA700")
    send(scp, CT)
    client = raw(scp.port)
    client.associate(calling="LINGERER")
    data = json.loads(json.dumps(journal_dict(scp)))
    assert data["ae_title"] == "MOCK-SCP" and data["address"] == scp.addr
    assert [a["calling_ae_title"] for a in data["associations"]] == ["STORE-SCU", "LINGERER"]
    assert [(s["nth"], s["status"], s["comment"]) for s in data["stores"]] == [
        (1, 0xB000, "coerced")
    ]
    assert data["rules"] == [
        {
            "rule": "#1 on_store(nth=1).warn(0xB000, comment='coerced')",
            "hits": 1,
            "expect": [1, 1],
            "unmet": None,
        },
        {
            "rule": "#2 on_store(nth=9).fail(0xA700)",
            "hits": 0,
            "expect": [1, None],
            "unmet": "rule #2 on_store(nth=9).fail(0xA700): expected at least 1 hit(s), got 0",
        },
    ]
    assert data["unreleased"] == ["association 2 (LINGERER) is still open"]
    assert data["violations"] == [] and data["errors"] == []


def test_what_the_peer_sent_cannot_forge_lines(
    scp: MockScp, raw: Callable[[int], Any], h: Any
) -> None:
    scp.on_store(nth=2, ordered=True).accept()
    scp.on_store(nth=1, ordered=True).accept()  # hit first: out of order
    evil = raw(scp.port)
    evil.associate(calling="EVIL\nLINE\x1b[31m")
    evil.store(1, CT_UID, "1.2.3\n\x1b[0m", h.explicit_dataset("1.2.3"))
    assert evil.read_status() == 0
    evil.close()  # dropped: unreleased and a violation
    assert scp.wait_idle(5)
    with pytest.raises(MockScpError) as info:
        scp.check(allow_unreleased=False)
    assert "\x1b" not in str(info.value)
    lines = str(info.value).splitlines()
    assert (
        "  not released: association 1 (EVIL\\nLINE\\x1b[31m) dropped: TCP connection "
        "closed by the SCU"
    ) in lines
    (order,) = [line for line in lines if line.startswith("  out of order:")]
    assert order.startswith("  out of order: store 1 (1.2.3\\n\\x1b[0m) hit ordered rule #2")
    assert not any(line.startswith(("LINE", "\x1b")) for line in lines)


def test_received_is_in_arrival_order(scp: MockScp, raw: Callable[[int], Any], h: Any) -> None:
    arrived = threading.Event()
    scp.add_request_listener(lambda request: arrived.set())
    slow, quick = raw(scp.port), raw(scp.port)
    slow.associate()
    quick.associate()
    dataset = h.explicit_dataset("1.2.3.1", pad=1000)
    slow.p_data(1, h.store_command(h.CT, "1.2.3.1", 1), command=True)
    slow.p_data(1, dataset[:100], command=False, last=False)  # the first store, still arriving
    assert arrived.wait(5)  # the first request has reached the mock
    quick.store(1, h.CT, "1.2.3.2", h.explicit_dataset("1.2.3.2"))
    assert quick.read_status() == 0
    slow.p_data(1, dataset[100:], command=False)
    assert slow.read_status() == 0
    assert [(s.nth, s.sop_instance_uid) for s in scp.received] == [(1, "1.2.3.1"), (2, "1.2.3.2")]


def test_the_journal_lists_stores_in_the_order_they_arrived(
    scp: MockScp, raw: Callable[[int], Any], h: Any
) -> None:
    arrived = threading.Event()
    scp.add_request_listener(lambda request: arrived.set())
    slow, quick = raw(scp.port), raw(scp.port)
    slow.associate(calling="SLOW")
    quick.associate(calling="QUICK")
    dataset = h.explicit_dataset("1.2.3.1", pad=1000)
    slow.p_data(1, h.store_command(h.CT, "1.2.3.1", 1), command=True)
    slow.p_data(1, dataset[:100], command=False, last=False)
    assert arrived.wait(5)  # the first request has reached the mock
    quick.store(1, h.CT, "1.2.3.2", h.explicit_dataset("1.2.3.2"))
    assert quick.read_status() == 0
    slow.p_data(1, dataset[100:], command=False)
    assert slow.read_status() == 0
    assert [s["nth"] for s in journal_dict(scp)["stores"]] == [1, 2]
