"""MockScp on loopback with clients that are not ours: plain pynetdicom, and a raw
socket client for what pynetdicom would never send."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, build_context
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

from mock_scp import AssociationRecord, MockScp, MockScpError, ReceivedStore, StoreRequest
from scu.protocol import pdu

CT = "1.2.840.10008.5.1.4.1.1.2"


def _ae(**kw: Any) -> AE:
    ae = AE(ae_title=kw.pop("ae_title", "PYNETDICOM"))
    ae.acse_timeout = 5
    ae.dimse_timeout = kw.pop("dimse_timeout", 5)
    ae.network_timeout = 5
    contexts = kw.pop("contexts", None)
    if contexts is None:
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.add_requested_context(MRImageStorage)
        ae.add_requested_context(Verification)
    else:
        ae.requested_contexts = contexts
    return ae


def _assoc(scp: MockScp, **kw: Any) -> Any:
    called = kw.pop("called", "ANY-SCP")
    max_pdu = kw.pop("max_pdu", 16384)
    return _ae(**kw).associate("127.0.0.1", scp.port, ae_title=called, max_pdu=max_pdu)


def _send(scp: MockScp, datasets: list[Any], **kw: Any) -> list[int | None]:
    assoc = _assoc(scp, **kw)
    assert assoc.is_established
    out: list[int | None] = []
    for i, ds in enumerate(datasets, 1):
        st = assoc.send_c_store(ds, msg_id=i)
        out.append(int(st.Status) if "Status" in st else None)
        if not assoc.is_established:
            break
    if assoc.is_established:
        assoc.release()
    return out


def test_context_manager_binds_loopback_and_free_port() -> None:
    with MockScp(ae_title="PACS") as scp:
        assert scp.port > 0
        assert scp.addr == f"127.0.0.1:{scp.port}"
        assert scp.ae_title == "PACS"
        assert scp.running
    assert not scp.running


def test_echo_and_accept(scp: MockScp, h: Any) -> None:
    assoc = _assoc(scp)
    assert assoc.send_c_echo().Status == 0
    ds = h.make_dataset()
    assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    [store] = scp.received
    assert (store.sop_class_uid, store.sop_instance_uid) == (CT, ds.SOPInstanceUID)
    assert store.status == 0 and store.action == "accept"
    assert store.transfer_syntax == ExplicitVRLittleEndian  # preferred over the proposal order
    assert store.calling_ae_title == "PYNETDICOM" and store.called_ae_title == "ANY-SCP"
    assert store.dataset().PatientName == "Mock^Test"
    assert scp.associations[0].ended == "released"
    scp.check()


def test_statuses_comments_and_names(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=1).respond(0xB006, comment="discarded some")
    scp.on_store(nth=2).fail("out-of-resources", comment="disk full")
    scp.on_store(nth=3).warn("data-set-does-not-match-sop-class-warning")
    scp.on_store(nth=4).respond(0xC123)
    scp.on_store(nth=5).fail("cancel")
    assoc = _assoc(scp)
    statuses = []
    for i in range(6):
        rsp = assoc.send_c_store(h.make_dataset(), msg_id=i + 1)
        statuses.append((int(rsp.Status), rsp.get("ErrorComment")))
    assoc.release()
    assert statuses == [
        (0xB006, "discarded some"),
        (0xA700, "disk full"),
        (0xB007, None),
        (0xC123, None),
        (0xFE00, None),
        (0x0000, None),
    ]
    assert [r.status for r in scp.received] == [s for s, _ in statuses]
    assert [r.action for r in scp.received] == [
        "respond",
        "fail",
        "warn",
        "respond",
        "fail",
        "accept",
    ]


def test_rule_matchers(scp: MockScp, h: Any) -> None:
    special = h.make_dataset()
    scp.on_store(sop_instance_uid=special.SOPInstanceUID).fail(0xA900)
    scp.on_store(sop_class_uid="MRImageStorage").fail("sop-class-not-supported")
    scp.on_store(transfer_syntax=ImplicitVRLittleEndian).fail(0xC001)
    scp.on_store(calling_ae_title="OTHER").fail(0xC002)
    scp.on_store(when=lambda r: r.message_id == 9).warn()
    mr = h.make_dataset("1.2.840.10008.5.1.4.1.1.4")
    assoc = _assoc(scp)
    got = [
        assoc.send_c_store(h.make_dataset(), msg_id=1).Status,
        assoc.send_c_store(special, msg_id=2).Status,
        assoc.send_c_store(mr, msg_id=3).Status,
        assoc.send_c_store(h.make_dataset(), msg_id=9).Status,
    ]
    assoc.release()
    assert got == [0, 0xA900, 0x0122, 0xB000]
    implicit_only = [build_context(CTImageStorage, ImplicitVRLittleEndian)]
    assert _send(scp, [h.make_dataset()], contexts=implicit_only) == [0xC001]
    assert _send(scp, [h.make_dataset()], ae_title="OTHER") == [0xC002]


def test_nth_counts_across_associations_and_times(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=3).fail(0xA700)
    scp.on_store(times=1).warn()  # oneshot: the first store only
    assert _send(scp, [h.make_dataset(), h.make_dataset()]) == [0xB000, 0]
    assert _send(scp, [h.make_dataset(), h.make_dataset()]) == [0xA700, 0]
    assert [r.nth for r in scp.received] == [1, 2, 3, 4]
    assert len({r.association_id for r in scp.received}) == 2


def test_probability_is_deterministic_with_a_seed(
    scp_factory: Callable[..., MockScp], h: Any
) -> None:
    runs = []
    for _ in range(2):
        scp = scp_factory(seed=42)
        scp.on_store(probability=0.5).fail(0xA700)
        runs.append(_send(scp, [h.make_dataset() for _ in range(12)]))
    assert runs[0] == runs[1]
    assert set(runs[0]) == {0, 0xA700}


def test_rules_added_and_reset_while_running(scp: MockScp, h: Any) -> None:
    assoc = _assoc(scp)
    assert assoc.send_c_store(h.make_dataset()).Status == 0
    scp.on_store().fail(0xA700)
    assert assoc.send_c_store(h.make_dataset()).Status == 0xA700
    scp.reset()
    assert scp.received == [] and scp.rules == []
    assert assoc.send_c_store(h.make_dataset()).Status == 0
    assoc.release()
    assert [r.nth for r in scp.received] == [1]


def test_expect_counts_are_checked(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=1, expect=1).accept()
    scp.on_store(nth=5, expect=1).fail(0xA700)
    scp.on_store(expect=range(1, 3)).warn()
    _send(scp, [h.make_dataset(), h.make_dataset()])
    with pytest.raises(MockScpError) as info:
        scp.check()
    assert info.value.unmet and "nth=5" in info.value.unmet[0]
    assert len(info.value.unmet) == 1


def test_raising_predicate_surfaces_in_check(scp: MockScp, h: Any) -> None:
    def bad(req: StoreRequest) -> bool:
        raise KeyError("oops")

    scp.on_store(when=bad).fail(0xA700)
    assert _send(scp, [h.make_dataset()]) == [0]  # the rule does not match; default accept
    with pytest.raises(MockScpError, match="KeyError"):
        scp.check()


def test_stall_then_next_rule(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=1).stall(0.2)
    scp.on_store(nth=1).fail("processing-failure")
    assert _send(scp, [h.make_dataset(), h.make_dataset()]) == [0x0110, 0]
    assert scp.received[0].stalled_seconds == pytest.approx(0.2)


def test_stall_beyond_the_scu_dimse_timeout(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=1).stall(1.5)
    assoc = _assoc(scp, dimse_timeout=0.3)
    rsp = assoc.send_c_store(h.make_dataset())
    assert "Status" not in rsp  # pynetdicom gave up and aborted
    assoc.abort()  # idempotent: pynetdicom may still be tearing down
    assert scp.wait_idle(5)
    assert scp.associations[0].ended == "aborted"
    assert "SCU" in (scp.associations[0].end_detail or "")


def test_slow_read_still_completes(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=1).slow_read(200_000)
    ds = h.make_dataset(size=40_000)
    assert _send(scp, [ds]) == [0]
    assert scp.received[0].complete
    assert scp.received[0].dataset().SOPInstanceUID == ds.SOPInstanceUID


def test_abort_instead_of_response(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=2).abort()
    assoc = _assoc(scp)
    assert assoc.send_c_store(h.make_dataset()).Status == 0
    rsp = assoc.send_c_store(h.make_dataset())
    assert "Status" not in rsp
    assert scp.wait_idle(5)
    assert scp.associations[0].ended == "aborted"
    assert scp.received[1].status is None and scp.received[1].action == "abort"
    scp.check()  # the SCU did nothing wrong


def test_abort_during_dataset(scp: MockScp, h: Any) -> None:
    scp.on_store(nth=1).abort(during_dataset=True)
    assoc = _assoc(scp)
    rsp = assoc.send_c_store(h.make_dataset(size=200_000))
    assert "Status" not in rsp
    assert scp.wait_idle(5)
    [store] = scp.received
    assert store.action == "abort" and not store.complete
    assert 0 < len(store.raw) < 200_000
    assert scp.associations[0].ended == "aborted"
    with pytest.raises(ValueError, match="not received in full"):
        store.dataset()


@pytest.mark.parametrize("rst", [False, True])
def test_disconnect(scp: MockScp, h: Any, rst: bool) -> None:
    scp.on_store(nth=1).disconnect(rst=rst)
    assoc = _assoc(scp)
    rsp = assoc.send_c_store(h.make_dataset())
    assert "Status" not in rsp
    assert scp.wait_idle(5)
    assert scp.associations[0].ended == "dropped"
    assert scp.received[0].action == "disconnect"
    assert ("reset" in (scp.associations[0].end_detail or "")) is rst
    scp.check()


def test_disconnect_rst_is_seen_as_a_reset(scp: MockScp, raw: Callable[[int], Any], h: Any) -> None:
    scp.on_store().disconnect(rst=True)
    c = raw(scp.port)
    assert c.associate()[0] == 2
    c.store(1, CT, "1.2.3", h.explicit_dataset("1.2.3"))
    with pytest.raises(ConnectionResetError):
        c.read_pdu()


def test_garbage(scp: MockScp, raw: Callable[[int], Any], h: Any) -> None:
    scp.on_store().garbage(b"\xffJUNKJUNK")
    c = raw(scp.port)
    assert c.associate()[0] == 2
    c.store(1, CT, "1.2.3", h.explicit_dataset("1.2.3"))
    assert c.sock.recv(100) == b"\xffJUNKJUNK"
    assert c.sock.recv(100) == b""
    assert scp.wait_idle(5)
    assert scp.associations[0].ended == "dropped"


def test_garbage_default_with_pynetdicom(scp: MockScp, h: Any) -> None:
    scp.on_store().garbage()
    assoc = _assoc(scp, dimse_timeout=1)
    assert "Status" not in assoc.send_c_store(h.make_dataset())
    assoc.abort()
    assert scp.wait_idle(5)
    assert scp.received[0].action == "garbage" and scp.received[0].status is None
    assert scp.associations[0].ended == "dropped"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {
                "result": "transient",
                "source": "provider-presentation",
                "reason": "temporary-congestion",
            },
            (2, 3, 1),
        ),
        (
            {
                "result": "permanent",
                "source": "service-user",
                "reason": "calling-ae-title-not-recognized",
            },
            (1, 1, 3),
        ),
        ({"result": 1, "source": 2, "reason": 2}, (1, 2, 2)),
    ],
)
def test_reject_associations_on_the_wire(
    scp: MockScp, raw: Callable[[int], Any], kwargs: dict[str, Any], expected: tuple[int, int, int]
) -> None:
    scp.reject_associations(**kwargs, times=1)
    pdu_type, body = raw(scp.port).associate()
    assert pdu_type == 3 and tuple(body[1:4]) == expected
    assert raw(scp.port).associate()[0] == 2  # times=1: the next one is accepted
    record = scp.associations[0]
    assert record.ended == "rejected" and record.rejection == expected


def test_reject_seen_by_pynetdicom(scp: MockScp) -> None:
    scp.reject_associations(result="permanent", source="service-user", reason="no-reason-given")
    for n in range(3):  # permanent: every request
        # pynetdicom's own timeouts generous: a loaded machine must not turn the
        # rejection it receives into an abort of its own.
        ae = _ae()
        ae.acse_timeout = ae.network_timeout = 30
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="ANY-SCP")
        assert assoc.is_rejected, (n, assoc.is_aborted, scp.associations)
    assert [a.ended for a in scp.associations] == ["rejected"] * 3


def test_required_called_and_calling_ae_titles(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any]
) -> None:
    scp = scp_factory("PACS", require_called_ae_title=True, require_calling_ae_titles=["GOOD"])
    pdu, body = raw(scp.port).associate(called="WRONG", calling="GOOD")
    assert pdu == 3 and tuple(body[1:4]) == (1, 1, 7)
    pdu, body = raw(scp.port).associate(called="PACS", calling="BAD")
    assert pdu == 3 and tuple(body[1:4]) == (1, 1, 3)
    assert raw(scp.port).associate(called="PACS", calling="GOOD")[0] == 2


def test_max_associations(scp_factory: Callable[..., MockScp], raw: Callable[[int], Any]) -> None:
    scp = scp_factory(max_associations=1)
    first = raw(scp.port)
    assert first.associate()[0] == 2
    pdu, body = raw(scp.port).associate()
    assert pdu == 3 and tuple(body[1:4]) == (2, 3, 2)  # transient, presentation, local limit
    assert first.release()[0] == 6
    assert scp.wait_idle(5)
    assert raw(scp.port).associate()[0] == 2


def test_negotiation_policies(scp_factory: Callable[..., MockScp], h: Any) -> None:
    scp = scp_factory(sop_classes=["CTImageStorage"], transfer_syntaxes=["ImplicitVRLittleEndian"])
    contexts = [
        build_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        build_context(MRImageStorage),
        build_context(Verification),
    ]
    assoc = _assoc(scp, contexts=contexts)
    accepted = {str(c.abstract_syntax): str(c.transfer_syntax[0]) for c in assoc.accepted_contexts}
    rejected = {str(c.abstract_syntax): c.result for c in assoc.rejected_contexts}
    assoc.release()
    assert (
        accepted == {CT: ImplicitVRLittleEndian, Verification: ImplicitVRLittleEndian}
        or accepted[CT] == ImplicitVRLittleEndian
    )
    assert rejected == {MRImageStorage: 3}
    only_jpeg = scp_factory(transfer_syntaxes=[JPEGBaseline8Bit])
    assoc = _assoc(
        only_jpeg,
        contexts=[
            build_context(CTImageStorage, ExplicitVRLittleEndian),
            build_context(Verification),
        ],
    )
    assert [c.result for c in assoc.rejected_contexts] == [4]
    assoc.release()
    record = only_jpeg.associations[0]
    assert record.proposed_contexts[0][1] == CT
    assert [c[1] for c in record.accepted_contexts] == [Verification]


def test_unknown_sop_classes(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any]
) -> None:
    private = "1.2.826.0.1.3680043.99.1"
    strict = scp_factory()
    pdu_type, _ = raw(strict.port).associate([(1, private, ["1.2.840.10008.1.2.1"])])
    assert pdu_type == 2  # accepted association, refused context
    assert strict.associations[0].accepted_contexts == []
    lenient = scp_factory(accept_unknown_sop_classes=True)
    raw(lenient.port).associate([(1, private, ["1.2.840.10008.1.2.1"])])
    assert lenient.associations[0].accepted_contexts == [(1, private, "1.2.840.10008.1.2.1")]


def test_store_dir_writes_part10_with_safe_names(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any], h: Any, tmp_path: Path
) -> None:
    import pydicom

    scp = scp_factory(store_dir=tmp_path / "in", strict=False)
    ds = h.make_dataset()
    _send(scp, [ds])
    c = raw(scp.port)
    c.associate()
    evil = "../../../tmp/evil"
    c.store(1, CT, evil, h.explicit_dataset(evil), msg_id=2)
    assert c.read_status() == 0
    c.release()
    files = sorted(p.name for p in (tmp_path / "in").iterdir())
    assert files == sorted([f"{ds.SOPInstanceUID}.dcm", "store-000002.dcm"])
    back = pydicom.dcmread(tmp_path / "in" / f"{ds.SOPInstanceUID}.dcm")
    assert back.SOPInstanceUID == ds.SOPInstanceUID and back.PatientName == "Mock^Test"
    assert scp.received[0].path == (tmp_path / "in" / f"{ds.SOPInstanceUID}.dcm").resolve()
    assert list(tmp_path.rglob("evil*")) == []


# --- violations -------------------------------------------------------------------


def test_uid_mismatch_is_a_violation(scp: MockScp, raw: Callable[[int], Any], h: Any) -> None:
    c = raw(scp.port)
    c.associate()
    c.store(1, CT, "1.2.3.4", h.explicit_dataset("1.2.3.999"))
    assert c.read_status() == 0
    c.release()
    [v] = scp.violations
    assert v.kind == "uid-mismatch" and "1.2.3.999" in v.detail
    with pytest.raises(MockScpError, match="uid-mismatch"):
        scp.check()
    scp.check(violations=False)


def test_wrong_transfer_syntax_is_a_violation(
    scp: MockScp, raw: Callable[[int], Any], h: Any
) -> None:
    c = raw(scp.port)
    c.associate([(1, CT, [h.EXPLICIT])])
    c.store(1, CT, "1.2.3.4", h.implicit_dataset("1.2.3.4"))
    assert c.read_status() == 0
    c.release()
    assert [v.kind for v in scp.violations] == ["wrong-transfer-syntax"]


def test_pdu_above_max_strict_aborts(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any], h: Any
) -> None:
    scp = scp_factory(max_pdu_length=4096)
    c = raw(scp.port)
    c.associate()
    c.p_data(1, h.store_command(CT, "1.2.3", 1), command=True)
    c.p_data(1, h.explicit_dataset("1.2.3", pad=8000), command=False)
    pdu_type, body = c.read_pdu()
    assert pdu_type == 7 and body[2] == 2  # A-ABORT from the provider, as DCMTK does
    assert scp.wait_idle(5)
    assert [v.kind for v in scp.violations] == ["pdu-too-large"]
    assert scp.associations[0].ended == "aborted"


def test_pdu_above_max_lenient_records(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any], h: Any
) -> None:
    scp = scp_factory(max_pdu_length=4096, strict=False)
    c = raw(scp.port)
    c.associate()
    c.store(1, CT, "1.2.3", h.explicit_dataset("1.2.3", pad=8000))
    assert c.read_status() == 0
    c.release()
    assert [v.kind for v in scp.violations] == ["pdu-too-large"]


def test_duplicate_outstanding_message_id(scp: MockScp, raw: Callable[[int], Any], h: Any) -> None:
    scp.on_store(nth=1).stall(0.3)  # the second request arrives while the first is outstanding
    c = raw(scp.port)
    c.associate()
    c.store(1, CT, "1.2.3.1", h.explicit_dataset("1.2.3.1"), msg_id=5)
    c.store(1, CT, "1.2.3.2", h.explicit_dataset("1.2.3.2"), msg_id=5)
    assert [c.read_status(), c.read_status()] == [0, 0]
    c.release()
    assert [v.kind for v in scp.violations] == ["operations-window", "duplicate-message-id"]


def test_requests_sent_ahead_are_answered_in_order_and_flagged(
    scp: MockScp, raw: Callable[[int], Any], h: Any
) -> None:
    """An SCU that does not wait for its responses (as DCMTK storescu does once its DIMSE
    timeout passes) breaks the default operations window of one; each request is still
    answered, in order, and the time each reached the mock is journalled."""
    scp.on_store(nth=1).stall(0.4)
    scp.on_store(nth=2).fail("0xA700")
    c = raw(scp.port)
    c.associate()
    for i in (1, 2, 3):
        c.store(1, CT, f"1.2.3.{i}", h.explicit_dataset(f"1.2.3.{i}"), msg_id=i)
    assert [c.read_status(), c.read_status(), c.read_status()] == [0, 0xA700, 0]
    assert c.release()[0] == 6
    assert scp.wait_idle(5)
    windows = [v for v in scp.violations if v.kind == "operations-window"]
    assert [v.message_id for v in windows] == [2, 3]
    assert "message ID 1 was still outstanding" in windows[0].detail
    assert [v.kind for v in scp.violations] == ["operations-window"] * 2
    first, second, third = scp.received
    assert [s.sop_instance_uid for s in scp.received] == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    # The later requests arrived during the stall, not when the mock came to them.
    assert first.answered_at is not None
    assert second.requested_at is not None and third.requested_at is not None
    assert second.requested_at < first.answered_at
    assert third.requested_at < first.answered_at


def test_sequential_reuse_of_a_message_id_is_legal(scp: MockScp, h: Any) -> None:
    assoc = _assoc(scp)
    for _ in range(3):  # pynetdicom's default msg_id is always 1: legal, nothing outstanding
        assert assoc.send_c_store(h.make_dataset()).Status == 0
    assoc.release()
    scp.check()


def test_dropped_connection_is_a_violation(scp: MockScp, raw: Callable[[int], Any], h: Any) -> None:
    c = raw(scp.port)
    c.associate()
    c.store(1, CT, "1.2.3", h.explicit_dataset("1.2.3"))
    assert c.read_status() == 0
    c.close()
    assert scp.wait_idle(5)
    assert scp.associations[0].ended == "dropped"
    assert [v.kind for v in scp.violations] == ["dropped-connection"]


def test_store_on_another_sop_class_context(
    scp: MockScp, raw: Callable[[int], Any], h: Any
) -> None:
    mr = "1.2.840.10008.5.1.4.1.1.4"
    c = raw(scp.port)
    c.associate([(1, CT, [h.EXPLICIT]), (3, mr, [h.EXPLICIT])])
    # A CT store on MR's context (a node-dicom StoreScu bug).
    c.store(3, CT, "1.2.3", h.explicit_dataset("1.2.3"))
    c.read_status()
    c.release()
    assert [v.kind for v in scp.violations] == ["context-mismatch"]


# --- timeouts, listeners, lifecycle -------------------------------------------------


def test_acse_timeout(scp_factory: Callable[..., MockScp]) -> None:
    scp = scp_factory(acse_timeout=0.3)
    s = socket.create_connection(("127.0.0.1", scp.port))
    try:
        assert s.recv(10) == b""  # the mock gave up on us
    finally:
        s.close()
    assert scp.associations[0].ended == "aborted"
    assert "ACSE timeout" in (scp.associations[0].end_detail or "")


def test_network_timeout_aborts(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any]
) -> None:
    scp = scp_factory(network_timeout=0.3)
    c = raw(scp.port)
    assert c.associate()[0] == 2
    assert c.read_pdu()[0] == 7
    assert scp.wait_idle(5)
    assert "network timeout" in (scp.associations[0].end_detail or "")


def test_dimse_timeout_mid_message(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any], h: Any
) -> None:
    scp = scp_factory(dimse_timeout=0.3)
    c = raw(scp.port)
    c.associate()
    c.p_data(1, h.store_command(CT, "1.2.3", 1), command=True)  # and no dataset follows
    assert c.read_pdu()[0] == 7
    assert scp.wait_idle(5)
    assert "DIMSE timeout" in (scp.associations[0].end_detail or "")
    assert scp.received[0].action == "interrupted" and not scp.received[0].complete


def test_listeners_and_errors(scp: MockScp, h: Any) -> None:
    seen: list[tuple[str, Any]] = []

    def listen(item: AssociationRecord | ReceivedStore) -> None:
        if isinstance(item, AssociationRecord):
            seen.append(("assoc", item.ended))
        else:
            seen.append(("store", item.status))

    def broken(item: object) -> None:
        raise RuntimeError("listener broke")

    scp.add_listener(listen)
    scp.add_listener(broken)
    scp.on_store(nth=2).fail(0xA700)
    _send(scp, [h.make_dataset(), h.make_dataset()])
    assert scp.wait_idle(5)
    assert seen == [("assoc", None), ("store", 0), ("store", 0xA700), ("assoc", "released")]
    assert len(scp.errors) == 4
    with pytest.raises(MockScpError, match="listener broke"):
        scp.check()


def test_concurrent_associations(scp: MockScp, h: Any) -> None:
    results: list[list[int | None]] = []

    def worker() -> None:
        results.append(_send(scp, [h.make_dataset() for _ in range(5)]))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[0] * 5] * 3
    assert sorted(r.nth for r in scp.received) == list(range(1, 16))
    scp.check()


def test_stop_leaves_no_thread_or_socket(h: Any) -> None:
    import psutil

    proc = psutil.Process()
    before_threads = {t.ident for t in threading.enumerate()}
    scp = MockScp(network_timeout=30).start()
    held = socket.create_connection(("127.0.0.1", scp.port))  # an idle connection, mid-ACSE
    assoc = _assoc(scp)  # and an open association
    assert assoc.is_established
    scp.on_store().stall(30)
    pending = threading.Thread(target=lambda: assoc.send_c_store(h.make_dataset()))
    pending.start()
    scp.stop()
    pending.join(10)
    held.close()
    assoc.abort()
    gc.collect()
    leftover = [
        t
        for t in threading.enumerate()
        if t.ident not in before_threads and t.name.startswith("mock-scp")
    ]
    assert leftover == []
    ours = [c for c in proc.net_connections(kind="tcp") if c.laddr and c.laddr[1] == scp.port]
    assert ours == []  # neither the listener nor any accepted socket is left
    assert scp.associations[0].ended == "aborted"


def test_port_is_reusable_after_stop() -> None:
    with MockScp() as first:
        port = first.port
    with MockScp(port=port) as second:
        assert second.port == port


def test_uid_found_past_an_undefined_length_sequence(
    scp: MockScp, raw: Callable[[int], Any]
) -> None:
    import struct

    # (0008,0006) SQ of undefined length before (0008,0018): the walk of the leading
    # elements follows the sequence to its delimiter and finds the UID on the way in.
    sq = struct.pack("<HH2s2xI", 8, 6, b"SQ", 0xFFFFFFFF)
    sq += struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    uid = b"1.2.3.777\x00"
    data = sq + struct.pack("<HH2sH", 8, 0x18, b"UI", len(uid)) + uid
    c = raw(scp.port)
    c.associate()
    c.store(1, CT, "1.2.3.4", data)
    assert c.read_status() == 0
    c.release()
    assert scp.received[0].dataset_sop_instance_uid == "1.2.3.777"
    [v] = scp.violations
    assert v.kind == "uid-mismatch" and "1.2.3.777" in v.detail
    assert scp.received[0].dataset_sop_instance_uid == "1.2.3.777"


def test_ipv6_loopback(scp_factory: Callable[..., MockScp], h: Any) -> None:
    scp = scp_factory(host="::1")
    assert scp.addr == f"[::1]:{scp.port}"
    assoc = _ae().associate("::1", scp.port)
    assert assoc.send_c_store(h.make_dataset()).Status == 0
    assoc.release()


def test_verification_is_always_accepted(scp_factory: Callable[..., MockScp]) -> None:
    scp = scp_factory(sop_classes=["MRImageStorage"], transfer_syntaxes=["JPEGBaseline8Bit"])
    assoc = _assoc(scp, contexts=[build_context(Verification)])
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def test_other_dimse_commands_get_unrecognized_operation(
    scp_factory: Callable[..., MockScp], h: Any
) -> None:
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

    scp = scp_factory(accept_unknown_sop_classes=True)
    assoc = _assoc(scp, contexts=[build_context(PatientRootQueryRetrieveInformationModelFind)])
    query = h.make_dataset()
    query.QueryRetrieveLevel = "PATIENT"
    [(status, _)] = list(assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind))
    assoc.release()
    assert status.Status == 0x0211
    assert scp.received == []


def test_protocol_errors_abort_and_are_recorded(
    scp: MockScp, raw: Callable[[int], Any], h: Any
) -> None:
    import struct

    first = raw(scp.port)
    first.sock.sendall(struct.pack(">BxI", 4, 6) + b"\x00" * 6)  # P-DATA before associating
    assert first.read_pdu()[0] == 7
    second = raw(scp.port)
    second.associate()
    second.p_data(1, h.explicit_dataset("1.2.3"), command=False)  # dataset without a command
    assert second.read_pdu()[0] == 7
    third = raw(scp.port)
    third.associate()
    third.sock.sendall(struct.pack(">BxI", 5, 5000) + b"\x00" * 5000)  # oversized A-RELEASE-RQ
    assert third.read_pdu()[0] == 7
    assert scp.wait_idle(5)
    assert [v.kind for v in scp.violations] == ["protocol"] * 3
    assert [a.ended for a in scp.associations] == ["aborted"] * 3


def test_listener_sees_a_rejected_association_once(scp: MockScp, raw: Callable[[int], Any]) -> None:
    seen: list[AssociationRecord | ReceivedStore] = []
    scp.add_listener(seen.append)
    scp.reject_associations(times=1)
    raw(scp.port).associate()
    assert scp.wait_idle(5)
    assert [(type(x).__name__, getattr(x, "ended", None)) for x in seen] == [
        ("AssociationRecord", "rejected")
    ]
    scp.remove_listener(seen.append)
    c = raw(scp.port)
    c.associate()
    c.release()
    assert scp.wait_idle(5)
    assert len(seen) == 1


def test_predicate_sees_the_request(scp: MockScp, h: Any) -> None:
    requests: list[StoreRequest] = []

    def record(req: StoreRequest) -> bool:
        requests.append(req)
        return False

    scp.on_store(when=record).fail(0xA700)
    ds = h.make_dataset()
    assoc = _assoc(scp, ae_title="CALLER", called="PACS")
    assert assoc.send_c_store(ds, msg_id=7, originator_aet="MOVER", originator_id=3).Status == 0
    assoc.release()
    [req] = requests
    assert (req.nth, req.message_id, req.sop_instance_uid) == (1, 7, ds.SOPInstanceUID)
    assert (req.calling_ae_title, req.called_ae_title) == ("CALLER", "PACS")
    assert req.transfer_syntax == ExplicitVRLittleEndian
    assert req.move_originator_ae_title == "MOVER"


def test_unlimited_pdu_and_a_large_single_fragment(
    scp_factory: Callable[..., MockScp], h: Any
) -> None:
    scp = scp_factory(max_pdu_length=0)  # the SCU may then send the dataset in one PDU
    ds = h.make_dataset(size=600_000)
    assert _send(scp, [ds], max_pdu=0) == [0]
    assert scp.received[0].size > 600_000
    assert scp.received[0].dataset()[0x00091010].value == ds[0x00091010].value
    scp.check()


def test_pdu_larger_than_the_read_buffer(
    scp_factory: Callable[..., MockScp], raw: Callable[[int], Any], h: Any
) -> None:
    scp = scp_factory(max_pdu_length=0)
    c = raw(scp.port)
    c.associate(max_pdu=0)
    data = h.explicit_dataset("1.2.3", pad=1_000_000)  # one PDU, bigger than the 256 KiB buffer
    c.store(1, CT, "1.2.3", data)
    assert c.read_status() == 0
    c.release()
    assert scp.received[0].raw == data
    scp.check()


def test_reject_then_close_at_once(scp: MockScp, raw: Callable[[int], Any]) -> None:
    scp.reject_associations(result="transient", source=3, reason=1, close_at_once=True)
    c = raw(scp.port)
    pdu_type, body = c.associate()
    assert pdu_type == 3 and tuple(body[1:4]) == (2, 3, 1)
    assert c.sock.recv(10) == b""  # closed right away, as DCMTK storescp and Orthanc do
    with pytest.raises(ValueError, match="close_at_once"):
        scp.reject_associations(close_at_once="yes")  # type: ignore[arg-type]


def test_request_listener_fires_before_the_answer(scp: MockScp, h: Any) -> None:
    arrived = threading.Event()
    seen: list[StoreRequest] = []

    def on_request(req: StoreRequest) -> None:
        seen.append(req)
        arrived.set()

    scp.add_request_listener(on_request)
    scp.on_store(nth=1).stall(30)
    assoc = _assoc(scp)
    sender = threading.Thread(target=lambda: assoc.send_c_store(h.make_dataset()))
    sender.start()
    assert arrived.wait(5)  # the store is on the wire while it is still stalled
    assert scp.received == [] and [r.nth for r in seen] == [1]
    scp.stop()
    sender.join(10)
    assoc.abort()
    assert [r.action for r in scp.received] == ["interrupted"]


def test_nul_padded_uids_in_a_request_are_tolerated_and_recorded(scp: MockScp) -> None:
    """Some SCUs pad odd-length UIDs in the A-ASSOCIATE-RQ with a NUL (PS3.8 9.3.2.2
    writes them unpadded): the mock reads them without the NUL, accepts the context,
    and records the padding as the SCU's violation."""
    import socket
    import struct

    from scu.protocol import pdu

    def item(kind: int, value: bytes) -> bytes:
        return struct.pack(">BxH", kind, len(value)) + value

    ct, explicit = CT.encode() + b"\x00", b"1.2.840.10008.1.2.1\x00"
    context = b"\x01\x00\x00\x00" + item(0x30, ct) + item(0x40, explicit)
    user = item(0x51, struct.pack(">L", 16384)) + item(0x52, b"1.2.3.4.5\x00")
    body = (
        struct.pack(">H", 1)
        + b"\x00\x00"
        + b"ANY-SCP".ljust(16)
        + b"PADDING-SCU".ljust(16)
        + bytes(32)
        + item(0x10, b"1.2.840.10008.3.1.1.1\x00")
        + item(0x20, context)
        + item(0x50, user)
    )
    with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as sock:
        sock.sendall(struct.pack(">BxL", 1, len(body)) + body)
        header = sock.recv(6, socket.MSG_WAITALL)
        kind, length = struct.unpack(">BxL", header)
        answer = sock.recv(length, socket.MSG_WAITALL)
        assert kind == 0x02, answer
        accept = pdu.decode_associate_ac(answer)
        assert accept.context(1) == pdu.ContextResult(1, 0, "1.2.840.10008.1.2.1")
        assert accept.anomalies == ()  # and nothing padded on our side either
        sock.sendall(pdu.encode_release_rq())
        assert sock.recv(6, socket.MSG_WAITALL)[0] == 0x06
    assert scp.wait_idle(5)
    (record,) = scp.associations
    assert record.proposed_contexts == [(1, CT, ("1.2.840.10008.1.2.1",))]
    assert record.implementation_class_uid == "1.2.3.4.5"
    notes = [v.detail for v in scp.violations if v.kind == "negotiation"]
    assert any("padded with a NUL" in n and "abstract syntax" in n for n in notes), notes
    assert any("padded with a NUL" in n and "transfer syntax" in n for n in notes), notes
    assert any("Implementation Class UID" in n for n in notes), notes
    assert any("application context" in n for n in notes), notes


def test_release_then_close_during_a_stall_is_named_as_such(
    scp: MockScp, raw: Callable[[int], Any], h: Any
) -> None:
    """Orthanc as an SCU, at its DIMSE timeout, sends an A-RELEASE-RQ while the store is
    outstanding and closes the connection before the A-RELEASE-RP can come."""
    scp.on_store(nth=1).stall(2)
    c = raw(scp.port)
    c.associate()
    c.store(1, CT, "1.2.3.1", h.explicit_dataset("1.2.3.1"))
    c.sock.sendall(pdu.encode_release_rq())
    time.sleep(0.2)
    c.close()
    assert scp.wait_idle(5)
    (violation,) = scp.violations
    assert violation.kind == "dropped-connection"
    assert "after an A-RELEASE-RQ sent while a request was outstanding" in violation.detail
    assert scp.associations[0].ended == "dropped"
    assert [r.action for r in scp.received] == ["interrupted"]
