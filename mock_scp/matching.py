"""The rule table of one server: which rule answers each store, in two steps.

1. When the C-STORE-RQ arrives (:meth:`RuleTable.plan`), the rules that match on the
   command are tried in order: a ``slow_read`` modifier that matches throttles the
   data set, and when the first terminal match is ``abort(during_dataset=True)`` it
   acts at once. Rules that match on the content are not looked at yet.
2. When the data set is complete (:meth:`RuleTable.decide`), every rule is tried in
   order, the content rules included (what step 1 found is reused, so a predicate or a
   random draw is never made twice); the first terminal match answers, the ``stall``
   modifiers met on the way delay it.

Hits are counted when a store's answer is known. Ordered rules (``ordered=True``) must
be hit in the order they were made; a store that hits one before an earlier one has had
its hits is recorded as an error. The table also keeps the last requests it saw, to say
for an unmet expectation which store came nearest.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scu.protocol.uids import UidKind, resolve_uid

from .errors import OrderError
from .journal import printable
from .rules import (
    DEFAULT_DECISION,
    Action,
    Decision,
    Reply,
    Rule,
    RuleBuilder,
    StoreContent,
    StoreRequest,
    callable_name,
    check_count,
    describe,
    parse_expect,
    parse_nth,
)

__all__ = ["OrderError", "Plan", "RuleTable"]

#: Requests remembered for the near misses of unmet expectations.
_SEEN = 1000
#: Stores listed per rule hit more often than expected.
_LISTED = 20


@dataclass
class Plan:
    """What step 1 found for one store, carried to step 2."""

    request: StoreRequest
    #: rule index -> whether its command-level matchers, predicate and draw matched
    matched: dict[int, bool] = field(default_factory=dict)
    bytes_per_second: float | None = None
    #: set when an ``abort(during_dataset=True)`` rule answers in step 1
    decision: Decision | None = None
    #: the slow_read rules applied in step 1 (their hits are counted with the answer)
    modifiers: list[Rule] = field(default_factory=list)


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
        self._ordered = 0
        self._seen: deque[StoreRequest] = deque(maxlen=_SEEN)
        #: (rule index, nth) -> why its predicate or content did not match that store
        self._misses: dict[tuple[int, int], str] = {}
        #: nth -> the rule that answered that store (or "the default")
        self._answered_by: dict[int, str] = {}
        #: rule index -> the first stores that hit it (for expectations exceeded)
        self._hit_by: dict[int, list[int]] = {}

    # -- building

    def builder(self, **matchers: Any) -> RuleBuilder:
        """Validate matchers now (configuration time) and return a builder."""
        parsed: dict[str, Any] = {"nth": parse_nth(matchers.get("nth"))}
        every, offset = matchers.get("every"), matchers.get("offset", 0)
        if every is None:
            if offset:
                raise ValueError("offset: only means something with every=N")
            parsed["every"] = None
        else:
            parsed["every"] = (
                check_count(every, "every", minimum=1),
                check_count(offset, "offset", minimum=0),
            )
        kinds = {
            "sop_class_uid": UidKind.SOP_CLASS,
            "sop_instance_uid": None,
            "transfer_syntax": UidKind.TRANSFER_SYNTAX,
        }
        for key, kind in kinds.items():
            value = matchers.get(key)
            parsed[key] = None if value is None else resolve_uid(value, parameter=key, kind=kind)
        calling = matchers.get("calling_ae_title")
        if calling is not None and (not isinstance(calling, str) or not calling.strip()):
            raise ValueError(f"calling_ae_title: expected an AE title string, got {calling!r}")
        parsed["calling_ae_title"] = None if calling is None else calling.strip()
        for key, what in (("when", "a StoreRequest"), ("match", "the store (StoreContent)")):
            fn = matchers.get(key)
            if fn is not None and not callable(fn):
                raise ValueError(f"{key}: expected a callable taking {what}, got {fn!r}")
            parsed[key] = fn
        dataset = matchers.get("dataset")
        if dataset is not None and (not hasattr(dataset, "items") or not dataset):
            raise ValueError(
                f"dataset: expected a mapping of DICOM keywords to values, got {dataset!r}"
            )
        if dataset is not None:
            from pydicom.datadict import keyword_dict

            unknown = [k for k in dataset if k not in keyword_dict]
            if unknown:
                import difflib

                close = difflib.get_close_matches(str(unknown[0]), list(keyword_dict), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"dataset: {unknown[0]!r} is not a DICOM keyword{hint}")
        parsed["dataset"] = dataset
        probability = matchers.get("probability")
        if probability is not None and (
            isinstance(probability, bool)
            or not isinstance(probability, int | float)
            or not 0.0 <= probability <= 1.0
        ):
            raise ValueError(f"probability: expected a number in 0..1, got {probability!r}")
        parsed["probability"] = probability
        ordered = matchers.get("ordered", False)
        if not isinstance(ordered, bool):
            raise ValueError(f"ordered: expected a bool, got {ordered!r}")
        times = matchers.get("times")
        if ordered and times is None:
            times = 1  # an ordered expectation is met once, then the next one's turn
        parsed["times"] = None if times is None else check_count(times, "times", minimum=1)
        expect = parse_expect(matchers.get("expect"))
        if ordered and expect is None:
            expect = (parsed["times"], parsed["times"])
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
        parsed["ordered"] = ordered
        return RuleBuilder(self, parsed)

    def add(self, action: Action, matchers: dict[str, Any]) -> Rule:
        options = dict(matchers)
        ordered = options.pop("ordered", False)
        with self._lock:
            rule = Rule(action=action, index=self._next_index, **options)
            self._next_index += 1
            if ordered:
                self._ordered += 1
                rule.order = self._ordered
            rule.description = describe(rule)
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
            self._ordered = 0
            self._random = random.Random(self._seed)
            self._seen.clear()
            self._misses.clear()
            self._answered_by.clear()
            self._hit_by.clear()

    def next_nth(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    # -- deciding

    def _matches(
        self, rule: Rule, req: StoreRequest, on_error: Callable[[BaseException], None]
    ) -> bool:
        with self._lock:
            if not rule.static_match(req):
                return False
        if rule.when is not None:
            try:  # predicates run outside the lock: user code, maybe slow
                if not rule.when(req):
                    self._missed(rule, req, f"when={callable_name(rule.when)} returned False")
                    return False
            except Exception as exc:
                on_error(exc)
                name = callable_name(rule.when)
                self._missed(rule, req, f"when={name} raised {type(exc).__name__}")
                return False
        if rule.probability is not None:
            with self._lock:
                if self._random.random() >= rule.probability:
                    self._misses[(rule.index, req.nth)] = f"probability={rule.probability} drew no"
                    return False
        return True

    def _content_matches(
        self, rule: Rule, content: StoreContent, on_error: Callable[[BaseException], None]
    ) -> bool:
        try:  # user code (a predicate) and pydicom: outside the lock
            misses = rule.content_mismatches(content)
        except Exception as exc:
            on_error(exc)
            misses = [f"matching the content raised {type(exc).__name__}: {exc}"]
        if misses:
            self._missed(rule, content.request, ", ".join(misses))
        return not misses

    def _missed(self, rule: Rule, req: StoreRequest, why: str) -> None:
        """Remember why a predicate or the content did not match (for near misses)."""
        with self._lock:
            self._misses[(rule.index, req.nth)] = why
            while len(self._misses) > _SEEN * 4:
                del self._misses[next(iter(self._misses))]

    def plan(self, req: StoreRequest, on_error: Callable[[BaseException], None]) -> Plan:
        """Step 1, when the command arrives (see the module doc)."""
        with self._lock:
            self._seen.append(req)
            rules = list(self._rules)
        plan = Plan(req)
        for rule in rules:
            if rule.on_content:
                continue
            matched = plan.matched[rule.index] = self._matches(rule, req, on_error)
            if not matched:
                continue
            action = rule.action
            if action.name == "slow_read":
                rate = plan.bytes_per_second
                plan.bytes_per_second = (
                    action.bytes_per_second if rate is None else min(rate, action.bytes_per_second)
                )
                plan.modifiers.append(rule)
            elif action.name == "stall":
                continue
            else:
                if action.acts_while_receiving:
                    if not self._commit([rule], req, on_error):
                        plan.matched[rule.index] = False  # used up meanwhile
                        continue
                    plan.decision = Decision(action, 0.0, plan.bytes_per_second)
                    self._commit(plan.modifiers, req, on_error)
                break  # the first terminal match on the command; step 2 confirms it
        return plan

    def decide(
        self, plan: Plan, content: StoreContent, on_error: Callable[[BaseException], None]
    ) -> tuple[Decision, list[Rule]]:
        """Step 2, when the data set is complete: the answer and the rules that hit."""
        if plan.decision is not None:
            return plan.decision, []
        req = plan.request
        stall = 0.0
        kept = self._commit(plan.modifiers, req, on_error)
        with self._lock:
            rules = list(self._rules)
        chosen: Action = DEFAULT_DECISION.action
        answered_by = "the default"
        for rule in rules:
            action = rule.action
            if action.name == "slow_read":
                continue  # applied in step 1 or not at all
            if rule.index in plan.matched:
                matched = plan.matched[rule.index]
            else:
                matched = self._matches(rule, req, on_error)
                if matched and rule.on_content:
                    matched = self._content_matches(rule, content, on_error)
            # Each hit is counted as it is found: a rule whose last allowed hit went to
            # another association since step 1 does not match, and the next rule decides.
            if not matched or not self._commit([rule], req, on_error):
                continue
            kept.append(rule)
            if action.name == "stall":
                stall += action.seconds
                continue
            chosen = action
            answered_by = rule.description
            break
        with self._lock:
            self._answered_by[req.nth] = answered_by
            while len(self._answered_by) > _SEEN:
                del self._answered_by[next(iter(self._answered_by))]
        if chosen.name == "respond_with":
            chosen = _run_handler(chosen, content, on_error)
        return Decision(chosen, stall, plan.bytes_per_second), kept

    def _commit(
        self, rules: list[Rule], req: StoreRequest, on_error: Callable[[BaseException], None]
    ) -> list[Rule]:
        """Count the hits (within ``times``); check the order of ordered rules."""
        kept = []
        with self._lock:
            for rule in rules:
                if rule.times is not None and rule.hits >= rule.times:
                    continue  # another association used the last hit meanwhile
                if rule.order is not None:
                    waiting = [
                        r
                        for r in self._rules
                        if r.order is not None
                        and r.order < rule.order
                        and r.expect is not None
                        and r.hits < r.expect[0]
                    ]
                    if waiting:
                        store = f"store {req.nth} ({printable(req.sop_instance_uid)})"
                        on_error(
                            OrderError(
                                f"{store} hit ordered rule {rule.description} "
                                f"before {waiting[0].description}"
                            )
                        )
                rule.hits += 1
                stores = self._hit_by.setdefault(rule.index, [])
                if len(stores) < _LISTED:
                    stores.append(req.nth)
                kept.append(rule)
        return kept

    # -- reporting

    def unmet(self) -> list[str]:
        """The unmet expectations, each with the store that came nearest."""
        with self._lock:
            rules = list(self._rules)
            seen = list(self._seen)
            misses = dict(self._misses)
            answered_by = dict(self._answered_by)
            hit_by = {index: list(stores) for index, stores in self._hit_by.items()}
        out = []
        for rule in rules:
            message = rule.unmet()
            if message is None:
                continue
            if rule.expect is not None and rule.hits > rule.expect[1]:
                stores = ", ".join(str(n) for n in hit_by.get(rule.index, []))
                more = ", ..." if rule.hits > _LISTED else ""
                out.append(f"{message}; hit by stores {stores}{more}")
                continue
            out.append(f"{message}; {_nearest(rule, seen, misses, answered_by)}")
        return out


def _nearest(
    rule: Rule,
    seen: list[StoreRequest],
    misses: dict[tuple[int, int], str],
    answered_by: dict[int, str],
) -> str:
    if not seen:
        return "no store arrived"

    def failed(req: StoreRequest) -> list[str]:
        found = rule.mismatches(req)
        later = misses.get((rule.index, req.nth))
        return [*found, later] if later else found

    def distance(req: StoreRequest) -> tuple[int, int]:
        # Fewest failed matchers first; among those, the store nearest the wanted nth
        # (or the latest one).
        near = min((abs(req.nth - n) for n in rule.nth), default=0) if rule.nth else -req.nth
        return len(failed(req)), near

    best = min(seen, key=distance)
    why = failed(best)
    count = f"{len(seen)} store{'s' if len(seen) != 1 else ''} arrived"
    store = f"store {best.nth} ({printable(best.sop_instance_uid)})"
    if why:
        return f"{count}; nearest: {store} missed {', '.join(why)}"
    other = answered_by.get(best.nth)
    if other is not None and other != rule.description:
        return f"{count}; nearest: {store} was answered by {other} first"
    return f"{count}; nearest: {store} matched"


def _run_handler(
    action: Action, content: StoreContent, on_error: Callable[[BaseException], None]
) -> Action:
    """What a ``respond_with`` handler says, as an action; 0x0110 if it fails."""
    assert action.handler is not None
    try:
        result = action.handler(content)
        if isinstance(result, Action):
            if result.acts_while_receiving or not (
                result.answers or result.name in ("abort", "disconnect", "garbage")
            ):
                raise ValueError(f"respond_with: a handler cannot answer with {result.name}")
            return result
        if isinstance(result, tuple):
            status, comment = result
            return Reply.status(status, comment)
        return Reply.status(result)  # type: ignore[arg-type]
    except Exception as exc:
        on_error(exc)
        return Action("respond", status=0x0110, comment="respond_with handler raised")
