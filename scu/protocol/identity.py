"""The user identity an A-ASSOCIATE-RQ may carry (PS3.7 D.3.3.7): username, username
and passcode, Kerberos service ticket, SAML assertion or JSON Web Token, with the
sub-item's value encoded and decoded here (the item around it is :mod:`scu.protocol.pdu`'s).
Its ``repr`` never shows a secret."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

__all__ = ["UserIdentity"]

_U16 = struct.Struct(">H")


@dataclass(frozen=True)
class UserIdentity:
    """User Identity Negotiation sub-item of an A-ASSOCIATE-RQ (PS3.7 D.3.3.7).

    ``kind``: 1 username, 2 username and passcode, 3 Kerberos service ticket, 4 SAML
    assertion, 5 JSON Web Token. ``repr`` never shows the secret fields."""

    kind: int
    primary: bytes
    secondary: bytes = b""
    positive_response_requested: bool = False

    KINDS: ClassVar[Mapping[int, str]] = MappingProxyType(
        {
            1: "username",
            2: "username and passcode",
            3: "Kerberos service ticket",
            4: "SAML assertion",
            5: "JSON Web Token",
        }
    )

    @classmethod
    def username(
        cls, name: str, password: str | None = None, *, positive_response: bool = True
    ) -> UserIdentity:
        """A username, with a passcode when ``password`` is given."""
        if not name:
            raise ValueError("user identity: the username must not be empty")
        secondary = b"" if password is None else password.encode("utf-8")
        return cls(1 if password is None else 2, name.encode("utf-8"), secondary, positive_response)

    @classmethod
    def token(cls, kind: str, value: bytes, *, positive_response: bool = True) -> UserIdentity:
        """A Kerberos service ticket (``"kerberos"``), a SAML assertion (``"saml"``) or a
        JSON Web Token (``"jwt"``)."""
        kinds = {"kerberos": 3, "saml": 4, "jwt": 5}
        if kind not in kinds:
            raise ValueError(f"user identity: kind must be one of {sorted(kinds)}, got {kind!r}")
        if not value:
            raise ValueError(f"user identity: the {kind} token must not be empty")
        return cls(kinds[kind], bytes(value), b"", positive_response)

    def encode_value(self) -> bytes:
        """The sub-item's value as an A-ASSOCIATE-RQ carries it (PS3.7 D.3.3.7.1)."""
        return (
            bytes((self.kind, 1 if self.positive_response_requested else 0))
            + _U16.pack(len(self.primary))
            + self.primary
            + _U16.pack(len(self.secondary))
            + self.secondary
        )

    @classmethod
    def decode_value(cls, value: bytes) -> UserIdentity:
        """The identity a sub-item's value holds; ``ValueError`` names what is wrong."""
        if len(value) < 4:
            raise ValueError("a User Identity sub-item is cut short")
        kind, positive = value[0], value[1]
        n = _U16.unpack_from(value, 2)[0]
        primary = value[4 : 4 + n]
        rest = value[4 + n :]
        if len(primary) != n:
            raise ValueError("a User Identity primary field runs past its sub-item")
        secondary = b""
        if len(rest) >= 2:
            m = _U16.unpack_from(rest, 0)[0]
            secondary = rest[2 : 2 + m]
            if len(secondary) != m:
                raise ValueError("a User Identity secondary field runs past its sub-item")
        return cls(kind, bytes(primary), bytes(secondary), bool(positive))

    def __repr__(self) -> str:
        shown = self.primary.decode("utf-8", "replace") if self.kind in (1, 2) else "<redacted>"
        return (
            f"UserIdentity({self.KINDS.get(self.kind, self.kind)}, {shown!r}"
            + (", passcode=<redacted>" if self.secondary else "")
            + f", positive_response_requested={self.positive_response_requested})"
        )
