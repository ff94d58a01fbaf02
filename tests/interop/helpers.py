"""Helpers of the interop suite: the corpus, sending with invariant checks, reasons."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pydicom
from pydicom.data import get_testdata_files
from pynetdicom import AllStoragePresentationContexts

from scu import StoreScu, TransferResult
from tests.support.recorder import Recorder

STORAGE_SOP_CLASSES = frozenset(str(c.abstract_syntax) for c in AllStoragePresentationContexts)


@dataclass(frozen=True)
class CorpusFile:
    """One sendable pydicom test file and what the receivers should see of it."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    #: What Orthanc hashes into an instance's identity.
    orthanc_key: tuple[str, str, str, str]
    has_pixels: bool

    @property
    def orthanc_storable(self) -> bool:
        """Orthanc answers 0xA700 to an instance without Study or Series Instance UID."""
        return bool(self.orthanc_key[1] and self.orthanc_key[2])

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@cache
def storage_corpus() -> tuple[CorpusFile, ...]:
    """The corpus (cached per process; reading 190 files once is enough)."""
    base = os.path.dirname(pydicom.__file__)
    files: list[CorpusFile] = []
    for path in sorted(get_testdata_files()):
        # Names outside the package are downloads cached in the home folder: not offline.
        if not os.path.realpath(path).startswith(os.path.realpath(base)):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
        except Exception:
            continue
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class not in STORAGE_SOP_CLASSES or "SOPInstanceUID" not in ds:
            continue
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        files.append(
            CorpusFile(
                path=path,
                sop_class_uid=sop_class,
                sop_instance_uid=str(ds.SOPInstanceUID),
                transfer_syntax=syntax,
                orthanc_key=(
                    str(ds.get("PatientID", "")),
                    str(ds.get("StudyInstanceUID", "")),
                    str(ds.get("SeriesInstanceUID", "")),
                    str(ds.SOPInstanceUID),
                ),
                has_pixels="PixelData" in ds,
            )
        )
    return tuple(files)


#: Corpus files damaged on purpose (pydicom tests its own leniency with them): a sender
#: must refuse them before sending, with these words in the reason.
DAMAGED = {
    "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    # The file meta says Explicit VR, the data set is Implicit VR.
    "SC_rgb_jpeg.dcm": "implicit vr",
}
#: Files DCMTK itself cannot parse once stored: storescp answers 0xC000.
DCMTK_CANNOT_PARSE = {
    "rtdose_rle.dcm": "0xC000",
    "rtdose_rle_1frame.dcm": "0xC000",
}


def healthy(files: Sequence[CorpusFile]) -> list[CorpusFile]:
    """The corpus without the files damaged on purpose."""
    return [cf for cf in files if cf.name not in DAMAGED]


#: Short timeouts: a hung peer must fail a test quickly, not after minutes.
FAST_TIMEOUTS = {
    "connect_timeout": 5.0,
    "acse_timeout": 10.0,
    "dimse_timeout": 30.0,
    "network_timeout": 30.0,
}


def assert_reasons(result: TransferResult) -> None:
    """Every failed entry says what went wrong, in words; successful ones carry no error."""
    for outcome in result.files:
        if outcome.ok:
            assert outcome.error is None, outcome
        else:
            assert outcome.error and len(outcome.error.strip()) >= 10, outcome
            assert any(c.isalpha() for c in outcome.error), outcome


def send(
    addr: str,
    files: Sequence[CorpusFile],
    *,
    recorder: Recorder | None = None,
    **options: Any,
) -> TransferResult:
    """Queue ``files`` in order and send them with short timeouts (overridable); with a
    ``recorder``, check the event invariants and that callbacks ran on this thread."""
    scu = StoreScu(addr, **{**FAST_TIMEOUTS, **options})
    for cf in files:
        scu.add_file(cf.path)
    if recorder is None:
        return scu.send()
    result = scu.send(**recorder.callbacks)
    recorder.check_invariants(result, [cf.path for cf in files])
    assert recorder.threads == {threading.get_ident()}, "a callback ran on another thread"
    return result
