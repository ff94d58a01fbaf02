"""The scenario file format, as pydantic models.

The published schema is :func:`scenarios.json_schema` (shipped as
``scenarios/scenario.schema.json``). Every model forbids unknown fields. Statuses are
ints, hex strings ("0xA700") or standard names ("OutOfResources", "out-of-resources");
SOP classes and transfer syntaxes are UIDs or pydicom keywords and are stored as UIDs.

.. code-block:: yaml

    name: out-of-resources-mid-study         # unique; library files are named after it
    description: |
      One-line summary (shown by `scukit scenario list`).
      Then the real-world situation the scenario models.
    timeout: 60                              # seconds a sender may take (default 60)
    scp:                                     # MockScp options (absent = MockScp default)
      ae_title: PACS
      transfer_syntaxes: [ExplicitVRLittleEndian]
      rules:                                 # first match wins; default accept 0x0000
        - nth: [6, 7]                        # match keys: nth, sop_class_uid, sop_instance_uid,
          fail: OutOfResources               #   transfer_syntax, calling_ae_title, probability,
          expect: 2                          #   times, expect (int or {min, max})
        - {nth: 3, stall: 1.5}               # one action: accept, respond, warn, fail, stall,
                                             #   slow_read, abort, disconnect, garbage
      reject_associations:
        - {result: transient, source: service-provider-presentation,
           reason: temporary-congestion, times: 1}
    scu: {calling_ae_title: CT1, dimse_timeout: 0.5}   # StoreScu options; called_ae_title
                                             #   defaults to scp.ae_title
    files:
      - study/ct1.dcm                        # relative to this file
      - pydicom: CT_small.dcm                # pydicom's bundled test files (offline ones)
      - generate: {count: 5, sop_class: CTImageStorage, transfer_syntax: RLELossless}
        repeat: 2                            # queue the same files again (duplicates)
    expect:
      total: 10                              # successful, failed, warnings, total
      events: "started, (sending, sent|error)*, completed"   # or a per-file list:
      # events: [success, warning 0xB000, failed OutOfResources, failed none, ...]
      raises: AssociationRejected            # exception class name from `scu`
      rejection: {result: permanent, source: service-user, reason: called-ae-title-not-recognized}
      scp:                                   # journal facts (all an external SCU is judged by)
        stores: 10
        statuses: [Success, OutOfResources]  # answered statuses, in order
        status_counts: {Success: 8, OutOfResources: 2}
        associations: 1                      # or min_associations
        ended: {released: 1}                 # released / aborted / dropped / rejected / open
        violations: none                     # or a count
        transfer_syntaxes: [ExplicitVRLittleEndian]
        distinct_instances: 10
        max_pdu_length: 16384                # announced by the SCU on every association
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)

from scu.protocol.acse import parse_reject_reason, parse_reject_result, parse_reject_source
from scu.protocol.ae import check_ae_title
from scu.protocol.status import parse_status
from scu.protocol.uids import UidKind, resolve_uid

from .events import Outcome, PatternError, compile_pattern, parse_outcome

__all__ = [
    "ACTIONS",
    "SCU_EXCEPTIONS",
    "Expect",
    "FileSpec",
    "GenerateSpec",
    "RejectSpec",
    "RejectionExpect",
    "Rule",
    "Scenario",
    "ScpConfig",
    "ScpExpect",
    "ScuConfig",
]

Status = Annotated[int, BeforeValidator(parse_status)]
SopClass = Annotated[
    str, BeforeValidator(lambda v: resolve_uid(v, parameter="SOP class", kind=UidKind.SOP_CLASS))
]
TransferSyntax = Annotated[
    str,
    BeforeValidator(
        lambda v: resolve_uid(v, parameter="transfer syntax", kind=UidKind.TRANSFER_SYNTAX)
    ),
]


def _ae_title(value: object) -> object:
    return check_ae_title(value, parameter="AE title") if isinstance(value, str) else value


AeTitle = Annotated[str, BeforeValidator(_ae_title)]

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

ACTIONS = (
    "accept",
    "respond",
    "warn",
    "fail",
    "stall",
    "slow_read",
    "abort",
    "disconnect",
    "garbage",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _scalar_as(key: str) -> Any:
    """A before-validator letting `fail: 0xA700` stand for `fail: {status: 0xA700}` and
    `abort: true` for `abort: {}`."""

    def convert(cls: type, data: object) -> object:
        if data is True or data is None:
            return {}
        if isinstance(data, dict):
            return data
        return {key: data}

    return model_validator(mode="before")(classmethod(convert))  # type: ignore[arg-type]


class Reply(_Model):
    """A DIMSE response: status and optional ErrorComment."""

    status: Status
    comment: str | None = None
    _scalar = _scalar_as("status")


class WarnReply(_Model):
    """A warning response; status defaults to 0xB000 (coercion of data elements)."""

    status: Status = 0xB000
    comment: str | None = None
    _scalar = _scalar_as("status")


class AbortSpec(_Model):
    """A-ABORT instead of a response, or while the dataset is still arriving."""

    during_dataset: bool = False
    _scalar = _scalar_as("during_dataset")


class DisconnectSpec(_Model):
    """Close the TCP connection without A-ABORT (optionally with RST)."""

    rst: bool = False
    _scalar = _scalar_as("rst")


class GarbageSpec(_Model):
    """Send bytes that are not a PDU, then close; ``data`` in hex (default: the mock's)."""

    data: str | None = None
    _scalar = _scalar_as("data")

    @field_validator("data")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError("garbage data is hex digits, e.g. 'deadbeef'") from None
        return value


class ExpectRange(_Model):
    """Hit count bounds for a rule's ``expect``."""

    min: NonNegativeInt = 0
    max: NonNegativeInt | None = None


class Rule(_Model):
    """One MockScp rule: match keys, then exactly one action."""

    nth: PositiveInt | list[PositiveInt] | None = None
    sop_class_uid: SopClass | None = None
    sop_instance_uid: str | None = None
    transfer_syntax: TransferSyntax | None = None
    calling_ae_title: AeTitle | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    times: PositiveInt | None = None
    expect: NonNegativeInt | ExpectRange | None = None

    accept: Literal[True] | None = None
    respond: Reply | None = None
    warn: WarnReply | None = None
    fail: Reply | None = None
    stall: PositiveFloat | None = None
    slow_read: PositiveFloat | None = None
    abort: AbortSpec | None = None
    disconnect: DisconnectSpec | None = None
    garbage: GarbageSpec | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Rule:
        chosen = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            raise ValueError(
                f"a rule needs exactly one action of {', '.join(ACTIONS)} (found {found})"
            )
        if self.fail is not None and self.fail.status == 0x0000:
            raise ValueError("fail needs a failure status, not 0x0000 (use accept)")
        return self

    @property
    def action(self) -> str:
        """The name of this rule's action."""
        return next(a for a in ACTIONS if getattr(self, a) is not None)


class RejectSpec(_Model):
    """An A-ASSOCIATE-RJ the mock sends (``times`` associations, or all when absent)."""

    result: int
    source: int
    reason: int
    times: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "result" in data:
            data["result"] = parse_reject_result(data["result"])
        if "source" in data:
            data["source"] = parse_reject_source(data["source"])
            if "reason" in data:
                data["reason"] = parse_reject_reason(data["source"], data["reason"])
        return data


def _check_pdu(value: int | None, low: int, high: int) -> int | None:
    if value is not None and value != 0 and not low <= value <= high:
        raise ValueError(f"max_pdu_length is 0 (no limit) or {low}..{high}, not {value}")
    return value


class ScpConfig(_Model):
    """The MockScp: every constructor option (None = the MockScp default), rules, rejects."""

    ae_title: AeTitle = "MOCK-SCP"
    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    max_pdu_length: NonNegativeInt | None = None
    transfer_syntaxes: list[TransferSyntax] | None = None
    sop_classes: list[SopClass] | None = None
    accept_unknown_sop_classes: bool | None = None
    require_called_ae_title: bool | None = None
    require_calling_ae_titles: list[AeTitle] | None = None
    max_associations: PositiveInt | None = None
    seed: int | None = None
    store_dir: str | None = None
    strict: bool | None = None
    acse_timeout: PositiveFloat | None = None
    dimse_timeout: PositiveFloat | None = None
    network_timeout: PositiveFloat | None = None
    rules: list[Rule] = []
    reject_associations: list[RejectSpec] = []

    @field_validator("max_pdu_length")
    @classmethod
    def _pdu_range(cls, value: int | None) -> int | None:
        return _check_pdu(value, 1024, 0xFFFFFFFF)


class ScuConfig(_Model):
    """StoreScu options (None = the StoreScu default). ``called_ae_title`` defaults to
    the mock's ``ae_title``."""

    calling_ae_title: AeTitle = "STORE-SCU"
    called_ae_title: AeTitle | None = None
    max_pdu_length: NonNegativeInt | None = None
    verbose: bool | None = None
    transfer_syntax: TransferSyntax | None = None
    concurrency: PositiveInt | None = None
    connect_timeout: PositiveFloat | None = None
    acse_timeout: PositiveFloat | None = None
    dimse_timeout: PositiveFloat | None = None
    network_timeout: PositiveFloat | None = None
    never_transcode: bool | None = None
    fail_fast: bool | None = None

    @field_validator("max_pdu_length")
    @classmethod
    def _pdu_range(cls, value: int | None) -> int | None:
        return _check_pdu(value, 4096, 131072)


class GenerateSpec(_Model):
    """Synthetic files made by ``mock_scp.datagen`` (None = the generator's default)."""

    count: PositiveInt = 1
    sop_class: SopClass | None = None
    transfer_syntax: TransferSyntax | None = None
    size: PositiveInt | None = None
    bits_allocated: Literal[8, 16] | None = None
    samples_per_pixel: Literal[1, 3] | None = None
    rows: PositiveInt | None = None
    columns: PositiveInt | None = None
    patient_id: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    seed: int | None = None


class FileSpec(_Model):
    """One entry of ``files``: a path (relative to the scenario file), a pydicom test file
    by name, or generated files; ``repeat`` queues the same file(s) again (duplicates)."""

    path: str | None = None
    pydicom: str | None = None
    generate: GenerateSpec | None = None
    repeat: PositiveInt = 1

    @model_validator(mode="before")
    @classmethod
    def _plain_path(cls, data: object) -> object:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> FileSpec:
        given = [k for k in ("path", "pydicom", "generate") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a files entry has exactly one of path, pydicom, generate")
        return self


class RejectionExpect(_Model):
    """The A-ASSOCIATE-RJ the SCU must report (AssociationRejected.rejection)."""

    result: int | None = None
    source: int | None = None
    reason: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: object) -> object:
        return RejectSpec._names(data)  # type: ignore[operator]


Ended = Literal["released", "aborted", "dropped", "rejected", "open"]


class ScpExpect(_Model):
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


class Expect(_Model):
    """What must be observed. ``events`` is a pattern (see :mod:`scenarios.events`) or
    the exact per-file outcome list."""

    successful: NonNegativeInt | None = None
    failed: NonNegativeInt | None = None
    warnings: NonNegativeInt | None = None
    total: NonNegativeInt | None = None
    events: str | list[str] | None = None
    raises: str | None = None
    rejection: RejectionExpect | None = None
    scp: ScpExpect | None = None

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
            raise ValueError(f"raises names one of {', '.join(SCU_EXCEPTIONS)}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _not_vacuous(self) -> Expect:
        given = [k for k, v in self.__dict__.items() if v is not None and k != "scp"]
        if not given and (self.scp is None or self.scp.is_empty()):
            raise ValueError("expect needs at least one expectation")
        if self.rejection is not None and self.raises not in (None, "AssociationRejected"):
            raise ValueError("expect.rejection goes with raises: AssociationRejected")
        return self

    def outcomes(self) -> list[Outcome] | None:
        """The per-file outcome list, when ``events`` is one."""
        return [parse_outcome(x) for x in self.events] if isinstance(self.events, list) else None


class Scenario(_Model):
    """One scenario file. ``source`` is the file it came from (None if built in code);
    relative paths resolve against ``base_dir``."""

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    tags: list[str] = []
    timeout: PositiveFloat = 60.0
    scp: ScpConfig = ScpConfig()
    scu: ScuConfig = ScuConfig()
    files: list[FileSpec] = Field(min_length=1)
    expect: Expect

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The scenario file, if loaded from one."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the scenario resolve against."""
        return self._source.parent if self._source is not None else Path.cwd()

    @property
    def called_ae_title(self) -> str:
        """The called AE title the SCU uses (the mock's own unless set)."""
        return self.scu.called_ae_title or self.scp.ae_title
