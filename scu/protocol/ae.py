"""The AE title rule (PS3.5 6.2, VR AE), written once for the SCU, the mock and the
scenario format.

An AE title is 1 to 16 characters of the default character repertoire (printable
ASCII), without backslash or control characters; leading and trailing spaces are not
significant, so they are stripped before the length is counted, and a title of spaces
only is not a title.
"""

from __future__ import annotations

__all__ = ["AE_TITLE_RULE", "ae_title_problem", "check_ae_title", "decode_ae_title"]

AE_TITLE_RULE = "1 to 16 printable ASCII characters, no backslash or control characters"


def ae_title_problem(value: object) -> str | None:
    """Why ``value`` is not an AE title, or ``None`` when it is one."""
    if not isinstance(value, str):
        return f"an AE title is a string, not {type(value).__name__}"
    bad = next((c for c in value if c == "\\" or not " " <= c <= "~"), None)
    if bad is not None:
        return f"it contains {bad!r}"
    stripped = value.strip(" ")
    if not stripped:
        return "must not be empty or all spaces"
    if len(stripped) > 16:
        return f"it is {len(stripped)} characters long"
    return None


def check_ae_title(value: object, *, parameter: str) -> str:
    """The AE title without its insignificant spaces; ``ValueError`` naming ``parameter``
    and the rule otherwise."""
    problem = ae_title_problem(value)
    if problem is not None:
        raise ValueError(
            f"{parameter} {value!r} is not an AE title: {problem}; an AE title is {AE_TITLE_RULE}"
        )
    assert isinstance(value, str)
    return value.strip(" ")


def decode_ae_title(raw: bytes) -> str:
    """An AE title field from the wire (16 bytes, space padded), as text: undecodable
    bytes are kept visible as ``\\xNN`` escapes rather than guessed at."""
    return raw.decode("ascii", "backslashreplace").strip(" \x00")
