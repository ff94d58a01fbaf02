"""StoreScu with files that bite: a corrupt RLE stream that makes the codec panic, a
deflate bomb, a device or a FIFO where a file should be, and files that change under
the sender. Each fails its own entry with a clear reason; the others are sent; nothing
hangs; the command line prints no traceback."""

from __future__ import annotations

import os
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from mock_scp import MockScp, datagen
from mock_scp.rules import StoreRequest
from scu import FileSending, StoreScu
from tests.support.recorder import Recorder
from tests.support.scu_helpers import instance_uid, pydicom_file, write_series
from tests.support.serve import scukit
from tests.support.victim import send_in_child

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
MIB = 1024 * 1024
FAST: dict[str, Any] = {
    "connect_timeout": 5.0,
    "acse_timeout": 5.0,
    "dimse_timeout": 10.0,
    "network_timeout": 10.0,
}


def rle_panic_file(path: Path) -> Path:
    """pydicom's MR_small_RLE.dcm with its first RLE segment rewritten as replicate runs
    (0x81 0x00: 128 zero bytes each) that decode far past the end of the frame:
    pylibjpeg-rle indexes out of bounds and panics (a pyo3 PanicException). Its SOP
    Instance UID changes in its last digit (same length), so it can go beside the
    original."""
    source = pydicom_file("MR_small_RLE.dcm")
    uid = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID).encode()
    other = uid[:-1] + (b"8" if uid[-1:] != b"8" else b"9")
    raw = bytearray(Path(source).read_bytes().replace(uid, other))
    fragment = next(
        f for f in generate_fragments(pydicom.dcmread(source).PixelData) if len(f) >= 64
    )
    at = raw.find(fragment[:64])
    _segments, first, second = struct.unpack_from("<3L", raw, at)
    for offset in range(at + first, at + second, 2):
        raw[offset : offset + 2] = b"\x81\x00"
    path.write_bytes(raw)
    return path


def _hostile_batch(tmp_path: Path) -> tuple[list[str], str]:
    good = write_series(tmp_path / "good", 3)
    panic = str(rle_panic_file(tmp_path / "panic.dcm"))
    fine_rle = str(tmp_path / "fine-rle.dcm")
    Path(fine_rle).write_bytes(Path(pydicom_file("MR_small_RLE.dcm")).read_bytes())
    return [good[0], panic, fine_rle, good[1], good[2]], panic


def _panicked(error: str) -> bool:
    return (
        "the codec failed converting to ExplicitVRLittleEndian: PanicException" in error
        or "the converter process died" in error
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("how", ["forced-syntax", "scp-uncompressed-only"])
def test_codec_panic_fails_one_entry_and_the_others_are_sent(
    tmp_path: Path, concurrency: int, how: str
) -> None:
    files, panic = _hostile_batch(tmp_path)
    forced = how == "forced-syntax"
    options: dict[str, Any] = {} if forced else {"transfer_syntaxes": [EXPLICIT, IMPLICIT]}
    with MockScp(**options) as scp:
        scu = StoreScu(
            scp.addr,
            concurrency=concurrency,
            transfer_syntax=EXPLICIT if forced else None,
            **FAST,
        )
        for path in files:
            scu.add_file(path)
        recorder = Recorder()
        result = scu.send(**recorder.callbacks)
        scp.check()
    recorder.check_invariants(result, files)
    outcome = {o.file: o for o in result.files}
    assert not outcome[panic].ok
    assert _panicked(outcome[panic].error or ""), outcome[panic].error
    assert [o.file for o in result.files if o.ok] == [f for f in files if f != panic]
    # The sound RLE file went through the same converter after the panic, and arrived.
    received = {s.sop_instance_uid: s for s in scp.stored}
    assert set(received) == {instance_uid(f) for f in files if f != panic}
    assert received[instance_uid(files[2])].transfer_syntax == EXPLICIT
    assert instance_uid(panic) not in received


@pytest.mark.timeout(120)
def test_scukit_send_reports_a_codec_panic_without_a_traceback(tmp_path: Path) -> None:
    files, panic = _hostile_batch(tmp_path)
    with MockScp(transfer_syntaxes=[EXPLICIT]) as scp:
        done = subprocess.run(
            [*scukit(), "send", scp.addr, *files, "--dimse-timeout", "10"],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, RUST_BACKTRACE="1"),
        )
        stored = len(scp.stored)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert stored == len(files) - 1
    assert "PanicException" in done.stdout or "converter process died" in done.stdout
    assert Path(panic).name in done.stdout
    output = done.stdout + done.stderr
    for trace in ("Traceback", "panicked at", "stack backtrace", "rust_begin_unwind"):
        assert trace not in output, f"{trace!r} in the output:\n{output[-3000:]}"


# --- a deflate bomb -----------------------------------------------------------------------


def deflate_bomb(path: Path, inflated: int) -> Path:
    """A Deflated Explicit VR Little Endian file whose data set inflates to about
    ``inflated`` bytes (zeros in a private OB element) from a few hundred kilobytes."""

    def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
        return struct.pack("<HH2sH", group, elem, vr, len(value)) + value

    uid = b"1.2.826.0.1.3680043.10.1399.77.1"
    sop_class = b"1.2.840.10008.5.1.4.1.1.7\x00"
    meta = element(2, 0x0001, b"OB", b"")  # replaced below (OB has a long form)
    meta = struct.pack("<HH2s2xI", 2, 1, b"OB", 2) + b"\x00\x01"
    meta += element(2, 0x0002, b"UI", sop_class) + element(2, 0x0003, b"UI", uid)
    meta += element(2, 0x0010, b"UI", DEFLATED.encode() + b"\x00")
    group = element(2, 0x0000, b"UL", struct.pack("<I", len(meta)))
    head = element(8, 0x0016, b"UI", sop_class) + element(8, 0x0018, b"UI", uid)
    head += struct.pack("<HH2s2xI", 0x0009, 0x1010, b"OB", inflated)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # Deflated zeros repeat: one mebibyte of them, flushed to a block boundary, is a
    # piece that can be written again and again (a gigabyte in a second, not a minute).
    first = deflater.compress(head) + deflater.compress(bytes(MIB))
    first += deflater.flush(zlib.Z_FULL_FLUSH)
    piece = deflater.compress(bytes(MIB)) + deflater.flush(zlib.Z_FULL_FLUSH)
    with path.open("wb") as out:
        out.write(b"\x00" * 128 + b"DICM" + group + meta + first)
        for _ in range(inflated // MIB - 1):
            out.write(piece)
        out.write(deflater.flush())
    return path


@pytest.mark.timeout(120)
def test_deflate_bomb_is_refused_as_such_with_memory_bounded(tmp_path: Path) -> None:
    """Three bombs of 1 GiB each (about 1 MB on disk): each is refused as a deflate
    bomb, the good files go, and the sender's memory never holds more than one bomb's
    inflation limit (256 MiB) at a time."""
    bombs = [str(deflate_bomb(tmp_path / f"bomb-{i}.dcm", 1 << 30)) for i in range(3)]
    assert all(os.path.getsize(b) < 4 * MIB for b in bombs)
    good = write_series(tmp_path / "good", 2)
    files = [bombs[0], good[0], bombs[1], bombs[2], good[1]]
    with MockScp() as scp:
        report = send_in_child({"addr": scp.addr, "files": files, "options": FAST}, timeout=120)
        stored = {s.sop_instance_uid for s in scp.stored}
    outcomes = report["result"]["files"]
    assert [o["ok"] for o in outcomes] == [False, True, False, False, True]
    for outcome in outcomes:
        if not outcome["ok"]:
            assert "refused as a deflate bomb" in outcome["error"], outcome
    assert stored == {instance_uid(g) for g in good}
    grown_mib = (report["peak_rss_kb"] - report["baseline_rss_kb"]) / 1024
    assert grown_mib < 256 + 128, f"the sender grew {grown_mib:.0f} MiB on 3 GiB of bombs"


# --- devices and FIFOs --------------------------------------------------------------------


def _fifo(tmp_path: Path) -> str:
    path = str(tmp_path / "pipe.dcm")
    os.mkfifo(path)
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("make", "kind"),
    [(lambda _p: "/dev/zero", "a character device"), (_fifo, "a FIFO")],
    ids=["dev-zero", "fifo"],
)
def test_devices_and_fifos_are_refused_at_once(
    tmp_path: Path, make: Callable[[Path], str], kind: str
) -> None:
    source = make(tmp_path)
    scu = StoreScu("127.0.0.1:104")
    with pytest.raises(ValueError, match=f"is {kind}, not a regular file"):
        scu.add_file(source)
    (good,) = write_series(tmp_path / "good", 1)
    with MockScp() as scp:
        # Nothing reads the FIFO's other end: a sender that opened it would hang here.
        done = subprocess.run(
            [*scukit(), "send", scp.addr, good, source],
            capture_output=True,
            text=True,
            timeout=60,
        )
        stored = len(scp.stored)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert kind in done.stderr and source in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert stored == 0  # a usage error: nothing is sent


def _swap_for_fifo(path: str) -> None:
    os.remove(path)
    os.mkfifo(path)


def _swap_for_dev_zero(path: str) -> None:
    os.remove(path)
    os.symlink("/dev/zero", path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["before-send", "while-sending"])
@pytest.mark.parametrize(
    ("swap", "kind"),
    [(_swap_for_fifo, "a FIFO"), (_swap_for_dev_zero, "a character device")],
    ids=["fifo", "dev-zero"],
)
def test_a_file_replaced_by_a_fifo_or_device_after_queueing_is_refused_when_read(
    tmp_path: Path, swap: Callable[[str], None], kind: str, when: str
) -> None:
    """Queued as a regular file, then swapped (after ``add_file``, or once the transfer
    has checked it and is about to send it): the entry fails naming what the path now
    is, nothing blocks on the FIFO, and the others are sent. (The victim is larger than
    a file whose checked bytes are kept for sending, so that its data set is read again
    when it is sent.)"""
    files = write_series(tmp_path, 3)
    victim = files[1]
    Path(victim).write_bytes(datagen.make_bytes(rows=512, columns=512, seed=7))  # 512 KB
    with MockScp() as scp:
        scu = StoreScu(scp.addr, **FAST)
        for path in files:
            scu.add_file(path)
        recorder = Recorder()
        callbacks = recorder.callbacks
        record = callbacks["on_file_sending"]

        def sending(event: FileSending) -> None:
            record(event)
            if when == "while-sending" and event.file == victim:
                swap(victim)  # concurrency 1: runs before the data set is read

        callbacks["on_file_sending"] = sending
        if when == "before-send":
            swap(victim)
        box: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: box.update(result=scu.send(**callbacks)))
        worker.daemon = True
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "send() blocked on the swapped file"
        stored = {s.sop_instance_uid for s in scp.stored}
    result = box["result"]
    recorder.check_invariants(result, files, in_order=True, same_thread=False)
    assert [o.ok for o in result.files] == [True, False, True]
    error = result.files[1].error or ""
    assert kind in error and victim in error, error
    assert stored == {instance_uid(files[0]), instance_uid(files[2])}


# --- a file that changes size while it is being sent ----------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("change", ["shrinks", "grows"])
def test_a_file_that_changes_size_mid_send(tmp_path: Path, concurrency: int, change: str) -> None:
    """A 24 MB file is cut to a tenth (or doubled) while its data set is on the wire (the
    SCP reads it slowly and changes it when its command arrives). Cut: that entry fails
    as a local read error and its association is aborted; grown: it is sent as it was
    when checked. Either way the others are sent."""
    big = write_series(tmp_path / "big", 1, prefix="big", rows=2048, columns=2048 * 3)[0]
    assert os.path.getsize(big) > 20_000_000
    # Another seed: the small files' UIDs must differ from the big one's.
    small = write_series(tmp_path / "small", 5, prefix="small", seed=1)
    files = [small[0], small[1], big, small[2], small[3], small[4]]
    original = Path(big).read_bytes()
    big_uid = instance_uid(big)

    def change_it(_request: StoreRequest) -> bool:
        with open(big, "r+b") as handle:
            if change == "shrinks":
                handle.truncate(len(original) // 10)
            else:
                handle.seek(0, os.SEEK_END)
                handle.write(b"\x00" * len(original))
        return True

    with MockScp(dimse_timeout=30, network_timeout=30) as scp:
        scp.on_store(sop_instance_uid=big_uid, when=change_it).slow_read(16_000_000)
        scu = StoreScu(scp.addr, concurrency=concurrency, **{**FAST, "dimse_timeout": 30.0})
        for path in files:
            scu.add_file(path)
        recorder = Recorder()
        result = scu.send(**recorder.callbacks)
        assert scp.wait_idle(30)
        received = {s.sop_instance_uid: s for s in scp.received}
    recorder.check_invariants(result, files, in_order=concurrency == 1)
    outcome = {o.file: o for o in result.files}
    assert all(outcome[f].ok for f in small)
    big_store = received[big_uid]
    if change == "shrinks":
        error = outcome[big].error or ""
        assert not outcome[big].ok
        cut_short = ("ended" in error and "early" in error) or "cut short" in error
        assert cut_short and "aborted" in error, error
        assert not big_store.complete and big_store.status is None
    else:
        assert outcome[big].ok, outcome[big].error
        assert big_store.complete and big_store.status == 0
        assert bytes(big_store.data) == original[len(original) - big_store.size :]


@pytest.mark.timeout(60)
def test_scukit_send_escapes_hostile_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a\x1b[31mRED\nFORGED LINE.dcm").write_bytes(b"not DICOM")
    with MockScp() as scp:
        done = subprocess.run(
            [*scukit(), "send", scp.addr, str(folder)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "FORGED LINE" in done.stdout  # the file is reported...
    assert "\x1b" not in done.stdout  # ...escaped
    assert not [ln for ln in done.stdout.splitlines() if ln.startswith("FORGED")], done.stdout


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def _many_elements(path: Path, count: int) -> Path:
    """A file of ``count`` tiny elements (12 bytes each): walking it takes seconds."""

    def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
        return struct.pack("<HH2sH", group, elem, vr, len(value)) + value

    sop_class = b"1.2.840.10008.5.1.4.1.1.7\x00"
    uid = b"1.2.826.0.1.3680043.10.1399.55.1"
    meta = struct.pack("<HH2s2xI", 2, 1, b"OB", 2) + b"\x00\x01"
    meta += element(2, 2, b"UI", sop_class) + element(2, 3, b"UI", uid)
    meta += element(2, 0x10, b"UI", EXPLICIT.encode() + b"\x00")
    group = element(2, 0, b"UL", struct.pack("<I", len(meta)))
    head = element(8, 0x16, b"UI", sop_class) + element(8, 0x18, b"UI", uid)
    block = element(9, 0x1010, b"UL", bytes(4)) * 100_000
    with path.open("wb") as out:
        out.write(b"\x00" * 128 + b"DICM" + group + meta + head)
        for _ in range(count // 100_000):
            out.write(block)
    return path


@pytest.mark.timeout(120)
def test_a_file_cut_short_while_its_header_is_read_fails_only_that_entry(
    tmp_path: Path,
) -> None:
    big = _many_elements(tmp_path / "many.dcm", 5_000_000)
    (good,) = write_series(tmp_path / "good", 1)
    with MockScp() as scp:
        sender = subprocess.Popen(
            [*scukit(), "send", scp.addr, str(big), good],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not _has_open(sender.pid, big):
            assert sender.poll() is None and time.monotonic() < deadline, "never opened"
            time.sleep(0.01)
        os.truncate(big, 4096)  # open: the sender is walking its 5 million elements
        out, err = sender.communicate(timeout=100)
    assert sender.returncode == 1, (sender.returncode, out, err)
    assert "truncated" in out and "1 successful" not in out
