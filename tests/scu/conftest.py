"""Fixtures for the StoreScu integration tests: a real pynetdicom SCP on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.pynetdicom_scp import HarnessScp
from tests.support.scu_helpers import SCP_AE


@pytest.fixture
def scp_factory() -> Iterator[Callable[..., HarnessScp]]:
    """Start SCPs with any configuration; each is stopped and checked at teardown."""
    started: list[HarnessScp] = []

    def make(**options: Any) -> HarnessScp:
        scp = HarnessScp(ae_title=SCP_AE, **options).start()
        started.append(scp)
        return scp

    yield make
    for scp in started:
        scp.stop()
    for scp in started:
        scp.check()


@pytest.fixture
def scp(scp_factory: Callable[..., HarnessScp]) -> HarnessScp:
    """An SCP accepting every storage SOP class in every transfer syntax."""
    return scp_factory()
