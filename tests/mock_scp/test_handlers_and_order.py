"""``respond_with`` handlers, ordered expectations, ``strict_rules`` and ``every``/
``offset``, each through a real send with StoreScu (what the SCU got back and what the
mock journaled)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from mock_scp import (
    MockScp,
    MockScpError,
    OrderError,
    Reply,
    StoreContent,
    StoreRequest,
    datagen,
)
from mock_scp.rules import Action
from scu import StoreScu
from scu.result import TransferResult


def send(scp: MockScp, *files: dict[str, Any], **options: Any) -> TransferResult:
    sender = StoreScu(scp.addr, called_ae_title=scp.ae_title, **options)
    for n, file in enumerate(files):
        sender.add_file_from_memory(datagen.make_bytes(**{"seed": n, **file}), f"{n}.dcm")
    result = sender.send()
    assert scp.wait_idle(5)
    return result


CT: dict[str, Any] = {"sop_class": "CTImageStorage"}
MR: dict[str, Any] = {"sop_class": "MRImageStorage"}


# --- respond_with -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "comment"),
    [
        (0xB000, 0xB000, None),
        ("0xA700", 0xA700, None),
        ("out-of-resources", 0xA700, None),
        ((0xC001, "cannot parse"), 0xC001, "cannot parse"),
        (("processing-failure", None), 0x0110, None),
        (Reply.status("0xB007", "mismatch"), 0xB007, "mismatch"),
        (0x0000, 0x0000, None),
    ],
)
def test_handler_status_answers(scp: MockScp, answer: object, status: int, comment: str) -> None:
    scp.on_store().respond_with(lambda store: answer)  # type: ignore[arg-type,return-value]
    result = send(scp, CT)
    assert result.files[0].status == status
    (store,) = scp.stored
    assert (store.status, store.comment, store.action) == (status, comment, "respond")
    if comment:
        assert comment in (result.files[0].error or result.files[0].warning or "")
    scp.check()


@pytest.mark.parametrize(
    ("reply", "action", "ended", "scu_error"),
    [
        (Reply.abort(), "abort", "aborted", "aborted the association"),
        (Reply.disconnect(), "disconnect", "dropped", "closed the connection"),
        (Reply.disconnect(rst=True), "disconnect", "dropped", "reset the connection"),
        (Reply.garbage(), "garbage", "dropped", "unrecognised PDU type"),
    ],
)
def test_handler_fault_answers(
    scp: MockScp, reply: object, action: str, ended: str, scu_error: str
) -> None:
    scp.on_store(nth=1).respond_with(lambda store: reply)  # type: ignore[arg-type,return-value]
    result = send(scp, CT, CT)
    assert [f.status for f in result.files] == [None, 0x0000]
    assert scu_error in (result.files[0].error or "")
    assert [s.action for s in scp.received] == [action, "accept"]
    assert scp.received[0].status is None and scp.stored == [scp.received[1]]
    first = scp.associations[0]
    assert (first.ended, first.ended_by) == (ended, "mock")
    scp.check(allow_unreleased=False)  # the mock ended it: not the SCU's doing


def test_handler_sees_the_store(scp: MockScp) -> None:
    seen: list[tuple[int, str, str, str, int]] = []

    def handler(store: StoreContent) -> int:
        ds = store.dataset()
        seen.append(
            (
                store.nth,
                store.calling_ae_title,
                store.sop_instance_uid,
                ds.Modality,
                store.message_id,
            )
        )
        return 0xB000 if ds.Modality == "MR" else 0

    scp.on_store().respond_with(handler)
    result = send(scp, CT, MR, calling_ae_title="SENDER")
    assert [f.status for f in result.files] == [0, 0xB000]
    assert seen == [
        (1, "SENDER", result.files[0].sop_instance_uid, "CT", 1),
        (2, "SENDER", result.files[1].sop_instance_uid, "MR", 2),
    ]


def raising(store: StoreContent) -> int:
    raise KeyError("no rule for this")


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (raising, r"server thread error: KeyError: 'no rule for this' \(at .*test_handlers"),
        (lambda store: None, r"server thread error: ValueError: status: expected a status"),
        (lambda store: "no-such-status", r"ValueError: status: unknown status 'no-such-status'"),
        (lambda store: (1, 2, 3), r"ValueError: too many values to unpack"),
        (lambda store: Reply.status(0, "x" * 10), None),  # fine: a control case
    ],
)
def test_handler_that_fails_answers_0x0110_and_fails_the_check(
    scp: MockScp, handler: Callable[[StoreContent], Any], error: str | None
) -> None:
    scp.on_store().respond_with(handler)
    result = send(scp, CT, CT)
    if error is None:
        assert [f.status for f in result.files] == [0, 0]
        scp.check()
        return
    assert [f.status for f in result.files] == [0x0110, 0x0110]
    assert "respond_with handler raised" in (result.files[0].error or "")
    with pytest.raises(MockScpError, match=error) as info:
        scp.check()
    assert len(info.value.errors) == 2  # one per store


def test_handler_cannot_answer_with_a_receive_time_action(scp: MockScp) -> None:
    scp.on_store().respond_with(lambda store: Action("slow_read", bytes_per_second=10))
    assert [f.status for f in send(scp, CT).files] == [0x0110]
    with pytest.raises(MockScpError, match="a handler cannot answer with slow_read"):
        scp.check()


def test_respond_with_needs_a_callable() -> None:
    with pytest.raises(ValueError, match="handler: expected a callable"):
        MockScp().on_store().respond_with(0xB000)  # type: ignore[arg-type]


# --- ordered ------------------------------------------------------------------------


def test_ordered_rules_hit_in_order_pass(scp: MockScp) -> None:
    images = scp.on_store(sop_class_uid="CTImageStorage", ordered=True, times=2).accept()
    report = scp.on_store(sop_class_uid="MRImageStorage", ordered=True).warn()
    result = send(scp, CT, CT, MR)
    assert [f.status for f in result.files] == [0, 0, 0xB000]
    assert (images.hits, report.hits) == (2, 1)
    assert (images.expect, report.expect, report.times) == ((2, 2), (1, 1), 1)
    scp.check()


def test_ordered_rule_hit_early_fails_the_check(scp: MockScp) -> None:
    scp.on_store(sop_class_uid="CTImageStorage", ordered=True, times=2).accept()
    scp.on_store(sop_class_uid="MRImageStorage", ordered=True).warn()
    result = send(scp, CT, MR, CT)
    assert [f.status for f in result.files] == [0, 0xB000, 0]  # answered all the same
    with pytest.raises(MockScpError) as info:
        scp.check()
    (error,) = info.value.errors
    assert isinstance(error, OrderError)
    text = str(info.value)
    assert (
        f"  out of order: store 2 ({result.files[1].sop_instance_uid}) hit ordered rule "
        "#2 on_store(sop_class_uid='MRImageStorage', times=1, ordered=True).warn(0xB000) "
        "before #1 on_store(sop_class_uid='CTImageStorage', times=2, ordered=True).accept()"
    ) in text.splitlines()
    assert "server thread error" not in text
    assert info.value.unmet == []  # every count was met in the end: only the order is wrong


def test_ordered_rules_default_to_one_hit_each(scp: MockScp) -> None:
    first = scp.on_store(ordered=True).warn()
    second = scp.on_store(ordered=True).fail("0xA700")
    result = send(scp, CT, CT, CT)
    assert [f.status for f in result.files] == [0xB000, 0xA700, 0]  # then the default
    assert (first.hits, second.hits) == (1, 1)
    scp.check()


def test_ordered_rule_never_hit_is_unmet(scp: MockScp) -> None:
    scp.on_store(sop_class_uid="CTImageStorage", ordered=True).accept()
    scp.on_store(sop_class_uid="MRImageStorage", ordered=True).accept()
    send(scp, CT)
    with pytest.raises(MockScpError) as info:
        scp.check()
    assert info.value.errors == []
    (unmet,) = info.value.unmet
    assert unmet.startswith("rule #2 on_store(sop_class_uid='MRImageStorage'")
    assert unmet.endswith("missed sop_class_uid='MRImageStorage' (it was 'CTImageStorage')")


def test_ordered_needs_a_bool() -> None:
    with pytest.raises(ValueError, match="ordered: expected a bool"):
        MockScp().on_store(ordered=1)  # type: ignore[arg-type]


# --- strict_rules -------------------------------------------------------------------


def test_strict_rules_make_an_unmatched_store_a_violation(
    scp_factory: Callable[..., MockScp],
) -> None:
    scp = scp_factory(strict_rules=True)
    scp.on_store(sop_class_uid="CTImageStorage").accept()
    result = send(scp, CT, MR, CT)
    assert [f.status for f in result.files] == [0, 0, 0]  # answered by the default
    (violation,) = scp.violations
    assert violation.kind == "unmatched-store"
    assert violation.message_id == 2
    assert violation.detail == (
        f"store 2 ({result.files[1].sop_instance_uid}) matched no rule (strict_rules)"
    )
    with pytest.raises(MockScpError, match="SCU violation: unmatched-store"):
        scp.check()
    scp.check(violations=False)


def test_strict_rules_are_met_by_any_matching_rule(scp_factory: Callable[..., MockScp]) -> None:
    scp = scp_factory(strict_rules=True)
    scp.on_store(nth=1).stall(0.05)  # a modifier matching counts
    scp.on_store(dataset={"Modality": "MR"}).warn()
    scp.on_store(nth=3).respond_with(lambda store: 0)
    assert [f.status for f in send(scp, CT, MR, CT).files] == [0, 0xB000, 0]
    assert scp.violations == []


def test_without_strict_rules_an_unmatched_store_is_fine(scp: MockScp) -> None:
    scp.on_store(sop_class_uid="CTImageStorage").accept()
    send(scp, MR)
    assert scp.violations == []


# --- every / offset -----------------------------------------------------------------


def test_every_and_offset_through_a_send(scp: MockScp) -> None:
    warn = scp.on_store(every=3, offset=1).warn()  # 4, 7, 10
    fail = scp.on_store(every=4).fail("0xA700")  # 4 (taken above), 8
    result = send(scp, *[CT] * 10)
    statuses = [f.status for f in result.files]
    assert statuses == [0, 0, 0, 0xB000, 0, 0, 0xB000, 0xA700, 0, 0xB000]
    assert (warn.hits, fail.hits) == (3, 1)
    assert warn.description == "#1 on_store(every=3, offset=1).warn(0xB000)"


def test_every_counts_across_associations(scp: MockScp) -> None:
    scp.on_store(every=2).fail("0xA700")
    first = send(scp, CT, CT, CT)
    second = send(scp, CT, CT, CT)
    assert [f.status for f in first.files + second.files] == [0, 0xA700, 0, 0xA700, 0, 0xA700]
    assert [a.stores for a in scp.associations] == [3, 3]


def test_every_expectation_names_its_offset(scp: MockScp) -> None:
    scp.on_store(every=5, offset=2, expect=1).fail("0xA700")
    send(scp, CT, CT)
    with pytest.raises(MockScpError) as info:
        scp.check()
    assert info.value.unmet[0].endswith("missed every=5, offset=2 (it was store 2)")


# --- times across associations ------------------------------------------------------


@pytest.mark.parametrize("content", [False, True])
def test_a_used_up_rule_lets_the_next_rule_answer(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any], h: Any, content: bool
) -> None:
    # Two associations whose commands both arrive while the rule still has its one hit:
    # the store completed second must get the next rule, not the default (nor count as
    # matching no rule).
    scp = scp_factory(strict_rules=True)
    matcher: dict[str, Any] = {"match": lambda store: True} if content else {}
    once = scp.on_store(times=1, **matcher).fail("0xA700")
    rest = scp.on_store().warn()
    planned: list[StoreRequest] = []
    scp.add_request_listener(planned.append)  # told once a command has been planned
    first, second = raw(scp.port), raw(scp.port)
    for client in (first, second):
        client.associate()
    first.p_data(1, h.store_command(h.CT, "1.2.3.1", 1), command=True)
    second.p_data(1, h.store_command(h.CT, "1.2.3.2", 1), command=True)
    deadline = time.monotonic() + 5
    while len(planned) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(planned) == 2
    first.p_data(1, h.explicit_dataset("1.2.3.1"), command=False)
    assert first.read_status() == 0xA700
    second.p_data(1, h.explicit_dataset("1.2.3.2"), command=False)
    assert second.read_status() == 0xB000
    assert (once.hits, rest.hits) == (1, 1)
    # (Both commands raced to the mock: either may have arrived first.)
    assert {s.sop_instance_uid: s.action for s in scp.received} == {
        "1.2.3.1": "fail",
        "1.2.3.2": "warn",
    }
    assert scp.violations == []


def test_an_abort_during_the_data_set_used_up_meanwhile_is_not_carried_out(
    scp: MockScp,
) -> None:
    def another_association_takes_the_last_hit(request: StoreRequest) -> bool:
        # Runs after the hit count was looked at and before the hit is counted: the
        # window in which a concurrent store can use the rule's last hit.
        abort.hits = 1
        return True

    abort = scp.on_store(times=1, when=another_association_takes_the_last_hit).abort(
        during_dataset=True
    )
    result = send(scp, CT)
    assert [f.status for f in result.files] == [0]
    assert [(s.action, s.complete) for s in scp.received] == [("accept", True)]
    assert abort.hits == 1
