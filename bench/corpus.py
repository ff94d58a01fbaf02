"""Deterministic benchmark corpora, built once into a cache directory.

Each corpus is a folder of DICOM files made from a handful of templates: a template is
encoded once with pydicom (compressed where asked), then copied with a new SOP Instance
UID per file. Substituting a UID of the same length leaves every length field intact,
so a 300-file CT set is written in about the time the disk needs for 158 MB.
A ``manifest.json`` written last marks a corpus complete; an interrupted build is
rebuilt from scratch on the next run.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

#: Bumped whenever the content of a corpus changes, so stale caches are not reused.
CORPUS_VERSION = 1

#: pydicom's organisational root; every UID below is derived from it deterministically.
UID_ROOT = "1.2.826.0.1.3680043.8.498"
#: Nine digits, so that ``1`` followed by an 8-digit index has the same length.
PLACEHOLDER = "999999999"

CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.4")
CR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.1")
US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
SC_IMAGE = UID("1.2.840.10008.5.1.4.1.1.7")
MF_WORD_SC = UID("1.2.840.10008.5.1.4.1.1.7.3")

UNCOMPRESSED = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))

MODALITY = {CT_IMAGE: "CT", MR_IMAGE: "MR", CR_IMAGE: "CR", US_IMAGE: "US", SC_IMAGE: "OT"}


@dataclass(frozen=True)
class Kind:
    """One template: SOP class, transfer syntax, image geometry and how many files use it."""

    name: str
    sop_class_uid: str
    transfer_syntax: str
    rows: int
    columns: int
    bits: int  # 8 or 16
    samples: int  # 1 (monochrome) or 3 (RGB)
    count: int


@dataclass(frozen=True)
class CorpusSpec:
    """A named corpus: its templates, in the proportions given by ``Kind.count``."""

    name: str
    kinds: tuple[Kind, ...]
    description: str

    @property
    def count(self) -> int:
        return sum(k.count for k in self.kinds)


def _full_specs() -> dict[str, CorpusSpec]:
    return {
        "ct": CorpusSpec(
            "ct",
            (Kind("ct512", CT_IMAGE, ExplicitVRLittleEndian, 512, 512, 16, 1, 300),),
            "300 CT 512x512x16-bit, Explicit VR LE (~526 KB each)",
        ),
        "small": CorpusSpec(
            "small",
            (Kind("ct66", CT_IMAGE, ExplicitVRLittleEndian, 66, 66, 16, 1, 2000),),
            "2,000 CT 66x66x16-bit, Explicit VR LE (~9.5 KB each)",
        ),
        "mixed": CorpusSpec(
            "mixed",
            (
                Kind("ct-explicit", CT_IMAGE, ExplicitVRLittleEndian, 256, 256, 16, 1, 60),
                Kind("mr-implicit", MR_IMAGE, ImplicitVRLittleEndian, 256, 256, 16, 1, 50),
                Kind("cr-rle", CR_IMAGE, RLELossless, 512, 512, 16, 1, 30),
                Kind("us-jpeg", US_IMAGE, JPEGBaseline8Bit, 256, 256, 8, 3, 30),
                Kind("sc-j2k", SC_IMAGE, JPEG2000Lossless, 256, 256, 8, 1, 30),
            ),
            "200 files: CT Explicit, MR Implicit, CR RLE, US JPEG Baseline, SC JPEG 2000",
        ),
    }


def specs(*, smoke: bool = False) -> dict[str, CorpusSpec]:
    """The corpora by name; ``smoke`` shrinks every template to a couple of files."""
    full = _full_specs()
    if not smoke:
        return full
    shrunk: dict[str, CorpusSpec] = {}
    for name, spec in full.items():
        per_kind = {"ct": 4, "small": 40, "mixed": 2}[name]
        kinds = tuple(Kind(**{**asdict(k), "count": min(k.count, per_kind)}) for k in spec.kinds)
        shrunk[name] = CorpusSpec(f"{name}-smoke", kinds, f"smoke version of {name}")
    return shrunk


@dataclass(frozen=True)
class Corpus:
    """A built corpus on disk."""

    name: str
    directory: Path
    files: tuple[Path, ...]
    total_bytes: int
    description: str
    #: Distinct (SOP Class UID, transfer syntax UID) pairs in the corpus.
    contexts: tuple[tuple[str, str], ...] = ()

    @property
    def count(self) -> int:
        return len(self.files)

    def dcmtk_profile(self) -> Path:
        """A storescu ``-xf`` configuration proposing exactly what this corpus needs:
        each file's own syntax, plus the uncompressed ones per SOP class.

        DCMTK storescu proposes only uncompressed syntaxes by default and a single
        ``-x?`` family on request (``-xr`` for RLE loses JPEG 2000, and so on), so a
        mixed set needs a profile; the ``ct`` and ``small`` sets use one too, so the
        reference is measured the same way on every corpus.
        """
        path = self.directory / "storescu-profile.cfg"
        ts_sections: dict[str, str] = {}
        # One context per uncompressed syntax: with both in one context, storescp picks
        # Explicit and DCMTK would convert every Implicit file on the fly.
        lines = ["[[TransferSyntaxes]]"]
        for ts in UNCOMPRESSED:
            ts_sections[ts] = f"TS{len(ts_sections) + 1}"
            lines += [f"[{ts_sections[ts]}]", f"TransferSyntax1 = {ts}"]
        for _, ts in self.contexts:
            if ts not in ts_sections:
                ts_sections[ts] = f"TS{len(ts_sections) + 1}"
                lines += [f"[{ts_sections[ts]}]", f"TransferSyntax1 = {ts}"]
        lines += ["[[PresentationContexts]]", "[Bench]"]
        pcs: list[str] = []
        for sop in sorted({sop for sop, _ in self.contexts}):
            pcs += [f"{sop}\\{ts_sections[ts]}" for ts in UNCOMPRESSED]
        for sop, ts in self.contexts:
            if ts not in UNCOMPRESSED:
                pcs.append(f"{sop}\\{ts_sections[ts]}")
        lines += [f"PresentationContext{i} = {pc}" for i, pc in enumerate(pcs, 1)]
        lines += ["[[Profiles]]", "[Bench]", "PresentationContexts = Bench", ""]
        text = "\n".join(lines)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        return path


def _pixels(kind: Kind, seed: int) -> np.ndarray[Any, Any]:
    """Deterministic, image-like pixels: a gradient with noise, so codecs behave as on
    real images rather than on pure noise (incompressible) or constants (trivial)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : kind.rows, 0 : kind.columns]
    top = 4095 if kind.bits == 16 else 255
    base = (xx + yy) * (top // 2) // max(1, kind.rows + kind.columns - 2)
    noise = rng.integers(0, max(2, top // 64), size=(kind.rows, kind.columns))
    mono = np.clip(base + noise, 0, top)
    if kind.samples == 3:
        rgb = np.stack([mono, top - mono, (mono // 2 + 40) % (top + 1)], axis=-1)
        out: np.ndarray[Any, Any] = rgb.astype(np.uint8)
        return out
    out = mono.astype(np.uint16 if kind.bits == 16 else np.uint8)
    return out


def _uid(*parts: int | str) -> str:
    return ".".join([UID_ROOT, *(str(p) for p in parts)])


def _dataset(kind: Kind, corpus_index: int, kind_index: int) -> FileDataset:
    """The attributes of one file of ``kind`` (no pixels yet), with a SOP Instance UID
    that ends in the placeholder."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(kind.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(_uid(7, corpus_index, kind_index, PLACEHOLDER))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(_uid(0, 1))
    meta.ImplementationVersionName = "SCUKIT_BENCH"

    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(5, corpus_index)
    ds.SeriesInstanceUID = _uid(6, corpus_index, kind_index)
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.Modality = MODALITY.get(UID(kind.sop_class_uid), "OT")
    ds.PatientName = "BENCH^SCUKIT"
    ds.PatientID = "BENCH-0001"
    ds.AccessionNumber = "A0001"
    ds.InstanceNumber = 1
    ds.Rows = kind.rows
    ds.Columns = kind.columns
    ds.SamplesPerPixel = kind.samples
    ds.PhotometricInterpretation = "RGB" if kind.samples == 3 else "MONOCHROME2"
    if kind.samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = kind.bits
    ds.BitsStored = 12 if kind.bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    return ds


def _needle(corpus_index: int, kind_index: int) -> bytes:
    return _uid(7, corpus_index, kind_index, PLACEHOLDER).encode()


def _template(kind: Kind, corpus_index: int, kind_index: int) -> bytes:
    """Encode one file of ``kind`` (compressed if its syntax says so) with the
    placeholder SOP Instance UID."""
    ds = _dataset(kind, corpus_index, kind_index)
    arr = _pixels(kind, seed=1000 * corpus_index + kind_index)
    ts = UID(kind.transfer_syntax)
    if ts == JPEGBaseline8Bit:
        # pydicom has no JPEG Baseline encoder; Pillow's libjpeg makes the codestream.
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(arr, mode="RGB").save(buf, format="JPEG", quality=90, subsampling=1)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression = "01"
        ds.file_meta.TransferSyntaxUID = ts
    elif ts.is_compressed:
        ds.PixelData = arr.tobytes()
        ds.compress(ts, arr, generate_instance_uid=False)
    else:
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW" if kind.bits == 16 else "OB"
        ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _layout(spec: CorpusSpec) -> list[int]:
    """Which kind each file uses: interleaved by a seeded shuffle, so a sender switches
    presentation contexts as it would on a real mixed study."""
    order = [i for i, k in enumerate(spec.kinds) for _ in range(k.count)]
    random.Random(f"scukit-bench-{spec.name}").shuffle(order)
    return order


def _write_files(spec: CorpusSpec, directory: Path, corpus_index: int) -> None:
    templates: list[tuple[bytes, bytes]] = []
    for kind_index, kind in enumerate(spec.kinds):
        data = _template(kind, corpus_index, kind_index)
        needle = _needle(corpus_index, kind_index)
        templates.append((data, needle))
    for file_index, kind_index in enumerate(_layout(spec)):
        data, needle = templates[kind_index]
        new_uid = needle[: -len(PLACEHOLDER)] + f"1{file_index:08d}".encode()
        (directory / f"{file_index:06d}.dcm").write_bytes(data.replace(needle, new_uid))


def build(spec: CorpusSpec, workdir: Path, *, log: Callable[[str], None] = print) -> Corpus:
    """Build ``spec`` under ``workdir`` unless a complete copy is already there."""
    directory = workdir / f"corpus-{spec.name}-v{CORPUS_VERSION}"
    manifest = directory / "manifest.json"
    if not manifest.exists():
        log(f"building corpus {spec.name!r} ({spec.count} files) in {directory}")
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        corpus_index = sum(ord(c) for c in spec.name) % 997
        _write_files(spec, directory, corpus_index)
        files = sorted(p.name for p in directory.glob("*.dcm"))
        manifest.write_text(
            json.dumps(
                {
                    "spec": asdict(spec),
                    "files": files,
                    "total_bytes": sum((directory / f).stat().st_size for f in files),
                }
            )
        )
    info = json.loads(manifest.read_text())
    return Corpus(
        name=spec.name,
        directory=directory,
        files=tuple(directory / f for f in info["files"]),
        total_bytes=int(info["total_bytes"]),
        description=spec.description,
        contexts=tuple(
            sorted({(k["sop_class_uid"], k["transfer_syntax"]) for k in info["spec"]["kinds"]})
        ),
    )


def link_farm(source: Sequence[Path], count: int, directory: Path) -> Path:
    """A folder of ``count`` hard links cycling over ``source`` (symlinks if hard links
    are refused): a large queue that costs no disk space."""
    done = directory / ".complete"
    if done.exists() and done.read_text() == str(count):
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    width = max(6, len(str(count)))
    for i in range(count):
        target = directory / f"{i:0{width}d}.dcm"
        src = source[i % len(source)]
        try:
            os.link(src, target)
        except OSError:
            target.symlink_to(src.resolve())
    done.write_text(str(count))
    return directory


def big_file(workdir: Path, *, size_bytes: int = 1 << 30) -> Path:
    """One multi-frame file whose pixel data is ``size_bytes`` long (rounded down to
    whole 512x512x16-bit frames), written in chunks so that building it needs no more
    memory than sending it should."""
    frame_bytes = 512 * 512 * 2
    frames = max(1, size_bytes // frame_bytes)
    path = workdir / f"big-{frames}x512x512-v{CORPUS_VERSION}.dcm"
    if path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    kind = Kind("big", MF_WORD_SC, ExplicitVRLittleEndian, 512, 512, 16, 1, 1)
    ds = _dataset(kind, 999, 0)
    ds.NumberOfFrames = frames
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    header = buf.getvalue().replace(_needle(999, 0), _uid(7, 999, 0, "100000000").encode())
    # Pixel Data is the last element: tag, VR OW, two reserved bytes, 32-bit length.
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", frames * frame_bytes)
    one = _pixels(kind, seed=42).tobytes()
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as fh:
        fh.write(header)
        fh.write(element)
        for _ in range(frames):
            fh.write(one)
    tmp.rename(path)
    return path
