"""Who gets an association: the protocol checks, the reject rules a test set, the AE
title checks, the association limit, and the user identity (PS3.7 D.3.3.7)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from scu.protocol.identity import UserIdentity
from scu.protocol.pdu import AssociateRQ
from scu.protocol.uids import APPLICATION_CONTEXT_NAME

from .config import IdentityCheck, ScpConfig

__all__ = ["Admission", "RejectRule", "check_identity"]


@dataclass(eq=False)
class RejectRule:
    """An association-reject rule; ``used`` counts the rejections it caused."""

    result: int
    source: int
    reason: int
    times: int | None
    close_at_once: bool = False
    used: int = 0


class Admission:
    """The reject rules and the count of open associations of one server."""

    def __init__(self, config: ScpConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._rejects: list[RejectRule] = []
        self._open_associations = 0

    def add(self, rule: RejectRule) -> RejectRule:
        with self._lock:
            self._rejects.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rejects.clear()

    def admit(self, request: AssociateRQ) -> tuple[tuple[int, int, int], str, bool] | None:
        """The reject for this request, if any; otherwise one association slot is taken."""
        config = self._config
        if not request.protocol_version & 1:
            return (1, 2, 2), "protocol version not supported", False
        if request.application_context != APPLICATION_CONTEXT_NAME:
            why = f"application context {request.application_context!r} not supported"
            return (1, 1, 2), why, False
        with self._lock:
            for rule in self._rejects:
                if rule.times is None or rule.used < rule.times:
                    rule.used += 1
                    triple = (rule.result, rule.source, rule.reason)
                    return triple, "reject_associations rule", rule.close_at_once
            if config.require_called_ae_title and request.called_ae_title != config.ae_title:
                why = f"called AE title {request.called_ae_title!r} is not {config.ae_title!r}"
                return (1, 1, 7), why, False
            allowed = config.require_calling_ae_titles
            if allowed is not None and request.calling_ae_title not in allowed:
                return (
                    (1, 1, 3),
                    f"calling AE title {request.calling_ae_title!r} not allowed",
                    False,
                )
            if self._open_associations >= config.max_associations:
                return (2, 3, 2), f"max_associations ({config.max_associations}) reached", False
            self._open_associations += 1
        return None

    def release(self) -> None:
        with self._lock:
            self._open_associations -= 1


def check_identity(
    check: IdentityCheck | None, identity: UserIdentity | None
) -> tuple[bool, bytes | None]:
    """Whether an identity is accepted, and the server response to send back."""
    if check is None:
        return True, None
    if identity is None:
        return False, None
    if isinstance(check, Mapping):
        if identity.kind not in (1, 2):
            return False, None
        username = identity.primary.decode("utf-8", "replace")
        if username not in check:
            return False, None
        expected = check[username]
        if expected is not None and identity.secondary.decode("utf-8", "replace") != expected:
            return False, None
        return True, None
    verdict = check(identity)
    if isinstance(verdict, bytes):
        return True, verdict
    return bool(verdict), None
