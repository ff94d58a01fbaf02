"""Damaged input through ``add_file_from_memory``: truncations, flipped bytes in the
file meta, bogus lengths, spliced junk, missing preambles and random bytes.

Each damaged entry, queued before a valid one, ends in exactly one outcome: an error
that says something (never an "internal error"), or a success the SCP confirmed. The
valid entry behind it always goes through: the damage never poisons the transfer, and
nothing hangs (short timeouts) or crashes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, note

from mock_scp import datagen
from mock_scp import strategies as ms
from mock_scp.strategies import status_kind
from scu import FileSending, StoreScu
from tests.property.harness import check_grammar
from tests.property.profiles import profile_settings
from tests.support.recorder import Recorder

CONTROL = datagen.make_bytes(
    sop_class="CTImageStorage", size=256, seed=7, sop_instance_uid="2.25.777"
)


@pytest.mark.timeout(600)  # room for shrinking a failure
@profile_settings(150)
@given(data=ms.mutated_dicom_bytes())
def test_damaged_bytes_end_in_one_clear_outcome(mock_scp_factory: Any, data: bytes) -> None:
    scp = mock_scp_factory.shared(ae_title="ROBUSTNESS")
    scp.wait_idle(5)
    scp.reset()
    scu = StoreScu(scp.addr, connect_timeout=2, acse_timeout=2, dimse_timeout=1, network_timeout=2)
    scu.add_file_from_memory(data, "damaged.dcm")
    scu.add_file_from_memory(CONTROL, "control.dcm")
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    scp.wait_idle(5)
    damaged, control = result.files
    note(f"damaged: {damaged}")
    check_grammar(rec, result, ["damaged.dcm", "control.dcm"], in_order=True)
    assert control.ok, f"a damaged entry broke the next one: {control}"
    if damaged.ok:
        confirmed = [r for r in scp.received if r.sop_instance_uid == damaged.sop_instance_uid]
        assert confirmed and all(
            r.status is not None and status_kind(r.status) != "failure" for r in confirmed
        )
    else:
        assert damaged.error and damaged.error.strip()
        assert "internal error" not in damaged.error
        sent = any(isinstance(e, FileSending) and e.file == "damaged.dcm" for e in rec.events)
        if not sent:
            assert damaged.status is None
    assert scp.errors == []


def _with_bad_transfer_syntax_uid() -> bytes:
    data = datagen.make_bytes(sop_class="CTImageStorage", size=64, seed=1)
    at = data.index(b"1.2.840.10008.1.2.1\x00")  # the meta's Transfer Syntax UID value
    return data[:at] + b"\xff\xff" + data[at + 2 :]


def test_non_ascii_transfer_syntax_uid_in_meta_fails_only_that_entry(mock_scp_factory: Any) -> None:
    scp = mock_scp_factory.shared(ae_title="ROBUSTNESS")
    scp.wait_idle(5)
    scp.reset()
    scu = StoreScu(scp.addr, connect_timeout=2, acse_timeout=2, dimse_timeout=1, network_timeout=2)
    scu.add_file_from_memory(_with_bad_transfer_syntax_uid(), "damaged.dcm")
    scu.add_file_from_memory(CONTROL, "control.dcm")
    rec = Recorder()
    result = scu.send(**rec.callbacks)
    check_grammar(rec, result, ["damaged.dcm", "control.dcm"], in_order=True)
    damaged, control = result.files
    assert not damaged.ok and damaged.error and "internal error" not in damaged.error
    assert control.ok
