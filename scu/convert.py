"""Converting a data set to another transfer syntax, through pydicom.

Only used when the SCP does not accept a file's own syntax (auto mode) or a syntax is
forced; files that need no conversion never pass through here (they are streamed from
disk). Decompression uses the pixel data decoders pydicom finds (pylibjpeg and its
plugins are installed with scukit); compression uses pydicom's encoders (RLE Lossless,
JPEG 2000, JPEG-LS when pyjpegls is installed) and Pillow for JPEG Baseline, which is
lossy and only defined here for 8-bit samples. The SOP Instance UID is always kept:
pydicom's ``compress()``/``decompress()`` would make a new one unless told not to.

Every failure raises :class:`ConversionError` with the reason in words.
"""

from __future__ import annotations

import io
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, JPEGBaseline8Bit

from scu.source import Entry, Header
from scu.syntaxes import EXPLICIT_VR_BE, IMPLICIT_VR_LE, UNCOMPRESSED_SYNTAXES, syntax_name

__all__ = ["ConversionError", "convert"]


class ConversionError(Exception):
    """The data set cannot be converted; the message says why."""


def _load(entry: Entry, header: Header) -> Dataset:
    try:
        with entry.buffer() as buf:
            ds = dcmread(io.BytesIO(bytes(buf)), force=True)
    except Exception as exc:  # pydicom raises many kinds on bad input
        raise ConversionError(f"cannot read the data set for conversion: {exc}") from exc
    ds.file_meta.TransferSyntaxUID = UID(header.transfer_syntax)
    # Group 0002 belongs in the file meta, never in a data set on the wire.
    for tag in [t for t in ds.keys() if t.group == 0x0002]:
        del ds[tag]
    return ds


def _has_pixels(ds: Dataset) -> bool:
    return any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))


def _decompress(ds: Dataset, source: str) -> None:
    try:
        ds.decompress(generate_instance_uid=False)
    except Exception as exc:
        raise ConversionError(
            f"cannot decompress pixel data in {syntax_name(source)}: {exc}"
        ) from exc


def _jpeg_baseline(ds: Dataset) -> None:
    from PIL import Image

    bits = int(ds.get("BitsAllocated", 0))
    if bits != 8:
        raise ConversionError(
            f"JPEG Baseline is lossy 8-bit only; the file has BitsAllocated {bits} "
            "(converting would lose data: send it in its own syntax or a lossless one)"
        )
    samples = int(ds.get("SamplesPerPixel", 1))
    arr: Any = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[None, ...]
    fragments = []
    for frame in arr:
        image = Image.fromarray(frame, mode="RGB" if samples == 3 else "L")
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90, subsampling=1 if samples == 3 else 0)
        fragments.append(out.getvalue())
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if samples == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PlanarConfiguration = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"


def convert(entry: Entry, header: Header, target: str) -> bytes:
    """The entry's data set encoded in ``target``, as bytes ready for the wire."""
    source = header.transfer_syntax
    ds = _load(entry, header)
    pixels = _has_pixels(ds)
    if pixels and source not in UNCOMPRESSED_SYNTAXES and source != target:
        _decompress(ds, source)
    if target not in UNCOMPRESSED_SYNTAXES and pixels and source != target:
        if target == JPEGBaseline8Bit:
            _jpeg_baseline(ds)
        else:
            try:
                ds.compress(target, generate_instance_uid=False)
            except Exception as exc:
                raise ConversionError(
                    f"cannot encode pixel data in {syntax_name(target)}: {exc}"
                ) from exc
    if ds.get("SOPInstanceUID") != header.sop_instance_uid:
        raise ConversionError("conversion changed the SOP Instance UID; refusing to send")
    out = DicomBytesIO()
    out.is_little_endian = target != EXPLICIT_VR_BE
    out.is_implicit_VR = target == IMPLICIT_VR_LE
    try:
        write_dataset(out, ds)
    except Exception as exc:
        raise ConversionError(
            f"cannot encode the data set in {syntax_name(target)}: {exc}"
        ) from exc
    return out.getvalue()
