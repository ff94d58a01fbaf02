"""Fixtures of the MockScp tests (defined in :mod:`tests.support.mock_peers`)."""

from tests.support.mock_peers import h, raw, scp, scp_factory

__all__ = ["h", "raw", "scp", "scp_factory"]
