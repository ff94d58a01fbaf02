"""Property: every address scu.options accepts prints (``str(Address)``) in a form that
parses back to the same host and port, and AE titles survive ``AE@`` prefixes."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from scu.options import Address, parse_address
from scu.protocol.ae import check_ae_title as validate_ae_title

_FAST = settings(max_examples=80, derandomize=True, database=None, deadline=None)

_LABEL = st.from_regex(r"\A[A-Za-z](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?\Z")
_HOSTNAMES = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_IPV4 = st.ip_addresses(v=4).map(str)
_IPV6 = st.ip_addresses(v=6).map(str)
_PORTS = st.integers(min_value=1, max_value=65535)
_AE = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\"),
    min_size=1,
    max_size=16,
)


@_FAST
@given(host=_HOSTNAMES | _IPV4 | _IPV6, port=_PORTS, ae=st.none() | _AE)
def test_accepted_addresses_round_trip(host: str, port: int, ae: str | None) -> None:
    shown = str(Address(host, port))
    text = f"{ae}@{shown}" if ae is not None else shown
    parsed = parse_address(text)
    assert (parsed.host, parsed.port, parsed.ae_title) == (host, port, ae)
    assert str(parsed) == shown
    if ":" in host:
        assert ipaddress.IPv6Address(parsed.host) == ipaddress.IPv6Address(host)


@_FAST
@given(ae=_AE, left=st.integers(0, 4), right=st.integers(0, 4))
def test_ae_title_padding_is_not_significant(ae: str, left: int, right: int) -> None:
    assert validate_ae_title(" " * left + ae + " " * right, parameter="calling_ae_title") == ae
