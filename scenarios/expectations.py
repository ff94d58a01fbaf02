"""What a scenario expects to observe, in groups that each carry a level.

``expect`` is one group (a mapping) or a list of groups. A group states facts (counts,
events, the SCP journal, the sender's exit status) and:

- ``level``: ``required`` (the DICOM standard requires it; ``cite`` names the PS3.x
  sections) or ``recommended`` (robust practice beyond the standard; ``why`` says which,
  e.g. "re-associate after an A-ABORT and deliver the rest");
- ``needs``: the ``scu:`` settings the group depends on. By default, every setting the
  scenario's ``scu:`` block sets (and the AE titles when the mock checks them). When an
  external sender's command line does not carry one of them, the group is reported as
  not applicable, with the reason, never as a failure.

.. code-block:: yaml

    expect:
      - level: required
        cite: PS3.7 A.6
        why: the store in flight when the association is aborted has failed
        failed: 1
        scp: {violations: none}
      - level: recommended
        why: re-associate after an A-ABORT and deliver the rest
        successful: 7
        scp: {stores: 8, associations: 2}
        sender: {exit: nonzero}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, NonNegativeInt, field_validator, model_validator

from ._suggest import did_you_mean
from ._types import Model, Status, TransferSyntax, reject_names
from .citations import check_citation
from .events import Outcome, PatternError, compile_pattern, parse_outcome

__all__ = [
    "FACT_FIELDS",
    "LEVELS",
    "SCU_EXCEPTIONS",
    "SCU_SETTINGS",
    "Expect",
    "Level",
    "RejectionExpect",
    "ScpExpect",
    "ScuSetting",
    "SenderExpect",
]

Level = Literal["required", "recommended"]
LEVELS: tuple[Level, ...] = ("required", "recommended")

#: The ``scu:`` settings a group may need (the fields of ``ScuConfig``).
ScuSetting = Literal[
    "calling_ae_title",
    "called_ae_title",
    "max_pdu_length",
    "transfer_syntax",
    "concurrency",
    "connect_timeout",
    "acse_timeout",
    "dimse_timeout",
    "network_timeout",
    "never_transcode",
    "fail_fast",
    "verbose",
]
SCU_SETTINGS: tuple[str, ...] = ScuSetting.__args__  # type: ignore[attr-defined]

# Exception classes of `scu` a scenario may expect from StoreScu.send().
SCU_EXCEPTIONS = (
    "ScuError",
    "AssociationError",
    "ConnectionFailed",
    "AssociationRejected",
    "CallbackError",
    "TransportError",
    "ProtocolError",
)


def _citations(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [check_citation(v) for v in value]
    return value


Citations = Annotated[list[str], BeforeValidator(_citations)]


class RejectionExpect(Model):
    """The A-ASSOCIATE-RJ the SCU must report (AssociationRejected.rejection)."""

    result: int | None = None
    source: int | None = None
    reason: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: object) -> object:
        return reject_names(data)


Ended = Literal["released", "aborted", "dropped", "rejected", "open"]


class ScpExpect(Model):
    """Facts about the MockScp journal (the only ones an external SCU can be judged by)."""

    stores: NonNegativeInt | None = None
    statuses: list[Status] | None = None
    status_counts: dict[Status, NonNegativeInt] | None = None
    associations: NonNegativeInt | None = None
    min_associations: NonNegativeInt | None = None
    ended: dict[Ended, NonNegativeInt] | None = None
    violations: Literal["none"] | NonNegativeInt | None = None
    transfer_syntaxes: list[TransferSyntax] | None = None
    distinct_instances: NonNegativeInt | None = None
    max_pdu_length: NonNegativeInt | None = None

    def is_empty(self) -> bool:
        """No fact given."""
        return all(v is None for v in self.__dict__.values())


class SenderExpect(Model):
    """Facts about an external sender's process: what its exit status must be."""

    exit: Literal["zero", "nonzero", "any"] = "any"


#: The fields of a group that state facts (the others describe the group).
FACT_FIELDS = (
    "successful",
    "failed",
    "warnings",
    "total",
    "events",
    "raises",
    "rejection",
    "scp",
    "sender",
)


class Expect(Model):
    """One group of expectations with its level. ``events`` is a pattern (see
    :mod:`scenarios.events`) or the exact per-file outcome list."""

    level: Level = "required"
    cite: Citations = Field(default_factory=list)
    why: str | None = None
    needs: list[ScuSetting] | None = None

    successful: NonNegativeInt | None = None
    failed: NonNegativeInt | None = None
    warnings: NonNegativeInt | None = None
    total: NonNegativeInt | None = None
    events: str | list[str] | None = None
    raises: str | None = None
    rejection: RejectionExpect | None = None
    scp: ScpExpect | None = None
    sender: SenderExpect | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, str):
            try:
                compile_pattern(value)
            except PatternError as exc:
                raise ValueError(f"bad event pattern: {exc}") from None
        elif isinstance(value, list):
            for item in value:
                parse_outcome(item)
        return value

    @field_validator("raises")
    @classmethod
    def _raises(cls, value: str | None) -> str | None:
        if value is not None and value not in SCU_EXCEPTIONS:
            raise ValueError(
                f"raises names one of {', '.join(SCU_EXCEPTIONS)}, not {value!r}"
                + did_you_mean(value, SCU_EXCEPTIONS)
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        given = [k for k in FACT_FIELDS if getattr(self, k) is not None]
        if given == ["scp"] and self.scp is not None and self.scp.is_empty():
            given = []
        if not given:
            raise ValueError("an expectation group needs at least one expectation")
        if self.rejection is not None and self.raises not in (None, "AssociationRejected"):
            raise ValueError("expect.rejection goes with raises: AssociationRejected")
        if self.level == "recommended" and not (self.why or "").strip():
            raise ValueError(
                "a recommended group says why: which robust practice it checks "
                "(e.g. 'why: re-associate after an A-ABORT and deliver the rest')"
            )
        return self

    def facts(self) -> dict[str, Any]:
        """The facts this group states (name -> value), in declaration order."""
        return {k: getattr(self, k) for k in FACT_FIELDS if getattr(self, k) is not None}

    def outcomes(self) -> list[Outcome] | None:
        """The per-file outcome list, when ``events`` is one."""
        return [parse_outcome(x) for x in self.events] if isinstance(self.events, list) else None
