"""Unit tests of the public value types: the five events, TransferResult/FileOutcome,
PreflightItem, the error hierarchy, and what ``scu`` exports."""

from __future__ import annotations

import dataclasses
import json

import pytest

import scu
from scu import (
    AssociationError,
    AssociationRejected,
    ConnectionFailed,
    FileError,
    FileOutcome,
    FileSending,
    FileSent,
    PreflightItem,
    Rejection,
    ScuError,
    TransferCompleted,
    TransferResult,
    TransferStarted,
)

# The events of the node-dicom StoreScu documentation, its field names in snake_case.
_EVENT_FIELDS = {
    TransferStarted: ["message", "total_files"],
    FileSending: ["message", "file", "sop_instance_uid", "sop_class_uid"],
    FileSent: [
        "message",
        "file",
        "sop_instance_uid",
        "sop_class_uid",
        "transfer_syntax",
        "duration_seconds",
        "status",
        "warning",
        "attempts",  # ours, beyond the node-dicom documentation
        "size",
    ],
    FileError: [
        "message",
        "file",
        "error",
        "sop_instance_uid",
        "sop_class_uid",
        "file_transfer_syntax",
        "status",
        "attempts",
    ],
    TransferCompleted: ["message", "total_files", "successful", "failed", "duration_seconds"],
}


@pytest.mark.parametrize("event_type", list(_EVENT_FIELDS), ids=lambda t: t.__name__)
def test_events_are_frozen_dataclasses_with_the_spec_fields(event_type: type) -> None:
    assert dataclasses.is_dataclass(event_type)
    assert [f.name for f in dataclasses.fields(event_type)] == _EVENT_FIELDS[event_type]
    assert event_type.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_event_instances_cannot_be_changed_and_compare_by_value() -> None:
    sent = FileSent("File sent", "a.dcm", "1.2", "1.2.3", "1.2.840.10008.1.2.1", 0.01, 0)
    assert sent.warning is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        sent.status = 0xA700  # type: ignore[misc]
    assert sent == FileSent("File sent", "a.dcm", "1.2", "1.2.3", "1.2.840.10008.1.2.1", 0.01, 0)
    assert hash(sent) == hash(dataclasses.replace(sent))


def test_file_error_optional_fields_default_to_none() -> None:
    error = FileError("File failed", "x.dcm", "not a DICOM file")
    assert (
        error.sop_instance_uid,
        error.sop_class_uid,
        error.file_transfer_syntax,
        error.status,
    ) == (
        None,
        None,
        None,
        None,
    )


def _result() -> TransferResult:
    files = [
        FileOutcome("a.dcm", 0x0000, True, None, "1.2.840.10008.1.2.1", "1.2.1", "1.2.3"),
        FileOutcome("b.dcm", 0xB000, True, None, "1.2.840.10008.1.2", "1.2.2", "1.2.3", "0xB000"),
        FileOutcome("c.dcm", 0xA700, False, "0xA700 (Refused: out of resources)"),
        FileOutcome("d.dcm", None, False, "not a DICOM file"),
    ]
    return TransferResult(2, 2, ["b.dcm: 0xB000"], 4, files, duration_seconds=1.5)


def test_file_outcome_fields() -> None:
    # The documented names; their order there (file, status, ok, ...)
    # differs from the dataclass's (file, ok, status, ...), so only the names are pinned.
    assert {f.name for f in dataclasses.fields(FileOutcome)} == {
        "file",
        "status",
        "ok",
        "error",
        "transfer_syntax",
        "sop_instance_uid",
        "sop_class_uid",
        "warning",
        "attempts",
        "size",
    }


def test_transfer_result_to_dict_is_json_with_the_same_names() -> None:
    result = _result()
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {
        "successful",
        "failed",
        "warnings",
        "total_files",
        "files",
        "duration_seconds",
        "interrupted",
        "already_sent",
        "bytes_sent",
    }
    assert (data["successful"], data["failed"], data["total_files"]) == (2, 2, 4)
    assert data["warnings"] == ["b.dcm: 0xB000"]
    assert data["duration_seconds"] == 1.5
    assert [f["file"] for f in data["files"]] == ["a.dcm", "b.dcm", "c.dcm", "d.dcm"]
    assert data["files"][1] == {
        "file": "b.dcm",
        "ok": True,
        "status": 0xB000,
        "error": None,
        "transfer_syntax": "1.2.840.10008.1.2",
        "sop_instance_uid": "1.2.2",
        "sop_class_uid": "1.2.3",
        "warning": "0xB000",
        "attempts": [],
        "size": 0,
    }


def test_failed_files_in_queue_order() -> None:
    assert _result().failed_files == ["c.dcm", "d.dcm"]


def test_transfer_result_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _result().successful = 3  # type: ignore[misc]


def test_preflight_item() -> None:
    item = PreflightItem(
        "a.dcm", "convert", "1.2.3", "1.2.3.4", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"
    )
    assert item.reason is None
    assert [f.name for f in dataclasses.fields(PreflightItem)] == [
        "file",
        "verdict",
        "sop_class_uid",
        "sop_instance_uid",
        "file_transfer_syntax",
        "transfer_syntax",
        "reason",
    ]


def test_error_hierarchy_and_payloads() -> None:
    assert issubclass(ConnectionFailed, AssociationError)
    assert issubclass(AssociationRejected, AssociationError)
    assert issubclass(AssociationError, ScuError)
    result = _result()
    failed = ConnectionFailed("could not establish association with 127.0.0.1:1", result=result)
    assert failed.result is result
    assert "could not establish association" in str(failed)
    rejection = Rejection(1, 1, 7, "called AE title not recognised")
    rejected = AssociationRejected("rejected: called AE title not recognised", rejection=rejection)
    assert rejected.rejection == rejection
    assert rejected.result is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        rejection.reason = 1  # type: ignore[misc]


# The API other parts rely on (the README's "scu.StoreScu").
_DOCUMENTED = {
    "StoreScu",
    "TransferResult",
    "FileOutcome",
    "TransferStarted",
    "FileSending",
    "FileSent",
    "FileError",
    "TransferCompleted",
    "ScuError",
    "AssociationError",
    "ConnectionFailed",
    "AssociationRejected",
    "Rejection",
    "echo",
    "EchoResult",
    "PreflightItem",
}


def test_package_exports_the_documented_names() -> None:
    assert _DOCUMENTED <= set(scu.__all__)
    for name in scu.__all__:
        assert getattr(scu, name) is not None, name
    assert sorted(scu.__all__) == scu.__all__
