"""Our StoreScu against real receivers: DCMTK storescp and Orthanc.

Every check is made on what the receiver *stored* (files storescp wrote, Orthanc's REST
API), never only on what the SCU reports: a file reported successful must have arrived
with its SOP Instance UID, in the transfer syntax the SCU says it used, and each failure
must carry a reason in words.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from scu import (
    AssociationRejected,
    ConnectionFailed,
    StoreScu,
    TransferResult,
    echo,
)
from tests.interop.helpers import (
    DAMAGED,
    DCMTK_CANNOT_PARSE,
    CorpusFile,
    Recorder,
    assert_reasons,
    healthy,
    send,
)
from tests.interop.proxy import run_proxy
from tests.support.dcmtk import StoreScp, write_profile
from tests.support.orthanc import Orthanc, run_orthanc
from tests.support.tools import free_port

pytestmark = pytest.mark.interop

UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

StoreScpFactory = Callable[..., StoreScp]


def received(scp: StoreScp) -> Counter[tuple[str, str]]:
    """(SOP Instance UID, transfer syntax) of every file storescp wrote."""
    pairs: Counter[tuple[str, str]] = Counter()
    for path in scp.received_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        pairs[(str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID))] += 1
    return pairs


def sent_pairs(result: TransferResult) -> Counter[tuple[str, str]]:
    return Counter((str(o.sop_instance_uid), str(o.transfer_syntax)) for o in result.files if o.ok)


def check_received(scp: StoreScp, result: TransferResult) -> None:
    """Each file reported successful was written by storescp with its UID, in the syntax
    reported. storescp also writes some files it then answers with a failure (0xC000
    when DCMTK cannot parse what it wrote): extra files are allowed only for entries the
    SCP answered with a failure status."""
    got, sent = received(scp), sent_pairs(result)
    assert sent - got == Counter(), f"reported sent but not stored\n{scp.log()[-3000:]}"
    answered_failure = {
        o.sop_instance_uid for o in result.files if not o.ok and o.status is not None
    }
    extra = {uid for uid, _ in (got - sent)}
    assert extra <= answered_failure, f"stored but not reported: {extra - answered_failure}"


def check_accounting(result: TransferResult, files: Sequence[CorpusFile]) -> None:
    """Every queued file ends in exactly one outcome, in queue order, with its UIDs."""
    assert result.total_files == len(files) == len(result.files)
    assert result.successful + result.failed == result.total_files
    assert result.successful == sum(o.ok for o in result.files)
    for outcome, cf in zip(result.files, files, strict=True):
        assert os.path.basename(outcome.file) == cf.name
        if outcome.ok:
            assert outcome.sop_instance_uid == cf.sop_instance_uid
            assert outcome.sop_class_uid == cf.sop_class_uid
            assert outcome.transfer_syntax, f"{cf.name}: no transfer syntax reported"
    assert_reasons(result)


# The whole corpus -------------------------------------------------------------------


def test_corpus_to_storescp_accepting_every_syntax(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    """storescp +xa: every file goes out in its own syntax and arrives as it was sent."""
    scp = storescp_factory(accept_all=True)
    recorder = Recorder()
    result = send(scp.addr, corpus, called_ae_title=scp.ae_title, recorder=recorder)
    check_accounting(result, corpus)
    check_received(scp, result)
    expected_failures = {**DAMAGED, **DCMTK_CANNOT_PARSE}
    unexpected = []
    for outcome, cf in zip(result.files, corpus, strict=True):
        if outcome.ok:
            # storescp accepts every syntax it knows: nothing needs converting.
            assert outcome.transfer_syntax == cf.transfer_syntax, cf.name
            assert cf.name not in expected_failures, f"{cf.name} was expected to fail"
        elif cf.name in expected_failures:
            assert expected_failures[cf.name].lower() in str(outcome.error).lower(), outcome
        else:
            unexpected.append((cf.name, outcome.error))
    assert unexpected == [], unexpected


def test_corpus_to_storescp_uncompressed_only(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    """storescp's default policy takes uncompressed syntaxes only: compressed files are
    converted (decompressed, same pixels, same UID) or fail with the reason."""
    scp = storescp_factory()
    result = send(scp.addr, corpus, called_ae_title=scp.ae_title)
    check_accounting(result, corpus)
    check_received(scp, result)
    converted = []
    for outcome, cf in zip(result.files, corpus, strict=True):
        if not outcome.ok:
            continue
        assert outcome.transfer_syntax in UNCOMPRESSED, cf.name
        if cf.transfer_syntax in UNCOMPRESSED:
            assert outcome.transfer_syntax == cf.transfer_syntax, cf.name
        else:
            converted.append(cf)
    assert converted, "no compressed file was converted for an uncompressed-only SCP"
    stored: dict[str, list[Path]] = {}
    for path in scp.received_files():
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        stored.setdefault(uid, []).append(path)
    for cf in converted:
        if cf.has_pixels:
            assert_same_pixels(cf.path, stored[cf.sop_instance_uid])
    # Uncompressed files go as they are: only the damaged ones and those DCMTK cannot
    # parse may fail.
    uncompressed_failures = [
        (cf.name, o.error)
        for o, cf in zip(result.files, corpus, strict=True)
        if not o.ok
        and cf.transfer_syntax in UNCOMPRESSED
        and cf.name not in DAMAGED
        and cf.name not in DCMTK_CANNOT_PARSE
    ]
    assert uncompressed_failures == []


def assert_same_pixels(original: str, candidates: Sequence[Path]) -> None:
    """The stored (decompressed) pixels equal pydicom's decoding of the original, for
    one of the stored files with its SOP Instance UID (the corpus repeats some UIDs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want = pydicom.dcmread(original).pixel_array
        except Exception:  # no decoder here either: nothing to compare against
            return
        arrays = [pydicom.dcmread(path).pixel_array for path in candidates]
    assert any(got.shape == want.shape and np.array_equal(got, want) for got in arrays), (
        f"{original}: pixel data changed in conversion"
    )


@pytest.mark.xdist_group("orthanc")
def test_corpus_to_orthanc(empty_orthanc: Orthanc, corpus: tuple[CorpusFile, ...]) -> None:
    """Orthanc (every syntax): each file reported successful is in Orthanc with its UID."""
    orthanc = empty_orthanc
    result = send(orthanc.addr, corpus, called_ae_title=orthanc.aet)
    check_accounting(result, corpus)
    ok_files = [cf for o, cf in zip(result.files, corpus, strict=True) if o.ok]
    stored = orthanc.sop_instance_uids()
    assert set(stored) == {cf.sop_instance_uid for cf in ok_files}, orthanc.log()[-3000:]
    # Orthanc keys an instance by patient, study, series and SOP instance.
    assert orthanc.count_instances() == len({cf.orthanc_key for cf in ok_files})
    unexpected = []
    for outcome, cf in zip(result.files, corpus, strict=True):
        if cf.name in DAMAGED:
            assert not outcome.ok and DAMAGED[cf.name] in str(outcome.error).lower(), outcome
        elif not cf.orthanc_storable:
            # A real PACS refusing what it cannot index: the status is the reason.
            assert not outcome.ok and "0xA700" in str(outcome.error), outcome
            assert outcome.status == 0xA700
        elif cf.name in DCMTK_CANNOT_PARSE:  # Orthanc parses with DCMTK too
            assert not outcome.ok and DCMTK_CANNOT_PARSE[cf.name] in str(outcome.error), outcome
        elif not outcome.ok:
            unexpected.append((cf.name, outcome.error))
    assert unexpected == [], unexpected


# Negotiation corner cases ----------------------------------------------------------------


def pick(corpus: Sequence[CorpusFile], syntaxes: Iterable[str], n: int) -> list[CorpusFile]:
    """The first ``n`` healthy files with pixels in one of ``syntaxes``."""
    wanted = set(syntaxes)
    usable = [cf for cf in healthy(corpus) if cf.name not in DCMTK_CANNOT_PARSE]
    return [cf for cf in usable if cf.transfer_syntax in wanted and cf.has_pixels][:n]


def compressed(corpus: Sequence[CorpusFile], n: int) -> list[CorpusFile]:
    usable = healthy(corpus)
    return [cf for cf in usable if cf.transfer_syntax not in UNCOMPRESSED and cf.has_pixels][:n]


def test_never_transcode_refuses_instead_of_converting(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    files = pick(corpus, [EXPLICIT_LE], 3) + compressed(corpus, 4)
    scp = storescp_factory()
    result = send(scp.addr, files, called_ae_title=scp.ae_title, never_transcode=True)
    check_accounting(result, files)
    assert [o.ok for o in result.files] == [True] * 3 + [False] * 4
    check_received(scp, result)
    for outcome in result.files[3:]:
        text = str(outcome.error).lower()
        assert any(w in text for w in ("transcod", "convert", "accept", "refuse")), text


def test_profile_with_explicit_le_only(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...], tmp_path: Path
) -> None:
    """A -xf profile that really restricts to Explicit VR LE: Implicit and Big Endian
    files are converted, and each arrives in Explicit VR LE."""
    files = pick(corpus, [IMPLICIT_LE, "1.2.840.10008.1.2.2", EXPLICIT_LE], 12)
    classes = sorted({cf.sop_class_uid for cf in files})
    profile = write_profile(
        tmp_path / "profile.cfg", sop_classes=classes, transfer_syntaxes=[EXPLICIT_LE]
    )
    scp = storescp_factory(profile=profile)
    result = send(scp.addr, files, called_ae_title=scp.ae_title)
    check_accounting(result, files)
    assert result.failed == 0, [(o.file, o.error) for o in result.files if not o.ok]
    assert {o.transfer_syntax for o in result.files} == {EXPLICIT_LE}
    check_received(scp, result)


def test_forced_transfer_syntax_explicit_le(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    files = pick(corpus, [IMPLICIT_LE, EXPLICIT_LE], 3) + compressed(corpus, 3)
    scp = storescp_factory(accept_all=True)
    result = send(
        scp.addr, files, called_ae_title=scp.ae_title, transfer_syntax="ExplicitVRLittleEndian"
    )
    check_accounting(result, files)
    assert all(o.transfer_syntax == EXPLICIT_LE for o in result.files if o.ok)
    check_received(scp, result)
    assert result.successful >= 3


def test_small_max_pdu_both_ways(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    """storescp -pdu 4096 aborts a sender that ignores it; ours fragments correctly."""
    files = sorted(corpus, key=lambda cf: -os.path.getsize(cf.path))[:3] + pick(
        corpus, [EXPLICIT_LE], 3
    )
    scp = storescp_factory(accept_all=True, max_pdu=4096)
    result = send(scp.addr, files, called_ae_title=scp.ae_title, max_pdu_length=4096)
    check_accounting(result, files)
    assert result.failed == 0, [o.error for o in result.files]
    check_received(scp, result)


# Association errors ----------------------------------------------------------------------


def test_refused_association_is_rejected_with_reason(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    files = pick(corpus, [EXPLICIT_LE], 3)
    scp = storescp_factory(refuse=True)
    # DCMTK closes right after A-ASSOCIATE-RJ: the rejection must win that race every time.
    for _ in range(5):
        with pytest.raises(AssociationRejected) as info:
            send(scp.addr, files, called_ae_title=scp.ae_title)
        error = info.value
        assert "rejected" in str(error).lower()
        assert (error.rejection.result, error.rejection.source) == (1, 1)
        assert error.rejection.reason == 1
        assert error.rejection.description
        assert error.result is not None
        assert error.result.failed == error.result.total_files == len(files)
        assert_reasons(error.result)
    assert received(scp) == Counter()


@pytest.mark.xdist_group("orthanc")
def test_orthanc_checks_called_ae_title(corpus: tuple[CorpusFile, ...]) -> None:
    files = pick(corpus, [EXPLICIT_LE], 2)
    with run_orthanc(aet="PACS", check_called_aet=True) as orthanc:
        with pytest.raises(AssociationRejected) as info:
            send(orthanc.addr, files, called_ae_title="NOT-PACS")
        error = info.value
        assert "rejected" in str(error).lower()
        assert "called ae title" in str(error).lower()
        assert error.rejection.reason == 7  # called AE title not recognized (PS3.8 9.3.4)
        assert error.result is not None and error.result.failed == len(files)
        assert_reasons(error.result)
        ok = send(orthanc.addr, files, called_ae_title="PACS")
        assert ok.failed == 0
        assert set(orthanc.sop_instance_uids()) == {cf.sop_instance_uid for cf in files}


def test_closed_port_is_connection_failed(corpus: tuple[CorpusFile, ...]) -> None:
    files = pick(corpus, [EXPLICIT_LE], 2)
    port = free_port()  # nothing listens there once free_port() has closed it
    with pytest.raises(ConnectionFailed) as info:
        send(f"127.0.0.1:{port}", files, connect_timeout=2)
    message = str(info.value)
    assert "could not establish association" in message
    assert f"127.0.0.1:{port}" in message
    assert info.value.result is not None and info.value.result.failed == len(files)
    assert_reasons(info.value.result)


# Faults mid-transfer -----------------------------------------------------------------------


@pytest.mark.parametrize("when", ["abort_after", "abort_during"])
def test_abort_fails_the_file_in_flight_and_reassociates(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...], when: str
) -> None:
    """storescp aborts every association at its first C-STORE: each file fails with
    the abort as reason, and the SCU opens a new association for each next file (a SCU
    that gave up would fail the rest without one)."""
    files = pick(corpus, [EXPLICIT_LE], 3)
    scp = storescp_factory(**{when: True})
    result = send(scp.addr, files, called_ae_title=scp.ae_title, dimse_timeout=5)
    check_accounting(result, files)
    assert result.failed == len(files)
    for outcome in result.files:
        text = str(outcome.error).lower()
        assert any(w in text for w in ("abort", "reset", "closed", "connection")), outcome.error
    assert scp.log().count("Association Received") == len(files), scp.log()
    assert received(scp) == Counter()


def test_connection_reset_mid_file_then_the_rest_succeed(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    """A real storescp behind a proxy that resets the first connection halfway through
    the second (large) file: that file fails with the cause, the SCU re-associates
    (a second connection) and every later file arrives."""
    small = pick(corpus, [EXPLICIT_LE], 3)
    big = max(pick(corpus, [EXPLICIT_LE], 100), key=lambda cf: os.path.getsize(cf.path))
    files = [small[0], big, small[1], small[2]]
    # Association request + first file + half of the big one, give or take PDU headers.
    after = 1024 + os.path.getsize(small[0].path) + os.path.getsize(big.path) // 2
    scp = storescp_factory()
    with run_proxy((scp.host, scp.port), drop={1}, after_bytes=after) as proxy:
        result = send(proxy.addr, files, called_ae_title=scp.ae_title, recorder=Recorder())
    check_accounting(result, files)
    assert [o.ok for o in result.files] == [True, False, True, True], result.files
    text = str(result.files[1].error).lower()
    assert any(w in text for w in ("reset", "closed", "abort", "connection")), text
    assert proxy.dropped == [1] and proxy.connections == 2
    check_received(scp, result)


def test_dimse_timeout_fails_the_file_and_goes_on(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    """storescp sleeps during every store: each file fails on the DIMSE timeout, and the
    SCU opens a new association for the next one (--fork: a fresh child answers it)."""
    files = pick(corpus, [EXPLICIT_LE], 2)
    scp = storescp_factory(sleep_during=2, ignore=True, extra_args=["--fork"])
    result = send(scp.addr, files, called_ae_title=scp.ae_title, dimse_timeout=0.5)
    check_accounting(result, files)
    assert result.failed == len(files)
    for outcome in result.files:
        assert "dimse_timeout" in str(outcome.error), outcome.error
    assert scp.log().count("Association Received") == len(files), scp.log()


@pytest.mark.xdist_group("orthanc")
def test_orthanc_refusing_unknown_modalities_aborts_every_store(
    corpus: tuple[CorpusFile, ...],
) -> None:
    """With DicomAlwaysAllowStore false, Orthanc drops the connection of an unknown
    modality at its first C-STORE: every file fails with that cause, nothing is stored."""
    files = pick(corpus, [EXPLICIT_LE], 3)
    with run_orthanc(always_allow_store=False) as orthanc:
        result = send(orthanc.addr, files, called_ae_title=orthanc.aet, dimse_timeout=5)
        check_accounting(result, files)
        assert result.failed == len(files)
        assert orthanc.count_instances() == 0


@pytest.mark.xdist_group("orthanc")
def test_concurrent_associations_to_orthanc(
    empty_orthanc: Orthanc, corpus: tuple[CorpusFile, ...]
) -> None:
    files = pick(corpus, [EXPLICIT_LE, IMPLICIT_LE], 30)
    recorder = Recorder()
    result = send(
        empty_orthanc.addr,
        files,
        called_ae_title=empty_orthanc.aet,
        concurrency=3,
        recorder=recorder,
    )
    check_accounting(result, files)
    assert result.failed == 0, [o.error for o in result.files]
    assert set(empty_orthanc.sop_instance_uids()) == {cf.sop_instance_uid for cf in files}


# echo and preflight ------------------------------------------------------------------------


@pytest.mark.xdist_group("orthanc")
def test_echo_storescp_and_orthanc(storescp_factory: StoreScpFactory, orthanc: Orthanc) -> None:
    scp = storescp_factory(ignore=True)
    assert echo(scp.addr, called_ae_title=scp.ae_title).status == 0
    assert echo(orthanc.addr, called_ae_title=orthanc.aet).status == 0
    refusing = storescp_factory(refuse=True)
    with pytest.raises(AssociationRejected):
        echo(refusing.addr)


def test_preflight_against_uncompressed_only_storescp(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    files = pick(corpus, [EXPLICIT_LE, IMPLICIT_LE], 3) + compressed(corpus, 4)
    scp = storescp_factory()
    scu = make_scu(scp.addr, files, called_ae_title=scp.ae_title)
    items = scu.preflight()
    assert [os.path.basename(i.file) for i in items] == [cf.name for cf in files]
    for item, cf in zip(items, files, strict=True):
        if cf.transfer_syntax in UNCOMPRESSED:
            assert item.verdict == "accept", item
            assert item.transfer_syntax == cf.transfer_syntax
        else:
            assert item.verdict in ("convert", "refuse"), item
            if item.verdict == "convert":
                assert item.transfer_syntax in UNCOMPRESSED
            else:
                assert item.reason, item
    assert received(scp) == Counter()  # preflight sends nothing
    never = make_scu(scp.addr, files, called_ae_title=scp.ae_title, never_transcode=True)
    verdicts = [i.verdict for i in never.preflight()]
    assert verdicts == ["accept"] * 3 + ["refuse"] * 4


def make_scu(addr: str, files: Sequence[CorpusFile], **options: Any) -> StoreScu:
    scu = StoreScu(addr, **options)
    for cf in files:
        scu.add_file(cf.path)
    return scu


def test_dataset_only_copy_arrives(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...], tmp_path: Path
) -> None:
    """A file without preamble and file meta (raw Implicit VR LE data set) is sent and
    arrives with its UID."""
    cf = pick(corpus, [EXPLICIT_LE], 1)[0]
    ds = pydicom.dcmread(cf.path)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    raw = tmp_path / "dataset-only.dcm"
    raw.write_bytes(buffer.getvalue())
    assert raw.read_bytes()[:4] == b"\x08\x00\x05\x00" or raw.read_bytes()[128:132] != b"DICM"
    scp = storescp_factory()
    scu = StoreScu(scp.addr, called_ae_title=scp.ae_title)
    scu.add_file(str(raw))
    result = scu.send()
    assert result.successful == 1, result.files
    assert scp.received_sop_instance_uids() == [cf.sop_instance_uid]
    assert UID(result.files[0].transfer_syntax or "").is_transfer_syntax


def test_deflated_file_to_storescp(
    storescp_factory: StoreScpFactory, corpus: tuple[CorpusFile, ...]
) -> None:
    """image_dfl.dcm's deflated stream is 4303 bytes: sent as stored, storescp aborted
    ("DIMSE: Odd Fragment Length"); PS3.5 A.5 pads it to even length."""
    files = [cf for cf in corpus if cf.name == "image_dfl.dcm"]
    scp = storescp_factory(accept_all=True)
    result = send(scp.addr, files, called_ae_title=scp.ae_title)
    check_accounting(result, files)
    assert result.failed == 0, result.files[0].error
    check_received(scp, result)
