"""Hypothesis settings profiles for the property suite, selected by ``HYPOTHESIS_PROFILE``.

``ci`` (default): derandomized, so a run is reproducible and a failure prints the same
example again; bounded example counts so ``pytest tests/property`` stays within a few
minutes on 2 cores. ``dev``: random and ten times as many examples, for hunting.
Tests that run real transfers take a fraction of the profile's count via :func:`budget`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "dev",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.load_profile(PROFILE)


def budget(ci_examples: int) -> int:
    """Examples for a test that costs real transfers: ``ci_examples`` under ``ci``,
    scaled with the loaded profile's ``max_examples`` otherwise."""
    scale = settings.default.max_examples / 40
    return max(1, round(ci_examples * scale))
