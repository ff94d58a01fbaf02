"""Store rules: matchers, actions, and the thread-safe table that picks the answer.

A rule is built with ``scp.on_store(...matchers...)`` and completed by exactly one
action method on the returned :class:`RuleBuilder`. Matching happens as soon as a
C-STORE command set has arrived (before its dataset), so faults can act on the
dataset itself (slow read, abort mid-dataset); the ``when`` predicate therefore sees a
:class:`StoreRequest` (command-level facts), not the dataset.

``stall`` and ``slow_read`` are *modifiers*: when such a rule matches, matching goes
on to the next rule that matches, and that rule (or the default accept) answers.
Every other action is terminal. The first terminal match wins.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from scu.protocol.status import StatusCategory, classify, parse_status
from scu.protocol.uids import UidKind, resolve_uid

__all__ = ["Action", "Decision", "Rule", "RuleBuilder", "RuleTable", "StoreRequest"]

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


def _check_count(value: object, argument: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{argument}: expected an int >= {minimum}, got {value!r}")
    return value


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
    times: int | None = None
    expect: tuple[int, int] | None = None  # inclusive (min, max); max may be very large
    hits: int = 0
    index: int = 0
    description: str = field(default="")

    def static_match(self, req: StoreRequest) -> bool:
        """The matchers that need neither the predicate nor the random draw."""
        return (
            (self.times is None or self.hits < self.times)
            and (self.nth is None or req.nth in self.nth)
            and (
                self.every is None
                or (req.nth > self.every[1] and (req.nth - self.every[1]) % self.every[0] == 0)
            )
            and (self.sop_class_uid is None or self.sop_class_uid == req.sop_class_uid)
            and (self.sop_instance_uid is None or self.sop_instance_uid == req.sop_instance_uid)
            and (self.transfer_syntax is None or self.transfer_syntax == req.transfer_syntax)
            and (self.calling_ae_title is None or self.calling_ae_title == req.calling_ae_title)
        )

    def unmet(self) -> str | None:
        """Why this rule's ``expect`` is not met, or ``None``."""
        if self.expect is None:
            return None
        lo, hi = self.expect
        if lo <= self.hits <= hi:
            return None
        wanted = str(lo) if lo == hi else (f"at least {lo}" if hi >= 2**31 else f"{lo}..{hi}")
        return f"rule {self.description}: expected {wanted} hit(s), got {self.hits}"


def _parse_nth(nth: object) -> frozenset[int] | None:
    if nth is None:
        return None
    if isinstance(nth, int) and not isinstance(nth, bool):
        return frozenset({_check_count(nth, "nth", minimum=1)})
    if isinstance(nth, Collection) and not isinstance(nth, str | bytes):
        values = frozenset(_check_count(v, "nth", minimum=1) for v in nth)
        if not values:
            raise ValueError("nth: an empty collection never matches; use None for any")
        return values
    raise ValueError(f"nth: expected an int >= 1, a collection of them, or None; got {nth!r}")


def _parse_expect(expect: object) -> tuple[int, int] | None:
    if expect is None:
        return None
    if isinstance(expect, int) and not isinstance(expect, bool):
        n = _check_count(expect, "expect", minimum=0)
        return (n, n)
    if isinstance(expect, range):
        if expect.step != 1 or len(expect) == 0 or expect.start < 0:
            raise ValueError(
                f"expect: a range must be non-empty, step 1, from >= 0; got {expect!r}"
            )
        return (expect.start, expect.stop - 1)
    if isinstance(expect, tuple) and len(expect) == 2:
        lo = _check_count(expect[0], "expect", minimum=0)
        hi = 2**62 if expect[1] is None else _check_count(expect[1], "expect", minimum=lo)
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

    def _install(self, action: Action) -> Rule:
        if self._done:
            raise ValueError("this on_store(...) rule already has an action; call on_store again")
        self._done = True
        return self._table.add(action, self._matchers)

    def accept(self) -> Rule:
        """Answer 0x0000 Success."""
        return self._install(Action("accept", status=0))

    def respond(self, status: int | str, comment: str | None = None) -> Rule:
        """Answer with any status (int 0x0000-0xFFFF or a name) and optional Error Comment."""
        return self._install(
            Action("respond", status=parse_status(status), comment=_check_comment(comment))
        )

    def warn(self, status: int | str = 0xB000, comment: str | None = None) -> Rule:
        """Answer with a warning status (0x0001, 0x0107, 0x0116 or 0xBxxx)."""
        code = parse_status(status)
        if classify(code) is not StatusCategory.WARNING:
            raise ValueError(
                f"status: {code:#06x} is not a warning (0x0001, 0x0107, 0x0116, 0xB000-0xBFFF)"
            )
        return self._install(Action("warn", status=code, comment=_check_comment(comment)))

    def fail(self, status: int | str, comment: str | None = None) -> Rule:
        """Answer with a failure status (anything but success, warning or pending)."""
        code = parse_status(status)
        if classify(code) is not StatusCategory.FAILURE:
            raise ValueError(
                f"status: {code:#06x} is not a failure (it is a {classify(code).value} status); "
                "use respond() to send any code"
            )
        return self._install(Action("fail", status=code, comment=_check_comment(comment)))

    def stall(self, seconds: float) -> Rule:
        """Wait ``seconds`` after the dataset, then answer as the next matching rule."""
        return self._install(Action("stall", seconds=_check_seconds(seconds, "seconds")))

    def slow_read(self, bytes_per_second: float) -> Rule:
        """Read this store's dataset at most ``bytes_per_second``, then answer as the
        next matching rule. The throttle applies to reads from the socket once the
        command has arrived; the SCU feels it when the dataset outgrows what the
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
        """Send A-ABORT instead of the response, or after the dataset's first P-DATA
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


class RuleTable:
    """The rules of one server, their hit counts, and the life-long nth counter.

    All access holds one lock, so rules can be added or cleared while associations run.
    """

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._seed = seed
        self._random = random.Random(seed)
        self._count = 0
        self._next_index = 1

    def builder(self, **matchers: Any) -> RuleBuilder:
        """Validate matchers now (configuration time) and return a builder."""
        parsed: dict[str, Any] = {"nth": _parse_nth(matchers["nth"])}
        every, offset = matchers.get("every"), matchers.get("offset", 0)
        if every is None:
            if offset:
                raise ValueError("offset: only means something with every=N")
            parsed["every"] = None
        else:
            parsed["every"] = (
                _check_count(every, "every", minimum=1),
                _check_count(offset, "offset", minimum=0),
            )
        kinds = {
            "sop_class_uid": UidKind.SOP_CLASS,
            "sop_instance_uid": None,
            "transfer_syntax": UidKind.TRANSFER_SYNTAX,
        }
        for key, kind in kinds.items():
            value = matchers[key]
            parsed[key] = None if value is None else resolve_uid(value, parameter=key, kind=kind)
        calling = matchers["calling_ae_title"]
        if calling is not None and (not isinstance(calling, str) or not calling.strip()):
            raise ValueError(f"calling_ae_title: expected an AE title string, got {calling!r}")
        parsed["calling_ae_title"] = None if calling is None else calling.strip()
        when = matchers["when"]
        if when is not None and not callable(when):
            raise ValueError(f"when: expected a callable taking a StoreRequest, got {when!r}")
        parsed["when"] = when
        probability = matchers["probability"]
        if probability is not None and (
            isinstance(probability, bool)
            or not isinstance(probability, int | float)
            or not 0.0 <= probability <= 1.0
        ):
            raise ValueError(f"probability: expected a number in 0..1, got {probability!r}")
        parsed["probability"] = probability
        times = matchers["times"]
        parsed["times"] = None if times is None else _check_count(times, "times", minimum=1)
        expect = _parse_expect(matchers["expect"])
        if expect is not None and parsed["times"] is not None and expect[0] > parsed["times"]:
            raise ValueError(
                f"expect: at least {expect[0]} hit(s) can never happen with times={times}"
            )
        nth = parsed["nth"]
        if expect is not None and nth is not None and expect[0] > len(nth):
            raise ValueError(
                f"expect: at least {expect[0]} hit(s) can never happen with nth={matchers['nth']!r}"
            )
        parsed["expect"] = expect
        return RuleBuilder(self, parsed)

    def add(self, action: Action, matchers: dict[str, Any]) -> Rule:
        with self._lock:
            rule = Rule(action=action, index=self._next_index, **matchers)
            self._next_index += 1
            rule.description = _describe(rule)
            self._rules.append(rule)
            return rule

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def reset(self) -> None:
        """Forget rules, hits and the nth counter; re-seed the random source."""
        with self._lock:
            self._rules.clear()
            self._count = 0
            self._next_index = 1
            self._random = random.Random(self._seed)

    def next_nth(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def decide(
        self, req: StoreRequest, on_error: Callable[[BaseException], None]
    ) -> tuple[Decision, list[Rule]]:
        """Pick the answer for ``req``; ``on_error`` receives a raising predicate's error
        (that rule then does not match). Returns the decision and the rules that hit."""
        stall = 0.0
        rate: float | None = None
        hit: list[Rule] = []
        with self._lock:
            rules = list(self._rules)
        for rule in rules:
            with self._lock:
                if not rule.static_match(req):
                    continue
            if rule.when is not None:
                # Predicates run outside the lock: they are user code and may be slow.
                try:
                    if not rule.when(req):
                        continue
                except Exception as exc:
                    on_error(exc)
                    continue
            with self._lock:
                if rule.times is not None and rule.hits >= rule.times:
                    continue  # another association used the last hit meanwhile
                if rule.probability is not None and self._random.random() >= rule.probability:
                    continue
                rule.hits += 1
            hit.append(rule)
            action = rule.action
            if action.name == "stall":
                stall += action.seconds
            elif action.name == "slow_read":
                rate = (
                    action.bytes_per_second if rate is None else min(rate, action.bytes_per_second)
                )
            else:
                return Decision(action, stall, rate), hit
        return Decision(DEFAULT_DECISION.action, stall, rate), hit

    def unmet(self) -> list[str]:
        with self._lock:
            return [msg for rule in self._rules if (msg := rule.unmet()) is not None]


def _describe(rule: Rule) -> str:
    parts = []
    if rule.nth is not None:
        parts.append(f"nth={sorted(rule.nth)}" if len(rule.nth) > 1 else f"nth={min(rule.nth)}")
    if rule.every is not None:
        every, offset = rule.every
        parts.append(f"every={every}" + (f", offset={offset}" if offset else ""))
    for key in ("sop_class_uid", "sop_instance_uid", "transfer_syntax", "calling_ae_title"):
        value = getattr(rule, key)
        if value is not None:
            parts.append(f"{key}={value!r}")
    if rule.when is not None:
        parts.append(f"when={getattr(rule.when, '__name__', 'predicate')}")
    if rule.probability is not None:
        parts.append(f"probability={rule.probability}")
    if rule.times is not None:
        parts.append(f"times={rule.times}")
    return f"#{rule.index} on_store({', '.join(parts)}).{rule.action.name}"
