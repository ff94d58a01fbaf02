"""Payload chunking: fixed-size chunks, padding inside the last one, even PDV sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from scu.association import UNLIMITED_PDV
from scu.payload import Payload, SourceError
from scu.protocol.pdu import max_pdv_data


# Padding is only ever added to odd-length data (PS3.5 A.5); 64 shows the edge where
# the data fills its last chunk exactly.
@pytest.mark.parametrize("size", [1, 7, 64, 65, 199])
@pytest.mark.parametrize("in_memory", [True, False])
def test_chunks_are_full_and_padding_rides_in_the_last(
    tmp_path: Path, size: int, in_memory: bool
) -> None:
    data = bytes(range(256)) * 2
    data = data[:size]
    path = tmp_path / "ds.bin"
    path.write_bytes(b"PREFIX" + data)
    plain = (
        Payload.from_bytes(data) if in_memory else Payload(path=str(path), offset=6, length=size)
    )
    payload = plain.padded(b"\x00")
    chunks = [bytes(c) for c in payload.chunks(bytearray(16))]
    assert b"".join(chunks) == data + b"\x00"
    assert payload.length == size + 1
    assert all(len(c) == 16 for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= 17
    if size % 2:  # the real case: every chunk even-sized, so every PDV fragment is
        assert all(len(c) % 2 == 0 for c in chunks)


def test_a_file_shorter_than_queued_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "ds.bin"
    path.write_bytes(b"x" * 10)
    with pytest.raises(SourceError, match="ended 5 bytes early"):
        list(Payload(path=str(path), offset=0, length=15).chunks(bytearray(64)))


@pytest.mark.parametrize(("peer_max", "expected"), [(16383, 16376), (16384, 16378), (0, 1 << 20)])
def test_data_fragments_are_even_whatever_the_peer_maximum(peer_max: int, expected: int) -> None:
    size = max_pdv_data(peer_max, UNLIMITED_PDV)
    assert size == expected
    assert size % 2 == 0
