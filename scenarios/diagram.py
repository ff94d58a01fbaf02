"""Sequence diagrams of associations as inline SVG, drawn from the mock's journal.

One diagram per association: the sender's and the mock's lifelines, then, in time
order, A-ASSOCIATE-RQ and its AC or RJ, each C-STORE-RQ and what answered it (a
C-STORE-RSP with its status, an A-ABORT, a closed connection, bytes that are not a PDU,
or nothing because the sender gave up), and how the association ended (A-RELEASE,
A-ABORT and who sent it, a dropped connection). Every arrow carries its time since the
A-ASSOCIATE-RQ. Long runs of plain successful stores are folded into one line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["sequence_svg"]

_W = 820
_LEFT, _RIGHT = 160, 700  # lifelines
_ROW = 26
_TOP = 62
_COLORS = {
    "request": "#1f4e8c",
    "ok": "#1b7a33",
    "warning": "#a86400",
    "failure": "#b3261e",
    "neutral": "#555555",
}
# Stores shown around the interesting ones before folding plain successes.
_KEEP_EDGE = 3


@dataclass(frozen=True)
class _Row:
    at: float | None
    to_scp: bool | None  # None: a note across both lifelines
    label: str
    color: str
    dashed: bool = False


_CATEGORY_COLORS = {"success": _COLORS["ok"], "warning": _COLORS["warning"]}


def _status_color(store: dict[str, Any]) -> str:
    return _CATEGORY_COLORS.get(store["category"], _COLORS["failure"])


def _store_rows(store: dict[str, Any]) -> list[_Row]:
    asked = store["requested_at"] or store["received_at"]
    rq = f"C-STORE-RQ #{store['message_id']} {store['sop_class']}"
    if not store["complete"]:
        rq += " (data set cut short)"
    rows = [_Row(asked, True, rq, _COLORS["request"])]
    action, status = store["action"], store["status"]
    if status is not None:
        label = f"C-STORE-RSP #{store['message_id']} {status}"
        rows.append(_Row(store["answered_at"], False, label, _status_color(store)))
    elif action == "abort":
        rows.append(
            _Row(
                store["received_at"],
                False,
                "A-ABORT instead of the response",
                _COLORS["failure"],
                True,
            )
        )
    elif action == "disconnect":
        rows.append(
            _Row(store["received_at"], False, "TCP closed, no response", _COLORS["failure"], True)
        )
    elif action == "garbage":
        rows.append(
            _Row(
                store["received_at"],
                False,
                "bytes that are not a PDU, then TCP closed",
                _COLORS["failure"],
                True,
            )
        )
    elif action == "interrupted":
        rows.append(
            _Row(None, None, "no response: the association ended first", _COLORS["neutral"])
        )
    return rows


def _plain(store: dict[str, Any]) -> bool:
    return bool(store["category"] == "success" and store["complete"])


def _fold(stores: Sequence[dict[str, Any]]) -> list[dict[str, Any] | int]:
    """Stores to draw, with runs of plain successes far from anything else folded into
    a count (a run of one is drawn: folding it saves nothing)."""
    n = len(stores)
    keep = set(range(min(_KEEP_EDGE, n))) | set(range(max(0, n - _KEEP_EDGE), n))
    for i, s in enumerate(stores):
        if not _plain(s):
            keep |= {i - 1, i, i + 1}
    out: list[dict[str, Any] | int] = []
    run: list[dict[str, Any]] = []
    for i, s in enumerate(stores):
        if i not in keep:
            run.append(s)
            continue
        out.extend(run if len(run) == 1 else [len(run)] if run else [])
        run = []
        out.append(s)
    out.extend(run if len(run) == 1 else [len(run)] if run else [])
    return out


def _end_rows(assoc: dict[str, Any], stores: Sequence[dict[str, Any]]) -> list[_Row]:
    ended, detail, at = assoc["ended"], assoc["end_detail"] or "", assoc["ended_at"]
    by_sender = assoc.get("ended_by") == "scu"
    if ended == "released":
        return [
            _Row(at, True, "A-RELEASE-RQ", _COLORS["neutral"]),
            _Row(at, False, "A-RELEASE-RP", _COLORS["neutral"]),
        ]
    if ended == "aborted":
        if by_sender:
            return [_Row(at, True, "A-ABORT from the sender", _COLORS["failure"], True)]
        if stores and stores[-1]["action"] == "abort":
            return []
        return [_Row(at, False, f"A-ABORT ({detail})", _COLORS["failure"], True)]
    if ended == "dropped":
        if by_sender:
            return [
                _Row(at, True, "TCP closed without A-RELEASE or A-ABORT", _COLORS["failure"], True)
            ]
        if stores and stores[-1]["action"] in ("disconnect", "garbage"):
            return []
        return [_Row(at, None, f"connection dropped: {detail}", _COLORS["failure"])]
    if ended == "open":
        return [_Row(None, None, "still open when the run ended", _COLORS["neutral"])]
    return []


def _rows(assoc: dict[str, Any], stores: Sequence[dict[str, Any]]) -> list[_Row]:
    start = assoc["started_at"]
    rq = f"A-ASSOCIATE-RQ {assoc['calling_ae_title']} -> {assoc['called_ae_title']}"
    rq += f" (max PDU {assoc['max_pdu_length']}, {assoc['proposed_contexts']} contexts)"
    rows = [_Row(start, True, rq, _COLORS["request"])]
    rejection = assoc["rejection"]
    if rejection is not None:
        rows.append(
            _Row(
                assoc["ended_at"] or start,
                False,
                f"A-ASSOCIATE-RJ: {rejection['description']}",
                _COLORS["failure"],
                True,
            )
        )
        return rows
    rows.append(
        _Row(
            start,
            False,
            f"A-ASSOCIATE-AC: {assoc['accepted_contexts']} of {assoc['proposed_contexts']} "
            "context(s) accepted",
            _COLORS["ok"] if assoc["accepted_contexts"] else _COLORS["failure"],
        )
    )
    for item in _fold(stores):
        if isinstance(item, int):
            rows.append(
                _Row(
                    None,
                    None,
                    f"... {item} more C-STORE exchanges, each 0x0000 (success) ...",
                    _COLORS["neutral"],
                )
            )
        else:
            rows.extend(_store_rows(item))
    rows.extend(_end_rows(assoc, stores))
    return rows


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def sequence_svg(assoc: dict[str, Any], stores: Sequence[dict[str, Any]]) -> str:
    """One association (a report's ``associations`` entry) and its stores as an SVG."""
    rows = _rows(assoc, [s for s in stores if s["association_id"] == assoc["id"]])
    height = _TOP + _ROW * len(rows) + 24
    start = assoc["started_at"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" viewBox="0 0 {_W} {height}" '
        f'width="{_W}" height="{height}" role="img" '
        f'aria-label="association {assoc["id"]}: {escape(assoc["ended"])}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker></defs>',
        f'<text x="8" y="16" class="t-head">association {assoc["id"]}, '
        f"{escape(_clock(start))}</text>",
    ]
    for x, title, who in (
        (_LEFT, "sender", assoc["calling_ae_title"]),
        (_RIGHT, "mock PACS", assoc["called_ae_title"]),
    ):
        out.append(
            f'<rect x="{x - 80}" y="22" width="160" height="30" rx="4" class="life"/>'
            f'<text x="{x}" y="41" text-anchor="middle" class="t-life">{escape(title)}: '
            f"{escape(who)}</text>"
            f'<line x1="{x}" y1="52" x2="{x}" y2="{height - 8}" class="lifeline"/>'
        )
    for i, row in enumerate(rows):
        y = _TOP + _ROW * i + 16
        if row.at is not None:
            out.append(
                f'<text x="8" y="{y + 4}" class="t-time">+{(row.at - start) * 1000:.1f} ms</text>'
            )
        if row.to_scp is None:
            out.append(
                f'<text x="{(_LEFT + _RIGHT) // 2}" y="{y + 4}" text-anchor="middle" '
                f'class="t-note" fill="{row.color}">{escape(row.label)}</text>'
            )
            continue
        x1, x2 = (_LEFT, _RIGHT) if row.to_scp else (_RIGHT, _LEFT)
        dash = ' stroke-dasharray="6 4"' if row.dashed else ""
        out.append(
            f'<line x1="{x1}" y1="{y + 8}" x2="{x2}" y2="{y + 8}" stroke="{row.color}" '
            f'stroke-width="1.6" marker-end="url(#arrow)"{dash}/>'
            f'<text x="{(_LEFT + _RIGHT) // 2}" y="{y + 3}" text-anchor="middle" '
            f'class="t-msg" fill="{row.color}">{escape(row.label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
