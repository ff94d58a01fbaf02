"""The protocol rules written once (scu.protocol: UIDs, AE titles, statuses, reject
values) and the proof that the SCU, the mock SCP and the scenario format all use them:
the same value is accepted or refused everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mock_scp import MockScp
from scenarios import ScenarioError, load
from scu import StoreScu
from scu.protocol.acse import parse_reject
from scu.protocol.ae import check_ae_title
from scu.protocol.status import (
    STATUS_NAMES,
    StatusCategory,
    classify,
    parse_status,
    status_label,
)
from scu.protocol.uids import (
    UidKind,
    is_valid_uid,
    resolve_uid,
    storage_sop_classes,
    uid_problem,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
_SCENARIO = """name: ae-title
description: the scenario format checks AE titles with the same rule.
scp: {{ae_title: {title}}}
files:
  - generate: {{count: 1}}
expect: {{successful: 1}}
"""
EXPLICIT = "1.2.840.10008.1.2.1"


# --- UIDs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uid", ["1", "0", "1.2.840.10008.5.1.4.1.1.2", "1.0.2", "2.25." + "9" * 58]
)
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    ("uid", "why"),
    [
        ("1.2.3\n", "holds only digits and dots"),  # `$` would have let this through
        ("1.2.3\x00", "holds only digits and dots"),
        ("1.2.03", "leading zero"),
        ("01.2", "leading zero"),
        ("1..2", "no empty component"),
        ("1.2.", "no empty component"),
        (".1.2", "no empty component"),
        ("1.2.a", "holds only digits and dots"),
        ("1.2.３", "holds only digits and dots"),  # a non-ASCII digit
        ("1." + "1" * 63, "at most 64 characters"),
        ("", "must not be empty"),
    ],
)
def test_invalid_uids_say_why(uid: str, why: str) -> None:
    problem = uid_problem(uid)
    assert problem is not None and why in problem, problem
    with pytest.raises(ValueError, match="sop_class_uid"):
        resolve_uid(uid, parameter="sop_class_uid")


def test_keywords_resolve_whatever_their_case_and_suggest_when_misspelt() -> None:
    assert resolve_uid("CTImageStorage", parameter="x") == CT
    assert resolve_uid("ctimagestorage", parameter="x", kind=UidKind.SOP_CLASS) == CT
    assert resolve_uid("ExplicitVRLittleEndian", parameter="x") == EXPLICIT
    with pytest.raises(ValueError, match="did you mean 'CTImageStorage'"):
        resolve_uid("CTImageStorag", parameter="x", kind=UidKind.SOP_CLASS)
    # Retired storage classes have keywords too.
    assert (
        resolve_uid("UltrasoundImageStorageRetired", parameter="x") == "1.2.840.10008.5.1.4.1.1.6"
    )


def test_a_uid_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"is a SOP class .* not a transfer syntax"):
        resolve_uid("CTImageStorage", parameter="ts", kind=UidKind.TRANSFER_SYNTAX)
    with pytest.raises(ValueError, match="unknown transfer syntax"):
        resolve_uid(CT, parameter="ts", kind=UidKind.TRANSFER_SYNTAX)
    with pytest.raises(ValueError, match="is a transfer syntax, not a SOP class"):
        resolve_uid(EXPLICIT, parameter="sop", kind=UidKind.SOP_CLASS)
    with pytest.raises(ValueError, match="not a SOP class"):
        resolve_uid("JPEG2000Lossless", parameter="sop", kind=UidKind.SOP_CLASS)
    # A private SOP class UID nobody knows is still a SOP class UID.
    assert resolve_uid("1.2.3.4.5", parameter="sop", kind=UidKind.SOP_CLASS) == "1.2.3.4.5"


def test_retired_storage_classes_are_storage_classes() -> None:
    classes = storage_sop_classes()
    for retired in (
        "1.2.840.10008.5.1.4.1.1.6",
        "1.2.840.10008.5.1.4.1.1.5",
        "1.2.840.10008.5.1.1.30",
    ):
        assert retired in classes
    assert CT in classes and EXPLICIT not in classes


# --- AE titles ---------------------------------------------------------------------------


def test_padding_spaces_are_not_significant_everywhere(tmp_path: Path) -> None:
    title = " PACS-WITH-16CHR "  # 16 characters once the insignificant spaces go
    assert check_ae_title(title, parameter="x") == "PACS-WITH-16CHR"
    assert StoreScu("127.0.0.1:104", called_ae_title=title).called_ae_title == "PACS-WITH-16CHR"
    assert MockScp(title).ae_title == "PACS-WITH-16CHR"
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_SCENARIO.format(title=json.dumps(title)))
    assert load(scenario).scp.ae_title.strip() == "PACS-WITH-16CHR"


@pytest.mark.parametrize("title", ["CAFÉ", "A\\B", "X" * 17, "   ", "A\nB"])
def test_a_bad_title_is_refused_everywhere(tmp_path: Path, title: str) -> None:
    with pytest.raises(ValueError, match="AE title"):
        check_ae_title(title, parameter="x")
    with pytest.raises(ValueError, match="calling_ae_title"):
        StoreScu("127.0.0.1:104", calling_ae_title=title)
    with pytest.raises(ValueError, match="ae_title"):
        MockScp(title)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_SCENARIO.format(title=json.dumps(title)), encoding="utf-8")
    with pytest.raises(ScenarioError):
        load(scenario)


# --- statuses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("success", 0x0000),
        ("coercion-of-data-elements", 0xB000),
        ("elements-discarded", 0xB006),
        ("data-set-does-not-match-sop-class-warning", 0xB007),
        ("out-of-resources", 0xA700),
        ("OutOfResources", 0xA700),
        ("Refused: Out of Resources", 0xA700),
        ("data-set-does-not-match-sop-class", 0xA900),
        ("cannot-understand", 0xC000),
        ("sop-class-not-supported", 0x0122),
        ("processing-failure", 0x0110),
        ("duplicate-sop-instance", 0x0111),
        ("not-authorized", 0x0124),
        ("cancel", 0xFE00),
        ("0xA700", 0xA700),
        ("42752", 0xA700),
    ],
)
def test_status_names(name: str, code: int) -> None:
    assert parse_status(name) == code
    assert parse_status(code) == code


@pytest.mark.parametrize("bad", ["no-such-status", -1, 0x10000, True, 1.5, None])
def test_bad_status_names_the_parameter(bad: object) -> None:
    with pytest.raises(ValueError, match="status"):
        parse_status(bad)


def test_unknown_status_suggests_the_nearest_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'out-of-resources'"):
        parse_status("out-of-resource")
    with pytest.raises(ValueError, match="out-of-resources"):
        parse_status("full")  # no near name: the list of names


def test_pending_is_a_failure_for_c_store_on_both_sides() -> None:
    assert classify(0xFF00) is StatusCategory.FAILURE
    assert classify(0xFF01) is StatusCategory.FAILURE
    with MockScp() as scp:
        scp.on_store(nth=1).fail(0xFF00)  # the mock agrees: a failure it may answer
    with pytest.raises(ValueError, match="not a failure"):
        MockScp().on_store(nth=1).fail(0xB000)


def test_every_status_name_has_one_code_and_labels_use_the_canonical_name() -> None:
    assert STATUS_NAMES["out-of-resources"] == 0xA700
    assert status_label(0xA700) == "0xA700 (out-of-resources)"
    assert status_label(0xA701) == "0xA701"
    assert status_label(None) == "none"


# --- A-ASSOCIATE-RJ values ----------------------------------------------------------------


def test_reject_names_and_numbers() -> None:
    assert parse_reject("transient", "provider-presentation", "temporary-congestion") == (2, 3, 1)
    assert parse_reject("transient", "service-provider-presentation", "local-limit-exceeded") == (
        2,
        3,
        2,
    )
    assert parse_reject("permanent", "service-user", "called-ae-title-not-recognized") == (1, 1, 7)
    assert parse_reject("permanent", "service_user", "Called AE Title Not Recognised") == (1, 1, 7)
    assert parse_reject(1, 1, 3) == (1, 1, 3)
    assert parse_reject("permanent", "service-provider-acse", "protocol-version-not-supported") == (
        1,
        2,
        2,
    )


@pytest.mark.parametrize(
    ("args", "arg"),
    [
        (("sometimes", "service-user", 1), "result"),
        ((3, "service-user", 1), "result"),
        (("permanent", "nobody", 1), "source"),
        (("permanent", "service-user", "temporary-congestion"), "reason"),
        (("permanent", "service-provider-acse", 7), "reason"),
    ],
)
def test_bad_reject(args: tuple[object, object, object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        parse_reject(*args)
