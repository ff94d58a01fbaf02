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
        - nth: [6, 7]                        # match keys: nth, every (+ offset), sop_class_uid,
          fail: OutOfResources               #   sop_instance_uid, transfer_syntax,
          expect: 2                          #   calling_ae_title, probability, times,
                                             #   expect (int or {min, max})
        - {every: 5, offset: 2, warn: 0xB000}  # stores 7, 12, 17, ...
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
    expect:                                  # one group, or a list of groups (levels)
      - level: required                      # the standard requires it ...
        cite: [PS3.4 B.2.3]                  # ... and says where
        failed: 5                            # successful, failed, warnings, total
        scp: {violations: none}
      - level: recommended                   # robust practice beyond the standard
        why: carry on after a refused store  # which practice
        needs: []                            # scu settings it depends on (default: all set)
        total: 10
        events: "started, (sending, sent|error)*, completed"   # or a per-file list:
        # events: [success, warning 0xB000, failed OutOfResources, failed none, ...]
        raises: AssociationRejected          # exception class name from `scu`
        rejection: {result: permanent, source: service-user, reason: called-ae-title-not-recognized}
        sender: {exit: nonzero}              # external senders: zero, nonzero or any
        scp:                                 # journal facts (all an external SCU is judged by)
          stores: 10
          statuses: [Success, OutOfResources]  # answered statuses, in order
          status_counts: {Success: 8, OutOfResources: 2}
          associations: 1                    # or min_associations
          ended: {released: 1}               # released / aborted / dropped / rejected / open
          violations: none                   # or a count
          transfer_syntaxes: [ExplicitVRLittleEndian]
          distinct_instances: 10
          max_pdu_length: 16384              # announced by the SCU on every association

The expectation groups are described in :mod:`scenarios.expectations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from scu.protocol.status import StatusCategory, classify, status_label

from ._types import AeTitle, Model, SopClass, Status, TransferSyntax, Uid, reject_names
from .expectations import SCU_EXCEPTIONS, Expect

__all__ = [
    "ACTIONS",
    "SCU_EXCEPTIONS",
    "Expect",
    "FileSpec",
    "GenerateSpec",
    "RejectSpec",
    "Rule",
    "Scenario",
    "ScpConfig",
    "ScuConfig",
]

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


def _status_of(category: StatusCategory, action: str, hint: str) -> Any:
    """An after-validator: the reply's status belongs to ``category`` (the mock refuses
    anything else at run time; here it is found before anything runs)."""

    def check(self: Any) -> Any:
        found = classify(self.status)
        if found is not category:
            raise ValueError(
                f"{action} needs a {category.value} status, but {status_label(self.status)} "
                f"is a {found.value} status; {hint}"
            )
        return self

    return model_validator(mode="after")(check)


class Reply(Model):
    """A DIMSE response with any status, and an optional ErrorComment."""

    status: Status
    comment: str | None = None
    _scalar = _scalar_as("status")


class FailReply(Model):
    """A failure response (anything but success, warning or pending)."""

    status: Status
    comment: str | None = None
    _scalar = _scalar_as("status")
    _category = _status_of(
        StatusCategory.FAILURE, "fail", "use accept or warn, or respond to send any code"
    )


class WarnReply(Model):
    """A warning response; status defaults to 0xB000 (coercion of data elements)."""

    status: Status = 0xB000
    comment: str | None = None
    _scalar = _scalar_as("status")
    _category = _status_of(
        StatusCategory.WARNING,
        "warn",
        "warnings are 0x0001, 0x0107, 0x0116 and 0xB000-0xBFFF (use fail for a failure, "
        "respond to send any code)",
    )


class AbortSpec(Model):
    """A-ABORT instead of a response, or while the dataset is still arriving."""

    during_dataset: bool = False
    _scalar = _scalar_as("during_dataset")


class DisconnectSpec(Model):
    """Close the TCP connection without A-ABORT (optionally with RST)."""

    rst: bool = False
    _scalar = _scalar_as("rst")


class GarbageSpec(Model):
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


class ExpectRange(Model):
    """Hit count bounds for a rule's ``expect``."""

    min: NonNegativeInt = 0
    max: NonNegativeInt | None = None


class Rule(Model):
    """One MockScp rule: match keys, then exactly one action. ``every: N`` matches every
    N-th store after the first ``offset`` ones (``every: 3`` is 3, 6, 9...)."""

    nth: PositiveInt | list[PositiveInt] | None = None
    every: PositiveInt | None = None
    offset: NonNegativeInt = 0
    sop_class_uid: SopClass | None = None
    sop_instance_uid: Uid | None = None
    transfer_syntax: TransferSyntax | None = None
    calling_ae_title: AeTitle | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    times: PositiveInt | None = None
    expect: NonNegativeInt | ExpectRange | None = None

    accept: Literal[True] | None = None
    respond: Reply | None = None
    warn: WarnReply | None = None
    fail: FailReply | None = None
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
        if self.offset and self.every is None:
            raise ValueError("offset only means something with every: N")
        return self

    @property
    def action(self) -> str:
        """The name of this rule's action."""
        return next(a for a in ACTIONS if getattr(self, a) is not None)


class RejectSpec(Model):
    """An A-ASSOCIATE-RJ the mock sends (``times`` associations, or all when absent)."""

    result: int
    source: int
    reason: int
    times: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: object) -> object:
        return reject_names(data)


def _check_pdu(value: int | None, low: int, high: int) -> int | None:
    if value is not None and value != 0 and not low <= value <= high:
        raise ValueError(f"max_pdu_length is 0 (no limit) or {low}..{high}, not {value}")
    return value


class ScpConfig(Model):
    """The MockScp: every constructor option (None = the MockScp default), rules, rejects.
    By default the mock accepts every storage SOP class and transfer syntax DCMTK's
    ``storescp +xa`` accepts; ``sop_classes`` and ``transfer_syntaxes`` narrow that."""

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
    rules: list[Rule] = Field(default_factory=list)
    reject_associations: list[RejectSpec] = Field(default_factory=list)

    @field_validator("max_pdu_length")
    @classmethod
    def _pdu_range(cls, value: int | None) -> int | None:
        return _check_pdu(value, 1024, 0xFFFFFFFF)


class ScuConfig(Model):
    """StoreScu options (None = the StoreScu default). ``called_ae_title`` defaults to
    the mock's ``ae_title``. An external sender receives them through placeholders."""

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


class GenerateSpec(Model):
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
    sop_instance_uid: Uid | None = None
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _one_fixed_uid(self) -> GenerateSpec:
        if self.sop_instance_uid is not None and self.count > 1:
            raise ValueError("sop_instance_uid can be fixed only with count: 1")
        return self


class FileSpec(Model):
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


#: Union tags of ``expect`` (dropped from error locations: they are not file fields).
EXPECT_TAGS = ("expect-group", "expect-groups")
ExpectField = Annotated[
    Annotated[Expect, Tag(EXPECT_TAGS[0])] | Annotated[list[Expect], Tag(EXPECT_TAGS[1])],
    Discriminator(lambda v: EXPECT_TAGS[1] if isinstance(v, list) else EXPECT_TAGS[0]),
]


class Scenario(Model):
    """One scenario file. ``source`` is the file it came from (None if built in code);
    relative paths resolve against ``base_dir``. ``expect`` is one group of expectations
    or a list of groups (:attr:`groups`)."""

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    timeout: PositiveFloat = 60.0
    scp: ScpConfig = ScpConfig()
    scu: ScuConfig = ScuConfig()
    files: list[FileSpec] = Field(min_length=1)
    expect: ExpectField

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("expect")
    @classmethod
    def _not_empty(cls, value: Expect | list[Expect]) -> Expect | list[Expect]:
        if isinstance(value, list) and not value:
            raise ValueError("expect needs at least one group")
        return value

    @property
    def groups(self) -> list[Expect]:
        """The expectation groups, in file order."""
        return list(self.expect) if isinstance(self.expect, list) else [self.expect]

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.strip().splitlines()[0].strip()

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
