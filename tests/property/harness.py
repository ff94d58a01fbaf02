"""What the property tests share: queued entries with their model view, a callback
recorder, and the checks of StoreScu's promises against the model and the SCP journal."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pydicom

from mock_scp import datagen
from mock_scp.strategies import FileSpec, make_bytes, status_kind
from scu import FileSending, FileSent, TransferResult
from tests.property.model import SENT_FATES, UNSENT_FATES, Entry, Fate, Prediction
from tests.support.recorder import Recorder

#: Kinds of unreadable entries, each made from a seed.
UNREADABLE_KINDS: dict[str, Callable[[int], bytes]] = {
    "not-dicom": lambda seed: datagen.not_dicom_bytes(size=64 + seed % 512),
    # Cut inside the pixel data (most of the data set at this size), never on an
    # element boundary, where the shorter data set would still be valid.
    "truncated": lambda seed: datagen.truncated_bytes(
        keep=0.55 + (seed % 40) / 100, size=4096, seed=seed
    ),
    "empty": lambda seed: b"",
}


@lru_cache(maxsize=1024)
def file_bytes(spec: FileSpec) -> tuple[bytes, int]:
    """The file's bytes and the smaller side of its image."""
    data = make_bytes(spec)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return data, min(int(ds.Rows), int(ds.Columns))


@dataclass(frozen=True)
class Queued:
    """One entry as queued (name and bytes) and as the model sees it."""

    entry: Entry
    data: bytes

    @classmethod
    def of_spec(cls, name: str, spec: FileSpec) -> Queued:
        assert spec.sop_instance_uid is not None
        data, side = file_bytes(spec)
        entry = Entry(
            name,
            spec.sop_class_uid,
            spec.sop_instance_uid,
            spec.transfer_syntax,
            bits_allocated=spec.bits_allocated,
            min_side=side,
        )
        return cls(entry, data)

    @classmethod
    def unreadable(cls, name: str, kind: str, seed: int) -> Queued:
        return cls(Entry(name, readable=False), UNREADABLE_KINDS[kind](seed))


def check_grammar(
    rec: Recorder, result: TransferResult, names: Sequence[str], *, in_order: bool
) -> None:
    """The transfer invariants from the recorded callbacks and the returned result."""
    rec.check_invariants(result, names, in_order=in_order)


def check_against_model(
    rec: Recorder, result: TransferResult, queued: Sequence[Queued], predicted: Prediction
) -> None:
    """Every entry ends as the model says: ok or not, the syntax on the wire, the
    status, the warning, a clear error; counts and warnings equal the model's."""
    assert (result.successful, result.failed, result.total_files) == (
        predicted.successful,
        predicted.failed,
        predicted.total_files,
    ), f"counts differ from the model: {[o.fate.name for o in predicted.outcomes]}"
    sending = {e.file for e in rec.events if isinstance(e, FileSending)}
    sent_events = {e.file: e for e in rec.events if isinstance(e, FileSent)}
    for item, outcome, expected in zip(queued, result.files, predicted.outcomes, strict=True):
        where = f"{item.entry.name}: expected {expected.fate.value}, got {outcome}"
        assert outcome.ok == expected.ok, where
        if expected.fate in SENT_FATES:
            assert outcome.file in sending, f"{where} (no on_file_sending)"
        if expected.fate in UNSENT_FATES or expected.fate in (Fate.NO_CONTEXT, Fate.CONVERSION):
            assert outcome.file not in sending, f"{where} (on_file_sending for an unsent entry)"
        if expected.ok:
            assert outcome.transfer_syntax == expected.transfer_syntax, where
            assert sent_events[outcome.file].transfer_syntax == expected.transfer_syntax, where
            assert outcome.status == expected.status, where
            if expected.fate is Fate.WARNING:
                assert outcome.warning and f"0x{expected.status:04x}" in outcome.warning.lower(), (
                    where
                )
            else:
                assert outcome.warning is None, where
            continue
        assert outcome.error and outcome.error.strip(), f"{where} (empty error)"
        assert "internal error" not in outcome.error, where
        if expected.fate is Fate.STATUS:
            assert outcome.status == expected.status, where
            assert f"0x{expected.status:04x}" in outcome.error.lower(), where
        elif expected.fate is Fate.FAIL_FAST:
            assert "fail_fast" in outcome.error, where
        elif expected.fate is Fate.REJECTED:
            assert "reject" in outcome.error.lower(), where
    assert len(result.warnings) == len(predicted.warnings), result.warnings
    for name, status in predicted.warnings:
        assert any(name in w and f"0x{status:04x}" in w.lower() for w in result.warnings), (
            f"no warning for {name} with 0x{status:04X} in {result.warnings}"
        )


def proposed_pairs(scp: Any) -> set[tuple[str, str]]:
    """(abstract syntax, transfer syntax) pairs proposed on every association."""
    return {
        (abstract, ts)
        for record in scp.associations
        for _id, abstract, syntaxes in record.proposed_contexts
        for ts in syntaxes
    }


def check_journal(
    scp: Any, result: TransferResult, queued: Sequence[Queued], predicted: Prediction
) -> None:
    """Invariant 6 and the wire: every success is in the journal with a success or
    warning status; what reached the SCP is what the model sent, on a context of the
    file's own SOP class, in the predicted syntax; no violations, no server errors."""
    received = scp.received
    by_uid: dict[str, list[Any]] = {}
    for record in received:
        by_uid.setdefault(record.sop_instance_uid, []).append(record)
    for outcome in result.files:
        if outcome.ok:
            records = by_uid.get(outcome.sop_instance_uid or "", [])
            assert any(
                r.status is not None
                and status_kind(r.status) != "failure"
                and r.transfer_syntax == outcome.transfer_syntax
                for r in records
            ), f"{outcome.file} reported successful but the SCP journal has {records}"
    expected_uids = Counter(
        item.entry.sop_instance_uid
        for item, o in zip(queued, predicted.outcomes, strict=True)
        if o.fate in SENT_FATES
    )
    assert Counter(r.sop_instance_uid for r in received) == expected_uids, (
        "stores differ from the model"
    )
    assert len(received) == predicted.stores
    syntax_of = {
        item.entry.sop_instance_uid: (item.entry.sop_class_uid, o.transfer_syntax)
        for item, o in zip(queued, predicted.outcomes, strict=True)
        if o.fate in SENT_FATES
    }
    accepted = {
        record.id: {(abstract, ts) for _id, abstract, ts in record.accepted_contexts}
        for record in scp.associations
    }
    for record in received:
        sop_class, syntax = syntax_of[record.sop_instance_uid]
        assert record.sop_class_uid == sop_class
        assert record.transfer_syntax == syntax, (
            f"{record.sop_instance_uid} went out in {record.transfer_syntax}, model: {syntax}"
        )
        assert (sop_class, syntax) in accepted.get(record.association_id, set()), (
            f"{record.sop_instance_uid} was not sent on an accepted context of its SOP class"
        )
    if scp.associations:  # rejected ones included: they were proposed too
        assert proposed_pairs(scp) == predicted.proposed
    assert scp.violations == []
    assert scp.errors == []
