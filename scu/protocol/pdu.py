"""The DICOM Upper Layer PDUs and their items (PS3.8 section 9.3), encoded and decoded
in one place for both sides of an association. Pure functions and frozen dataclasses:
no sockets, no threads.

Encoding never pads a UID: PS3.8 9.3.2.2 writes UIDs in items unpadded (padding with a
NUL makes GDCM read the transfer syntax as ``1.2.840.10008.1.2.1\\0`` and refuse every
context). Decoding is tolerant where real peers are sloppy and says so: a trailing NUL
or space after a UID, a non-ASCII byte, a duplicate or even presentation context ID and
more than 128 contexts are kept as :attr:`AssociateRQ.anomalies` (the mock records them
as the peer's violations); what cannot be decoded at all raises :class:`PduError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from scu.protocol.ae import decode_ae_title
from scu.protocol.identity import UserIdentity
from scu.protocol.uids import APPLICATION_CONTEXT_NAME, uid_problem

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "MAX_CONTEXTS",
    "MAX_NOTES",
    "AssociateAC",
    "AssociateRJ",
    "AssociateRQ",
    "ContextProposal",
    "ContextResult",
    "PduError",
    "PduType",
    "RoleSelection",
    "decode_abort",
    "decode_associate_ac",
    "decode_associate_rj",
    "decode_associate_rq",
    "encode_abort",
    "encode_associate_ac",
    "encode_associate_rj",
    "encode_associate_rq",
    "encode_p_data",
    "encode_release_rp",
    "encode_release_rq",
    "iter_pdvs",
    "pdu_header",
    "pdv_header",
]

#: This implementation's Implementation Class UID and Version Name (PS3.7 D.3.3.2),
#: under the UID root the project registered for its own objects.
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1399.1"
IMPLEMENTATION_VERSION_NAME = "SCUKIT_020"
#: Presentation context IDs are odd numbers 1..255 (PS3.8 9.3.2.2): 128 at most.
MAX_CONTEXTS = 128


class PduError(ValueError):
    """Bytes that do not decode as the PDU or item they claim to be."""


class PduType(IntEnum):
    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    PduType.ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    PduType.ASSOCIATE_AC: "A-ASSOCIATE-AC",
    PduType.ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    PduType.P_DATA_TF: "P-DATA-TF",
    PduType.RELEASE_RQ: "A-RELEASE-RQ",
    PduType.RELEASE_RP: "A-RELEASE-RP",
    PduType.ABORT: "A-ABORT",
}


def pdu_label(pdu_type: int) -> str:
    """``"A-ABORT"``, or ``"PDU type 0x09"`` for a type the standard does not define."""
    try:
        return PduType(pdu_type).label
    except ValueError:
        return f"PDU type 0x{pdu_type:02X}"


_HEADER = struct.Struct(">BxL")
_ITEM = struct.Struct(">BxH")
_PDV = struct.Struct(">LBB")
_PDATA_ONE_PDV = struct.Struct(">BxLLBB")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">L")


def pdu_header(pdu_type: int, length: int) -> bytes:
    return _HEADER.pack(pdu_type, length)


# --- items --------------------------------------------------------------------------------


class ItemType:
    APPLICATION_CONTEXT = 0x10
    CONTEXT_RQ = 0x20
    CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNC_OPERATIONS_WINDOW = 0x53
    ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


def _item(item_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02X} of {len(value)} bytes exceeds 65535")
    return _ITEM.pack(item_type, len(value)) + value


def _uid_field(uid: str) -> bytes:
    return uid.encode("ascii")


def _iter_items(data: bytes, start: int, end: int, where: str) -> Iterator[tuple[int, bytes]]:
    offset = start
    while offset < end:
        if offset + 4 > end:
            raise PduError(f"{where}: an item header is cut short")
        item_type, length = _ITEM.unpack_from(data, offset)
        offset += 4
        if offset + length > end:
            raise PduError(f"{where}: item 0x{item_type:02X} runs past the end of its PDU")
        yield item_type, data[offset : offset + length]
        offset += length


#: Anomalies listed one by one per PDU; beyond, they are only counted (a request of
#: 128 KiB can hold 8,000 duplicate contexts, and each note becomes a journal entry).
MAX_NOTES = 32


class _Notes:
    """Collects what a tolerant decode forgave (trailing padding, odd bytes), the first
    :data:`MAX_NOTES` of them in words."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0

    def add(self, text: str) -> None:
        if len(self.items) < MAX_NOTES:
            self.items.append(text)
        else:
            self.dropped += 1

    def all(self) -> tuple[str, ...]:
        if not self.dropped:
            return tuple(self.items)
        return (*self.items, f"and {self.dropped} more anomalies like these")

    def uid(self, raw: bytes, what: str) -> str:
        text = raw.decode("ascii", "backslashreplace")
        stripped = text.rstrip("\x00 ")
        if stripped != text:
            pad = "a NUL" if text.endswith("\x00") else "a space"
            self.add(f"{what} {stripped!r} is padded with {pad} (UIDs in items are not padded)")
        problem = uid_problem(stripped)
        if problem is not None:
            self.add(f"{what} {stripped!r} is not a valid UID: {problem}")
        return stripped


@dataclass(frozen=True)
class ContextProposal:
    """A presentation context as proposed in an A-ASSOCIATE-RQ."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class ContextResult:
    """A presentation context as answered in an A-ASSOCIATE-AC (result 0: accepted)."""

    context_id: int
    result: int
    transfer_syntax: str | None

    @property
    def accepted(self) -> bool:
        return self.result == 0


@dataclass(frozen=True)
class RoleSelection:
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4)."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


@dataclass(frozen=True)
class AssociateRQ:
    """An A-ASSOCIATE-RQ. ``max_pdu_length`` 0 means no limit (or no User Information)."""

    called_ae_title: str
    calling_ae_title: str
    contexts: tuple[ContextProposal, ...]
    max_pdu_length: int
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME
    protocol_version: int = 1
    application_context: str = APPLICATION_CONTEXT_NAME
    user_identity: UserIdentity | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    #: Maximum operations invoked/performed (Asynchronous Operations Window), if proposed.
    async_operations: tuple[int, int] | None = None
    #: Types of the User Information sub-items not decoded here.
    other_user_items: tuple[int, ...] = ()
    #: What the decoder forgave, in words (never set when encoding).
    anomalies: tuple[str, ...] = field(default=(), compare=False)
    #: The AE title fields as they came (16 bytes each), echoed in the A-ASSOCIATE-AC.
    raw_titles: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True)
class AssociateAC:
    """An A-ASSOCIATE-AC. ``max_pdu_length`` 0 means no limit."""

    called_ae_title: str
    calling_ae_title: str
    contexts: tuple[ContextResult, ...]
    max_pdu_length: int
    implementation_class_uid: str | None = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME
    #: The User Identity server response, when the SCP sent one (an empty one included).
    user_identity_response: bytes | None = None
    anomalies: tuple[str, ...] = field(default=(), compare=False)

    def context(self, context_id: int) -> ContextResult | None:
        return next((c for c in self.contexts if c.context_id == context_id), None)


@dataclass(frozen=True)
class AssociateRJ:
    result: int
    source: int
    reason: int


def _ae_field(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")


def _user_information(
    max_pdu_length: int,
    implementation_class_uid: str | None,
    implementation_version_name: str | None,
    extra: bytes = b"",
) -> bytes:
    sub = _item(ItemType.MAXIMUM_LENGTH, _U32.pack(max_pdu_length))
    if implementation_class_uid:
        sub += _item(ItemType.IMPLEMENTATION_CLASS_UID, _uid_field(implementation_class_uid))
    if implementation_version_name:
        sub += _item(
            ItemType.IMPLEMENTATION_VERSION_NAME, implementation_version_name.encode("ascii")
        )
    return _item(ItemType.USER_INFORMATION, sub + extra)


def _user_identity_rq(identity: UserIdentity) -> bytes:
    return _item(ItemType.USER_IDENTITY_RQ, identity.encode_value())


def encode_associate_rq(rq: AssociateRQ) -> bytes:
    """The A-ASSOCIATE-RQ PDU for ``rq``."""
    items = [_item(ItemType.APPLICATION_CONTEXT, _uid_field(rq.application_context))]
    for context in rq.contexts:
        cid = context.context_id
        if not 1 <= cid <= 255 or cid % 2 == 0:
            raise ValueError(f"presentation context ID must be odd 1..255, got {cid}")
        sub = _item(ItemType.ABSTRACT_SYNTAX, _uid_field(context.abstract_syntax)) + b"".join(
            _item(ItemType.TRANSFER_SYNTAX, _uid_field(ts)) for ts in context.transfer_syntaxes
        )
        items.append(_item(ItemType.CONTEXT_RQ, bytes((cid, 0, 0, 0)) + sub))
    extra = b""
    if rq.async_operations is not None:
        extra += _item(ItemType.ASYNC_OPERATIONS_WINDOW, struct.pack(">HH", *rq.async_operations))
    for role in rq.role_selections:
        uid = _uid_field(role.sop_class_uid)
        extra += _item(
            ItemType.ROLE_SELECTION,
            _U16.pack(len(uid)) + uid + bytes((int(role.scu_role), int(role.scp_role))),
        )
    if rq.user_identity is not None:
        extra += _user_identity_rq(rq.user_identity)
    items.append(
        _user_information(
            rq.max_pdu_length, rq.implementation_class_uid, rq.implementation_version_name, extra
        )
    )
    body = (
        _U16.pack(rq.protocol_version)
        + bytes(2)
        + _ae_field(rq.called_ae_title)
        + _ae_field(rq.calling_ae_title)
        + bytes(32)
        + b"".join(items)
    )
    return pdu_header(PduType.ASSOCIATE_RQ, len(body)) + body


def decode_associate_rq(body: bytes) -> AssociateRQ:
    """Decode an A-ASSOCIATE-RQ body (after the 6-byte header), tolerantly."""
    body = bytes(body)
    if len(body) < 68:
        raise PduError(f"A-ASSOCIATE-RQ too short ({len(body)} bytes)")
    notes = _Notes()
    version = _U16.unpack_from(body, 0)[0]
    called, calling = decode_ae_title(body[4:20]), decode_ae_title(body[20:36])
    application_context = ""
    contexts: list[ContextProposal] = []
    seen_ids: set[int] = set()
    max_pdu = 0
    impl_uid = impl_version = ""
    identity: UserIdentity | None = None
    roles: list[RoleSelection] = []
    async_ops: tuple[int, int] | None = None
    other: list[int] = []
    for item_type, value in _iter_items(body, 68, len(body), "A-ASSOCIATE-RQ"):
        if item_type == ItemType.APPLICATION_CONTEXT:
            application_context = notes.uid(value, "application context name")
        elif item_type == ItemType.CONTEXT_RQ:
            context = _decode_proposal(value, notes)
            if context.context_id in seen_ids:
                notes.add(f"presentation context ID {context.context_id} is proposed twice")
            elif context.context_id % 2 == 0 or context.context_id == 0:
                notes.add(
                    f"presentation context ID {context.context_id} is not an odd number 1..255"
                )
            seen_ids.add(context.context_id)
            contexts.append(context)
        elif item_type == ItemType.USER_INFORMATION:
            for sub_type, sub in _iter_items(value, 0, len(value), "User Information item"):
                if sub_type == ItemType.MAXIMUM_LENGTH and len(sub) == 4:
                    max_pdu = _U32.unpack(sub)[0]
                elif sub_type == ItemType.IMPLEMENTATION_CLASS_UID:
                    impl_uid = notes.uid(sub, "Implementation Class UID")
                elif sub_type == ItemType.IMPLEMENTATION_VERSION_NAME:
                    impl_version = sub.decode("ascii", "backslashreplace").strip(" \x00")
                elif sub_type == ItemType.USER_IDENTITY_RQ:
                    identity = _decode_user_identity(sub)
                elif sub_type == ItemType.ROLE_SELECTION and len(sub) >= 4:
                    n = _U16.unpack_from(sub, 0)[0]
                    if 2 + n + 2 <= len(sub):
                        uid = notes.uid(sub[2 : 2 + n], "role selection SOP class UID")
                        roles.append(RoleSelection(uid, bool(sub[2 + n]), bool(sub[3 + n])))
                elif sub_type == ItemType.ASYNC_OPERATIONS_WINDOW and len(sub) == 4:
                    async_ops = struct.unpack(">HH", sub)
                else:
                    other.append(sub_type)
        else:
            other.append(item_type)
    if len(contexts) > MAX_CONTEXTS:
        notes.add(
            f"{len(contexts)} presentation contexts proposed; the standard allows {MAX_CONTEXTS}"
        )
    return AssociateRQ(
        called_ae_title=called,
        calling_ae_title=calling,
        contexts=tuple(contexts),
        max_pdu_length=max_pdu,
        implementation_class_uid=impl_uid,
        implementation_version_name=impl_version,
        protocol_version=version,
        application_context=application_context,
        user_identity=identity,
        role_selections=tuple(roles),
        async_operations=async_ops,
        other_user_items=tuple(other),
        anomalies=notes.all(),
        raw_titles=body[4:36],
    )


def _decode_proposal(value: bytes, notes: _Notes) -> ContextProposal:
    if len(value) < 4:
        raise PduError("a presentation context item is cut short")
    context_id = value[0]
    abstract = ""
    syntaxes: list[str] = []
    where = f"presentation context {context_id}"
    for sub_type, sub in _iter_items(value, 4, len(value), where):
        if sub_type == ItemType.ABSTRACT_SYNTAX:
            abstract = notes.uid(sub, f"{where}: abstract syntax")
        elif sub_type == ItemType.TRANSFER_SYNTAX:
            syntaxes.append(notes.uid(sub, f"{where}: transfer syntax"))
    return ContextProposal(context_id, abstract, tuple(syntaxes))


def _decode_user_identity(value: bytes) -> UserIdentity:
    try:
        return UserIdentity.decode_value(value)
    except ValueError as exc:
        raise PduError(str(exc)) from None


def encode_associate_ac(
    rq: AssociateRQ,
    results: Sequence[ContextResult],
    *,
    max_pdu_length: int,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME,
    user_identity_response: bytes | None = None,
) -> bytes:
    """The A-ASSOCIATE-AC answering ``rq``: one result per proposed context."""
    items = [_item(ItemType.APPLICATION_CONTEXT, _uid_field(APPLICATION_CONTEXT_NAME))]
    for result in results:
        # A refused context still carries a transfer syntax sub-item, whose value "is not
        # significant" (PS3.8 9.3.3.2); some decoders choke on an empty one.
        syntax = result.transfer_syntax or ""
        sub = _item(ItemType.TRANSFER_SYNTAX, _uid_field(syntax))
        items.append(
            _item(ItemType.CONTEXT_AC, bytes((result.context_id, 0, result.result, 0)) + sub)
        )
    extra = b""
    if user_identity_response is not None:
        extra = _item(
            ItemType.USER_IDENTITY_AC,
            _U16.pack(len(user_identity_response)) + user_identity_response,
        )
    items.append(
        _user_information(
            max_pdu_length, implementation_class_uid, implementation_version_name, extra
        )
    )
    titles = rq.raw_titles or (_ae_field(rq.called_ae_title) + _ae_field(rq.calling_ae_title))
    body = _U16.pack(1) + bytes(2) + titles + bytes(32) + b"".join(items)
    return pdu_header(PduType.ASSOCIATE_AC, len(body)) + body


def decode_associate_ac(body: bytes) -> AssociateAC:
    """Decode an A-ASSOCIATE-AC body (after the 6-byte header), tolerantly."""
    body = bytes(body)
    if len(body) < 68:
        raise PduError(f"A-ASSOCIATE-AC too short ({len(body)} bytes)")
    notes = _Notes()
    called, calling = decode_ae_title(body[4:20]), decode_ae_title(body[20:36])
    contexts: list[ContextResult] = []
    max_pdu = 0
    impl_uid: str | None = None
    impl_version: str | None = None
    identity_response: bytes | None = None
    for item_type, value in _iter_items(body, 68, len(body), "A-ASSOCIATE-AC"):
        if item_type == ItemType.CONTEXT_AC:
            if len(value) < 4:
                raise PduError("a presentation context item in A-ASSOCIATE-AC is cut short")
            context_id, result = value[0], value[2]
            syntax: str | None = None
            where = f"presentation context {context_id}"
            for sub_type, sub in _iter_items(value, 4, len(value), where):
                if sub_type == ItemType.TRANSFER_SYNTAX and result == 0:
                    syntax = notes.uid(sub, f"{where}: accepted transfer syntax")
            contexts.append(ContextResult(context_id, result, syntax))
        elif item_type == ItemType.USER_INFORMATION:
            for sub_type, sub in _iter_items(value, 0, len(value), "User Information item"):
                if sub_type == ItemType.MAXIMUM_LENGTH and len(sub) == 4:
                    max_pdu = _U32.unpack(sub)[0]
                elif sub_type == ItemType.IMPLEMENTATION_CLASS_UID:
                    impl_uid = notes.uid(sub, "Implementation Class UID")
                elif sub_type == ItemType.IMPLEMENTATION_VERSION_NAME:
                    impl_version = sub.decode("ascii", "backslashreplace").strip(" \x00")
                elif sub_type == ItemType.USER_IDENTITY_AC and len(sub) >= 2:
                    n = _U16.unpack_from(sub, 0)[0]
                    identity_response = bytes(sub[2 : 2 + n])
    return AssociateAC(
        called_ae_title=called,
        calling_ae_title=calling,
        contexts=tuple(contexts),
        max_pdu_length=max_pdu,
        implementation_class_uid=impl_uid,
        implementation_version_name=impl_version,
        user_identity_response=identity_response,
        anomalies=notes.all(),
    )


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    return pdu_header(PduType.ASSOCIATE_RJ, 4) + bytes((0, result, source, reason))


def decode_associate_rj(body: bytes) -> AssociateRJ:
    if len(body) < 4:
        raise PduError(f"A-ASSOCIATE-RJ too short ({len(body)} bytes)")
    return AssociateRJ(body[1], body[2], body[3])


def encode_abort(source: int = 0, reason: int = 0) -> bytes:
    """An A-ABORT; source 0 = service user, 2 = service provider."""
    return pdu_header(PduType.ABORT, 4) + bytes((0, 0, source, reason))


def decode_abort(body: bytes) -> tuple[int, int]:
    """(source, reason) of an A-ABORT body."""
    if len(body) < 4:
        raise PduError(f"A-ABORT too short ({len(body)} bytes)")
    return body[2], body[3]


def encode_release_rq() -> bytes:
    return pdu_header(PduType.RELEASE_RQ, 4) + bytes(4)


def encode_release_rp() -> bytes:
    return pdu_header(PduType.RELEASE_RP, 4) + bytes(4)


# --- P-DATA-TF ----------------------------------------------------------------------------


def pdv_header(context_id: int, length: int, *, command: bool, last: bool) -> bytes:
    """The 12 bytes before ``length`` bytes of data in a one-PDV P-DATA-TF PDU."""
    control = (0x01 if command else 0x00) | (0x02 if last else 0x00)
    return _PDATA_ONE_PDV.pack(PduType.P_DATA_TF, length + 6, length + 2, context_id, control)


def max_pdv_data(peer_max_pdu: int, unlimited: int = 1 << 20) -> int:
    """The most data one PDV may carry for a peer's Maximum Length Received: the PDU
    body holds the 6-byte PDV header too, and the size is kept even so that no data set
    fragment has an odd length (DCMTK refuses those). 0 means no limit: ``unlimited``."""
    return ((peer_max_pdu - 6) & ~1) if peer_max_pdu else unlimited


def encode_p_data(
    context_id: int, data: bytes | memoryview, *, command: bool, max_pdu_length: int
) -> bytes:
    """``data`` as one or more P-DATA-TF PDUs no larger than the peer's maximum (0: no
    limit), the last with its "last fragment" bit."""
    room = max_pdv_data(max_pdu_length, unlimited=max(len(data), 2))
    if room < 2:
        raise ValueError(f"a maximum PDU length of {max_pdu_length} leaves no room for data")
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    start = 0
    while True:
        chunk = view[start : start + room]
        start += len(chunk)
        last = start >= len(view)
        parts += [pdv_header(context_id, len(chunk), command=command, last=last), chunk]
        if last:
            return b"".join(parts)


def iter_pdvs(body: bytes | memoryview) -> Iterator[tuple[int, bool, bool, memoryview]]:
    """(context id, is command, is last, data) for each PDV of a whole P-DATA-TF body."""
    view = memoryview(body)
    offset, end = 0, len(view)
    while offset < end:
        if offset + 6 > end:
            raise PduError("a PDV item header is cut short in P-DATA-TF")
        length, context_id, control = _PDV.unpack_from(view, offset)
        if length < 2 or offset + 4 + length > end:
            raise PduError(f"PDV item length {length} does not fit its P-DATA-TF")
        yield (
            context_id,
            bool(control & 1),
            bool(control & 2),
            view[offset + 6 : offset + 4 + length],
        )
        offset += 4 + length
