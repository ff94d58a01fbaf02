"""Store rules: matchers, actions, and the builder ``MockScp.on_store(...)`` returns.

A rule is built with ``scp.on_store(...matchers...)`` and completed by exactly one action
method on the returned :class:`RuleBuilder`. ``stall`` and ``slow_read`` are
*modifiers*: when such a rule matches, matching goes on to the next rule that matches,
and that rule (or the default accept) answers. Every other action is terminal; the
first terminal match wins. :mod:`mock_scp.matching` holds the table that decides.

Matchers on the command (``nth``, ``every``, the UIDs, the calling AE title, ``when``,
``probability``) are known when the C-STORE-RQ arrives; matchers on the content
(``dataset=``, ``match=``) once the data set has arrived. Actions that happen while the
data set is being received (``slow_read``, ``abort(during_dataset=True)``) are decided
when the command arrives, so they cannot have content matchers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scu.protocol.status import StatusCategory, classify, parse_status, status_label

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .matching import RuleTable

__all__ = [
    "Action",
    "Decision",
    "Handler",
    "Reply",
    "Rule",
    "RuleBuilder",
    "StoreContent",
    "StoreRequest",
]

#: Action names; ``stall`` and ``slow_read`` are modifiers (see module docstring).
TERMINAL_ACTIONS = ("accept", "respond", "warn", "fail", "abort", "disconnect", "garbage")
MODIFIER_ACTIONS = ("stall", "slow_read")
DEFAULT_GARBAGE = b"\xde\xad\xbe\xef not a DICOM PDU \xff\xff\xff\xff"


@dataclass(frozen=True)
class StoreRequest:
    """What a rule's ``when`` predicate sees: the C-STORE request as commanded."""

    nth: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae_title: str
    called_ae_title: str
    association_id: int
    message_id: int
    context_id: int
    priority: int = 0
    move_originator_ae_title: str | None = None


class StoreContent:
    """What a content matcher (``match=``) and a handler (``respond_with``) see: the
    request's fields, and the data set (decoded once, on first use). When the server
    keeps no data sets, only their first 64 KiB are there: enough for the attributes
    before the pixel data."""

    def __init__(self, request: StoreRequest, data: Callable[[], bytes | bytearray]) -> None:
        self.request = request
        self._data = data
        self._dataset: Dataset | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "request":
            raise AttributeError(name)  # not set up yet (a copy, a pickle): no recursion
        return getattr(self.request, name)

    @property
    def raw(self) -> bytes:
        """The data set as received (or its first bytes; see the class doc)."""
        return bytes(self._data())

    def dataset(self) -> Dataset:
        """The data set decoded by pydicom (without its pixel data when only the first
        bytes were kept)."""
        if self._dataset is None:
            import io

            from pydicom.filereader import read_dataset
            from pydicom.uid import UID

            syntax = UID(self.request.transfer_syntax)
            data = bytes(self._data())
            if syntax == "1.2.840.10008.1.2.1.99":
                import zlib

                data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
            self._dataset = read_dataset(
                io.BytesIO(data),
                is_implicit_VR=syntax == "1.2.840.10008.1.2",
                is_little_endian=syntax != "1.2.840.10008.1.2.2",
                stop_when=lambda tag, *_: tag == 0x7FE00010,
            )
        return self._dataset

    def __repr__(self) -> str:
        return f"<StoreContent #{self.request.nth} {self.request.sop_instance_uid}>"


@dataclass(frozen=True)
class Action:
    """One rule's action and its arguments."""

    name: str
    status: int = 0
    comment: str | None = None
    seconds: float = 0.0
    bytes_per_second: float = 0.0
    during_dataset: bool = False
    rst: bool = False
    data: bytes = b""
    handler: Callable[[StoreContent], object] | None = field(default=None, compare=False)

    @property
    def acts_while_receiving(self) -> bool:
        """Whether it acts before the data set is complete (decided with the command)."""
        return self.name == "slow_read" or (self.name == "abort" and self.during_dataset)

    @property
    def answers(self) -> bool:
        """Whether it answers with a status."""
        return self.name in ("accept", "respond", "warn", "fail")


class Reply:
    """What a ``respond_with`` handler may return besides a status or ``(status,
    comment)``: an action instead of the answer."""

    @staticmethod
    def status(status: int | str, comment: str | None = None) -> Action:
        return Action("respond", status=parse_status(status), comment=_check_comment(comment))

    @staticmethod
    def abort() -> Action:
        return Action("abort")

    @staticmethod
    def disconnect(rst: bool = False) -> Action:
        return Action("disconnect", rst=rst)

    @staticmethod
    def garbage(data: bytes | None = None) -> Action:
        return Action("garbage", data=DEFAULT_GARBAGE if data is None else bytes(data))


#: A ``respond_with`` handler: the store in, a status, ``(status, comment)`` or an
#: :class:`Action` (from :class:`Reply`) out.
Handler = Callable[[StoreContent], "int | str | tuple[int | str, str | None] | Action"]


@dataclass(frozen=True)
class Decision:
    """The answer for one store: the terminal action, plus the modifiers met on the
    way (total stall, the slowest read rate)."""

    action: Action
    stall_seconds: float = 0.0
    bytes_per_second: float | None = None


DEFAULT_DECISION = Decision(Action("accept"))


def _check_comment(comment: object) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise ValueError(f"comment: expected a string or None, got {comment!r}")
    # Error Comment is LO: at most 64 characters, no backslash or control characters.
    if len(comment) > 64 or any(c == "\\" or ord(c) < 0x20 or ord(c) > 0x7E for c in comment):
        raise ValueError(
            f"comment: at most 64 printable ASCII characters without backslash, got {comment!r}"
        )
    return comment


def _check_seconds(value: object, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{argument}: expected a number of seconds >= 0, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{argument}: must be a finite number >= 0, got {value!r}")
    return seconds


def check_count(value: object, argument: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{argument}: expected an int >= {minimum}, got {value!r}")
    return value


def _value_matches(actual: object, expected: object) -> bool:
    """Whether an element's value (``None`` when absent) is what ``dataset=`` asks.

    A predicate gets the value as pydicom holds it; a list (tuple, set) is any of its
    values; a number compares numerically (IS ``"2"`` is 2, DS ``"1.0"`` is 1); ``None``
    matches an absent element; anything else compares as text, a multi-valued element
    as its values joined with a backslash (``"ORIGINAL\\PRIMARY"``)."""
    if callable(expected):
        return bool(expected(actual))
    if isinstance(expected, list | tuple | set | frozenset):
        return any(_value_matches(actual, e) for e in expected)
    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        try:
            return float(actual) == float(expected)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    return _text(actual) == str(expected).strip()


def _text(value: object) -> str:
    """An element's value as text (a multi-valued one joined with backslashes)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _shown_value(value: object) -> str:
    """An element's value for a message (what a peer sent, made printable, cut short)."""
    if value is None:
        return "absent"
    from .journal import printable

    text = _text(value)
    return repr(printable(text if len(text) <= 64 else text[:61] + "..."))


def _shown_expected(expected: object) -> str:
    if callable(expected):
        return callable_name(expected)
    if isinstance(expected, list | tuple | set | frozenset):
        return "one of [" + ", ".join(_shown_expected(e) for e in expected) + "]"
    return repr(expected)


def callable_name(fn: object) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _shown_uid(key: str, uid: str) -> str:
    """A UID matcher in words: its keyword when it has one (also valid input)."""
    if key in ("sop_class_uid", "transfer_syntax"):
        from scu.protocol.uids import uid_keyword

        return repr(uid_keyword(uid))
    return repr(uid)


@dataclass(eq=False)
class Rule:
    """A matcher plus an action; ``hits`` counts how often it matched."""

    action: Action
    nth: frozenset[int] | None = None
    #: Every ``every``-th store after the first ``offset`` ones (``None``: no such matcher).
    every: tuple[int, int] | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    transfer_syntax: str | None = None
    calling_ae_title: str | None = None
    when: Callable[[StoreRequest], bool] | None = None
    probability: float | None = None
    dataset: Mapping[str, object] | None = None
    match: Callable[[StoreContent], bool] | None = None
    times: int | None = None
    expect: tuple[int, int] | None = None  # inclusive (min, max); max may be very large
    #: Position among the ordered rules (``None``: not ordered).
    order: int | None = None
    hits: int = 0
    index: int = 0
    description: str = field(default="")

    @property
    def on_content(self) -> bool:
        """Whether it matches on the data set (decided once the data set has arrived)."""
        return self.dataset is not None or self.match is not None

    def mismatches(self, req: StoreRequest) -> list[str]:
        """The command-level matchers ``req`` fails, in words (for near misses)."""
        out = []
        if self.times is not None and self.hits >= self.times:
            out.append(f"times={self.times} used up")
        if self.nth is not None and req.nth not in self.nth:
            out.append(f"nth={_nth_text(self.nth)} (it was store {req.nth})")
        if self.every is not None and not (
            req.nth > self.every[1] and (req.nth - self.every[1]) % self.every[0] == 0
        ):
            out.append(f"{_every_text(self.every)} (it was store {req.nth})")
        for key in ("sop_class_uid", "sop_instance_uid", "transfer_syntax", "calling_ae_title"):
            wanted = getattr(self, key)
            if wanted is not None and wanted != getattr(req, key):
                out.append(
                    f"{key}={_shown_uid(key, wanted)} (it was {_shown_uid(key, getattr(req, key))})"
                )
        return out

    def static_match(self, req: StoreRequest) -> bool:
        """The matchers that need neither a predicate, the random draw nor the content."""
        return not self.mismatches(req)

    def content_mismatches(self, content: StoreContent) -> list[str]:
        """The content matchers ``content`` fails, in words (empty: it matches).
        ``match=`` runs only when every ``dataset=`` value matched."""
        out = []
        if self.dataset is not None:
            ds = content.dataset()
            for keyword, expected in self.dataset.items():
                actual = ds[keyword].value if keyword in ds else None
                if not _value_matches(actual, expected):
                    out.append(
                        f"dataset {keyword}={_shown_expected(expected)} "
                        f"(it was {_shown_value(actual)})"
                    )
        if not out and self.match is not None and not self.match(content):
            out.append(f"match={callable_name(self.match)} returned False")
        return out

    def content_match(self, content: StoreContent) -> bool:
        return not self.content_mismatches(content)

    def unmet(self) -> str | None:
        """Why this rule's ``expect`` is not met, or ``None``."""
        if self.expect is None:
            return None
        lo, hi = self.expect
        if lo <= self.hits <= hi:
            return None
        wanted = str(lo) if lo == hi else (f"at least {lo}" if hi >= 2**31 else f"{lo}..{hi}")
        return f"rule {self.description}: expected {wanted} hit(s), got {self.hits}"

    def __repr__(self) -> str:
        expected = ""
        if self.expect is not None:
            lo, hi = self.expect
            expected = (
                f", expect {lo}"
                if lo == hi
                else (f", expect >= {lo}" if hi >= 2**31 else f", expect {lo}..{hi}")
            )
        return f"<Rule {self.description}: {self.hits} hits{expected}>"


def _nth_text(nth: frozenset[int]) -> str:
    return str(sorted(nth)) if len(nth) > 1 else str(min(nth))


def _every_text(every: tuple[int, int]) -> str:
    return f"every={every[0]}" + (f", offset={every[1]}" if every[1] else "")


def action_text(action: Action) -> str:
    """An action as the call that made it: ``fail(0xA700, comment='disk full')``."""
    args: list[str] = []
    if action.name in ("respond", "warn", "fail"):
        args.append(f"0x{action.status:04X}")
        if action.comment is not None:
            args.append(f"comment={action.comment!r}")
    elif action.name == "stall":
        args.append(f"{action.seconds:g}")
    elif action.name == "slow_read":
        args.append(f"{action.bytes_per_second:g}")
    elif action.name == "abort" and action.during_dataset:
        args.append("during_dataset=True")
    elif action.name == "disconnect" and action.rst:
        args.append("rst=True")
    elif action.name == "respond_with":
        args.append(callable_name(action.handler))
    return f"{action.name}({', '.join(args)})"


def describe(rule: Rule) -> str:
    """``rule`` as the call that made it: ``#2 on_store(nth=3).fail(0xA700)``."""
    parts = []
    if rule.nth is not None:
        parts.append(f"nth={_nth_text(rule.nth)}")
    if rule.every is not None:
        parts.append(_every_text(rule.every))
    for key in ("sop_class_uid", "sop_instance_uid", "transfer_syntax", "calling_ae_title"):
        value = getattr(rule, key)
        if value is not None:
            parts.append(f"{key}={_shown_uid(key, value)}")
    for key in ("when", "match"):
        fn = getattr(rule, key)
        if fn is not None:
            parts.append(f"{key}={callable_name(fn)}")
    if rule.dataset is not None:
        shown = ", ".join(f"{k!r}: {_shown_expected(v)}" for k, v in rule.dataset.items())
        parts.append(f"dataset={{{shown}}}")
    if rule.probability is not None:
        parts.append(f"probability={rule.probability}")
    if rule.times is not None:
        parts.append(f"times={rule.times}")
    if rule.order is not None:
        parts.append("ordered=True")
    return f"#{rule.index} on_store({', '.join(parts)}).{action_text(rule.action)}"


def parse_nth(nth: object) -> frozenset[int] | None:
    if nth is None:
        return None
    if isinstance(nth, int) and not isinstance(nth, bool):
        return frozenset({check_count(nth, "nth", minimum=1)})
    if isinstance(nth, Collection) and not isinstance(nth, str | bytes):
        values = frozenset(check_count(v, "nth", minimum=1) for v in nth)
        if not values:
            raise ValueError("nth: an empty collection never matches; use None for any")
        return values
    raise ValueError(f"nth: expected an int >= 1, a collection of them, or None; got {nth!r}")


def parse_expect(expect: object) -> tuple[int, int] | None:
    if expect is None:
        return None
    if isinstance(expect, int) and not isinstance(expect, bool):
        n = check_count(expect, "expect", minimum=0)
        return (n, n)
    if isinstance(expect, range):
        if expect.step != 1 or len(expect) == 0 or expect.start < 0:
            raise ValueError(
                f"expect: a range must be non-empty, step 1, from >= 0; got {expect!r}"
            )
        return (expect.start, expect.stop - 1)
    if isinstance(expect, tuple) and len(expect) == 2:
        lo = check_count(expect[0], "expect", minimum=0)
        hi = 2**62 if expect[1] is None else check_count(expect[1], "expect", minimum=lo)
        return (lo, hi)
    raise ValueError(
        f"expect: expected an int, a range, or a (min, max|None) tuple; got {expect!r}"
    )


class RuleBuilder:
    """Returned by ``MockScp.on_store(...)``; call exactly one action method.

    Each action method installs the rule and returns the :class:`Rule` (its ``hits``
    can be read later)."""

    def __init__(self, table: RuleTable, matchers: dict[str, Any]) -> None:
        self._table = table
        self._matchers = matchers
        self._done = False

    def __repr__(self) -> str:
        return f"<RuleBuilder on_store({self._matchers!r}): call an action method>"

    def _install(self, action: Action) -> Rule:
        if self._done:
            raise ValueError("this on_store(...) rule already has an action; call on_store again")
        if action.acts_while_receiving and (
            self._matchers.get("dataset") is not None or self._matchers.get("match") is not None
        ):
            what = "slow_read" if action.name == "slow_read" else "abort(during_dataset=True)"
            raise ValueError(
                f"{what} acts while the data set is arriving, before dataset=/match= can be "
                "evaluated: match it on the command (nth, sop_class_uid, when=...) instead"
            )
        self._done = True
        return self._table.add(action, self._matchers)

    def accept(self) -> Rule:
        """Answer 0x0000 Success."""
        return self._install(Action("accept", status=0))

    def respond(self, status: int | str, comment: str | None = None) -> Rule:
        """Answer with any status (int 0x0000-0xFFFF, ``"0xA700"`` or a name) and an
        optional Error Comment."""
        return self._install(
            Action("respond", status=parse_status(status), comment=_check_comment(comment))
        )

    def warn(self, status: int | str = "0xB000", comment: str | None = None) -> Rule:
        """Answer with a warning status (0x0001, 0x0107, 0x0116 or 0xBxxx)."""
        code = parse_status(status)
        if classify(code) is not StatusCategory.WARNING:
            raise ValueError(
                f"status: {status_label(code)} is not a warning "
                "(0x0001, 0x0107, 0x0116, 0xB000-0xBFFF)"
            )
        return self._install(Action("warn", status=code, comment=_check_comment(comment)))

    def fail(self, status: int | str, comment: str | None = None) -> Rule:
        """Answer with a failure status (anything but success or warning)."""
        code = parse_status(status)
        if classify(code) is not StatusCategory.FAILURE:
            raise ValueError(
                f"status: {status_label(code)} is not a failure (it is a "
                f"{classify(code).value} status); use respond() to send any code"
            )
        return self._install(Action("fail", status=code, comment=_check_comment(comment)))

    def respond_with(self, handler: Handler) -> Rule:
        """Answer as ``handler(store)`` says: a status, ``(status, comment)``, or an
        action from :class:`Reply` (abort, disconnect, garbage). ``store`` is a
        :class:`StoreContent` (the request's fields and ``.dataset()``). A handler that
        raises is reported by ``check()`` and the store is answered 0x0110."""
        if not callable(handler):
            raise ValueError(f"handler: expected a callable taking the store, got {handler!r}")
        return self._install(Action("respond_with", handler=handler))

    def stall(self, seconds: float) -> Rule:
        """Wait ``seconds`` after the data set, then answer as the next matching rule."""
        return self._install(Action("stall", seconds=_check_seconds(seconds, "seconds")))

    def slow_read(self, bytes_per_second: float) -> Rule:
        """Read this store's data set at most ``bytes_per_second``, then answer as the
        next matching rule. The throttle applies to reads from the socket once the
        command has arrived; the SCU feels it when the data set outgrows what the
        kernel buffers (a few hundred KB on loopback)."""
        if (
            isinstance(bytes_per_second, bool)
            or not isinstance(bytes_per_second, int | float)
            or not math.isfinite(bytes_per_second)
            or bytes_per_second <= 0
        ):
            raise ValueError(f"bytes_per_second: expected a number > 0, got {bytes_per_second!r}")
        return self._install(Action("slow_read", bytes_per_second=float(bytes_per_second)))

    def abort(self, during_dataset: bool = False) -> Rule:
        """Send A-ABORT instead of the response, or after the data set's first P-DATA
        fragment when ``during_dataset``."""
        if not isinstance(during_dataset, bool):
            raise ValueError(f"during_dataset: expected a bool, got {during_dataset!r}")
        return self._install(Action("abort", during_dataset=during_dataset))

    def disconnect(self, rst: bool = False) -> Rule:
        """Close TCP without A-ABORT instead of responding; ``rst`` resets it (SO_LINGER 0)."""
        if not isinstance(rst, bool):
            raise ValueError(f"rst: expected a bool, got {rst!r}")
        return self._install(Action("disconnect", rst=rst))

    def garbage(self, data: bytes | None = None) -> Rule:
        """Send junk bytes instead of the response, then close."""
        if data is None:
            data = DEFAULT_GARBAGE
        if not isinstance(data, bytes | bytearray) or not data:
            raise ValueError(f"data: expected non-empty bytes or None, got {data!r}")
        return self._install(Action("garbage", data=bytes(data)))
