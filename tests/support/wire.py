"""Reading back what an SCU put on the wire, independently of the code under test."""

from __future__ import annotations

import io
import zlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)


def decode_dataset(data: bytes, syntax: str) -> Dataset:
    """A data set as it went on the wire in ``syntax`` (no meta), read by pydicom."""
    uid = UID(syntax)
    if uid == DeflatedExplicitVRLittleEndian:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    ds = read_dataset(
        io.BytesIO(data),
        is_implicit_VR=uid == ImplicitVRLittleEndian,
        is_little_endian=uid != ExplicitVRBigEndian,
    )
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return ds
