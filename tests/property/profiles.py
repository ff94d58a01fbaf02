"""Hypothesis settings profiles for the property suite, selected by ``HYPOTHESIS_PROFILE``.

``ci`` (default): derandomized, so a run is reproducible and a failure prints the same
example again (and the blob to replay it); bounded example counts so
``pytest tests/property`` stays within a few minutes on 2 cores. ``dev``: random and
ten times as many examples, for hunting.

The profile is applied per test with :func:`profile_settings` rather than loaded
globally, so that other hypothesis tests in the same pytest run keep their own settings.
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


def budget(ci_examples: int) -> int:
    """``ci_examples`` under ``ci``, scaled with the selected profile's ``max_examples``."""
    scale = settings.get_profile(PROFILE).max_examples / 40
    return max(1, round(ci_examples * scale))


def profile_settings(ci_examples: int | None = None) -> settings:
    """The selected profile, with ``budget(ci_examples)`` examples when given."""
    base = settings.get_profile(PROFILE)
    return base if ci_examples is None else settings(base, max_examples=budget(ci_examples))
