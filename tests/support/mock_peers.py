"""Fixtures and peers for the MockScp tests: started servers, a raw-socket DICOM client
for what a well-behaved SCU would never send, and small synthetic datasets.

Test folders take the fixtures with ``from tests.support.mock_peers import ...`` in their
``conftest.py`` (or module)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mock_scp import MockScp
from scu.protocol import dimse, pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def make_dataset(sop_class: str = CT, *, size: int = 64, uid: str | None = None) -> Dataset:
    """A small storable dataset; ``size`` bytes of pixel-ish payload."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid or generate_uid()
    ds.PatientName = "Mock^Test"
    ds.PatientID = "MOCK1"
    ds.Modality = "CT"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.add_new(0x00091010, "OB", b"\x01" * (size + size % 2))  # private payload
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.fixture
def scp_factory() -> Iterator[Callable[..., MockScp]]:
    """Start MockScp instances with short timeouts; all stopped at teardown."""
    made: list[MockScp] = []

    def make(*args: Any, **kwargs: Any) -> MockScp:
        kwargs.setdefault("acse_timeout", 5)
        kwargs.setdefault("dimse_timeout", 5)
        kwargs.setdefault("network_timeout", 5)
        scp = MockScp(*args, **kwargs).start()
        made.append(scp)
        return scp

    yield make
    for scp in made:
        scp.stop()


@pytest.fixture
def scp(scp_factory: Callable[..., MockScp]) -> MockScp:
    return scp_factory()


def _uid(u: str) -> bytes:
    b = u.encode()
    return b + b"\x00" if len(b) % 2 else b


def store_command(sop_class: str, uid: str, message_id: int, *, dataset: bool = True) -> bytes:
    """A C-STORE-RQ command set (implicit VR LE), optionally claiming no data set."""
    return dimse.encode_command(
        [
            (dimse.Tag.AFFECTED_SOP_CLASS_UID, sop_class),
            (dimse.Tag.COMMAND_FIELD, dimse.C_STORE_RQ),
            (dimse.Tag.MESSAGE_ID, message_id),
            (dimse.Tag.PRIORITY, 0),
            (dimse.Tag.DATA_SET_TYPE, 0x0000 if dataset else dimse.NO_DATASET),
            (dimse.Tag.AFFECTED_SOP_INSTANCE_UID, uid),
        ]
    )


def explicit_dataset(uid: str, *, pad: int = 0) -> bytes:
    """A tiny explicit VR LE dataset holding (0008,0016)/(0008,0018)."""
    out = struct.pack("<HH2sH", 8, 0x16, b"UI", len(_uid(CT))) + _uid(CT)
    out += struct.pack("<HH2sH", 8, 0x18, b"UI", len(_uid(uid))) + _uid(uid)
    if pad:
        out += struct.pack("<HH2s2xI", 0x0009, 0x1010, b"OB", pad) + b"\x00" * pad
    return out


def implicit_dataset(uid: str) -> bytes:
    out = struct.pack("<HHI", 8, 0x16, len(_uid(CT))) + _uid(CT)
    return out + struct.pack("<HHI", 8, 0x18, len(_uid(uid))) + _uid(uid)


class RawClient:
    """A DICOM SCU on a bare socket, to send what pynetdicom never would."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def associate(
        self,
        contexts: list[tuple[int, str, list[str]]] | None = None,
        *,
        calling: str = "RAW-SCU",
        called: str = "ANY-SCP",
        max_pdu: int = 16384,
    ) -> tuple[int, bytes]:
        """Send an A-ASSOCIATE-RQ; return the answer PDU (type, body)."""
        contexts = contexts or [(1, CT, [EXPLICIT])]
        request = pdu.AssociateRQ(
            called_ae_title=called,
            calling_ae_title=calling,
            contexts=tuple(pdu.ContextProposal(c, a, tuple(ts)) for c, a, ts in contexts),
            max_pdu_length=max_pdu,
            implementation_class_uid="1.2.3.4",
        )
        self.sock.sendall(pdu.encode_associate_rq(request))
        return self.read_pdu()

    def p_data(self, context_id: int, data: bytes, *, command: bool, last: bool = True) -> None:
        self.sock.sendall(pdu.pdv_header(context_id, len(data), command=command, last=last) + data)

    def store(
        self, context_id: int, sop_class: str, uid: str, dataset: bytes, msg_id: int = 1
    ) -> None:
        self.p_data(context_id, store_command(sop_class, uid, msg_id), command=True)
        self.p_data(context_id, dataset, command=False)

    def read_pdu(self) -> tuple[int, bytes]:
        header = self._exact(6)
        pdu_type, length = struct.unpack(">BxI", header)
        return pdu_type, self._exact(length)

    def read_status(self) -> int:
        """Read a P-DATA-TF with a response command; return its Status."""
        pdu_type, body = self.read_pdu()
        assert pdu_type == 4, f"expected P-DATA-TF, got PDU type {pdu_type} {body!r}"
        ((_cid, _is_command, _last, data),) = list(pdu.iter_pdvs(body))
        status = dimse.decode_command(data).status
        assert status is not None, "no Status in the response"
        return status

    def release(self) -> tuple[int, bytes]:
        self.sock.sendall(pdu.encode_release_rq())
        return self.read_pdu()

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[[int], RawClient]]:
    clients: list[RawClient] = []

    def connect(port: int) -> RawClient:
        c = RawClient(port)
        clients.append(c)
        return c

    yield connect
    for c in clients:
        c.close()


@pytest.fixture
def h() -> Any:
    """The helpers above as one namespace, for test modules."""
    import types

    return types.SimpleNamespace(
        CT=CT,
        SC=SC,
        IMPLICIT=IMPLICIT,
        EXPLICIT=EXPLICIT,
        make_dataset=make_dataset,
        store_command=store_command,
        explicit_dataset=explicit_dataset,
        implicit_dataset=implicit_dataset,
    )
