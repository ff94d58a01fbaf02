"""Unit tests of StoreScu's constructor validation and its queue (no network: nothing
here calls send(); that the queue survives send() is an integration matter)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from scu import StoreScu
from scu.protocol.uids import EXPLICIT_VR_LE

ADDR = "127.0.0.1:11112"


# --- constructor -----------------------------------------------------------------------


def test_defaults_are_the_seed_defaults() -> None:
    scu = StoreScu(ADDR)
    assert scu.calling_ae_title == "STORE-SCU"
    assert scu.called_ae_title == "ANY-SCP"
    assert scu.max_pdu_length == 16384
    assert scu.transfer_syntax is None
    assert scu.concurrency == 1
    assert scu.verbose is False
    assert scu.never_transcode is False
    assert scu.fail_fast is False
    assert scu.tls is None
    assert (scu.timeouts.connect, scu.timeouts.acse, scu.timeouts.dimse, scu.timeouts.network) == (
        10.0,
        30.0,
        30.0,
        60.0,
    )
    assert len(scu) == 0
    assert scu.files == []


def test_options_beyond_the_seed_are_kept() -> None:
    context = ssl.create_default_context()
    scu = StoreScu(
        "PACS@[::1]:104",
        calling_ae_title=" MY-SCU ",
        max_pdu_length=0,
        transfer_syntax="explicitvrlittleendian",
        concurrency=4,
        connect_timeout=None,
        acse_timeout=1,
        dimse_timeout=2.5,
        network_timeout=None,
        tls=context,
        never_transcode=True,
        fail_fast=True,
    )
    assert scu.called_ae_title == "PACS"
    assert scu.calling_ae_title == "MY-SCU"
    assert scu.max_pdu_length == 0
    assert scu.transfer_syntax == EXPLICIT_VR_LE
    assert scu.concurrency == 4
    assert (scu.timeouts.connect, scu.timeouts.acse, scu.timeouts.dimse, scu.timeouts.network) == (
        None,
        1.0,
        2.5,
        None,
    )
    assert scu.tls is context
    assert scu.never_transcode and scu.fail_fast


def test_called_ae_from_addr_and_from_keyword() -> None:
    assert StoreScu("ORTHANC@127.0.0.1:4242").called_ae_title == "ORTHANC"
    assert StoreScu(ADDR, called_ae_title="PACS").called_ae_title == "PACS"
    # The same AE in both places is not a contradiction (padding is not significant).
    assert StoreScu("PACS@h:104", called_ae_title=" PACS").called_ae_title == "PACS"


def test_called_ae_in_addr_contradicting_keyword_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"called_ae_title 'OTHER' contradicts the AE title in addr"
    ):
        StoreScu("PACS@127.0.0.1:104", called_ae_title="OTHER")


@pytest.mark.parametrize(
    ("kwargs", "parameter", "accepted"),
    [
        ({"calling_ae_title": "X" * 17}, "calling_ae_title", "1 to 16 printable ASCII"),
        ({"calling_ae_title": "A\\B"}, "calling_ae_title", "1 to 16 printable ASCII"),
        ({"calling_ae_title": ""}, "calling_ae_title", "1 to 16 printable ASCII"),
        ({"called_ae_title": "X" * 17}, "called_ae_title", "1 to 16 printable ASCII"),
        ({"called_ae_title": "A\x01"}, "called_ae_title", "1 to 16 printable ASCII"),
        ({"called_ae_title": None}, "called_ae_title", "1 to 16 printable ASCII"),
        ({"max_pdu_length": 4095}, "max_pdu_length", "4096..131072, or 0"),
        ({"max_pdu_length": 131073}, "max_pdu_length", "4096..131072, or 0"),
        ({"max_pdu_length": "16384"}, "max_pdu_length", "4096..131072, or 0"),
        ({"transfer_syntax": "NoSuchSyntax"}, "transfer_syntax", "ExplicitVRLittleEndian"),
        ({"transfer_syntax": "1.2.3.4"}, "transfer_syntax", "UID of a known transfer syntax"),
        ({"transfer_syntax": ""}, "transfer_syntax", "name or UID"),
        ({"concurrency": 0}, "concurrency", "integer >= 1"),
        ({"concurrency": -3}, "concurrency", "integer >= 1"),
        ({"concurrency": 1.5}, "concurrency", "integer >= 1"),
        ({"concurrency": True}, "concurrency", "integer >= 1"),
        ({"connect_timeout": 0}, "connect_timeout", "positive number of seconds or None"),
        ({"acse_timeout": -1}, "acse_timeout", "positive number of seconds or None"),
        ({"dimse_timeout": float("nan")}, "dimse_timeout", "positive number of seconds or None"),
        ({"network_timeout": "60"}, "network_timeout", "positive number of seconds or None"),
        ({"tls": "yes"}, "tls", "ssl.SSLContext or None"),
    ],
)
def test_invalid_constructor_values_raise_value_error_naming_parameter(
    kwargs: dict[str, Any], parameter: str, accepted: str
) -> None:
    with pytest.raises(ValueError) as info:
        StoreScu(ADDR, **kwargs)
    message = str(info.value)
    assert message.startswith(parameter), message
    assert accepted in message


@pytest.mark.parametrize("addr", ["", "host", "host:0", "::1:104", "X" * 17 + "@h:104"])
def test_invalid_addr_raises_value_error_naming_addr(addr: str) -> None:
    with pytest.raises(ValueError, match=r"^addr"):
        StoreScu(addr)


def test_addr_is_positional_and_the_rest_keyword_only() -> None:
    with pytest.raises(TypeError):
        StoreScu(ADDR, "STORE-SCU")  # type: ignore[call-arg]


# --- the queue -----------------------------------------------------------------------


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_add_file_queues_in_order_without_reading(tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    b = _touch(tmp_path / "b.dcm")
    a = _touch(tmp_path / "a.txt")  # add_file takes any name: only directories filter
    scu.add_file(b)
    scu.add_file(str(a))
    scu.add_file(b)  # duplicates are the caller's choice; each is one entry
    assert scu.files == [str(b), str(a), str(b)]
    assert len(scu) == 3


def test_add_file_missing_raises_file_not_found_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "scan.dcm"
    scu = StoreScu(ADDR)
    with pytest.raises(FileNotFoundError, match=r"scan\.dcm") as info:
        scu.add_file(missing)
    assert str(missing) in str(info.value)
    assert len(scu) == 0


def test_add_file_on_a_directory_points_to_add_directory(tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    with pytest.raises(IsADirectoryError, match="add_directory"):
        scu.add_file(tmp_path)
    assert len(scu) == 0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    for rel in [
        "b.dcm",
        "a.dcm",
        "DICOMDIR",
        "notes.txt",
        "README",
        "series2/z.dcm",
        "series2/deeper/c.dcm",
        "series1/y.dcm",
        "series1/dicomdir",
    ]:
        _touch(root / rel)
    (root / "dir.dcm").mkdir()  # a folder whose name matches the pattern is not a file
    return root


def test_add_directory_recursive_sorted_and_filtered(tree: Path) -> None:
    scu = StoreScu(ADDR)
    count = scu.add_directory(tree)
    expected = sorted(
        os.path.join(tree, rel)
        for rel in ["a.dcm", "b.dcm", "series1/y.dcm", "series2/z.dcm", "series2/deeper/c.dcm"]
    )
    assert scu.files == expected
    assert count == len(expected)


def test_add_directory_not_recursive(tree: Path) -> None:
    scu = StoreScu(ADDR)
    assert scu.add_directory(tree, recursive=False) == 2
    assert scu.files == [str(tree / "a.dcm"), str(tree / "b.dcm")]


def test_add_directory_pattern_and_dicomdir_skipped_whatever_the_pattern(tree: Path) -> None:
    scu = StoreScu(ADDR)
    scu.add_directory(tree, pattern="*", recursive=False)
    names = [Path(f).name for f in scu.files]
    assert names == ["README", "a.dcm", "b.dcm", "notes.txt"]  # sorted, no DICOMDIR
    scu.clean()
    scu.add_directory(tree, pattern="*")
    assert not any(Path(f).name.upper() == "DICOMDIR" for f in scu.files)
    scu.clean()
    assert scu.add_directory(tree, pattern="*.txt") == 1


def test_add_directory_appends_after_what_is_queued(tree: Path, tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    first = _touch(tmp_path / "zzz.dcm")
    scu.add_file(first)
    scu.add_directory(tree / "series1")
    assert scu.files == [str(first), str(tree / "series1" / "y.dcm")]


def test_add_directory_missing_raises_file_not_found_naming_it(tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    with pytest.raises(FileNotFoundError, match="no such directory") as info:
        scu.add_directory(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


def test_add_directory_on_a_file_raises(tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        scu.add_directory(_touch(tmp_path / "x.dcm"))


def test_add_directory_empty_queues_nothing(tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    assert scu.add_directory(tmp_path) == 0
    assert scu.files == []


def test_add_file_from_memory(tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    scu.add_file_from_memory(b"abc", "one.dcm")
    scu.add_file_from_memory(bytearray(b"abc"), "two.dcm")
    scu.add_file_from_memory(memoryview(b"abc"), "three.dcm")
    assert scu.files == ["one.dcm", "two.dcm", "three.dcm"]


def test_add_file_from_memory_copies_the_bytes() -> None:
    # A caller reusing its buffer must not change what is queued.
    scu = StoreScu(ADDR)
    buffer = bytearray(b"abc")
    scu.add_file_from_memory(buffer, "x.dcm")
    buffer[:] = b"zzz"
    assert scu._entries[0].data == b"abc"


@pytest.mark.parametrize("data", ["text", 42, None, [1, 2]])
def test_add_file_from_memory_rejects_non_bytes(data: object) -> None:
    scu = StoreScu(ADDR)
    with pytest.raises(TypeError, match="data must be bytes"):
        scu.add_file_from_memory(data, "x.dcm")  # type: ignore[arg-type]
    assert len(scu) == 0


@pytest.mark.parametrize("name", ["", None, 3])
def test_add_file_from_memory_needs_a_name(name: object) -> None:
    scu = StoreScu(ADDR)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        scu.add_file_from_memory(b"x", name)  # type: ignore[arg-type]
    assert len(scu) == 0


def test_clean_empties_the_queue_and_it_can_be_refilled(tmp_path: Path) -> None:
    scu = StoreScu(ADDR)
    scu.add_file(_touch(tmp_path / "a.dcm"))
    scu.add_file_from_memory(b"x", "m.dcm")
    scu.clean()
    assert len(scu) == 0 and scu.files == []
    scu.add_file_from_memory(b"x", "again.dcm")
    assert scu.files == ["again.dcm"]
