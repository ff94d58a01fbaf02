"""Unit tests of transfer syntax names (scu.protocol.uids): pydicom's keywords, the
spellings of the node-dicom StoreScu documentation (``JPEGBaseline``), and UIDs."""

from __future__ import annotations

import pytest
from pydicom import uid as pydicom_uid
from pydicom.uid import UID

from scu.planning import FALLBACK_SYNTAXES
from scu.protocol.uids import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UNCOMPRESSED_SYNTAXES,
    resolve_transfer_syntax,
)
from scu.protocol.uids import uid_keyword as syntax_name


@pytest.mark.parametrize(
    ("name", "uid"),
    [
        ("ImplicitVRLittleEndian", "1.2.840.10008.1.2"),
        ("ExplicitVRLittleEndian", "1.2.840.10008.1.2.1"),
        ("ExplicitVRBigEndian", "1.2.840.10008.1.2.2"),
        ("DeflatedExplicitVRLittleEndian", "1.2.840.10008.1.2.1.99"),
        ("JPEGBaseline", "1.2.840.10008.1.2.4.50"),  # the node-dicom documentation's spelling
        ("JPEGBaseline8Bit", "1.2.840.10008.1.2.4.50"),  # pydicom's keyword
        ("JPEGExtended", "1.2.840.10008.1.2.4.51"),
        ("JPEGExtended12Bit", "1.2.840.10008.1.2.4.51"),
        ("JPEGLossless", "1.2.840.10008.1.2.4.57"),
        ("JPEGLosslessSV1", "1.2.840.10008.1.2.4.70"),
        ("JPEGLosslessFirstOrder", "1.2.840.10008.1.2.4.70"),
        ("JPEGLSLossless", "1.2.840.10008.1.2.4.80"),
        ("JPEGLSNearLossless", "1.2.840.10008.1.2.4.81"),
        ("JPEG2000Lossless", "1.2.840.10008.1.2.4.90"),
        ("JPEG2000", "1.2.840.10008.1.2.4.91"),
        ("RLELossless", "1.2.840.10008.1.2.5"),
    ],
)
def test_names_resolve_to_their_uid(name: str, uid: str) -> None:
    assert resolve_transfer_syntax(name) == uid


@pytest.mark.parametrize(
    "spelling",
    [
        "explicitvrlittleendian",
        "EXPLICITVRLITTLEENDIAN",
        "ExplicitVrLittleEndian",
        "  ExplicitVRLittleEndian ",
    ],
)
def test_names_are_case_insensitive_and_trimmed(spelling: str) -> None:
    assert resolve_transfer_syntax(spelling) == EXPLICIT_VR_LE


def test_jpegbaseline_in_any_case() -> None:
    assert resolve_transfer_syntax("jpegbaseline") == pydicom_uid.JPEGBaseline8Bit


@pytest.mark.parametrize(
    "uid",
    [
        pydicom_uid.ImplicitVRLittleEndian,
        pydicom_uid.ExplicitVRLittleEndian,
        pydicom_uid.JPEG2000Lossless,
        pydicom_uid.RLELossless,
        pydicom_uid.HTJ2KLossless,
    ],
)
def test_known_uids_are_accepted_as_they_are(uid: str) -> None:
    assert resolve_transfer_syntax(str(uid)) == uid


def test_every_pydicom_transfer_syntax_keyword_resolves() -> None:
    # Every transfer syntax pydicom names must be usable by its keyword and its UID.
    keywords = {
        name: str(uid)
        for name, uid in vars(pydicom_uid).items()
        if isinstance(uid, UID) and uid.is_transfer_syntax and uid.keyword == name
    }
    assert len(keywords) > 30
    for keyword, uid in keywords.items():
        assert resolve_transfer_syntax(keyword) == uid
        assert resolve_transfer_syntax(uid) == uid


@pytest.mark.parametrize(
    "value",
    [
        "NoSuchSyntax",
        "JPEG",
        "1.2.3.4",  # a UID, but not a transfer syntax's
        "1.2.840.10008.5.1.4.1.1.2",  # a SOP class UID
        "ExplicitVRLittleEndian2",
    ],
)
def test_unknown_raises_value_error_with_hint(value: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_transfer_syntax(value)
    message = str(info.value)
    assert message.startswith("transfer_syntax: unknown transfer syntax") or (
        message.startswith("transfer_syntax: ") and "not a transfer syntax" in message
    )
    assert repr(value) in message
    for hint in ("ExplicitVRLittleEndian", "JPEGBaseline", "JPEG2000Lossless", "UID"):
        assert hint in message


@pytest.mark.parametrize("value", ["", "   ", None, 1, b"ExplicitVRLittleEndian"])
def test_non_string_or_blank_raises(value: object) -> None:
    with pytest.raises(ValueError, match=r"^ts must be a transfer syntax name or UID"):
        resolve_transfer_syntax(value, parameter="ts")  # type: ignore[arg-type]


def test_parameter_name_is_used_in_the_message() -> None:
    with pytest.raises(ValueError, match=r"^--transfer-syntax: unknown"):
        resolve_transfer_syntax("nope", parameter="--transfer-syntax")


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        ("1.2.840.10008.1.2", "ImplicitVRLittleEndian"),
        ("1.2.840.10008.1.2.1", "ExplicitVRLittleEndian"),
        ("1.2.840.10008.1.2.4.50", "JPEGBaseline8Bit"),
        ("1.2.840.10008.1.2.4.90", "JPEG2000Lossless"),
        ("1.2.3.4", "1.2.3.4"),  # unknown: the UID itself
    ],
)
def test_syntax_name(uid: str, name: str) -> None:
    assert syntax_name(uid) == name


def test_syntax_name_round_trips_through_resolve() -> None:
    for uid in (
        pydicom_uid.RLELossless,
        pydicom_uid.JPEGLSLossless,
        pydicom_uid.DeflatedExplicitVRLittleEndian,
    ):
        assert resolve_transfer_syntax(syntax_name(uid)) == uid


def test_fallbacks_and_uncompressed_sets() -> None:
    assert FALLBACK_SYNTAXES == (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
    assert UNCOMPRESSED_SYNTAXES == {
        pydicom_uid.ImplicitVRLittleEndian,
        pydicom_uid.ExplicitVRLittleEndian,
        pydicom_uid.ExplicitVRBigEndian,
    }
    assert str(pydicom_uid.DeflatedExplicitVRLittleEndian) not in UNCOMPRESSED_SYNTAXES
