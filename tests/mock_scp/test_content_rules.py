"""Rules on the content of a store (``dataset=``, ``match=``), through a real send:
which values match, what the predicates see, what cannot be combined, and what an
unmet content expectation says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mock_scp import MockScp, MockScpError, StoreContent, datagen
from scu import StoreScu


def send(scp: MockScp, *files: dict[str, Any]) -> list[int | None]:
    """Send one synthetic file per options dict, in order; the statuses the SCU got."""
    sender = StoreScu(scp.addr, called_ae_title=scp.ae_title)
    for n, options in enumerate(files):
        options = {"seed": n, **options}
        sender.add_file_from_memory(datagen.make_bytes(**options), f"{n}.dcm")
    result = sender.send()
    assert scp.wait_idle(5)
    return [f.status for f in result.files]


CT = {"sop_class": "CTImageStorage"}
MR = {"sop_class": "MRImageStorage"}
PT = {"sop_class": "PositronEmissionTomographyImageStorage"}


def test_dataset_matches_a_keyword_value(scp: MockScp) -> None:
    rule = scp.on_store(dataset={"Modality": "MR"}).fail("0xA700")
    assert send(scp, CT, MR, CT) == [0x0000, 0xA700, 0x0000]
    assert rule.hits == 1
    scp.check()  # matching raised nothing in the server threads


def test_dataset_value_list_is_any_of(scp: MockScp) -> None:
    scp.on_store(dataset={"Modality": ["MR", "PT"]}).warn()
    assert send(scp, CT, MR, PT) == [0x0000, 0xB000, 0xB000]
    scp.check()


def test_dataset_predicate_gets_the_pydicom_value(scp: MockScp) -> None:
    seen: list[object] = []

    def vip(value: object) -> bool:
        seen.append(value)
        return str(value).startswith("VIP")

    scp.on_store(dataset={"PatientID": vip}).fail("not-authorized")
    assert send(scp, {"patient_id": "VIP-1"}, {"patient_id": "P-2"}) == [0x0124, 0x0000]
    assert seen == ["VIP-1", "P-2"]
    scp.check()


def test_every_dataset_value_must_match(scp: MockScp) -> None:
    scp.on_store(dataset={"Modality": "CT", "PatientID": "B"}).fail("0xA700")
    statuses = send(
        scp, {**CT, "patient_id": "A"}, {**MR, "patient_id": "B"}, {**CT, "patient_id": "B"}
    )
    assert statuses == [0x0000, 0x0000, 0xA700]


@pytest.mark.parametrize(
    ("keyword", "expected", "matches"),
    [
        ("InstanceNumber", 1, True),  # IS "1" against a number
        ("InstanceNumber", "1", True),
        ("InstanceNumber", 2, False),
        ("SliceThickness", 1, True),  # DS "1.0" against 1
        ("ImageType", "ORIGINAL\\PRIMARY\\AXIAL", True),  # multi-valued: joined
        ("ImageType", "ORIGINAL", False),
        ("ImageType", lambda value: "AXIAL" in value, True),
        ("PatientName", "SCUKIT^SYNTHETIC", True),  # a PersonName as text
        ("AdmittingDiagnosesDescription", None, True),  # None: the element is absent
        ("Modality", None, False),
        ("AdmittingDiagnosesDescription", "x", False),
    ],
)
def test_dataset_value_kinds(scp: MockScp, keyword: str, expected: object, matches: bool) -> None:
    scp.on_store(dataset={keyword: expected}).fail("0xA700")
    assert send(scp, CT) == [0xA700 if matches else 0x0000]
    scp.check()


def test_match_sees_the_data_set_and_the_request(scp: MockScp) -> None:
    seen: list[tuple[int, str, str, str, bool]] = []

    def second_mr(store: StoreContent) -> bool:
        ds = store.dataset()
        seen.append(
            (store.nth, store.sop_instance_uid, ds.SOPInstanceUID, ds.Modality, "PixelData" in ds)
        )
        assert store.raw[:4] == b"\x08\x00\x05\x00"  # the data set as received: (0008,0005)
        return bool(ds.Modality == "MR" and store.nth == 2)

    scp.on_store(match=second_mr).warn("0xB006")
    assert send(scp, CT, MR, MR) == [0x0000, 0xB006, 0x0000]
    assert [(n, command_uid == data_uid) for n, command_uid, data_uid, _m, _p in seen] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert [modality for *_, modality, _p in seen] == ["CT", "MR", "MR"]
    assert not any(pixels for *_, pixels in seen)  # decoded without the pixel data
    scp.check()


def test_match_runs_only_when_the_dataset_values_matched(scp: MockScp) -> None:
    called: list[int] = []

    def count(store: StoreContent) -> bool:
        called.append(store.nth)
        return True

    scp.on_store(dataset={"Modality": "MR"}, match=count).fail("0xA700")
    assert send(scp, CT, MR) == [0x0000, 0xA700]
    assert called == [2]


def test_match_without_kept_data_sees_the_attributes_before_the_pixels(
    scp_factory: Callable[..., MockScp],
) -> None:
    scp = scp_factory(keep_data=False)
    scp.on_store(match=lambda s: s.dataset().PatientID == "BIG").fail("0xA700")
    big = {"patient_id": "BIG", "size": 400_000}
    assert send(scp, big, {"size": 400_000}) == [0xA700, 0x0000]
    scp.check()


def test_raising_match_is_reported_and_the_store_goes_on(scp: MockScp) -> None:
    def broken(store: StoreContent) -> bool:
        raise LookupError("no such thing")

    scp.on_store(match=broken).fail("0xA700")
    scp.on_store().warn()
    assert send(scp, CT) == [0xB000]  # the next rule answered
    with pytest.raises(MockScpError, match=r"LookupError: no such thing"):
        scp.check()


def test_content_rule_with_times_and_stall(scp: MockScp) -> None:
    stall = scp.on_store(dataset={"Modality": "MR"}).stall(0.2)
    once = scp.on_store(dataset={"Modality": "MR"}, times=1).fail("0xA700")
    assert send(scp, MR, MR, CT) == [0xA700, 0x0000, 0x0000]
    assert (stall.hits, once.hits) == (2, 1)
    assert [s.stalled_seconds for s in scp.received] == pytest.approx([0.2, 0.2, 0.0])


@pytest.mark.parametrize(
    "content", [{"dataset": {"Modality": "CT"}}, {"match": lambda store: True}]
)
@pytest.mark.parametrize(
    ("action", "name"),
    [
        (lambda builder: builder.slow_read(1000), "slow_read"),
        (lambda builder: builder.abort(during_dataset=True), "abort(during_dataset=True)"),
    ],
)
def test_receive_time_actions_refuse_content_matchers(
    content: dict[str, Any], action: Callable[[Any], object], name: str
) -> None:
    scp = MockScp()
    with pytest.raises(ValueError) as info:
        action(scp.on_store(**content))
    assert str(info.value).startswith(f"{name} acts while the data set is arriving")
    assert "nth, sop_class_uid, when=" in str(info.value)
    assert scp.rules == []  # nothing half-made was installed


@pytest.mark.parametrize(
    "make",
    [
        lambda b: b.stall(1),
        lambda b: b.abort(),
        lambda b: b.disconnect(),
        lambda b: b.garbage(),
        lambda b: b.respond_with(lambda store: 0),
    ],
)
def test_actions_after_the_data_set_take_content_matchers(make: Callable[[Any], object]) -> None:
    scp = MockScp()
    make(scp.on_store(dataset={"Modality": "CT"}))
    assert len(scp.rules) == 1


def test_unknown_keyword_names_the_nearest_one() -> None:
    with pytest.raises(
        ValueError, match=r"'Modallity' is not a DICOM keyword; did you mean 'Modality'\?"
    ):
        MockScp().on_store(dataset={"Modallity": "CT"})
    with pytest.raises(ValueError, match="dataset: expected a mapping"):
        MockScp().on_store(dataset={})


def test_unmet_content_expectation_says_what_the_nearest_store_had(scp: MockScp) -> None:
    scp.on_store(dataset={"Modality": "MR", "PatientID": "P-1"}, expect=1).fail("0xA700")
    send(scp, {**CT, "patient_id": "P-1"})
    with pytest.raises(MockScpError) as info:
        scp.check()
    (unmet,) = info.value.unmet
    assert unmet.startswith(
        "rule #1 on_store(dataset={'Modality': 'MR', 'PatientID': 'P-1'}).fail(0xA700): "
        "expected 1 hit(s), got 0; 1 store arrived; nearest: store 1 ("
    )
    assert unmet.endswith("missed dataset Modality='MR' (it was 'CT')")


def test_unmet_match_expectation_names_the_predicate(scp: MockScp) -> None:
    def is_contrast(store: StoreContent) -> bool:
        return "ContrastBolusAgent" in store.dataset()

    scp.on_store(match=is_contrast, expect=1).warn()
    send(scp, CT)
    with pytest.raises(MockScpError, match=r"missed match=is_contrast returned False"):
        scp.check()


def test_unmet_expectation_names_the_rule_that_answered_first(scp: MockScp) -> None:
    first = scp.on_store(nth=1).fail("0xA700")
    scp.on_store(dataset={"Modality": "CT"}, expect=1).warn()
    send(scp, CT)
    with pytest.raises(MockScpError) as info:
        scp.check()
    uid = scp.received[0].sop_instance_uid
    assert info.value.unmet[0].endswith(
        f"nearest: store 1 ({uid}) was answered by {first.description} first"
    )
    assert first.description == "#1 on_store(nth=1).fail(0xA700)"


def test_expectation_exceeded_lists_the_stores_that_hit(scp: MockScp) -> None:
    scp.on_store(dataset={"Modality": "MR"}, expect=1).warn()
    scp.on_store(expect=range(0, 2)).accept()
    send(scp, MR, CT, MR, CT, CT)
    with pytest.raises(MockScpError) as info:
        scp.check()
    assert info.value.unmet == [
        "rule #1 on_store(dataset={'Modality': 'MR'}).warn(0xB000): expected 1 hit(s), got 2;"
        " hit by stores 1, 3",
        "rule #2 on_store().accept(): expected 0..1 hit(s), got 3; hit by stores 2, 4, 5",
    ]


def test_an_abort_during_the_data_set_is_decided_before_earlier_content_rules(
    scp: MockScp,
) -> None:
    content = scp.on_store(dataset={"Modality": "CT"}).fail("0xA700")
    abort = scp.on_store(nth=1).abort(during_dataset=True)
    statuses = send(scp, {**CT, "size": 100_000}, CT)
    assert statuses == [None, 0xA700]
    assert [(s.action, s.complete) for s in scp.received] == [("abort", False), ("fail", True)]
    assert (content.hits, abort.hits) == (1, 1)
