"""The per-file fast paths give exactly what the general code gives: the C-STORE-RQ
built directly, a whole response decoded at once, the SOP UIDs found during the walk."""

from __future__ import annotations

import pytest

from mock_scp import datagen
from scu.protocol import dimse, pdu
from scu.protocol.dataset import LITTLE, leading_uids, walk
from scu.protocol.stream import Decoder, Limits
from scu.source import _parse_meta

UIDS = ["1.2", "1.2.3", "1.2.840.10008.5.1.4.1.1.2", "2.25.123456789012345678901234567890"]


@pytest.mark.parametrize("sop_class", UIDS)
@pytest.mark.parametrize("sop_instance", UIDS)
@pytest.mark.parametrize(("message_id", "priority"), [(1, 0), (7, 1), (0xFFFF, 2)])
def test_store_rq_is_what_encode_command_makes(
    sop_class: str, sop_instance: str, message_id: int, priority: int
) -> None:
    tag = dimse.Tag
    general = dimse.encode_command(
        [
            (tag.AFFECTED_SOP_CLASS_UID, sop_class),
            (tag.COMMAND_FIELD, dimse.C_STORE_RQ),
            (tag.MESSAGE_ID, message_id),
            (tag.PRIORITY, priority),
            (tag.DATA_SET_TYPE, 0x0000),
            (tag.AFFECTED_SOP_INSTANCE_UID, sop_instance),
        ]
    )
    assert dimse.encode_store_rq(message_id, sop_class, sop_instance, priority) == general


def _response(status: int = 0, comment: str | None = None) -> bytes:
    command = dimse.encode_store_rsp(
        5, status, sop_class_uid="1.2.3", sop_instance_uid="1.2.3.4", error_comment=comment
    )
    return pdu.encode_p_data(3, command, command=True, max_pdu_length=16384)


@pytest.mark.parametrize("data", [_response(), _response(0xA700, "full"), _response(0xB000)])
def test_a_whole_response_decodes_as_feed_decodes_it(data: bytes) -> None:
    fast, general = Decoder(Limits(max_dataset=0)), Decoder(Limits(max_dataset=0))
    event = fast.whole_command(data)
    (expected,) = general.feed(data)
    assert event == expected
    assert fast.offset == general.offset == len(data)
    assert not fast.in_pdu and not fast.in_message
    # Whatever follows is decoded by either decoder the same way.
    assert fast.feed(data) == general.feed(data)


def test_anything_else_is_left_to_feed() -> None:
    data = _response()
    decoder = Decoder(Limits(max_pdata_length=64, max_dataset=0))
    assert decoder.whole_command(data) is None  # above the announced maximum: feed says so
    decoder = Decoder(Limits(max_dataset=0))
    for piece in (data[:-1], data + data, data[:11] + b"\x01" + data[12:]):
        assert decoder.whole_command(piece) is None
    assert decoder.offset == 0
    two = pdu.encode_p_data(3, dimse.encode_echo_rsp(1), command=True, max_pdu_length=40)
    assert decoder.whole_command(two) is None  # a command set in several fragments
    decoder.feed(data[:5])
    assert decoder.whole_command(data) is None  # in the middle of a PDU


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sop_class", ["CTImageStorage", "MRImageStorage", "RTPlanStorage"])
def test_the_walk_finds_the_uids_leading_uids_finds(seed: int, sop_class: str) -> None:
    data = datagen.make_bytes(sop_class=sop_class, seed=seed, rows=8, columns=8)
    _meta, start = _parse_meta(data, 132, len(data))
    found: dict[tuple[int, int], str] = {}
    assert walk(data, start, len(data), True, 0, LITTLE, found) == len(data)
    expected = leading_uids(data, start, len(data), True, LITTLE)
    assert (found.get((0x0008, 0x0016)), found.get((0x0008, 0x0018))) == expected
