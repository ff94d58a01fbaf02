"""The exceptions of the mock SCP package: what ``check()`` and the assertion helpers raise."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .journal import Violation

__all__ = ["MockScpError", "OrderError"]


class OrderError(AssertionError):
    """An ordered rule was hit before the ordered rules made before it had their hits."""


class MockScpError(AssertionError):
    """Raised by ``MockScp.check()`` in the test thread: what went wrong on the server.

    ``errors`` are exceptions from server threads (a raising ``when`` or ``match``
    predicate, ``respond_with`` handler or listener included) and the
    :class:`OrderError` of each ordered rule hit too early; ``unmet`` the rules whose
    ``expect`` count was not met (each with the store that came nearest),
    ``violations`` what the SCU did against the standard, ``unreleased`` the
    associations left open or ended without a release; ``journal`` is what the server
    saw, per association. It derives from ``AssertionError`` so pytest reports it as a
    failed check.
    """

    def __init__(
        self,
        *,
        errors: Sequence[BaseException] = (),
        unmet: Sequence[str] = (),
        violations: Sequence[Violation] = (),
        unreleased: Sequence[str] = (),
        journal: str = "",
        title: str = "mock SCP check failed:",
    ) -> None:
        self.errors = list(errors)
        self.unmet = list(unmet)
        self.violations = list(violations)
        self.unreleased = list(unreleased)
        self.journal = journal
        lines = [title]
        for exc in self.errors:
            if isinstance(exc, OrderError):  # an expectation not met, not a crash
                lines.append(f"  out of order: {exc}")
                continue
            where = traceback.extract_tb(exc.__traceback__)
            at = f" (at {where[-1].filename}:{where[-1].lineno})" if where else ""
            lines.append(f"  server thread error: {type(exc).__name__}: {exc}{at}")
        lines += [f"  unmet expectation: {msg}" for msg in self.unmet]
        lines += [f"  SCU violation: {v}" for v in self.violations]
        lines += [f"  not released: {text}" for text in self.unreleased]
        if journal:
            lines += ["what the mock SCP saw:", journal]
        super().__init__("\n".join(lines))
