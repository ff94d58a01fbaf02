"""The incoming byte stream of an association, decoded incrementally (sans-IO).

:class:`Decoder` takes bytes as they arrive (any split, one byte at a time included)
and returns events: whole control PDUs (A-ASSOCIATE, A-RELEASE, A-ABORT), complete DIMSE
command sets, and data set bytes as they arrive, without ever buffering a whole
P-DATA-TF PDU or data set. Every buffer it keeps is bounded by :class:`Limits` and grows
only as bytes actually arrive, whatever length a header claims; a peer that exceeds a
limit or breaks the framing gets a :class:`StreamError` event naming what it did, after
which the decoder takes no more bytes.

Both sides use it: the SCU (:mod:`scu.protocol.requestor`) and the mock SCP's connection
machine.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from scu.protocol.dimse import Command, CommandError, decode_command
from scu.protocol.pdu import PduType, pdu_label

__all__ = [
    "CommandReceived",
    "ControlPdu",
    "DatasetChunk",
    "DatasetComplete",
    "Decoder",
    "Limits",
    "OversizedPData",
    "StreamError",
    "StreamEvent",
]

_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
_CONTROL_TYPES = frozenset(PduType) - {PduType.P_DATA_TF}


@dataclass(frozen=True)
class Limits:
    """Bounds on what the peer may make us hold.

    ``max_pdata_length`` is the Maximum Length we announced (0: none): a P-DATA-TF above
    it is reported (:class:`OversizedPData`) and still decoded, since it is streamed;
    the caller decides whether to abort, as DCMTK does. The other limits are hard: past
    them the stream fails.
    """

    max_pdata_length: int = 0
    #: A P-DATA-TF longer than this is refused outright, whatever was announced.
    max_pdata_hard: int = 1 << 31
    max_associate_pdu: int = 256 * 1024
    max_other_pdu: int = 1024
    max_command: int = 64 * 1024
    #: Largest data set accepted (``None``: no limit).
    max_dataset: int | None = None


@dataclass(frozen=True)
class ControlPdu:
    """A whole PDU other than P-DATA-TF; ``body`` follows its 6-byte header."""

    pdu_type: PduType
    body: bytes


@dataclass(frozen=True)
class OversizedPData:
    length: int
    limit: int


@dataclass(frozen=True)
class CommandReceived:
    """A complete command set; ``raw`` is its bytes as received."""

    context_id: int
    command: Command
    raw: bytes


@dataclass(frozen=True)
class DatasetChunk:
    """Data set bytes; ``data`` is a view into the bytes given to :meth:`Decoder.feed`,
    valid until the caller reuses them."""

    context_id: int
    data: memoryview


@dataclass(frozen=True)
class DatasetComplete:
    context_id: int
    size: int


@dataclass(frozen=True)
class StreamError:
    """The peer broke the framing or a limit; ``abort_reason`` is the A-ABORT reason a
    provider would give (PS3.8 table 9-26): 1 unrecognised PDU, 2 unexpected PDU,
    6 invalid PDU parameter value."""

    detail: str
    abort_reason: int = 6


StreamEvent = (
    ControlPdu | OversizedPData | CommandReceived | DatasetChunk | DatasetComplete | StreamError
)

# Decoder states.
_PDU_HEADER, _CONTROL_BODY, _PDV_HEADER_STATE, _PDV_DATA, _FAILED = range(5)


class Decoder:
    """Incremental decoder of one association's incoming bytes; see the module doc."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._state = _PDU_HEADER
        self._partial = bytearray()  # a header (PDU or PDV) cut across feeds
        self._control_type = PduType.ABORT
        self._control_left = 0
        self._control = bytearray()
        self._pdu_left = 0  # bytes left in the current P-DATA-TF body
        self._pdv_left = 0  # data bytes left in the current PDV
        self._pdv_context = 0
        self._pdv_control = 0
        self._command = bytearray()
        self._command_context: int | None = None
        self._dataset_context: int | None = None  # a data set is expected on this context
        self._dataset_size = 0
        #: Bytes taken so far (for messages and tests).
        self.offset = 0

    @property
    def failed(self) -> bool:
        return self._state == _FAILED

    @property
    def in_message(self) -> bool:
        """Whether a DIMSE message has started and not ended (command or data set)."""
        return self._command_context is not None or self._dataset_context is not None

    @property
    def in_pdu(self) -> bool:
        """Whether bytes of an unfinished PDU have been taken."""
        return self._state != _PDU_HEADER or bool(self._partial)

    def expect_dataset(self, context_id: int | None) -> None:
        """Override whether a data set follows the last command (the caller may know
        better, e.g. a C-STORE-RQ that claims to have none)."""
        self._dataset_context = context_id
        self._dataset_size = 0

    def whole_command(self, data: bytes | bytearray | memoryview) -> CommandReceived | None:
        """``data`` decoded at once when it is exactly one P-DATA-TF holding one whole
        command set without a data set (the usual answer to a request) and nothing is
        pending: the event :meth:`feed` would return for it. ``None`` for anything else
        (nothing is taken then: :meth:`feed` must have it)."""
        if (
            self._state != _PDU_HEADER
            or self._partial
            or self._command_context is not None
            or self._dataset_context is not None
        ):
            return None
        size = len(data)
        if size < 12:
            return None
        pdu_type, length = _HEADER.unpack_from(data, 0)
        limits = self.limits
        if (
            pdu_type != PduType.P_DATA_TF
            or length + 6 != size
            or length > limits.max_pdata_hard
            or (limits.max_pdata_length and length > limits.max_pdata_length)
        ):
            return None
        pdv_length, context_id, control = _PDV_HEADER.unpack_from(data, 6)
        if pdv_length + 4 != length or control != 0x03 or size - 12 > limits.max_command:
            return None  # not one PDV that is a whole command set
        raw = bytes(data[12:size])
        try:
            command = decode_command(raw)
        except CommandError:
            return None
        if command.has_dataset:
            return None
        self.offset += size
        return CommandReceived(context_id, command, raw)

    def feed(self, data: bytes | bytearray | memoryview) -> list[StreamEvent]:
        """Take ``data``; return the events it completes, in order."""
        view = memoryview(data)
        events: list[StreamEvent] = []
        pos, end = 0, len(view)
        while pos < end:
            state = self._state
            if state == _PDV_DATA:
                take = min(self._pdv_left, end - pos)
                self._pdv_data(view[pos : pos + take], events)
                pos += take
                self._pdv_left -= take
                self._pdu_left -= take
                if self._pdv_left == 0 and self._state != _FAILED:
                    self._pdv_done(events)
            elif state == _PDU_HEADER or state == _PDV_HEADER_STATE:
                size = 6
                if state == _PDV_HEADER_STATE and self._pdu_left < size:
                    self._fail(events, "a PDV item header runs past the end of its P-DATA-TF")
                    break
                if not self._partial and end - pos >= size:
                    header = view[pos : pos + size]
                    pos += size
                else:
                    take = min(size - len(self._partial), end - pos)
                    self._partial += view[pos : pos + take]
                    pos += take
                    if len(self._partial) < size:
                        break
                    header = memoryview(bytes(self._partial))
                    self._partial.clear()
                if state == _PDU_HEADER:
                    self._pdu_header(header, events)
                else:
                    self._pdv_header(header, events)
            elif state == _CONTROL_BODY:
                take = min(self._control_left, end - pos)
                self._control += view[pos : pos + take]
                pos += take
                self._control_left -= take
                if self._control_left == 0:
                    events.append(ControlPdu(self._control_type, bytes(self._control)))
                    self._control.clear()
                    self._state = _PDU_HEADER
            else:  # failed: the rest is not looked at
                break
            if self._state == _FAILED:
                break
        self.offset += pos
        return events

    # -- steps

    def _fail(self, events: list[StreamEvent], detail: str, reason: int = 6) -> None:
        events.append(StreamError(detail, reason))
        self._state = _FAILED

    def _pdu_header(self, header: memoryview, events: list[StreamEvent]) -> None:
        pdu_type, length = _HEADER.unpack(header)
        limits = self.limits
        if pdu_type == PduType.P_DATA_TF:
            if length > limits.max_pdata_hard:
                self._fail(
                    events,
                    f"a {length}-byte PDU (P-DATA-TF) is beyond the "
                    f"{limits.max_pdata_hard}-byte limit",
                )
                return
            if limits.max_pdata_length and length > limits.max_pdata_length:
                events.append(OversizedPData(length, limits.max_pdata_length))
            if length == 0:
                return  # no PDV at all: nothing to do
            self._pdu_left = length
            self._state = _PDV_HEADER_STATE
            return
        if pdu_type not in _CONTROL_TYPES:
            self._fail(events, f"unrecognised {pdu_label(pdu_type)}", reason=1)
            return
        kind = PduType(pdu_type)
        cap = (
            limits.max_associate_pdu
            if kind in (PduType.ASSOCIATE_RQ, PduType.ASSOCIATE_AC)
            else limits.max_other_pdu
        )
        if length > cap:
            self._fail(events, f"a {length}-byte PDU ({kind.label}) exceeds the {cap}-byte limit")
            return
        if length == 0:
            events.append(ControlPdu(kind, b""))
            return
        self._control_type = kind
        self._control_left = length
        self._state = _CONTROL_BODY

    def _pdv_header(self, header: memoryview, events: list[StreamEvent]) -> None:
        length, context_id, control = _PDV_HEADER.unpack(header)
        self._pdu_left -= 6
        if length < 2 or length - 2 > self._pdu_left:
            self._fail(events, f"PDV item length {length} does not fit its P-DATA-TF")
            return
        is_command = bool(control & 0x01)
        if is_command:
            if self._dataset_context is not None:
                self._fail(events, "a command fragment where a data set fragment was expected", 2)
                return
            if self._command_context is not None and context_id != self._command_context:
                self._fail(events, "command fragments of one message on two presentation contexts")
                return
            self._command_context = context_id
        else:
            if self._dataset_context is None:
                self._fail(events, "a data set fragment without a command announcing one", 2)
                return
            if context_id != self._dataset_context:
                self._fail(
                    events,
                    f"data set fragment on presentation context {context_id}, its command "
                    f"came on {self._dataset_context}",
                )
                return
        self._pdv_context = context_id
        self._pdv_control = control
        self._pdv_left = length - 2
        self._state = _PDV_DATA
        if self._pdv_left == 0:
            self._pdv_done(events)

    def _pdv_data(self, data: memoryview, events: list[StreamEvent]) -> None:
        if not data:
            return
        if self._pdv_control & 0x01:
            if len(self._command) + len(data) > self.limits.max_command:
                self._fail(events, f"a command set longer than {self.limits.max_command} bytes")
                return
            self._command += data
            return
        self._dataset_size += len(data)
        cap = self.limits.max_dataset
        if cap is not None and self._dataset_size > cap:
            self._fail(events, f"a data set larger than the {cap}-byte limit")
            return
        events.append(DatasetChunk(self._pdv_context, data))

    def _pdv_done(self, events: list[StreamEvent]) -> None:
        last = bool(self._pdv_control & 0x02)
        if self._pdv_control & 0x01:
            if last:
                raw = bytes(self._command)
                context_id = self._pdv_context
                self._command.clear()
                self._command_context = None
                try:
                    command = decode_command(raw)
                except CommandError as exc:
                    self._fail(events, str(exc))
                    return
                if command.has_dataset:
                    self._dataset_context = context_id
                    self._dataset_size = 0
                events.append(CommandReceived(context_id, command, raw))
        elif last:
            events.append(DatasetComplete(self._pdv_context, self._dataset_size))
            self._dataset_context = None
            self._dataset_size = 0
        self._state = _PDV_HEADER_STATE if self._pdu_left > 0 else _PDU_HEADER
