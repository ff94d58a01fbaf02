"""Fixtures for the interop suite: real peers (DCMTK storescp, Orthanc) and the corpus.

The corpus is every pydicom test file, present offline in the installed package, that
pydicom can read and whose SOP Class is a storage SOP class.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.helpers import CorpusFile, storage_corpus
from tests.support.dcmtk import storescp_factory
from tests.support.mock_peers import h, scp, scp_factory
from tests.support.orthanc import Orthanc, run_orthanc

__all__ = ["h", "scp", "scp_factory", "storescp_factory"]  # fixtures defined elsewhere


@pytest.fixture(scope="session")
def corpus() -> tuple[CorpusFile, ...]:
    files = storage_corpus()
    # The installed pydicom ships well over 100 such files; a handful means the filter broke.
    assert len(files) > 100, f"only {len(files)} pydicom test files with a storage SOP class"
    return files


@pytest.fixture(scope="session")
def orthanc() -> Iterator[Orthanc]:
    """One Orthanc per test session (per xdist worker), default configuration."""
    with run_orthanc() as server:
        yield server


@pytest.fixture
def empty_orthanc(orthanc: Orthanc) -> Orthanc:
    """The session's Orthanc, emptied before the test."""
    assert orthanc.alive(), "Orthanc died:\n" + orthanc.log()[-3000:]
    orthanc.delete_all()
    return orthanc
