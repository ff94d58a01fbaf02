"""Hypothesis strategies for testing DICOM Storage SCUs against :class:`mock_scp.MockScp`.

Typed functions with keyword-only options, built by composition, so that downstream
teams can draw SOP classes, transfer syntaxes, response statuses, store rules, SCP
acceptance policies, DICOM files (valid and mutated) and SCU options::

    from hypothesis import given
    from mock_scp import strategies as ms

    @given(rules=ms.store_rules(max_size=3), data=ms.dicom_files())
    def test_my_sender(rules, data): ...

Rules and policies are drawn as plain frozen data (:class:`StoreRule`,
:class:`ScpPolicy`) that print readably in a falsifying example and are applied to a
server with :meth:`StoreRule.apply` / :meth:`ScpPolicy.mock_kwargs`.

Needs hypothesis: ``pip install "scukit[hypothesis]"``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

from scu.protocol.status import classify
from scu.protocol.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE

__all__ = [
    "COMPRESSED_SYNTAXES",
    "EIGHT_BIT_SYNTAXES",
    "FAILURE_STATUSES",
    "MUTATION_KINDS",
    "SOP_CLASSES",
    "UNCOMPRESSED_SYNTAXES",
    "WARNING_STATUSES",
    "Action",
    "FileSpec",
    "ScpPolicy",
    "StoreRule",
    "dicom_files",
    "file_specs",
    "make_bytes",
    "mutated_dicom_bytes",
    "scp_policies",
    "scu_options",
    "sop_classes",
    "status_kind",
    "statuses",
    "store_rules",
    "transfer_syntaxes",
]

StatusKind = Literal["success", "warning", "failure"]
Action = Literal["accept", "respond", "stall", "abort", "disconnect"]

# --- data tables -------------------------------------------------------------------

#: Storage SOP classes drawn by :func:`sop_classes` (keyword -> UID).
SOP_CLASSES: Mapping[str, str] = {
    "CTImageStorage": "1.2.840.10008.5.1.4.1.1.2",
    "MRImageStorage": "1.2.840.10008.5.1.4.1.1.4",
    "SecondaryCaptureImageStorage": "1.2.840.10008.5.1.4.1.1.7",
    "UltrasoundImageStorage": "1.2.840.10008.5.1.4.1.1.6.1",
    "ComputedRadiographyImageStorage": "1.2.840.10008.5.1.4.1.1.1",
}


#: Uncompressed transfer syntaxes every sender and receiver handles (name -> UID).
UNCOMPRESSED_SYNTAXES: Mapping[str, str] = {
    "ImplicitVRLittleEndian": IMPLICIT_VR_LE,
    "ExplicitVRLittleEndian": EXPLICIT_VR_LE,
}
#: Compressed syntaxes pydicom can both encode (to make files) and decode (to convert).
COMPRESSED_SYNTAXES: Mapping[str, str] = {
    "RLELossless": "1.2.840.10008.1.2.5",
    "JPEG2000Lossless": "1.2.840.10008.1.2.4.90",
    "JPEGBaseline8Bit": "1.2.840.10008.1.2.4.50",
}
#: Syntaxes that hold at most 8 bits per sample (lossy JPEG Baseline).
EIGHT_BIT_SYNTAXES: frozenset[str] = frozenset({"1.2.840.10008.1.2.4.50"})

#: C-STORE warning codes named in PS3.4 B.2.3 (the rest of 0xBxxx is drawn too).
WARNING_STATUSES: tuple[int, ...] = (0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007)
#: Failure codes with a meaning (refused, error, cancel, general failures).
FAILURE_STATUSES: tuple[int, ...] = (
    0xA700, 0xA701, 0xA7FF, 0xA900, 0xA9FF, 0xC000, 0xC123, 0xCFFF,
    0x0110, 0x0111, 0x0117, 0x0122, 0x0124, 0x0211, 0x0212, 0x0213, 0xFE00,
)  # fmt: skip
# Failure ranges of PS3.4 B.2.3: refused out of resources, data set does not match SOP
# class, cannot understand.
_FAILURE_RANGES: tuple[tuple[int, int], ...] = (
    (0xA700, 0xA7FF),
    (0xA900, 0xA9FF),
    (0xC000, 0xCFFF),
)
# Codes with no meaning for C-STORE: a sender must treat them as failures.
_UNKNOWN_RANGES: tuple[tuple[int, int], ...] = ((0x0002, 0x0100), (0xD000, 0xFDFF))


def status_kind(status: int) -> StatusKind:
    """What a C-STORE status means to a sender: success, warning (counted successful)
    or failure (everything else, cancel and unknown codes)."""
    kind: StatusKind = classify(status).value
    return kind


# --- data drawn -------------------------------------------------------------------


@dataclass(frozen=True)
class StoreRule:
    """One ``MockScp.on_store(...)`` rule as data; ``apply(scp)`` installs it.

    ``action`` is ``"accept"``, ``"respond"`` (with ``status`` and ``comment``),
    ``"stall"`` (``seconds``, then the next matching rule answers), ``"abort"``
    (``during_dataset``) or ``"disconnect"``. The matchers (``nth``,
    ``sop_class_uid``, ``sop_instance_uid``) and ``times`` are those of ``on_store``.
    """

    action: Action
    status: int | None = None
    comment: str | None = None
    seconds: float | None = None
    during_dataset: bool = False
    nth: int | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    times: int | None = None

    def apply(self, scp: Any) -> None:
        """Install this rule on a ``MockScp``."""
        builder = scp.on_store(
            nth=self.nth,
            sop_class_uid=self.sop_class_uid,
            sop_instance_uid=self.sop_instance_uid,
            times=self.times,
        )
        _ACTIONS[self.action](builder, self)

    def matches(self, *, nth: int, sop_class_uid: str, sop_instance_uid: str) -> bool:
        """Whether this rule's matchers select a store (``times`` aside)."""
        return (
            (self.nth is None or self.nth == nth)
            and (self.sop_class_uid is None or self.sop_class_uid == sop_class_uid)
            and (self.sop_instance_uid is None or self.sop_instance_uid == sop_instance_uid)
        )


_ACTIONS: Mapping[str, Callable[[Any, StoreRule], object]] = {
    "accept": lambda b, r: b.accept(),
    "respond": lambda b, r: b.respond(r.status, comment=r.comment),
    "stall": lambda b, r: b.stall(r.seconds),
    "abort": lambda b, r: b.abort(during_dataset=r.during_dataset),
    "disconnect": lambda b, r: b.disconnect(),
}


@dataclass(frozen=True)
class ScpPolicy:
    """Which transfer syntaxes an SCP accepts, per SOP class; a SOP class absent from
    ``accepted`` is refused. ``mock_kwargs()`` gives the ``MockScp`` arguments."""

    accepted: tuple[tuple[str, frozenset[str]], ...] = field(default=())

    @classmethod
    def of(cls, accepted: Mapping[str, Collection[str]]) -> ScpPolicy:
        """From a mapping SOP class -> accepted syntaxes (empty collections dropped)."""
        return cls(tuple(sorted((k, frozenset(v)) for k, v in accepted.items() if v)))

    @property
    def by_sop_class(self) -> dict[str, frozenset[str]]:
        """The policy as a dict SOP class -> accepted syntaxes."""
        return dict(self.accepted)

    def accepts(self, sop_class_uid: str, transfer_syntax: str) -> bool:
        """Whether a context (SOP class, syntax) would be accepted."""
        return transfer_syntax in self.by_sop_class.get(sop_class_uid, frozenset())

    def mock_kwargs(self) -> dict[str, Any]:
        """``sop_classes`` plus ``transfer_syntaxes``: a list when every SOP class
        accepts the same syntaxes, else a mapping SOP class -> syntaxes."""
        table = self.by_sop_class
        syntaxes = set(table.values())
        if not table:
            raise ValueError("ScpPolicy: MockScp needs at least one accepted SOP class")
        if len(syntaxes) == 1:
            return {"sop_classes": sorted(table), "transfer_syntaxes": sorted(syntaxes.pop())}
        return {
            "sop_classes": sorted(table),
            "transfer_syntaxes": {k: sorted(v) for k, v in table.items()},
        }


# --- strategies -------------------------------------------------------------------


def sop_classes(*, names: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Storage SOP Class UIDs (from :data:`SOP_CLASSES`, or the keywords in ``names``)."""
    pool = SOP_CLASSES if names is None else {n: SOP_CLASSES[n] for n in names}
    return st.sampled_from(sorted(pool.values()))


def transfer_syntaxes(
    *, compressed: bool = True, uncompressed: bool = True
) -> st.SearchStrategy[str]:
    """Transfer syntax UIDs that files can be made in and converted from."""
    pool = {
        **(UNCOMPRESSED_SYNTAXES if uncompressed else {}),
        **(COMPRESSED_SYNTAXES if compressed else {}),
    }
    if not pool:
        raise ValueError("transfer_syntaxes: at least one of compressed/uncompressed is needed")
    return st.sampled_from(sorted(pool.values()))


def statuses(
    *, kinds: Sequence[StatusKind] = ("success", "warning", "failure")
) -> st.SearchStrategy[int]:
    """C-STORE response statuses of the given kinds, named codes and the rest of each
    range (``0xBxxx`` warnings; unknown codes as failures)."""
    parts: dict[str, st.SearchStrategy[int]] = {
        "success": st.just(0x0000),
        "warning": st.one_of(st.sampled_from(WARNING_STATUSES), st.integers(0xB000, 0xBFFF)),
        "failure": st.one_of(
            st.sampled_from(FAILURE_STATUSES),
            *(st.integers(low, high) for low, high in (*_FAILURE_RANGES, *_UNKNOWN_RANGES)),
        ),
    }
    unknown = set(kinds) - set(parts)
    if unknown or not kinds:
        raise ValueError(f"statuses: kinds must be among {sorted(parts)}, got {list(kinds)}")
    return st.one_of(*(parts[k] for k in kinds))


# ErrorComment is LO-like: printable ASCII, no backslash, at most 64 characters.
_COMMENTS = st.one_of(
    st.none(),
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"),
        min_size=1,
        max_size=24,
    )
    .map(str.strip)
    .filter(bool),
)


def _respond(kinds: Sequence[StatusKind]) -> st.SearchStrategy[StoreRule]:
    return st.builds(
        StoreRule, action=st.just("respond"), status=statuses(kinds=kinds), comment=_COMMENTS
    )


def store_rules(
    *,
    actions: Sequence[Action] = ("accept", "respond", "stall", "abort", "disconnect"),
    kinds: Sequence[StatusKind] = ("success", "warning", "failure"),
    nth: st.SearchStrategy[int | None] | None = None,
    sop_instance_uid: st.SearchStrategy[str | None] | None = None,
    stall_seconds: st.SearchStrategy[float] | None = None,
    times: st.SearchStrategy[int | None] | None = None,
) -> st.SearchStrategy[StoreRule]:
    """One store rule with one of ``actions``: ``respond`` with a status of ``kinds``,
    ``stall`` for ``stall_seconds`` (default 1.5), ``abort`` (before or during the data
    set), ``disconnect`` or ``accept``. Matchers come from ``nth`` (default: none or
    1..10) and ``sop_instance_uid`` (default: none); ``times`` is none or 1."""
    seconds = st.just(1.5) if stall_seconds is None else stall_seconds
    by_action: dict[str, st.SearchStrategy[StoreRule]] = {
        "accept": st.just(StoreRule("accept")),
        "respond": _respond(kinds),
        "stall": st.builds(StoreRule, action=st.just("stall"), seconds=seconds),
        "abort": st.builds(StoreRule, action=st.just("abort"), during_dataset=st.booleans()),
        "disconnect": st.just(StoreRule("disconnect")),
    }
    unknown = set(actions) - set(by_action)
    if unknown or not actions:
        raise ValueError(f"store_rules: actions must be among {sorted(by_action)}, got {actions}")
    chosen = [by_action[a] for a in actions]
    nths = st.one_of(st.none(), st.integers(1, 10)) if nth is None else nth
    instances = st.none() if sop_instance_uid is None else sop_instance_uid

    @st.composite
    def build(draw: st.DrawFn) -> StoreRule:
        rule = draw(st.one_of(*chosen))
        return StoreRule(
            rule.action,
            status=rule.status,
            comment=rule.comment,
            seconds=rule.seconds,
            during_dataset=rule.during_dataset,
            nth=draw(nths),
            sop_instance_uid=draw(instances),
            times=draw(st.sampled_from([None, 1]) if times is None else times),
        )

    return build()


def scp_policies(
    *,
    sop_class_pool: Sequence[str] | None = None,
    syntax_pool: Sequence[str] | None = None,
    per_sop_class: bool = False,
    min_sop_classes: int = 1,
) -> st.SearchStrategy[ScpPolicy]:
    """What an SCP accepts: a subset of SOP classes, each with a non-empty subset of
    syntaxes (the same for all, or drawn per SOP class when ``per_sop_class``)."""
    sops = sorted(SOP_CLASSES.values()) if sop_class_pool is None else sorted(sop_class_pool)
    tss = (
        sorted({**UNCOMPRESSED_SYNTAXES, **COMPRESSED_SYNTAXES}.values())
        if syntax_pool is None
        else sorted(syntax_pool)
    )
    syntax_sets = st.frozensets(st.sampled_from(tss), min_size=1)

    @st.composite
    def build(draw: st.DrawFn) -> ScpPolicy:
        chosen = draw(st.lists(st.sampled_from(sops), min_size=min_sop_classes, unique=True))
        if per_sop_class:
            return ScpPolicy.of({sop: draw(syntax_sets) for sop in chosen})
        shared = draw(syntax_sets)
        return ScpPolicy.of({sop: shared for sop in chosen})

    return build()


@dataclass(frozen=True)
class FileSpec:
    """What :func:`dicom_files` makes: SOP class, transfer syntax, pixel bytes, bits
    allocated, seed and (optionally) a fixed SOP Instance UID."""

    sop_class_uid: str
    transfer_syntax: str
    size: int
    seed: int
    bits_allocated: int = 16
    sop_instance_uid: str | None = None


def file_specs(
    *,
    sop_class: st.SearchStrategy[str] | None = None,
    transfer_syntax: st.SearchStrategy[str] | None = None,
    size: st.SearchStrategy[int] | None = None,
    sop_instance_uid: st.SearchStrategy[str | None] | None = None,
) -> st.SearchStrategy[FileSpec]:
    """Descriptions of synthetic files (cheap to shrink; make them with :func:`make_bytes`).
    8 or 16 bits allocated, 8 only for the syntaxes in :data:`EIGHT_BIT_SYNTAXES`."""
    sops = sop_classes() if sop_class is None else sop_class
    syntaxes = transfer_syntaxes() if transfer_syntax is None else transfer_syntax

    @st.composite
    def build(draw: st.DrawFn) -> FileSpec:
        syntax = draw(syntaxes)
        bits = 8 if syntax in EIGHT_BIT_SYNTAXES else draw(st.sampled_from([8, 16]))
        return FileSpec(
            sop_class_uid=draw(sops),
            transfer_syntax=syntax,
            size=draw(st.integers(16, 4096) if size is None else size),
            seed=draw(st.integers(0, 2**31 - 1)),
            bits_allocated=bits,
            sop_instance_uid=None if sop_instance_uid is None else draw(sop_instance_uid),
        )

    return build()


def make_bytes(spec: FileSpec) -> bytes:
    """The Part 10 bytes of a :class:`FileSpec`, made by :mod:`mock_scp.datagen`."""
    from mock_scp import datagen  # deferred: datagen pulls in numpy and pydicom encoders

    return datagen.make_bytes(
        sop_class=spec.sop_class_uid,
        transfer_syntax=spec.transfer_syntax,
        size=spec.size,
        seed=spec.seed,
        bits_allocated=spec.bits_allocated,
        sop_instance_uid=spec.sop_instance_uid,
    )


def dicom_files(
    *,
    sop_class: st.SearchStrategy[str] | None = None,
    transfer_syntax: st.SearchStrategy[str] | None = None,
    size: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[bytes]:
    """Valid DICOM Part 10 files as bytes, of drawn SOP class, syntax and pixel size."""
    return file_specs(sop_class=sop_class, transfer_syntax=transfer_syntax, size=size).map(
        make_bytes
    )


# Offsets in a Part 10 file: 128-byte preamble, "DICM", then the group 0002 elements.
_PREAMBLE = 128
_META_START = _PREAMBLE + 4


@st.composite
def _truncated(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: draw(st.integers(0, max(0, len(data) - 1)))]


@st.composite
def _flipped_in_meta(draw: st.DrawFn, data: bytes) -> bytes:
    meta_end = min(len(data), _META_START + 200)
    if meta_end <= _PREAMBLE:
        return data
    where = draw(st.integers(_PREAMBLE, meta_end - 1))
    mask = draw(st.integers(1, 255))
    return data[:where] + bytes([data[where] ^ mask]) + data[where + 1 :]


@st.composite
def _bogus_length(draw: st.DrawFn, data: bytes) -> bytes:
    # Overwrite a 2- or 4-byte little-endian length-sized window with an absurd value:
    # lands on element lengths often enough in the small files drawn here.
    if len(data) < _META_START + 8:
        return data
    where = draw(st.integers(_META_START, len(data) - 4))
    value = draw(st.sampled_from([0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, len(data) * 4, 1, 3]))
    return data[:where] + value.to_bytes(4, "little") + data[where + 4 :]


@st.composite
def _corrupt_uid(draw: st.DrawFn, data: bytes) -> bytes:
    # Overwrite characters of a UID value (in the meta or the data set) with any bytes:
    # readers must reject what is no longer a UID rather than pass it on.
    starts = [i for i in range(len(data)) if data.startswith(b"1.2.", i)]
    if not starts:
        return data
    where = draw(st.sampled_from(starts)) + draw(st.integers(0, 12))
    junk = draw(st.binary(min_size=1, max_size=4))
    return data[:where] + junk + data[where + len(junk) :]


@st.composite
def _spliced(draw: st.DrawFn, data: bytes) -> bytes:
    where = draw(st.integers(0, len(data)))
    junk = draw(st.binary(min_size=1, max_size=64))
    return data[:where] + junk + data[where:]


def _no_preamble(data: bytes) -> st.SearchStrategy[bytes]:
    return st.just(data[_PREAMBLE:])


_MUTATIONS: Mapping[str, Callable[[bytes], st.SearchStrategy[bytes]]] = {
    "truncate": _truncated,
    "flip-meta": _flipped_in_meta,
    "bogus-length": _bogus_length,
    "corrupt-uid": _corrupt_uid,
    "splice": _spliced,
    "no-preamble": _no_preamble,
}
#: The kinds of damage :func:`mutated_dicom_bytes` draws ("random": not DICOM at all).
MUTATION_KINDS: tuple[str, ...] = (*_MUTATIONS, "random")


def mutated_dicom_bytes(
    *,
    base: st.SearchStrategy[bytes] | None = None,
    kinds: Sequence[str] = MUTATION_KINDS,
) -> st.SearchStrategy[bytes]:
    """Damaged DICOM bytes, of the ``kinds`` in :data:`MUTATION_KINDS`: truncated, a
    flipped byte in the meta header, a bogus length, a UID overwritten with junk,
    spliced junk, a missing preamble, or random bytes. ``base`` gives the files to
    damage (default: small synthetic files of any drawn SOP class and syntax)."""
    unknown = set(kinds) - set(MUTATION_KINDS)
    if unknown or not kinds:
        raise ValueError(f"mutated_dicom_bytes: kinds must be among {MUTATION_KINDS}, got {kinds}")
    files = dicom_files(size=st.integers(16, 512)) if base is None else base
    mutations = [_MUTATIONS[k] for k in kinds if k in _MUTATIONS]
    parts: list[st.SearchStrategy[bytes]] = []
    if mutations:
        parts.append(files.flatmap(lambda d: st.one_of(*(m(d) for m in mutations))))
    if "random" in kinds:
        parts.append(st.binary(max_size=300))
    return st.one_of(*parts)


def scu_options(
    *,
    concurrency: st.SearchStrategy[int] | None = None,
    forced_syntax: st.SearchStrategy[str | None] | None = None,
    dimse_timeout: float = 0.4,
) -> st.SearchStrategy[dict[str, Any]]:
    """``StoreScu`` keyword arguments: concurrency, forced or auto syntax (``None``),
    ``never_transcode``, ``fail_fast``, and short timeouts so faults end quickly."""
    syntaxes = st.one_of(st.none(), transfer_syntaxes()) if forced_syntax is None else forced_syntax
    return st.fixed_dictionaries(
        {
            "concurrency": st.integers(1, 4) if concurrency is None else concurrency,
            "transfer_syntax": syntaxes,
            "never_transcode": st.booleans(),
            "fail_fast": st.booleans(),
            "dimse_timeout": st.just(dimse_timeout),
            "acse_timeout": st.just(max(2.0, dimse_timeout * 4)),
            "network_timeout": st.just(max(2.0, dimse_timeout * 4)),
            "connect_timeout": st.just(2.0),
        }
    )
