"""Unit tests of scu.options: address parsing and the validation of AE titles,
max PDU length and timeouts (every message names the parameter and what is accepted)."""

from __future__ import annotations

import math
import socket

import pytest

from scu.options import (
    MAX_PDU_RANGE,
    Address,
    parse_address,
    validate_max_pdu,
    validate_timeout,
)
from scu.protocol.ae import check_ae_title as validate_ae_title

# --- addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "ae"),
    [
        ("127.0.0.1:11112", "127.0.0.1", 11112, None),
        ("localhost:104", "localhost", 104, None),
        ("pacs.example.org:4242", "pacs.example.org", 4242, None),
        ("PACS@pacs.example.org:4242", "pacs.example.org", 4242, "PACS"),
        ("ANY-SCP@127.0.0.1:1", "127.0.0.1", 1, "ANY-SCP"),
        ("[::1]:11112", "::1", 11112, None),
        ("ORTHANC@[::1]:65535", "::1", 65535, "ORTHANC"),
        ("[::ffff:127.0.0.1]:104", "::ffff:127.0.0.1", 104, None),
        ("[2001:db8::7]:104", "2001:db8::7", 104, None),
        ("  host-1:104  ", "host-1", 104, None),  # surrounding blanks are not part of it
        (" AE @host:104", "host", 104, "AE"),  # AE titles lose insignificant spaces
        ("host:00104", "host", 104, None),
    ],
)
def test_parse_address_accepts_every_documented_form(
    text: str, host: str, port: int, ae: str | None
) -> None:
    assert parse_address(text) == Address(host=host, port=port, ae_title=ae)


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (Address("127.0.0.1", 104), "127.0.0.1:104"),
        (Address("::1", 104, "AE"), "[::1]:104"),
        (Address("pacs", 11112), "pacs:11112"),
    ],
)
def test_address_str_is_connectable_form(address: Address, shown: str) -> None:
    assert str(address) == shown


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("host:0", "port must be a number 1..65535"),
        ("host:65536", "port must be a number 1..65535"),
        ("host:abc", "port must be a number 1..65535"),
        ("host:-1", "port must be a number 1..65535"),
        ("host:+104", "port must be a number 1..65535"),
        ("host: 104", "port must be a number 1..65535"),
        ("host:", "port must be a number 1..65535"),
        ("[::1]:", "port must be a number 1..65535"),
        ("[::1]:0", "port must be a number 1..65535"),
        ("host", "missing host or port"),
        (":104", "missing host or port"),
        ("AE@", "missing host or port"),
        ("::1:104", "IPv6 addresses in brackets"),
        ("fe80::1:104", "IPv6 addresses in brackets"),
        ("[::1]104", "malformed bracketed IPv6"),
        ("[::1:104", "malformed bracketed IPv6"),
        ("[not-v6]:104", "is not an IPv6 address"),
        ("[127.0.0.1]:104", "is not an IPv6 address"),
        ("my_host:104", "is not a valid host name"),
        ("-host:104", "is not a valid host name"),
        ("host.:104", "is not a valid host name"),
        ("ho st:104", "is not a valid host name"),
    ],
)
def test_parse_address_rejects_with_a_reason_naming_addr(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(text)
    message = str(info.value)
    assert message.startswith("addr")
    assert fragment in message
    assert repr(text) in message or repr(text.strip()) in message


@pytest.mark.parametrize("value", ["", "   ", None, 104, b"host:104"])
def test_parse_address_rejects_non_strings_and_blanks(value: object) -> None:
    with pytest.raises(ValueError, match=r'addr must be a non-empty string.*"host:port"'):
        parse_address(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("@host:104", "must not be empty"),
        ("ABCDEFGHIJKLMNOPQ@host:104", "17 characters"),
        ("A\\B@host:104", "contains"),
    ],
)
def test_parse_address_validates_the_ae_before_the_at(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="AE title before '@'") as info:
        parse_address(text)
    assert fragment in str(info.value)


def test_parse_address_ae_title_may_contain_an_at_sign() -> None:
    # Only the last '@' separates AE and host: '@' is a legal AE character.
    assert parse_address("A@B@host:104") == Address("host", 104, "A@B")


def test_parse_address_rejects_a_newline_inside_the_host() -> None:
    with pytest.raises(ValueError, match="addr"):
        parse_address("host\n:104")


@pytest.mark.parametrize("port", ["\u00b2", "\uff11\uff10\uff14"])
def test_parse_address_port_must_be_ascii_digits(port: str) -> None:
    with pytest.raises(ValueError, match=r"addr .*port must be a number 1\.\.65535"):
        parse_address(f"host:{port}")


def test_parse_address_rejects_an_impossible_ipv4_address() -> None:
    with pytest.raises(ValueError, match="addr"):
        parse_address("192.168.1.256:104")


def test_parse_address_rejects_a_host_label_over_63_characters() -> None:
    assert parse_address("a" * 63 + ".example:104").host == "a" * 63 + ".example"
    with pytest.raises(ValueError, match="addr"):
        parse_address("a" * 64 + ".example:104")


# --- AE titles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A", "A"),
        ("STORE-SCU", "STORE-SCU"),
        ("ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),  # exactly 16
        ("  PACS  ", "PACS"),  # leading/trailing spaces are not significant (PS3.5, AE)
        ("ABCDEFGHIJKLMNOP   ", "ABCDEFGHIJKLMNOP"),  # 16 once the padding is gone
        ("MY AE", "MY AE"),  # inner spaces are part of the title
        ("a@b_c.d~", "a@b_c.d~"),
    ],
)
def test_validate_ae_title_accepts(value: str, expected: str) -> None:
    assert validate_ae_title(value, parameter="calling_ae_title") == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("ABCDEFGHIJKLMNOPQ", "17 characters long"),
        ("", "must not be empty or all spaces"),
        ("    ", "must not be empty or all spaces"),
        ("A\\B", "contains '\\\\'"),
        ("A\tB", "contains '\\t'"),
        ("A\nB", "contains '\\n'"),
        ("A\x00", "contains '\\x00'"),
        ("A\x7f", "contains '\\x7f'"),
        ("CAFÉ", "contains 'É'"),
        ("ÜBER", "contains 'Ü'"),
    ],
)
def test_validate_ae_title_rejects_naming_parameter_and_rule(value: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_ae_title(value, parameter="called_ae_title")
    message = str(info.value)
    assert message.startswith("called_ae_title")
    assert fragment in message
    assert "1 to 16 printable ASCII characters" in message


@pytest.mark.parametrize("value", [None, 7, b"PACS", ["PACS"]])
def test_validate_ae_title_rejects_non_strings(value: object) -> None:
    with pytest.raises(
        ValueError, match=r"^calling_ae_title .* is not an AE title: an AE title is a string"
    ):
        validate_ae_title(value, parameter="calling_ae_title")


# --- max PDU length ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 4096, 16384, 65536, 131072])
def test_validate_max_pdu_accepts_range_and_zero(value: int) -> None:
    assert validate_max_pdu(value) == value


@pytest.mark.parametrize("value", [4095, 131073, -1, 1, True, False, "16384", 16384.0, None])
def test_validate_max_pdu_rejects(value: object) -> None:
    low, high = MAX_PDU_RANGE
    with pytest.raises(ValueError) as info:
        validate_max_pdu(value)
    message = str(info.value)
    assert message.startswith("max_pdu_length")
    assert f"{low}..{high}" in message
    assert "0 for no limit" in message
    assert repr(value) in message


def test_validate_max_pdu_range_is_the_documented_one() -> None:
    assert MAX_PDU_RANGE == (4096, 131072)


# --- timeouts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (0.5, 0.5), (3, 3.0), (1e-3, 1e-3), (600, 600.0)]
)
def test_validate_timeout_accepts(value: float | None, expected: float | None) -> None:
    result = validate_timeout(value, parameter="dimse_timeout")
    assert result == expected
    assert result is None or type(result) is float


@pytest.mark.parametrize("value", [0, 0.0, -1, math.nan, math.inf, -math.inf, True, "5", [5]])
def test_validate_timeout_rejects(value: object) -> None:
    with pytest.raises(ValueError) as info:
        validate_timeout(value, parameter="acse_timeout")
    message = str(info.value)
    assert message.startswith("acse_timeout must be a positive number of seconds or None")
    assert repr(value) in message


@pytest.mark.parametrize("value", [1e10, 1e300])
def test_every_accepted_timeout_is_usable_by_a_socket(value: float) -> None:
    try:
        accepted = validate_timeout(value, parameter="connect_timeout")
    except ValueError as exc:
        assert str(exc).startswith("connect_timeout")
        return
    with socket.socket() as sock:
        sock.settimeout(accepted)
