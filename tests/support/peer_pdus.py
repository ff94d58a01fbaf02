"""Upper Layer PDUs and DIMSE messages built, and read back, by pynetdicom and pydicom:
an encoder independent of :mod:`scu.protocol`, for the tests of its stream decoder and
requestor state machine."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
    PDU,
)
from pynetdicom.pdu_primitives import (
    A_ABORT,
    A_ASSOCIATE,
    A_P_ABORT,
    P_DATA,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

_HEADER = struct.Struct(">BxL")


def _set_user_information(
    primitive: A_ASSOCIATE, max_pdu: int, impl_uid: str, impl_version: str | None
) -> None:
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = impl_uid
    primitive.user_information = [length, impl]
    if impl_version is not None:
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = impl_version
        primitive.user_information.append(version)


def associate_rq(
    contexts: Sequence[tuple[int, str, Sequence[str]]],
    *,
    calling: str = "THEIR-SCU",
    called: str = "OUR-SCP",
    max_pdu: int = 16384,
) -> bytes:
    """An A-ASSOCIATE-RQ; ``contexts`` as (ID, abstract syntax, transfer syntaxes)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    proposals = []
    for context_id, abstract, syntaxes in contexts:
        context = PresentationContext()
        context.context_id = context_id
        context.abstract_syntax = abstract
        for syntax in syntaxes:
            context.add_transfer_syntax(syntax)
        proposals.append(context)
    primitive.presentation_context_definition_list = proposals
    _set_user_information(primitive, max_pdu, "1.2.3.4.5", "THEIRS_1")
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def associate_ac(
    results: Sequence[tuple[int, str, str, int]],
    *,
    max_pdu: int = 16384,
    calling: str = "STORE-SCU",
    called: str = "PACS",
    impl_uid: str = "1.2.3.4.5",
    impl_version: str | None = "PEER_1",
) -> bytes:
    """An A-ASSOCIATE-AC; ``results`` as (ID, abstract syntax, transfer syntax, result)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    primitive.result = 0
    contexts = []
    for context_id, abstract, syntax, result in results:
        context = PresentationContext()
        context.context_id = context_id
        context.abstract_syntax = abstract
        context.add_transfer_syntax(syntax)
        context.result = result
        contexts.append(context)
    primitive.presentation_context_definition_results_list = contexts
    _set_user_information(primitive, max_pdu, impl_uid, impl_version)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def associate_rj(result: int, source: int, reason: int) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.result = result
    primitive.result_source = source
    primitive.diagnostic = reason
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def abort(source: int, reason: int = 0) -> bytes:
    """An A-ABORT: source 0 (service user) or 2 (service provider, with ``reason``)."""
    pdu = A_ABORT_RQ()
    if source == 0:
        user = A_ABORT()
        user.abort_source = 0
        pdu.from_primitive(user)
    else:
        provider = A_P_ABORT()
        provider.provider_reason = reason
        pdu.from_primitive(provider)
    return bytes(pdu.encode())


def release_rq() -> bytes:
    return bytes(A_RELEASE_RQ().encode())


def release_rp() -> bytes:
    return bytes(A_RELEASE_RP().encode())


def p_data(pdvs: Sequence[tuple[int, int, bytes]]) -> bytes:
    """One P-DATA-TF holding ``pdvs`` as (context ID, message control header, data)."""
    primitive = P_DATA()
    primitive.presentation_data_value_list = [
        # pynetdicom checks for [ID, value] lists although it annotates tuples
        [context_id, bytes((control,)) + data]  # type: ignore[misc]
        for context_id, control, data in pdvs
    ]
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def message(msg: DIMSEMessage, context_id: int, max_pdu: int) -> bytes:
    """A DIMSE message framed by pynetdicom in P-DATA-TF PDUs of at most ``max_pdu``."""
    out = bytearray()
    for primitive in msg.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        out += pdu.encode()
    return bytes(out)


def echo_rsp_message(
    message_id: int, status: int = 0x0000, *, context_id: int = 1, max_pdu: int = 16384
) -> bytes:
    primitive = C_ECHO()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = VERIFICATION
    primitive.Status = status
    msg = C_ECHO_RSP()
    msg.primitive_to_message(primitive)
    return message(msg, context_id, max_pdu)


def store_rsp_message(
    message_id: int,
    status: int = 0x0000,
    *,
    sop_instance: str = "1.2.3.4",
    context_id: int = 1,
    max_pdu: int = 16384,
) -> bytes:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = CT_IMAGE
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Status = status
    msg = C_STORE_RSP()
    msg.primitive_to_message(primitive)
    return message(msg, context_id, max_pdu)


def store_rq_message(
    message_id: int,
    dataset: bytes,
    *,
    sop_instance: str = "1.2.3.4",
    context_id: int = 1,
    max_pdu: int = 16384,
) -> bytes:
    """A C-STORE-RQ whose data set is ``dataset`` (pynetdicom sends no data set PDV
    at all when it is empty)."""
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = CT_IMAGE
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Priority = 0
    primitive.DataSet = BytesIO(dataset)
    msg = C_STORE_RQ()
    msg.primitive_to_message(primitive)
    return message(msg, context_id, max_pdu)


def command_set(**values: object) -> bytes:
    """A command set written by pydicom (Implicit VR Little Endian, group length first)
    from keyword=value pairs."""
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, ds)
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    group = Dataset()
    group.CommandGroupLength = len(body.getvalue())
    write_dataset(out, group)
    return bytes(out.getvalue() + body.getvalue())


def split_pdus(stream: bytes) -> list[bytes]:
    """Whole PDUs of ``stream``, cut by their header lengths alone."""
    pdus, offset = [], 0
    while offset < len(stream):
        _pdu_type, length = _HEADER.unpack_from(stream, offset)
        end = offset + 6 + length
        if end > len(stream):
            raise ValueError(f"a PDU at offset {offset} runs past the end of the stream")
        pdus.append(stream[offset:end])
        offset = end
    return pdus


_CLASSES: dict[int, type[PDU]] = {
    0x01: A_ASSOCIATE_RQ,
    0x02: A_ASSOCIATE_AC,
    0x03: A_ASSOCIATE_RJ,
    0x04: P_DATA_TF,
    0x05: A_RELEASE_RQ,
    0x06: A_RELEASE_RP,
    0x07: A_ABORT_RQ,
}


def read_pdus(stream: bytes) -> list[PDU]:
    """Every PDU of ``stream`` decoded by pynetdicom's PDU classes."""
    out = []
    for raw in split_pdus(stream):
        pdu = _CLASSES[raw[0]]()
        pdu.decode(raw)
        out.append(pdu)
    return out


def p_data_items(stream: bytes) -> list[tuple[int, int, bytes]]:
    """(context ID, message control header, data) of every PDV in ``stream``, which
    must hold P-DATA-TF PDUs only, as pynetdicom reads them."""
    items = []
    for pdu in read_pdus(stream):
        assert isinstance(pdu, P_DATA_TF), f"not a P-DATA-TF: {type(pdu).__name__}"
        for item in pdu.presentation_data_value_items:
            value = item.presentation_data_value
            assert value is not None and item.presentation_context_id is not None
            items.append((item.presentation_context_id, value[0], bytes(value[1:])))
    return items
