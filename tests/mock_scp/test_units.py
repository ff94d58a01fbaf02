"""Pure logic of the mock SCP: tables, validation, negotiation, rule matching, codecs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import mock_scp
from mock_scp import MockScp, StoreRequest
from mock_scp.checks import sniff
from mock_scp.journal import ReceivedStore
from mock_scp.matching import RuleTable
from mock_scp.negotiation import Policy, choose_syntax, negotiate
from mock_scp.rules import StoreContent
from mock_scp.storage import Payload, StoreWriter, part10_bytes, safe_file_name
from scu.protocol.pdu import ContextProposal as ProposedContext


def sniff_dataset(data: bytes, syntax: str) -> tuple[str | None, str | None]:
    return sniff(data, syntax, len(data))


CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
JPEG = "1.2.840.10008.1.2.4.50"
J2K = "1.2.840.10008.1.2.4.90"


def test_public_names() -> None:
    for name in mock_scp.__all__:
        assert hasattr(mock_scp, name), name
    assert {"MockScp", "MockScpError", "ReceivedStore", "AssociationRecord"} <= set(
        mock_scp.__all__
    )


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"ae_title": "X" * 17}, "ae_title"),
        ({"ae_title": "A\\B"}, "ae_title"),
        ({"port": 70000}, "port"),
        ({"max_pdu_length": 10}, "max_pdu_length"),
        ({"transfer_syntaxes": ["1.2.03"]}, "transfer_syntaxes"),
        ({"transfer_syntaxes": "ExplicitVRLittleEndian"}, "transfer_syntaxes"),
        ({"sop_classes": ["BogusStorage"]}, "sop_classes"),
        ({"sop_classes": []}, "sop_classes"),
        ({"max_associations": 0}, "max_associations"),
        ({"acse_timeout": -1}, "acse_timeout"),
        ({"network_timeout": 0}, "network_timeout"),
        ({"require_calling_ae_titles": []}, "require_calling_ae_titles"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        MockScp(**kwargs)  # type: ignore[arg-type]


def test_bad_rules_fail_at_configuration_time() -> None:
    scp = MockScp()
    with pytest.raises(ValueError, match="seconds"):
        scp.on_store(nth=1).stall(-0.5)
    with pytest.raises(ValueError, match="status"):
        scp.on_store().fail("no-such-status")
    with pytest.raises(ValueError, match="not a failure"):
        scp.on_store().fail(0xB000)
    with pytest.raises(ValueError, match="not a warning"):
        scp.on_store().warn(0xA700)
    with pytest.raises(ValueError, match="sop_instance_uid"):
        scp.on_store(sop_instance_uid="1.2.abc")
    with pytest.raises(ValueError, match="nth"):
        scp.on_store(nth=0)
    with pytest.raises(ValueError, match="probability"):
        scp.on_store(probability=1.5)
    with pytest.raises(ValueError, match="expect"):
        scp.on_store(times=1, expect=2)
    with pytest.raises(ValueError, match="expect"):
        scp.on_store(nth=3, expect=2)
    with pytest.raises(ValueError, match="comment"):
        scp.on_store().respond(0xA700, comment="x" * 65)
    with pytest.raises(ValueError, match="bytes_per_second"):
        scp.on_store().slow_read(0)
    with pytest.raises(ValueError, match="when"):
        scp.on_store(when="nth == 3")  # type: ignore[arg-type]
    builder = scp.on_store(nth=1)
    builder.accept()
    with pytest.raises(ValueError, match="already has an action"):
        builder.fail(0xA700)
    with pytest.raises(ValueError, match="times"):
        scp.reject_associations(times=0)


def _req(nth: int, **kw: object) -> StoreRequest:
    base: dict[str, object] = dict(
        nth=nth,
        sop_class_uid=CT,
        sop_instance_uid=f"1.2.3.{nth}",
        transfer_syntax=EXPLICIT,
        calling_ae_title="SCU",
        called_ae_title="SCP",
        association_id=1,
        message_id=nth,
        context_id=1,
    )
    base.update(kw)
    return StoreRequest(**base)  # type: ignore[arg-type]


def _both_steps(
    table: RuleTable, req: StoreRequest, errors: list[BaseException]
) -> tuple[object, list[object]]:
    plan = table.plan(req, errors.append)
    decision, hit = table.decide(plan, StoreContent(req, lambda: b""), errors.append)
    return decision, list(hit)


def _decide(table: RuleTable, req: StoreRequest) -> tuple[str, int, float]:
    errors: list[BaseException] = []
    decision, _ = _both_steps(table, req, errors)
    assert not errors
    return decision.action.name, decision.action.status, decision.stall_seconds  # type: ignore[attr-defined]


def test_rule_matching_first_match_wins_and_defaults_to_accept() -> None:
    t = RuleTable(seed=None)
    t.builder(**_matchers(sop_class_uid=MR)).fail(0xA900)
    t.builder(**_matchers(nth=2)).warn()
    t.builder(**_matchers(calling_ae_title="OTHER")).fail(0xC000)
    assert _decide(t, _req(1)) == ("accept", 0, 0.0)
    assert _decide(t, _req(2)) == ("warn", 0xB000, 0.0)
    assert _decide(t, _req(2, sop_class_uid=MR)) == ("fail", 0xA900, 0.0)
    assert _decide(t, _req(3, calling_ae_title="OTHER")) == ("fail", 0xC000, 0.0)


def _matchers(**kw: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        nth=None,
        sop_class_uid=None,
        sop_instance_uid=None,
        transfer_syntax=None,
        calling_ae_title=None,
        when=None,
        probability=None,
        times=None,
        expect=None,
    )
    base.update(kw)
    return base


def test_times_and_expect() -> None:
    t = RuleTable(seed=None)
    rule = t.builder(**_matchers(times=2, expect=2)).fail(0xA700)
    assert [_decide(t, _req(n))[0] for n in (1, 2, 3)] == ["fail", "fail", "accept"]
    assert rule.hits == 2
    assert t.unmet() == []
    t2 = RuleTable(seed=None)
    t2.builder(**_matchers(nth=5, expect=1)).accept()
    assert _decide(t2, _req(1))[0] == "accept"
    assert "expected 1 hit(s), got 0" in t2.unmet()[0]


def test_stall_chains_to_the_next_matching_rule() -> None:
    t = RuleTable(seed=None)
    t.builder(**_matchers(nth=1)).stall(0.25)
    t.builder(**_matchers()).fail("processing-failure")
    assert _decide(t, _req(1)) == ("fail", 0x0110, 0.25)
    assert _decide(t, _req(2)) == ("fail", 0x0110, 0.0)
    t2 = RuleTable(seed=None)
    t2.builder(**_matchers()).stall(0.5)
    assert _decide(t2, _req(1)) == ("accept", 0, 0.5)


def test_probability_is_seeded() -> None:
    def run(seed: int) -> list[str]:
        t = RuleTable(seed=seed)
        t.builder(**_matchers(probability=0.5)).fail(0xA700)
        return [_decide(t, _req(n))[0] for n in range(1, 41)]

    first = run(7)
    assert first == run(7)
    assert 5 < first.count("fail") < 35
    assert first != run(8)


def test_raising_predicate_is_reported_and_does_not_match() -> None:
    t = RuleTable(seed=None)

    def boom(req: StoreRequest) -> bool:
        raise RuntimeError("predicate exploded")

    t.builder(**_matchers(when=boom)).fail(0xA700)
    errors: list[BaseException] = []
    decision, _ = _both_steps(t, _req(1), errors)
    assert decision.action.name == "accept"  # type: ignore[attr-defined]
    assert "exploded" in str(errors[0])


@pytest.mark.parametrize(
    ("proposed", "accepted", "expected"),
    [
        ([IMPLICIT, EXPLICIT], [IMPLICIT, EXPLICIT], EXPLICIT),  # not the proposal's order
        ([JPEG, IMPLICIT], [EXPLICIT, IMPLICIT, JPEG], IMPLICIT),
        ([J2K, JPEG], [EXPLICIT, JPEG, J2K], JPEG),  # the SCP's own order
        ([J2K], [EXPLICIT, IMPLICIT], None),
        ([BIG, IMPLICIT], [BIG], BIG),
    ],
)
def test_choose_syntax_like_storescp(
    proposed: list[str], accepted: list[str], expected: str | None
) -> None:
    assert choose_syntax(proposed, accepted) == expected


def test_negotiate_results() -> None:
    policy = Policy(frozenset({CT}), (EXPLICIT, IMPLICIT), {}, accept_unknown=False)
    out = negotiate(
        [
            ProposedContext(1, CT, (IMPLICIT, EXPLICIT)),
            ProposedContext(3, MR, (EXPLICIT,)),
            ProposedContext(5, CT, (J2K,)),
            ProposedContext(7, "1.2.840.10008.1.1", (IMPLICIT,)),
        ],
        policy,
    )
    assert [(cid, res) for cid, res, _ in out] == [(1, 0), (3, 3), (5, 4), (7, 0)]
    assert out[0][2] == EXPLICIT
    unknown = Policy(frozenset({CT}), (EXPLICIT,), {}, accept_unknown=True)
    assert negotiate([ProposedContext(1, "1.2.3.4", (EXPLICIT,))], unknown)[0][1] == 0


def test_per_sop_class_syntaxes_from_a_mapping() -> None:
    scp = MockScp(transfer_syntaxes={CT: ["JPEGBaseline8Bit"], MR: [IMPLICIT]})
    out = negotiate(
        [
            ProposedContext(1, CT, (EXPLICIT, JPEG)),
            ProposedContext(3, MR, (EXPLICIT, IMPLICIT)),
            ProposedContext(5, "1.2.840.10008.5.1.4.1.1.7", (EXPLICIT,)),
        ],
        scp.policy,
    )
    assert [(r, ts) for _, r, ts in out][:2] == [(0, JPEG), (0, IMPLICIT)]
    assert out[2][1] == 3


def test_mapping_and_sop_classes_must_agree() -> None:
    with pytest.raises(ValueError, match="transfer_syntaxes"):
        MockScp(sop_classes=[CT], transfer_syntaxes={MR: [EXPLICIT]})


def test_restart_and_double_start() -> None:
    scp = MockScp()
    scp.start()
    with pytest.raises(RuntimeError, match="already running"):
        scp.start()
    scp.stop()
    scp.stop()  # idempotent
    with scp:
        assert scp.running and scp.port > 0
    assert not scp.running


def test_sniff_detects_wrong_vr_and_finds_uid() -> None:
    uid = b"1.2.3.4\x00"
    explicit = (
        struct.pack("<HH2sH", 8, 0x16, b"UI", 2)
        + b"1\x00"
        + struct.pack("<HH2sH", 8, 0x18, b"UI", len(uid))
        + uid
    )
    implicit = (
        struct.pack("<HHI", 8, 0x16, 2) + b"1\x00" + struct.pack("<HHI", 8, 0x18, len(uid)) + uid
    )
    assert sniff_dataset(explicit, EXPLICIT) == (None, "1.2.3.4")
    assert sniff_dataset(implicit, IMPLICIT) == (None, "1.2.3.4")
    problem, _ = sniff_dataset(implicit, EXPLICIT)
    assert problem is not None and "implicit" in problem
    problem, _ = sniff_dataset(explicit, IMPLICIT)
    assert problem is not None and "explicit" in problem


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        ("1.2.3.4", "1.2.3.4.dcm"),
        ("../../etc/passwd", "store-000007.dcm"),
        ("/abs/path", "store-000007.dcm"),
        ("1.2/../../x", "store-000007.dcm"),
        ("", "store-000007.dcm"),
        ("..", "store-000007.dcm"),
    ],
)
def test_safe_file_names(uid: str, name: str) -> None:
    assert safe_file_name(uid, 7) == name


def _store(uid: str, nth: int) -> ReceivedStore:
    return ReceivedStore(
        CT,
        uid,
        EXPLICIT,
        "SCU",
        "SCP",
        1,
        nth,
        0,
        "accept",
        nth=nth,
        payload=Payload.of(struct.pack("<HH2sH", 8, 0x18, b"UI", 8) + b"1.2.3.4\x00"),
    )


def test_store_writer_stays_inside_and_never_overwrites(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "out")
    paths = [writer.write(_store(u, n)) for n, u in enumerate(["1.2.3", "1.2.3", "../../evil"], 1)]
    assert [p.name for p in paths] == ["1.2.3.dcm", "1.2.3_2.dcm", "store-000003.dcm"]
    assert all(p.parent == (tmp_path / "out").resolve() for p in paths)
    assert not (tmp_path / "evil").exists()


def test_part10_bytes_decode() -> None:
    import io

    import pydicom

    raw = struct.pack("<HH2sH", 8, 0x18, b"UI", 8) + b"1.2.3.4\x00"
    ds = pydicom.dcmread(
        io.BytesIO(
            part10_bytes(
                raw,
                sop_class_uid=CT,
                sop_instance_uid="1.2.3.4",
                transfer_syntax=EXPLICIT,
                source_ae_title="SCU",
            )
        )
    )
    assert ds.SOPInstanceUID == "1.2.3.4"
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    assert ds.file_meta.SourceApplicationEntityTitle == "SCU"


def test_every_matcher_with_and_without_offset() -> None:
    table = RuleTable(seed=None)
    plain = table.builder(
        nth=None, every=3, offset=0, sop_class_uid=None, sop_instance_uid=None,
        transfer_syntax=None, calling_ae_title=None, when=None, probability=None,
        times=None, expect=None,
    ).accept()  # fmt: skip
    shifted = table.builder(
        nth=None, every=3, offset=1, sop_class_uid=None, sop_instance_uid=None,
        transfer_syntax=None, calling_ae_title=None, when=None, probability=None,
        times=None, expect=None,
    ).accept()  # fmt: skip

    def request(nth: int) -> StoreRequest:
        return StoreRequest(nth, CT, "1.2", EXPLICIT, "SCU", "SCP", 1, nth, 1)

    assert [n for n in range(1, 12) if plain.static_match(request(n))] == [3, 6, 9]
    assert [n for n in range(1, 12) if shifted.static_match(request(n))] == [4, 7, 10]
    assert "every=3, offset=1" in shifted.description
    with pytest.raises(ValueError, match="every"):
        MockScp().on_store(every=0)
    with pytest.raises(ValueError, match="offset: only means something with every"):
        MockScp().on_store(offset=2)
