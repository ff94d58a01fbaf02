"""Properties of the mock's pure parts: negotiation choice, safe names, command codec."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mock_scp.negotiation import DEFAULT_TRANSFER_SYNTAXES, choose_syntax
from mock_scp.storage import safe_file_name
from scu.protocol.dimse import decode_command, encode_command

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
syntax_lists = st.lists(st.sampled_from(DEFAULT_TRANSFER_SYNTAXES), unique=True, max_size=8)


@given(proposed=syntax_lists, accepted=syntax_lists)
def test_choice_is_acceptable_and_prefers_little_endian(
    proposed: list[str], accepted: list[str]
) -> None:
    chosen = choose_syntax(proposed, accepted)
    common = set(proposed) & set(accepted)
    if not common:
        assert chosen is None
        return
    assert chosen in common
    if EXPLICIT in common:
        assert chosen == EXPLICIT
    elif IMPLICIT in common:
        assert chosen == IMPLICIT
    else:  # the SCP's own order, whatever the proposal's order
        assert chosen == next(s for s in accepted if s in common)
        assert choose_syntax(list(reversed(proposed)), accepted) == chosen


@given(uid=st.text(max_size=80), nth=st.integers(min_value=1, max_value=10**6))
def test_safe_names_never_leave_the_directory(uid: str, nth: int) -> None:
    name = safe_file_name(uid, nth)
    base = Path("/srv/in")
    assert (base / name).resolve().parent == base.resolve()
    assert name.endswith(".dcm") and "/" not in name and name not in (".", "..")


uids = st.lists(st.integers(min_value=0, max_value=99999), min_size=2, max_size=8).map(
    lambda parts: ".".join(str(p) for p in parts)
)


@given(
    sop_class=uids,
    instance=uids,
    message_id=st.integers(min_value=0, max_value=0xFFFF),
    status=st.integers(min_value=0, max_value=0xFFFF),
    comment=st.none()
    | st.text(alphabet="ABCdef 0123", min_size=1, max_size=64).map(str.strip).filter(bool),
)
def test_command_round_trip(
    sop_class: str, instance: str, message_id: int, status: int, comment: str | None
) -> None:
    elements: list[tuple[int, int | str]] = [
        (0x0002, sop_class),
        (0x0100, 0x8001),
        (0x0120, message_id),
        (0x0800, 0x0101),
        (0x0900, status),
    ]
    if comment:
        elements.append((0x0902, comment))
    elements.append((0x1000, instance))
    command = decode_command(encode_command(elements))
    assert command.affected_sop_class_uid == sop_class
    assert command.command_field == 0x8001
    assert command.message_id_responded == message_id
    assert command.status == status
    assert command.error_comment == comment
    assert command.affected_sop_instance_uid == instance
