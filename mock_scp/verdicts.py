"""What a test asks of the mock SCP after the SCU has run: ``check()``, the
associations left unreleased, and the assertion helpers, each failing with the journal
in its message (:class:`mock_scp.errors.MockScpError`)."""

from __future__ import annotations

import re
from collections.abc import Collection

from scu.protocol.status import parse_status, status_label
from scu.protocol.uids import UidKind, resolve_uid, uid_keyword

from .errors import MockScpError
from .journal import AssociationRecord, Journal, ReceivedStore, Violation, printable
from .matching import RuleTable
from .report import format_journal
from .rules import check_count

__all__ = ["Verdicts"]

#: How the mock words the end of an association the SCU went silent on (its ACSE, DIMSE
#: or network timeout).
_TIMEOUT = re.compile(r"\b(ACSE|DIMSE|network) timeout\b")


class Verdicts:
    """Mixed into :class:`mock_scp.MockScp`."""

    _journal: Journal
    _rules: RuleTable

    @property
    def received(self) -> list[ReceivedStore]:
        raise NotImplementedError

    @property
    def stored(self) -> list[ReceivedStore]:
        raise NotImplementedError

    @property
    def violations(self) -> list[Violation]:
        raise NotImplementedError

    @property
    def errors(self) -> list[BaseException]:
        raise NotImplementedError

    @property
    def associations(self) -> list[AssociationRecord]:
        raise NotImplementedError

    def check(
        self,
        *,
        violations: bool = True,
        allow_unreleased: bool = True,
        ignore_violations: Collection[str] = (),
    ) -> None:
        """Raise :class:`MockScpError` listing server-thread errors, unmet ``expect``
        counts (each with the store that came nearest), the SCU's violations (unless
        ``violations=False``; but those of the kinds in ``ignore_violations``), and, with
        ``allow_unreleased=False``, the associations left open or ended by the SCU
        without a release; the journal comes with it."""
        __tracebackhide__ = True
        if isinstance(ignore_violations, str):
            raise ValueError(
                f"ignore_violations: expected a collection of violation kinds, "
                f"got the string {ignore_violations!r}"
            )
        found_violations = (
            [v for v in self.violations if v.kind not in ignore_violations] if violations else []
        )
        errors = self.errors
        unmet = self._rules.unmet()
        unreleased = [] if allow_unreleased else self.unreleased()
        if errors or unmet or found_violations or unreleased:
            raise MockScpError(
                errors=errors,
                unmet=unmet,
                violations=found_violations,
                unreleased=unreleased,
                journal=format_journal(self),
            )

    def unreleased(self) -> list[str]:
        """The associations left open, ended by the SCU without a release (an A-ABORT
        or a dropped connection), or left silent until one of the mock's timeouts ended
        them, in words."""
        out = []
        for record in self._journal.associations:
            detail = printable(record.end_detail or "")
            if record.proposed_contexts or record.calling_ae_title:
                who = f"association {record.id} ({printable(record.calling_ae_title)})"
            else:  # a connection that never asked for an association
                who = f"connection {record.id} from {record.peer or '?'}"
            if record.ended is None:
                out.append(f"{who} is still open")
            elif record.ended_by == "scu" and record.ended != "released":
                out.append(f"{who} {record.ended}: {detail}")
            elif record.ended_by == "mock" and _TIMEOUT.search(record.end_detail or ""):
                out.append(f"{who} left silent until the mock gave up: {detail}")
        return out

    def assert_stored(
        self,
        count: int | None = None,
        *,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
        transfer_syntax: str | None = None,
        calling_ae_title: str | None = None,
        status: int | str | None = None,
    ) -> list[ReceivedStore]:
        """Assert that ``count`` stores (at least one when ``None``) arrived complete
        and were answered, among those matching the filters given (UIDs or keywords; a
        status as a code or name); return them. The message shows the journal."""
        __tracebackhide__ = True
        if count is not None:
            check_count(count, "count", minimum=0)
        wanted: dict[str, object] = {}
        for key, value, kind in (
            ("sop_class_uid", sop_class_uid, UidKind.SOP_CLASS),
            ("sop_instance_uid", sop_instance_uid, None),
            ("transfer_syntax", transfer_syntax, UidKind.TRANSFER_SYNTAX),
        ):
            if value is not None:
                wanted[key] = resolve_uid(value, parameter=key, kind=kind)
        if calling_ae_title is not None:
            wanted["calling_ae_title"] = calling_ae_title
        if status is not None:
            wanted["status"] = parse_status(status)
        found = [s for s in self.stored if all(getattr(s, k) == v for k, v in wanted.items())]
        if (count is None and found) or (count is not None and len(found) == count):
            return found
        shown = [] if count is None else [str(count)]
        for key, given in wanted.items():
            if key == "status":
                shown.append(f"status={status_label(given)}")  # type: ignore[arg-type]
            elif key in ("sop_class_uid", "transfer_syntax"):
                shown.append(f"{key}={uid_keyword(given)}")  # type: ignore[arg-type]
            else:
                shown.append(f"{key}={printable(given)}")
        expected = "at least 1" if count is None else str(count)
        answered, received = len(self.stored), len(self.received)
        raise MockScpError(
            title=(
                f"assert_stored({', '.join(shown)}): expected {expected}, found {len(found)}"
                + (" matching" if wanted else "")
                + f" ({answered} answered of {received} received)"
            ),
            journal=format_journal(self),
        )

    def assert_no_violations(self) -> None:
        """Assert that the SCU did nothing against the standard; the message lists what it
        did, with the journal."""
        __tracebackhide__ = True
        violations = self.violations
        if violations:
            raise MockScpError(
                title=f"{len(violations)} violation(s) by the SCU:",
                violations=violations,
                journal=format_journal(self),
            )
