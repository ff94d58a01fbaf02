"""StoreScu from S3 (moto's server) to DCMTK storescp: what storescp wrote is checked by
SOP Instance UID, with the compressed files sent as they are (``+xa``) and converted
(storescp's default accepts only uncompressed syntaxes, so those objects are read whole
and converted)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from scu import StoreScu
from tests.support.dcmtk import StoreScp
from tests.support.s3 import S3Server, s3

__all__ = ["s3"]  # the fixture

pytestmark = pytest.mark.interop

NAMES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "MR_small_bigendian.dcm",
    "JPGExtended.dcm",
)


def upload(s3: S3Server) -> tuple[str, dict[str, str]]:
    bucket = s3.bucket()
    uids = {}
    for name in NAMES:
        path = Path(get_testdata_file(name, download=False) or name)
        uids[s3.put(bucket, f"series/{name}", path)] = str(
            pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        )
    return f"s3://{bucket}/series/", uids


@pytest.mark.parametrize("accept_all", [True, False], ids=["as-they-are", "converted"])
def test_objects_reach_storescp(
    s3: S3Server, storescp_factory: Callable[..., StoreScp], accept_all: bool
) -> None:
    prefix, uids = upload(s3)
    scp = storescp_factory(accept_all=accept_all)
    scu = StoreScu(scp.addr, storage_options=s3.options, concurrency=2)
    assert scu.add_directory(prefix) == len(NAMES)
    result = scu.send()
    assert result.failed == 0, [(o.file, o.error) for o in result.files if not o.ok]
    assert [o.file for o in result.files] == sorted(uids)
    assert sorted(scp.received_sop_instance_uids()) == sorted(uids.values())
    if not accept_all:
        converted = [o for o in result.files if o.transfer_syntax != "1.2.840.10008.1.2.4.91"]
        assert len(converted) == len(NAMES)
