"""Transfer syntax names and UIDs, as data.

Names are pydicom's UID keywords (``"ExplicitVRLittleEndian"``, ``"JPEG2000Lossless"``,
...) plus the seed's spellings (``"JPEGBaseline"``). Matching is exact first, then
case-insensitive. UIDs of known transfer syntaxes are accepted as they are.
"""

from __future__ import annotations

from pydicom._uid_dict import UID_dictionary

__all__ = [
    "EXPLICIT_VR_LE",
    "FALLBACK_SYNTAXES",
    "IMPLICIT_VR_LE",
    "UNCOMPRESSED_SYNTAXES",
    "is_uncompressed",
    "resolve_transfer_syntax",
    "syntax_name",
]

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

#: What the SCU proposes for a SOP class when the file's own syntax may be refused,
#: in order of preference.
FALLBACK_SYNTAXES: tuple[str, ...] = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
UNCOMPRESSED_SYNTAXES: frozenset[str] = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE})

_BY_NAME: dict[str, str] = {
    str(entry[4]): str(uid)
    for uid, entry in UID_dictionary.items()
    if entry[1] == "Transfer Syntax" and entry[4]
}
# The seed's and common older spellings.
_BY_NAME.update(
    {
        "JPEGBaseline": _BY_NAME["JPEGBaseline8Bit"],
        "JPEGExtended": _BY_NAME["JPEGExtended12Bit"],
        "JPEGLosslessFirstOrder": _BY_NAME["JPEGLosslessSV1"],
        "DeflatedExplicitVRLittleEndian": DEFLATED_EXPLICIT_VR_LE,
    }
)
_BY_LOWER: dict[str, str] = {name.lower(): uid for name, uid in _BY_NAME.items()}
_NAME_BY_UID: dict[str, str] = {}
for _name, _uid in _BY_NAME.items():
    _NAME_BY_UID.setdefault(_uid, _name)


def resolve_transfer_syntax(value: str, *, parameter: str = "transfer_syntax") -> str:
    """The UID for a transfer syntax name or UID; ``ValueError`` naming the parameter
    and a few accepted names when it is neither."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{parameter} must be a transfer syntax name or UID, got {value!r}")
    text = value.strip()
    if text in _NAME_BY_UID:
        return text
    uid = _BY_NAME.get(text) or _BY_LOWER.get(text.lower())
    if uid is not None:
        return uid
    common = ", ".join(
        (
            "ImplicitVRLittleEndian",
            "ExplicitVRLittleEndian",
            "JPEGBaseline",
            "JPEG2000Lossless",
            "RLELossless",
        )
    )
    raise ValueError(
        f"{parameter}: unknown transfer syntax {value!r}; use a pydicom UID keyword "
        f"(e.g. {common}) or the UID of a known transfer syntax"
    )


def syntax_name(uid: str) -> str:
    """A readable name for a transfer syntax UID (the UID itself when unknown)."""
    return _NAME_BY_UID.get(uid, uid)


def is_uncompressed(uid: str) -> bool:
    return uid in UNCOMPRESSED_SYNTAXES
