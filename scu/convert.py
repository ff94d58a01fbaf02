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

import atexit
import io
import os
import pickle
import struct
import subprocess
import sys
import threading
import zlib
from typing import IO, Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, JPEGBaseline8Bit

from scu.protocol.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UNCOMPRESSED_SYNTAXES,
)
from scu.protocol.uids import uid_keyword as syntax_name
from scu.source import Entry, EntryError, Header

__all__ = ["FORCEABLE_SYNTAXES", "ConversionError", "convert", "end_converter"]

_CODEC_LOCK = threading.Lock()
#: Syntaxes whose pixel data is native (not encapsulated): nothing to decode.
_NATIVE = UNCOMPRESSED_SYNTAXES | {DEFLATED_EXPLICIT_VR_LE}
#: Binary VRs whose bytes pydicom writes as they were read: they must be swapped by
#: hand when the byte order changes (word size per VR).
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


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


def _swap_byte_order(ds: Dataset) -> None:
    """Swap OW/OF/OL/OD/OV values, nested ones included, for a change of byte order."""
    bits = int(ds.get("BitsAllocated", 16) or 16)
    for elem in ds.iterall():
        width = _SWAP_WIDTH.get(str(elem.VR))
        if elem.tag == 0x7FE00010 and width is not None:
            # Native OW pixel data is swapped per sample, and 8-bit samples per 16-bit
            # word, as pydicom (and DCMTK) read it.
            width = max(2, bits // 8)
        if width is None or not isinstance(elem.value, bytes | bytearray) or not elem.value:
            continue
        raw = bytes(elem.value)
        if len(raw) % width:
            raise ConversionError(
                f"cannot change byte order: {elem.tag} ({elem.VR}) has {len(raw)} bytes, "
                f"not a multiple of {width}"
            )
        elem.value = np.frombuffer(raw, dtype=f"u{width}").byteswap().tobytes()


def _jpeg_baseline(ds: Dataset) -> None:
    bits = int(ds.get("BitsAllocated", 0))
    if bits != 8:
        raise ConversionError(
            f"JPEG Baseline is lossy 8-bit only; the file has BitsAllocated {bits} "
            "(converting would lose data: send it in its own syntax or a lossless one)"
        )
    if int(ds.get("PixelRepresentation", 0)) != 0:
        raise ConversionError(
            "JPEG Baseline encodes unsigned 8-bit samples; the file's samples are signed "
            "(PixelRepresentation 1)"
        )
    try:
        _encode_jpeg_baseline(ds)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"cannot encode JPEG Baseline: {exc}") from exc


def _encode_jpeg_baseline(ds: Dataset) -> None:
    from PIL import Image

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
    """The entry's data set encoded in ``target``, as bytes ready for the wire.

    Conversions run one at a time, in a child process: the native codecs can crash
    (pylibjpeg-rle panics on a corrupt stream, pylibjpeg-openjpeg's encoder is not
    thread-safe and two encodings at once segfault), and a crash must fail one entry,
    not take the sender down. The child is started on first use and replaced after a
    crash. Only KeyboardInterrupt and SystemExit pass through.
    """
    with _CODEC_LOCK:
        return _CONVERTER.run(entry, header, target)


class _Converter:
    """The one child process conversions run in (see :func:`convert`): a plain Python
    child on pipes (multiprocessing's spawn would re-import the caller's main script),
    fed one pickled job at a time."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            # What the codecs write to stderr (a Rust panic's message and backtrace) must
            # not land in the caller's output: the entry's error carries the message.
            self._child = subprocess.Popen(
                [sys.executable, "-c", "from scu.convert import serve_child; serve_child()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        return self._child

    def run(self, entry: Entry, header: Header, target: str) -> bytes:
        child = self._start()
        data = entry.data
        if entry.remote is not None:  # the child reads no object storage: read it whole here
            try:
                data = entry.remote.read_all()
            except EntryError as exc:
                raise ConversionError(str(exc)) from None
        job = pickle.dumps((Entry(entry.name, path=entry.path, data=data), header, target))
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(_LENGTH.pack(len(job)) + job)
            child.stdin.flush()
            outcome = pickle.loads(_read_message(child.stdout))
        except (OSError, EOFError, pickle.UnpicklingError):
            code = child.wait()
            self._child = None
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            raise ConversionError(
                f"the codec crashed converting the data set to {syntax_name(target)} "
                f"(the converter process died: {how}); this entry fails, the others go on"
            ) from None
        if isinstance(outcome, str):
            raise ConversionError(outcome)
        assert isinstance(outcome, bytes)
        return outcome

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            assert child.stdin is not None
            child.stdin.close()  # the child ends on EOF
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def forget(self) -> None:
        """(In a forked process) leave the parent's child to the parent: its pipes are
        the parent's, and two processes writing jobs to one child would mix them. This
        process starts a child of its own when it first converts."""
        child, self._child = self._child, None
        if child is not None:
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()  # our copies of the descriptors only


_LENGTH = struct.Struct(">Q")
_CONVERTER = _Converter()
atexit.register(_CONVERTER.close)


def end_converter() -> None:
    """End this process's converter child, if it started one, and reap it (done at
    exit; a process leaving with ``os._exit`` calls it first)."""
    _CONVERTER.close()


def _after_fork_in_child() -> None:
    global _CODEC_LOCK
    _CODEC_LOCK = threading.Lock()  # another thread may have held it at the fork
    _CONVERTER.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _read_message(stream: IO[bytes]) -> bytes:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError
    (size,) = _LENGTH.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def serve_child() -> None:
    """The converter process: jobs in on stdin, results out on stdout, until EOF."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing a library prints may corrupt the results
    while True:
        try:
            entry, header, target = pickle.loads(_read_message(stdin))
        except EOFError:
            return
        result = pickle.dumps(_convert_in_child(entry, header, target))
        stdout.write(_LENGTH.pack(len(result)) + result)
        stdout.flush()


def _convert_in_child(entry: Entry, header: Header, target: str) -> bytes | str:
    """Runs in the converter process: the bytes, or why not in words. Any failure is
    caught here, the panics of Rust codecs (BaseException subclasses) included."""
    try:
        return _convert(entry, header, target)
    except ConversionError as exc:
        return str(exc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return f"the codec failed converting to {syntax_name(target)}: {type(exc).__name__}: {exc}"


def _convert(entry: Entry, header: Header, target: str) -> bytes:
    source = header.transfer_syntax
    ds = _load(entry, header)
    pixels = _has_pixels(ds)
    # Raw binary values are in the source's byte order until something re-encodes them.
    big_endian_bytes = source == EXPLICIT_VR_BE
    if pixels and source not in _NATIVE and source != target:
        _decompress(ds, source)
        big_endian_bytes = False  # decoders produce little endian native pixel data
    if big_endian_bytes and target != EXPLICIT_VR_BE:
        # Swap first: the encoders and pydicom's pixel reader take little endian data.
        _swap_byte_order(ds)
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
        big_endian_bytes = False
    if target not in _NATIVE and pixels and source != target:
        if target == JPEGBaseline8Bit:
            _jpeg_baseline(ds)
        else:
            try:
                # From the raw buffer pydicom would encode colour-by-plane data as if
                # interleaved; from the decoded array it encodes what the pixels are.
                planar = (
                    int(ds.get("SamplesPerPixel", 1)) > 1 and ds.get("PlanarConfiguration") == 1
                )
                arr = ds.pixel_array if planar else None
                if planar:
                    ds.PlanarConfiguration = 0  # the array is (rows, columns, samples)
                ds.compress(target, arr, generate_instance_uid=False)
            except Exception as exc:
                raise ConversionError(
                    f"cannot encode pixel data in {syntax_name(target)}: {exc}"
                ) from exc
    if big_endian_bytes != (target == EXPLICIT_VR_BE):
        _swap_byte_order(ds)
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
    encoded = out.getvalue()
    if target == DEFLATED_EXPLICIT_VR_LE:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        encoded = deflater.compress(encoded) + deflater.flush()
        if len(encoded) % 2:
            encoded += b"\x00"  # PS3.5 A.5: pad the deflated stream to even length
    return encoded


#: Syntaxes a file can be converted to, whatever it holds: the uncompressed ones, the
#: deflated one (zlib), and the lossless encoders pydicom drives (RLE, JPEG-LS, JPEG
#: 2000), plus JPEG Baseline through Pillow for 8-bit data. Lossy JPEG 2000 and
#: near-lossless JPEG-LS need a quality setting StoreScu does not take; JPEG Extended
#: and the JPEG Lossless processes have no encoder at all.
FORCEABLE_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    DEFLATED_EXPLICIT_VR_LE,
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    str(JPEGBaseline8Bit),
)
