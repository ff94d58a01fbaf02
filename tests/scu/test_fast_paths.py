"""The per-file fast paths give exactly what the general code gives: the C-STORE-RQ
and C-STORE-RSP built directly, a whole response decoded at once, the SOP UIDs found
during the walk, a file's chunks mapped into memory instead of read (and a file cut
short under them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mock_scp import datagen
from scu.payload import Payload, SourceError
from scu.protocol import dimse, pdu
from scu.protocol.dataset import LITTLE, leading_uids, walk
from scu.protocol.stream import Decoder, Limits
from scu.source import _parse_meta
from tests.support.pynetdicom_scp import HarnessScp
from tests.support.scu_helpers import make_scu

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


@pytest.mark.parametrize("sop_class", [*UIDS, b"1.2.3\x00", b"1.2"])
@pytest.mark.parametrize("sop_instance", [*UIDS, b"1.2.3.4\x00", b"1.2.3"])
@pytest.mark.parametrize(("message_id", "status"), [(1, 0), (7, 0xB000), (0xFFFF, 0xA700)])
def test_store_rsp_is_what_encode_response_makes(
    sop_class: str | bytes, sop_instance: str | bytes, message_id: int, status: int
) -> None:
    """The C-STORE-RSP put together directly (no Error Comment) is the general encoding,
    for UIDs given as text or echoed as the peer's bytes (padded or not)."""
    general = dimse.encode_response(
        dimse.C_STORE_RSP, message_id, status,
        sop_class_uid=sop_class, sop_instance_uid=sop_instance,
    )  # fmt: skip
    fast = dimse.encode_store_rsp(
        message_id, status, sop_class_uid=sop_class, sop_instance_uid=sop_instance
    )
    assert fast == general
    decoded = dimse.decode_command(fast)
    assert (decoded.command_field, decoded.status) == (dimse.C_STORE_RSP, status)


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


@pytest.mark.parametrize("offset", [0, 1, 4095, 4096, 5000])
@pytest.mark.parametrize("length", [0, 1, 4096, 10_000, 70_001])
def test_mapped_chunks_are_the_chunks_read(tmp_path: Path, offset: int, length: int) -> None:
    """A file's chunks mapped into memory (what sendmsg sends) hold the bytes and sizes
    the chunks read into the buffer hold."""
    path = tmp_path / "ds.bin"
    path.write_bytes(bytes(range(256)) * ((offset + length) // 256 + 1))
    payload = Payload(path=str(path), offset=offset, length=length)
    read = [bytes(c) for c in payload.chunks(bytearray(8192))]
    mapped = [bytes(c) for c in payload.chunks(bytearray(8192), mapped=True)]
    assert mapped == read
    assert b"".join(mapped) == path.read_bytes()[offset : offset + length]


def test_a_mapped_file_shorter_than_queued_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "ds.bin"
    path.write_bytes(b"x" * 10)
    with pytest.raises(SourceError, match="ended 5 bytes early"):
        list(Payload(path=str(path), offset=0, length=15).chunks(bytearray(64), mapped=True))


_CUT_UNDER_THE_MAPPING = """
import errno, os, socket, sys
from scu.payload import Payload
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(b"x" * (3 << 20))
chunks = Payload(path=path, offset=0, length=3 << 20).chunks(bytearray(1 << 20), mapped=True)
first = next(chunks)
os.truncate(path, 4096)
a, b = socket.socketpair()
a.setblocking(False)
try:
    a.sendmsg([first[8192:16384]])
except OSError as exc:
    print("EFAULT" if exc.errno == errno.EFAULT else exc)
"""


def test_a_file_cut_short_under_its_mapping_makes_the_kernel_refuse_not_crash(
    tmp_path: Path,
) -> None:
    """The bytes of a mapped chunk are only ever read by the kernel (sendmsg): for a file
    cut short meanwhile it answers EFAULT, where reading them in Python would die of
    SIGBUS. (In a child process: a SIGBUS would take pytest with it.)"""
    done = subprocess.run(
        [sys.executable, "-c", _CUT_UNDER_THE_MAPPING, str(tmp_path / "cut.bin")],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "EFAULT"), done.stderr[-2000:]


def test_a_file_cut_short_while_it_is_sent_fails_as_a_source_error(
    scp: HarnessScp, tmp_path: Path
) -> None:
    """A 32 MB file (far more than the loopback socket buffers hold) is truncated by
    another hand once its first PDUs have arrived: that file fails naming the file (not
    the network), the association is aborted, and the next file goes out on a new one."""
    big = tmp_path / "big.dcm"
    big.write_bytes(datagen.make_bytes(rows=4096, columns=4096))  # 32 MB of pixel data
    small = tmp_path / "small.dcm"
    small.write_bytes(datagen.make_bytes(seed=1))

    def cut(n: int) -> None:
        if n == 3:  # the big file's first data set PDU: most of it is still to be written
            os.truncate(big, 1000)

    scp.during_dataset = cut  # type: ignore[assignment]
    scu = make_scu(scp)
    scu.add_file(big)
    scu.add_file(small)
    result = scu.send()
    assert [o.ok for o in result.files] == [False, True]
    error = result.files[0].error or ""
    assert "cut short while it was being sent" in error, error
    assert len(scp.associations) == 2


def test_a_fifo_put_where_a_mapped_file_was_is_a_source_error_not_a_hang(
    tmp_path: Path,
) -> None:
    """A FIFO put in place of a queued file after its check: the mapped path opens it
    without blocking (no writer may ever come) and fails the entry naming it."""
    path = tmp_path / "swapped.dcm"
    os.mkfifo(path)
    with pytest.raises(SourceError, match=r"swapped\.dcm is a FIFO now, not a regular file"):
        list(Payload(path=str(path), offset=0, length=1 << 20).chunks(bytearray(64), mapped=True))
