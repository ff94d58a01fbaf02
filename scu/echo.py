"""``echo()``: one C-ECHO (the Verification SOP Class) to an SCP."""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field

from scu.protocol.identity import UserIdentity
from scu.store import UNSET, build_endpoint

__all__ = ["EchoResult", "echo"]


@dataclass(frozen=True)
class EchoResult:
    status: int
    duration_seconds: float
    #: The SCP's User Identity server response (PS3.7 D.3.3.7), when the identity asked
    #: for one and the SCP sent it (empty for a username); ``None`` otherwise. Kept out
    #: of ``repr``: for Kerberos, SAML and JWT it is a token.
    user_identity_response: bytes | None = field(default=None, repr=False)


def echo(
    addr: str,
    *,
    calling_ae_title: str = "STORE-SCU",
    called_ae_title: str = UNSET,
    connect_timeout: float | None = 10.0,
    acse_timeout: float | None = 30.0,
    dimse_timeout: float | None = 30.0,
    network_timeout: float | None = 60.0,
    tls: ssl.SSLContext | None = None,
    user_identity: UserIdentity | None = None,
) -> EchoResult:
    """C-ECHO ``addr``; raises :class:`ConnectionFailed` / :class:`AssociationRejected`,
    or :class:`ProtocolError` / :class:`TransportError` if the echo itself fails."""
    endpoint = build_endpoint(
        addr,
        calling_ae_title=calling_ae_title,
        called_ae_title=called_ae_title,
        max_pdu_length=16384,
        connect_timeout=connect_timeout,
        acse_timeout=acse_timeout,
        dimse_timeout=dimse_timeout,
        network_timeout=network_timeout,
        tls=tls,
        log=logging.getLogger("scu.association"),
        user_identity=user_identity,
    )
    started = time.monotonic()
    assoc = endpoint.open(None, verification=True)
    try:
        response = assoc.echo()
    finally:
        assoc.release()
    assert response.status is not None
    return EchoResult(
        response.status, time.monotonic() - started, assoc.accept.user_identity_response
    )
