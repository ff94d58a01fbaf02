"""Validation of everything a user hands to :class:`scu.StoreScu` (pure functions).

Each check raises :class:`ValueError` naming the parameter, the value and what is
accepted, so that a bad configuration fails at construction, not mid-transfer.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

from scu.protocol.ae import check_ae_title

__all__ = [
    "MAX_PDU_RANGE",
    "MAX_TIMEOUT",
    "Address",
    "parse_address",
    "validate_max_pdu",
    "validate_timeout",
]

#: Accepted ``max_pdu_length`` values, besides 0 ("no limit").
MAX_PDU_RANGE = (4096, 131072)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
#: Longest accepted timeout: beyond this, sockets cannot represent it (time_t overflow).
MAX_TIMEOUT = 1_000_000.0


@dataclass(frozen=True)
class Address:
    """Where to connect: ``host``, ``port`` and, from ``"AE@host:port"``, the called AE."""

    host: str
    port: int
    ae_title: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(addr: str) -> Address:
    """Parse ``"host:port"``, ``"AE@host:port"`` or ``"[v6addr]:port"``."""
    hint = 'expected "host:port", "AE@host:port" or "[IPv6]:port"'
    if not isinstance(addr, str) or not addr.strip():
        raise ValueError(f"addr must be a non-empty string ({hint}), got {addr!r}")
    text = addr.strip()
    ae_title: str | None = None
    if "@" in text:
        ae_part, text = text.rsplit("@", 1)
        ae_title = check_ae_title(ae_part, parameter="addr (AE title before '@')")
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            raise ValueError(f"addr {addr!r}: malformed bracketed IPv6 address; {hint}")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"addr {addr!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"addr {addr!r}: missing host or port; {hint}")
        if ":" in host:
            raise ValueError(f"addr {addr!r}: write IPv6 addresses in brackets; {hint}")
        if _DOTTED_NUMBERS.fullmatch(host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"addr {addr!r}: {host!r} is not an IPv4 address") from None
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(f"addr {addr!r}: {host!r} is not a valid host name")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"addr {addr!r}: port must be a number 1..65535, got {port_text!r}")
    return Address(host=host, port=int(port_text), ae_title=ae_title)


def validate_max_pdu(value: object, *, parameter: str = "max_pdu_length") -> int:
    low, high = MAX_PDU_RANGE
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (value == 0 or low <= value <= high)
    ):
        raise ValueError(
            f"{parameter} must be an integer in {low}..{high}, or 0 for no limit; got {value!r}"
        )
    return value


def validate_timeout(value: object, *, parameter: str) -> float | None:
    """A timeout in seconds: a positive number, or ``None`` for no timeout."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise ValueError(
            f"{parameter} must be a positive number of seconds or None "
            f"(at most {MAX_TIMEOUT:.0f}), got {value!r}"
        )
    return float(value)
