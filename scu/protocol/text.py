"""Text a peer (or a file system) handed us, made safe to print: written once for the
SCU's command line, the mock's journal and ``scukit serve``."""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: object, *, ascii_only: bool = True) -> str:
    """``text`` with every non-printable character escaped (and, with ``ascii_only``,
    every non-ASCII one), so that what came from outside can never forge a line or a
    terminal sequence in our output: a newline, an ANSI escape, a BEL, a right-to-left
    override. Printable text is returned as it is."""
    value = str(text)
    if value.isprintable() and (value.isascii() or not ascii_only):
        return value
    return "".join(
        c
        if c.isprintable() and (c.isascii() or not ascii_only)
        else c.encode("unicode_escape").decode("ascii")
        for c in value
    )
