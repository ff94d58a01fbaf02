"""Field types shared by the scenario models: statuses, UIDs of a stated kind, AE titles,
A-ASSOCIATE-RJ names; each one validated by the shared protocol rules in ``scu.protocol``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from scu.protocol.acse import (
    REJECT_REASONS,
    REJECT_RESULTS,
    REJECT_SOURCES,
    parse_reject_reason,
    parse_reject_result,
    parse_reject_source,
)
from scu.protocol.ae import check_ae_title
from scu.protocol.status import parse_status
from scu.protocol.uids import UidKind, check_uid, resolve_uid

from ._suggest import did_you_mean

__all__ = [
    "AeTitle",
    "Model",
    "SopClass",
    "Status",
    "TransferSyntax",
    "Uid",
    "reject_names",
]


class Model(BaseModel):
    """Base of every scenario model: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
#: A UID of any kind (SOP Instance, Study, Series): checked against the UID rule only.
Uid = Annotated[str, BeforeValidator(lambda v: check_uid(v, parameter="UID"))]


def _ae_title(value: object) -> object:
    return check_ae_title(value, parameter="AE title") if isinstance(value, str) else value


AeTitle = Annotated[str, BeforeValidator(_ae_title)]


def _named(parse: Any, value: object, names: Any, *args: object) -> int:
    try:
        return int(parse(*args, value))
    except ValueError as exc:
        hint = did_you_mean(value, names) if isinstance(value, str) else ""
        raise ValueError(f"{exc}{hint}") from None


def reject_names(data: object) -> object:
    """A-ASSOCIATE-RJ ``result``/``source``/``reason`` names (or numbers) to numbers,
    with a did-you-mean for a misspelt name; the reason is checked against its source."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if "result" in data:
        data["result"] = _named(parse_reject_result, data["result"], REJECT_RESULTS)
    if "source" in data:
        data["source"] = _named(parse_reject_source, data["source"], REJECT_SOURCES)
        if "reason" in data:
            source = data["source"]
            data["reason"] = _named(
                parse_reject_reason, data["reason"], REJECT_REASONS[source], source
            )
    return data
