"""Property suite setup: load the hypothesis profile (``HYPOTHESIS_PROFILE``, default ``ci``)."""

from __future__ import annotations

import property.profiles  # noqa: F401  (registers and loads the profiles)
