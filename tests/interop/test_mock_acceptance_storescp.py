"""The mock's default acceptance covers DCMTK ``storescp +xa``'s: every storage SOP class
and transfer syntax pydicom knows is proposed to both, one presentation context per
(SOP class, transfer syntax) pair, and every pair storescp accepts the mock accepts too.
``sop_classes=`` narrows the mock to the classes it names.

The mock's default list is pynetdicom's storage classes plus those DCMTK's all-storage
table adds (DICOS, eddy current and six retired trial classes); the comparison below
fails the day either side's list moves.

The A-ASSOCIATE-RQs are built with the shared PDU codec (``scu.protocol.pdu``) on a
plain socket, 128 contexts per association (the most the context IDs allow).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence

import pytest
from pydicom.uid import AllTransferSyntaxes, UID_dictionary

from mock_scp import MockScp
from scu.protocol.pdu import (
    AssociateRQ,
    ContextProposal,
    PduType,
    decode_associate_ac,
    encode_associate_rq,
    encode_release_rq,
)
from scu.protocol.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from tests.support.dcmtk import run_storescp

pytestmark = [pytest.mark.interop, pytest.mark.xdist_group("storescp-acceptance")]

_HEADER = struct.Struct(">BxL")
Pair = tuple[str, str]

#: Every storage SOP class pydicom knows (retired ones included) and every syntax.
STORAGE_CLASSES = sorted(
    uid for uid, (name, kind, *_rest) in UID_dictionary.items()
    if kind == "SOP Class" and "Storage" in name
)  # fmt: skip
SYNTAXES = sorted(str(uid) for uid in AllTransferSyntaxes)


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the SCP closed the connection")
            data += chunk
        return data

    pdu_type, length = _HEADER.unpack(exactly(6))
    return pdu_type, exactly(length)


def accepted(host: str, port: int, called_ae: str, pairs: Sequence[Pair]) -> set[Pair]:
    """The (SOP class, transfer syntax) pairs the SCP accepts, proposing each pair as a
    context of its own, 128 per association."""
    found: set[Pair] = set()
    for start in range(0, len(pairs), 128):
        chunk = pairs[start : start + 128]
        contexts = tuple(
            ContextProposal(2 * i + 1, sop, (syntax,)) for i, (sop, syntax) in enumerate(chunk)
        )
        rq = AssociateRQ(called_ae, "ACCEPTANCE", contexts, 16384)
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(encode_associate_rq(rq))
            pdu_type, body = _read_pdu(sock)
            assert pdu_type == PduType.ASSOCIATE_AC, f"PDU type {pdu_type:#x}, not an AC"
            ac = decode_associate_ac(body)
            for result in ac.contexts:
                if result.accepted:
                    sop, syntax = chunk[(result.context_id - 1) // 2]
                    # An acceptor picks one of the proposed syntaxes: here, the only one.
                    assert result.transfer_syntax == syntax, (sop, syntax, result)
                    found.add((sop, syntax))
            sock.sendall(encode_release_rq())
            assert _read_pdu(sock)[0] == PduType.RELEASE_RP
    return found


def _pairs(classes: Iterable[str], syntaxes: Iterable[str]) -> list[Pair]:
    return [(sop, syntax) for sop in classes for syntax in syntaxes]


@pytest.fixture(scope="module")
def both() -> tuple[set[Pair], set[Pair]]:
    """What storescp +xa accepts, and what the mock (defaults) accepts, of every pair."""
    pairs = _pairs(STORAGE_CLASSES, SYNTAXES)
    assert len(STORAGE_CLASSES) > 180 and len(SYNTAXES) > 30
    with run_storescp(ignore=True, accept_all=True) as storescp:
        by_storescp = accepted(storescp.host, storescp.port, storescp.ae_title, pairs)
    with MockScp("MOCK") as scp:
        by_mock = accepted(scp.host, scp.port, "MOCK", pairs)
    return by_storescp, by_mock


def test_the_mock_accepts_everything_storescp_accepts(both: tuple[set[Pair], set[Pair]]) -> None:
    by_storescp, by_mock = both
    # Not vacuous: storescp +xa takes most classes in many syntaxes, retired ones too.
    classes = {sop for sop, _ in by_storescp}
    syntaxes = {syntax for _, syntax in by_storescp}
    assert len(classes) > 150 and len(syntaxes) > 15, (len(classes), len(syntaxes))
    assert "1.2.840.10008.5.1.4.1.1.6" in classes  # Ultrasound Image Storage (Retired)
    missing = sorted(p for p in by_storescp - by_mock)
    assert missing == [], f"{len(missing)} pairs storescp +xa accepts and the mock refuses"


def test_sop_classes_narrows_the_mock() -> None:
    ct, mr = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
    pairs = _pairs([ct, mr], [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
    with MockScp("MOCK", sop_classes=["CTImageStorage"]) as scp:
        assert accepted(scp.host, scp.port, "MOCK", pairs) == {
            (ct, EXPLICIT_VR_LE),
            (ct, IMPLICIT_VR_LE),
        }
