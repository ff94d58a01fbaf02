"""Presentation-context negotiation, as a PACS (DCMTK storescp) does it.

For each proposed context: Verification is always accepted; another abstract syntax is
accepted when it is in the accepted SOP classes (or unknown classes are accepted).
The transfer syntax is chosen by the SCP, not by the order of the proposal: Explicit
VR Little Endian if proposed and accepted, then Implicit VR Little Endian, then the
first of the SCP's own accepted list that was proposed. Refusals carry the standard's
result codes: 3 abstract syntax not supported, 4 transfer syntaxes not supported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scu.protocol.pdu import ContextProposal
from scu.protocol.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    VERIFICATION_SOP_CLASS,
    storage_sop_classes,
)

__all__ = [
    "DEFAULT_SOP_CLASSES",
    "DEFAULT_TRANSFER_SYNTAXES",
    "RESULT_ABSTRACT_SYNTAX_NOT_SUPPORTED",
    "RESULT_ACCEPTANCE",
    "RESULT_TRANSFER_SYNTAXES_NOT_SUPPORTED",
    "Policy",
    "negotiate",
]

RESULT_ACCEPTANCE = 0
RESULT_USER_REJECTION = 1
RESULT_NO_REASON = 2
RESULT_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
RESULT_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

_PREFERRED = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)

#: Storage SOP classes DCMTK ``storescp +xa`` accepts beyond pynetdicom's storage list:
#: the DICOS (security screening) and DICONDE eddy current classes of DCMTK's
#: all-storage table.
_DCMTK_EXTRA_STORAGE = (
    "1.2.840.10008.5.1.4.1.1.501.1",  # DICOS CT Image Storage
    "1.2.840.10008.5.1.4.1.1.501.2.1",  # DICOS Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.501.2.2",  # DICOS Digital X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.501.3",  # DICOS Threat Detection Report Storage
    "1.2.840.10008.5.1.4.1.1.501.4",  # DICOS 2D AIT Storage
    "1.2.840.10008.5.1.4.1.1.501.5",  # DICOS 3D AIT Storage
    "1.2.840.10008.5.1.4.1.1.501.6",  # DICOS Quadrupole Resonance (QR) Storage
    "1.2.840.10008.5.1.4.1.1.601.1",  # Eddy Current Image Storage
    "1.2.840.10008.5.1.4.1.1.601.2",  # Eddy Current Multi-frame Image Storage
    # Retired trial classes in DCMTK's all-storage table (and not in pynetdicom's).
    "1.2.840.10008.5.1.4.1.1.9.1",  # Waveform Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.1",  # Text SR Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.2",  # Audio SR Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.3",  # Detail SR Storage - Trial
    "1.2.840.10008.5.1.4.1.1.88.4",  # Comprehensive SR Storage - Trial
    "1.2.840.10008.5.1.4.34.1",  # RT Beams Delivery Instruction Storage - Trial
)

#: Accepted by default: every storage SOP class pynetdicom knows (retired ones
#: included) and those above, so that every class ``storescp +xa`` accepts is accepted.
DEFAULT_SOP_CLASSES: frozenset[str] = storage_sop_classes() | frozenset(_DCMTK_EXTRA_STORAGE)

#: Accepted by default, in the mock's own preference order (used only after Explicit
#: and Implicit VR Little Endian, which are always preferred when proposed): every
#: syntax ``storescp +xa`` accepts, and the JPEG 2000 multi-component and HTJ2K ones.
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Multi-component Lossless
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Multi-component
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.101",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible High Profile
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 High Profile for 2D Video
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC/H.264 High Profile for 3D Video
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo High Profile
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10 Profile
)


@dataclass(frozen=True)
class Policy:
    """What the SCP accepts. ``transfer_syntaxes`` is the default list (in preference
    order); ``per_sop_class`` overrides it for the SOP classes it names.
    ``sop_classes`` ``None`` with ``accept_unknown`` means anything is accepted."""

    sop_classes: frozenset[str]
    transfer_syntaxes: tuple[str, ...]
    per_sop_class: Mapping[str, tuple[str, ...]]
    accept_unknown: bool = False

    def syntaxes_for(self, abstract_syntax: str) -> tuple[str, ...] | None:
        """Accepted syntaxes for an abstract syntax, ``None`` if the class is refused."""
        if abstract_syntax == VERIFICATION_SOP_CLASS:
            return (EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE)
        if abstract_syntax in self.per_sop_class:
            return self.per_sop_class[abstract_syntax]
        if abstract_syntax in self.sop_classes or self.accept_unknown:
            return self.transfer_syntaxes
        return None


def choose_syntax(proposed: Sequence[str], accepted: Sequence[str]) -> str | None:
    """The transfer syntax a PACS would pick, or ``None`` when none is acceptable."""
    offered = set(proposed)
    for uid in _PREFERRED:
        if uid in offered and uid in accepted:
            return uid
    for uid in accepted:
        if uid in offered:
            return uid
    return None


def negotiate(contexts: Sequence[ContextProposal], policy: Policy) -> list[tuple[int, int, str]]:
    """``(context_id, result, transfer_syntax)`` for every proposed context."""
    out: list[tuple[int, int, str]] = []
    for ctx in contexts:
        syntaxes = policy.syntaxes_for(ctx.abstract_syntax)
        # A refused context's transfer-syntax sub-item "is not significant" (PS3.8
        # 9.3.3.2); echo a proposed one, since some decoders choke on an empty UID.
        echo = ctx.transfer_syntaxes[0] if ctx.transfer_syntaxes else IMPLICIT_VR_LE
        if syntaxes is None:
            out.append((ctx.context_id, RESULT_ABSTRACT_SYNTAX_NOT_SUPPORTED, echo))
            continue
        chosen = choose_syntax(ctx.transfer_syntaxes, syntaxes)
        if chosen is None:
            out.append((ctx.context_id, RESULT_TRANSFER_SYNTAXES_NOT_SUPPORTED, echo))
        else:
            out.append((ctx.context_id, RESULT_ACCEPTANCE, chosen))
    return out
