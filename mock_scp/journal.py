"""What the mock saw: stores, associations and the SCU's violations of the standard.

Stores keep the dataset exactly as received (its raw bytes); :meth:`ReceivedStore.dataset`
decodes on demand, so the receive path never pays for pydicom. Part-10 files are
written with names derived from the SOP Instance UID only when it is a well-formed
UID; anything else from the wire gets a generated name, so no value sent by an SCU
can name a path outside ``store_dir``.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scu.protocol.uids import is_valid_uid

from .wire import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

if TYPE_CHECKING:
    from pydicom.dataset import FileDataset

__all__ = [
    "AssociationRecord",
    "ReceivedStore",
    "Violation",
    "ViolationKind",
    "part10_bytes",
    "safe_file_name",
]


class ViolationKind:
    """Names of the violations the mock detects (``Violation.kind``)."""

    UID_MISMATCH = "uid-mismatch"
    WRONG_TRANSFER_SYNTAX = "wrong-transfer-syntax"
    PDU_TOO_LARGE = "pdu-too-large"
    DUPLICATE_MESSAGE_ID = "duplicate-message-id"
    DROPPED_CONNECTION = "dropped-connection"
    UNKNOWN_CONTEXT = "unknown-context"
    CONTEXT_MISMATCH = "context-mismatch"
    PROTOCOL = "protocol"


@dataclass(frozen=True)
class Violation:
    """Something the SCU did against the standard."""

    kind: str
    association_id: int
    detail: str
    message_id: int | None = None

    def __str__(self) -> str:
        where = f"association {self.association_id}"
        if self.message_id is not None:
            where += f", message {self.message_id}"
        return f"{self.kind} ({where}): {self.detail}"


@dataclass(eq=False)
class AssociationRecord:
    """One association attempt. ``ended`` is ``None`` while open, then one of
    ``"released"``, ``"aborted"``, ``"dropped"``, ``"rejected"``; ``end_detail`` says
    who ended it and why (e.g. ``"A-ABORT from the SCU"``, ``"network timeout"``).

    ``proposed_contexts`` holds ``(context_id, abstract_syntax, transfer_syntaxes)``;
    ``accepted_contexts`` ``(context_id, abstract_syntax, transfer_syntax)``.
    ``max_pdu_length`` is the SCU's announced maximum (0 = none)."""

    id: int
    calling_ae_title: str
    called_ae_title: str
    proposed_contexts: list[tuple[int, str, tuple[str, ...]]]
    accepted_contexts: list[tuple[int, str, str]]
    max_pdu_length: int
    ended: str | None = None
    end_detail: str | None = None
    peer: str = ""
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    rejection: tuple[int, int, int] | None = None  # (result, source, reason)
    stores: int = 0
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None


@dataclass(eq=False)
class ReceivedStore:
    """One C-STORE request the mock received.

    ``status`` is the status sent back, or ``None`` when no response was sent (the
    rule aborted, disconnected or sent garbage, or the association ended first);
    ``action`` names what the mock did (``"accept"``, ``"respond"``, ``"warn"``,
    ``"fail"``, ``"abort"``, ``"disconnect"``, ``"garbage"``, or ``"interrupted"``);
    ``complete`` is False when the dataset did not arrive in full. ``raw`` is the
    dataset as received, in ``transfer_syntax``; ``path`` the Part-10 file written
    under ``store_dir``, if any."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae_title: str
    called_ae_title: str
    association_id: int
    message_id: int
    status: int | None
    action: str
    comment: str | None = None
    stalled_seconds: float = 0.0
    complete: bool = True
    nth: int = 0
    # The dataset bytes as received (a bytearray on the receive path: copying every
    # dataset once more into ``bytes`` measurably slowed large stores); ``raw`` copies.
    data: bytes | bytearray = field(default=b"", repr=False)
    path: Path | None = None
    dataset_sop_instance_uid: str | None = None  # from the dataset, when read cheaply
    #: When the data set was complete (``time.time()``).
    received_at: float = field(default_factory=time.time)
    #: When the C-STORE-RQ command arrived, and when the response went out (``None``
    #: when no response was sent).
    requested_at: float | None = None
    answered_at: float | None = None

    @property
    def raw(self) -> bytes:
        """The dataset as received, in ``transfer_syntax`` (a copy)."""
        return bytes(self.data)

    @property
    def size(self) -> int:
        """Bytes of dataset received."""
        return len(self.data)

    def part10_header(self) -> bytes:
        """Preamble, ``DICM`` and the file meta group for this store."""
        return part10_bytes(
            b"",
            sop_class_uid=self.sop_class_uid,
            sop_instance_uid=self.sop_instance_uid,
            transfer_syntax=self.transfer_syntax,
            source_ae_title=self.calling_ae_title,
        )

    def part10(self) -> bytes:
        """The store as a DICOM Part-10 file (preamble, file meta, dataset)."""
        return self.part10_header() + self.data

    def dataset(self) -> FileDataset:
        """Decode the received dataset with pydicom (on demand; not cached)."""
        import pydicom

        if not self.complete:
            raise ValueError(
                f"store {self.nth} ({self.sop_instance_uid}) was not received in full "
                f"({len(self.data)} bytes kept)"
            )
        return pydicom.dcmread(io.BytesIO(self.part10()))


_ELEM_SHORT = struct.Struct("<HH2sH")
_ELEM_LONG = struct.Struct("<HH2s2xI")


def _meta_element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return _ELEM_LONG.pack(0x0002, elem, vr, len(value)) + value
    return _ELEM_SHORT.pack(0x0002, elem, vr, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def part10_bytes(
    dataset: bytes | bytearray,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae_title: str = "",
) -> bytes:
    """A Part-10 file around raw dataset bytes (file meta built by hand: no decoding)."""
    meta = (
        _meta_element(0x0001, b"OB", b"\x00\x01")
        + _meta_element(0x0002, b"UI", _ui(sop_class_uid))
        + _meta_element(0x0003, b"UI", _ui(sop_instance_uid))
        + _meta_element(0x0010, b"UI", _ui(transfer_syntax))
        + _meta_element(0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID))
        + _meta_element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME))
    )
    if source_ae_title:
        meta += _meta_element(0x0016, b"AE", _text(source_ae_title))
    group_length = _meta_element(0x0000, b"UL", struct.pack("<I", len(meta)))
    return b"\x00" * 128 + b"DICM" + group_length + meta + bytes(dataset)


def safe_file_name(sop_instance_uid: str, nth: int) -> str:
    """A file name for a store that cannot escape its directory: ``<uid>.dcm`` for a
    well-formed UID, else ``store-<nth>.dcm``."""
    if sop_instance_uid and is_valid_uid(sop_instance_uid):
        return f"{sop_instance_uid}.dcm"
    return f"store-{nth:06d}.dcm"


class StoreWriter:
    """Writes stores as Part-10 files under one directory; a second store with the
    same SOP Instance UID gets ``<uid>.<n>.dcm`` rather than overwriting the first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._lock = threading.Lock()
        self._taken: set[str] = set()

    def write(self, store: ReceivedStore) -> Path:
        """Write ``store`` and return its path."""
        name = safe_file_name(store.sop_instance_uid, store.nth)
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            stem = name[: -len(".dcm")]
            n = 1
            while name in self._taken or (self.directory / name).exists():
                n += 1
                name = f"{stem}.{n}.dcm"
            self._taken.add(name)
        path = self.directory / name
        # Belt and braces: the name is digits, dots and a fixed suffix, but check anyway.
        if path.resolve().parent != self.directory:
            raise ValueError(f"refusing to write outside {self.directory}: {name!r}")
        tmp = path.with_name(name + ".part")
        with open(tmp, "wb") as fh:
            fh.write(store.part10_header())
            fh.write(store.data)
        os.replace(tmp, path)
        return path
