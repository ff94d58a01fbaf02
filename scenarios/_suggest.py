"""Did-you-mean suggestions for names in scenario files and command templates."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["did_you_mean", "suggestion"]


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def suggestion(word: str, candidates: Iterable[str], *, cutoff: float = 0.7) -> str | None:
    """The candidate closest to ``word`` (case and separators ignored), or ``None``."""
    by_norm: dict[str, str] = {}
    for candidate in candidates:
        by_norm.setdefault(_norm(candidate), candidate)
    close = difflib.get_close_matches(_norm(word), list(by_norm), n=1, cutoff=cutoff)
    return by_norm[close[0]] if close else None


def did_you_mean(word: str, candidates: Iterable[str], *, cutoff: float = 0.7) -> str:
    """``"; did you mean 'x'?"`` when a candidate is close to ``word``, else ``""``."""
    found = suggestion(word, candidates, cutoff=cutoff)
    return f"; did you mean {found!r}?" if found is not None else ""
