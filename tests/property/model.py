"""The reference model of a C-STORE transfer: what the README says must happen, as a pure function.

Given the queued entries, what the SCP accepts and how it answers each store, and the
SCU's options, :func:`predict` says how every entry ends (sent in which syntax, or
failed why), the counts, the warnings and the contexts the SCU must propose. The
property tests run the real transfer and compare. The status table comes from
:func:`mock_scp.strategies.status_kind`, written from the README independently of
``scu.status``, so that a bug there is caught rather than copied.

The simulation follows the entries in queue order, which is what concurrency 1 does.
For concurrency N it is exact only when every entry's fate depends on that entry alone
(rules keyed by SOP instance or permanent, no ``nth``, no ``fail_fast``);
:func:`order_independent` says whether a setup qualifies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from mock_scp.strategies import ScpPolicy, StoreRule, status_kind

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
FALLBACKS = (EXPLICIT, IMPLICIT)
UNCOMPRESSED = frozenset({IMPLICIT, EXPLICIT, EXPLICIT_BE, DEFLATED})


class Fate(str, Enum):
    """How an entry ends; the first two are successes."""

    SUCCESS = "success"
    WARNING = "warning"
    STATUS = "failure status"
    UNREADABLE = "unreadable"
    NO_CONTEXT = "no accepted context"
    CONVERSION = "conversion impossible"
    TIMEOUT = "dimse timeout"
    ABORTED = "aborted"
    DROPPED = "connection dropped"
    REJECTED = "association rejected"
    FAIL_FAST = "not sent: fail_fast"

    @property
    def ok(self) -> bool:
        return self in (Fate.SUCCESS, Fate.WARNING)


#: Fates reached after the C-STORE went out (``on_file_sending`` must have fired).
SENT_FATES = frozenset(
    {Fate.SUCCESS, Fate.WARNING, Fate.STATUS, Fate.TIMEOUT, Fate.ABORTED, Fate.DROPPED}
)
#: Fates reached before anything was read or sent (``on_file_sending`` must not fire).
UNSENT_FATES = frozenset({Fate.UNREADABLE, Fate.REJECTED, Fate.FAIL_FAST})
#: Fates after which the association is gone and the SCU must re-associate.
BREAKING_FATES = frozenset({Fate.TIMEOUT, Fate.ABORTED, Fate.DROPPED})


@dataclass(frozen=True)
class Entry:
    """A queued entry as the model sees it; ``readable=False`` means it cannot be parsed
    as DICOM (the other fields are then ignored)."""

    name: str
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    transfer_syntax: str = EXPLICIT
    readable: bool = True
    bits_allocated: int = 8
    #: The smaller of Rows and Columns (encoders have a minimum image size).
    min_side: int = 512


@dataclass(frozen=True)
class Codecs:
    """Which syntaxes pixel data can be decoded from and encoded to on this machine,
    and the smallest image side an encoder handles (OpenJPEG, driven with pydicom's
    six resolution levels, needs at least 32x32)."""

    decodable: frozenset[str]
    encodable: frozenset[str]
    min_side: tuple[tuple[str, int], ...] = ()

    @classmethod
    def installed(cls) -> Codecs:
        """What the installed pydicom and its plugins can do."""
        from pydicom.pixels import get_decoder, get_encoder
        from pydicom.uid import UID_dictionary

        decodable, encodable = set(UNCOMPRESSED), set()
        for uid, entry in UID_dictionary.items():
            if entry[1] != "Transfer Syntax":
                continue
            for getter, found in ((get_decoder, decodable), (get_encoder, encodable)):
                try:
                    if getter(uid).is_available:
                        found.add(str(uid))
                except (NotImplementedError, ValueError):
                    pass
        try:  # JPEG Baseline (8-bit only) is encoded with Pillow, which pydicom lacks
            import PIL  # noqa: F401

            encodable.add(JPEG_BASELINE)
        except ImportError:
            pass
        j2k = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
        return cls(frozenset(decodable), frozenset(encodable), tuple((ts, 32) for ts in j2k))


@dataclass(frozen=True)
class Options:
    """The SCU options the model depends on."""

    transfer_syntax: str | None = None
    never_transcode: bool = False
    fail_fast: bool = False
    concurrency: int = 1
    dimse_timeout: float = 0.4


@dataclass(frozen=True)
class Scp:
    """The SCP: acceptance policy, store rules (first match wins) and how many
    association attempts it rejects before accepting."""

    policy: ScpPolicy
    rules: tuple[StoreRule, ...] = ()
    reject_first: int = 0


@dataclass(frozen=True)
class Outcome:
    name: str
    fate: Fate
    #: The syntax on the wire (sent entries) or chosen for sending.
    transfer_syntax: str | None = None
    #: The status the SCP answered, when it answered.
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.fate.ok


@dataclass(frozen=True)
class Prediction:
    outcomes: tuple[Outcome, ...]
    #: (abstract syntax, transfer syntax) pairs the SCU must propose, in total.
    proposed: frozenset[tuple[str, str]]
    #: ``send()`` raises ``AssociationRejected`` (no association at all).
    raises: bool = False
    #: Number of C-STORE requests the SCP sees.
    stores: int = 0
    warnings: tuple[tuple[str, int], ...] = field(default=())

    @property
    def successful(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.successful

    @property
    def total_files(self) -> int:
        return len(self.outcomes)


def conversion_error(entry: Entry, target: str, codecs: Codecs) -> str | None:
    """Why an entry's data set cannot be re-encoded in ``target`` (``None``: it can)."""
    source, bits_allocated = entry.transfer_syntax, entry.bits_allocated
    if source == target:
        return None
    if source not in codecs.decodable:
        return f"no decoder for {source}"
    if target in UNCOMPRESSED:
        return None
    if target == JPEG_BASELINE and bits_allocated > 8:
        return "lossy JPEG Baseline cannot hold more than 8 bits"
    if target not in codecs.encodable:
        return f"no encoder for {target}"
    smallest = dict(codecs.min_side).get(target, 1)
    if entry.min_side < smallest:
        return f"the {target} encoder needs images of at least {smallest}x{smallest}"
    return None


def wire_syntax(
    entry: Entry, policy: ScpPolicy, options: Options, codecs: Codecs
) -> tuple[str | None, Fate | None]:
    """The syntax an entry goes out in, or why it cannot go out (README, "Transfer syntaxes")."""
    sop, own = entry.sop_class_uid, entry.transfer_syntax
    if options.transfer_syntax is not None:
        target = options.transfer_syntax
        if not policy.accepts(sop, target):
            return None, Fate.NO_CONTEXT
        if target != own and options.never_transcode:
            return None, Fate.CONVERSION  # forced and never_transcode: nothing may change
        if conversion_error(entry, target, codecs):
            return None, Fate.CONVERSION
        return target, None
    if policy.accepts(sop, own):
        return own, None
    if options.never_transcode:
        return None, Fate.NO_CONTEXT
    for fallback in FALLBACKS:
        if policy.accepts(sop, fallback):
            if conversion_error(entry, fallback, codecs):
                return None, Fate.CONVERSION
            return fallback, None
    return None, Fate.NO_CONTEXT


def proposed_contexts(entries: Sequence[Entry], options: Options) -> frozenset[tuple[str, str]]:
    """Auto: each SOP class with its files' own syntaxes, plus Explicit and Implicit VR
    LE unless ``never_transcode``. Forced: each SOP class with the forced syntax only."""
    pairs: set[tuple[str, str]] = set()
    for entry in entries:
        if not entry.readable:
            continue
        if options.transfer_syntax is not None:
            pairs.add((entry.sop_class_uid, options.transfer_syntax))
            continue
        pairs.add((entry.sop_class_uid, entry.transfer_syntax))
        if not options.never_transcode:
            pairs.update((entry.sop_class_uid, ts) for ts in FALLBACKS)
    return frozenset(pairs)


def order_independent(entries: Sequence[Entry], scp: Scp, options: Options) -> bool:
    """Whether each entry's fate is independent of the order stores reach the SCP, so
    that the model is exact for any concurrency."""
    if options.fail_fast or scp.reject_first:
        return False
    uids = [e.sop_instance_uid for e in entries if e.readable]
    if len(set(uids)) != len(uids):
        return False
    return all(
        r.nth is None and (r.times is None or r.sop_instance_uid is not None) for r in scp.rules
    )


def _answer(
    rules: Sequence[StoreRule], left: list[int | None], nth: int, entry: Entry, timeout: float
) -> tuple[Fate, int | None]:
    """How the SCP answers one store: the first matching rule with uses left wins.
    Stalls are modifiers: they add up and matching goes on to the answering rule; if
    they reach the SCU's DIMSE timeout the SCU gives up first."""
    stalled = 0.0
    answer: tuple[Fate, int | None] = (Fate.SUCCESS, 0x0000)
    for index, rule in enumerate(rules):
        if left[index] == 0 or not rule.matches(
            nth=nth, sop_class_uid=entry.sop_class_uid, sop_instance_uid=entry.sop_instance_uid
        ):
            continue
        uses = left[index]
        if uses is not None:
            left[index] = uses - 1
        if rule.action == "stall":
            stalled += rule.seconds or 0.0
            continue
        if rule.action == "abort":
            answer = (Fate.ABORTED, None)
        elif rule.action == "disconnect":
            answer = (Fate.DROPPED, None)
        else:
            status = 0x0000 if rule.action == "accept" else rule.status
            assert status is not None
            answer = (_STATUS_FATES[status_kind(status)], status)
        break
    return (Fate.TIMEOUT, None) if stalled >= timeout else answer


_STATUS_FATES = {"success": Fate.SUCCESS, "warning": Fate.WARNING, "failure": Fate.STATUS}


def predict(entries: Sequence[Entry], scp: Scp, options: Options, codecs: Codecs) -> Prediction:
    """What must happen when ``entries`` are sent to ``scp`` with ``options``.

    The SCU associates when it reaches the first entry it can read. If the SCP rejects
    that association, every entry from there on fails with the rejection and ``send()``
    raises (no association at all); an ``on_store`` rule then never runs.
    """
    proposed = proposed_contexts(entries, options)
    left: list[int | None] = [rule.times for rule in scp.rules]
    outcomes_list: list[Outcome] = []
    stores = 0
    stopped = rejected = False
    for entry in entries:
        if rejected:
            outcomes_list.append(Outcome(entry.name, Fate.REJECTED))
            continue
        if stopped:
            outcomes_list.append(Outcome(entry.name, Fate.FAIL_FAST))
            continue
        if not entry.readable:
            outcome = Outcome(entry.name, Fate.UNREADABLE)
        elif scp.reject_first:
            rejected = True
            outcome = Outcome(entry.name, Fate.REJECTED)
        else:
            syntax, refusal = wire_syntax(entry, scp.policy, options, codecs)
            if refusal is not None:
                outcome = Outcome(entry.name, refusal)
            else:
                stores += 1
                fate, status = _answer(scp.rules, left, stores, entry, options.dimse_timeout)
                outcome = Outcome(entry.name, fate, syntax, status)
        outcomes_list.append(outcome)
        stopped = options.fail_fast and not outcome.ok
    outcomes = tuple(outcomes_list)
    warnings = tuple(
        (o.name, o.status) for o in outcomes if o.fate is Fate.WARNING and o.status is not None
    )
    return Prediction(outcomes, proposed, raises=rejected, stores=stores, warnings=warnings)


__all__ = [
    "BREAKING_FATES",
    "SENT_FATES",
    "UNSENT_FATES",
    "Codecs",
    "Entry",
    "Fate",
    "Options",
    "Outcome",
    "Prediction",
    "Scp",
    "conversion_error",
    "order_independent",
    "predict",
    "proposed_contexts",
    "wire_syntax",
]
