"""The mock SCP's configuration: every constructor option checked once, at construction,
with a :class:`ValueError` naming the option and what it accepts, so that a typo in a
test fails where it was written, not in a server thread."""

from __future__ import annotations

import ipaddress
import math
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from scu.protocol.ae import check_ae_title
from scu.protocol.identity import UserIdentity
from scu.protocol.uids import UidKind, resolve_uid, resolve_uids

from .negotiation import DEFAULT_SOP_CLASSES, DEFAULT_TRANSFER_SYNTAXES, Policy

__all__ = ["IdentityCheck", "ScpConfig", "build_policy", "check_timeout", "is_loopback"]

#: ``require_user_identity``: username -> passcode (``None``: any or none), or a callable
#: given the identity and returning whether it is accepted, or the server response bytes
#: to send back (Kerberos, SAML and JWT servers answer with a token).
IdentityCheck = Mapping[str, str | None] | Callable[[UserIdentity], bool | bytes]


def check_timeout(value: object, argument: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{argument}: expected seconds > 0 or None, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{argument}: expected seconds > 0 or None, got {value!r}")
    return float(value)


def _check_int(value: object, argument: str, *, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise ValueError(f"{argument}: expected an int {minimum}{upper}, got {value!r}")
    return value


def _check_bool(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{argument}: expected a bool, got {value!r}")
    return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback address (``localhost`` included)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_policy(
    transfer_syntaxes: Iterable[str] | Mapping[str, Iterable[str]] | None,
    sop_classes: Iterable[str] | None,
    accept_unknown: object,
) -> Policy:
    """What the mock accepts, from the constructor's options."""
    accept_unknown = _check_bool(accept_unknown, "accept_unknown_sop_classes")
    classes = (
        frozenset(DEFAULT_SOP_CLASSES)
        if sop_classes is None
        else frozenset(resolve_uids(sop_classes, parameter="sop_classes", kind=UidKind.SOP_CLASS))
    )
    per_class: dict[str, tuple[str, ...]] = {}
    default_syntaxes = DEFAULT_TRANSFER_SYNTAXES
    if isinstance(transfer_syntaxes, Mapping):
        for key, syntaxes in transfer_syntaxes.items():
            uid = resolve_uid(
                key, parameter="transfer_syntaxes (SOP class key)", kind=UidKind.SOP_CLASS
            )
            per_class[uid] = resolve_uids(
                syntaxes, parameter="transfer_syntaxes", kind=UidKind.TRANSFER_SYNTAX
            )
        if sop_classes is None:
            classes = frozenset(per_class)  # a mapping alone means "only these SOP classes"
        elif not set(per_class) <= classes:
            extra = ", ".join(sorted(set(per_class) - classes))
            raise ValueError(
                f"transfer_syntaxes: SOP classes {extra} are not in sop_classes; "
                "list them there too or drop them from the mapping"
            )
    elif transfer_syntaxes is not None:
        default_syntaxes = resolve_uids(
            transfer_syntaxes, parameter="transfer_syntaxes", kind=UidKind.TRANSFER_SYNTAX
        )
    return Policy(classes, default_syntaxes, per_class, accept_unknown)


@dataclass(frozen=True)
class ScpConfig:
    """Every option of one :class:`mock_scp.MockScp`, checked (see its docstring)."""

    ae_title: str
    host: str
    port: int
    max_pdu_length: int
    policy: Policy
    require_called_ae_title: bool
    require_calling_ae_titles: frozenset[str] | None
    max_associations: int
    max_connections: int
    seed: int | None
    store_dir: Path | None
    acse_timeout: float | None
    dimse_timeout: float | None
    network_timeout: float | None
    strict: bool
    strict_rules: bool
    tls: ssl.SSLContext | None
    keep_data: bool
    memory_budget: int
    spool_dir: Path | None
    max_dataset_size: int | None
    require_user_identity: IdentityCheck | None

    @classmethod
    def build(
        cls,
        *,
        ae_title: object,
        host: object,
        port: object,
        max_pdu_length: object,
        transfer_syntaxes: Iterable[str] | Mapping[str, Iterable[str]] | None,
        sop_classes: Iterable[str] | None,
        accept_unknown_sop_classes: object,
        require_called_ae_title: object,
        require_calling_ae_titles: Iterable[str] | None,
        max_associations: object,
        max_connections: object,
        seed: object,
        store_dir: str | Path | None,
        acse_timeout: object,
        dimse_timeout: object,
        network_timeout: object,
        strict: object,
        strict_rules: object,
        tls: object,
        keep_data: object,
        memory_budget: object,
        spool_dir: str | Path | None,
        max_dataset_size: object,
        require_user_identity: object,
    ) -> ScpConfig:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host: expected an address such as '127.0.0.1', got {host!r}")
        if (
            isinstance(max_pdu_length, bool)
            or not isinstance(max_pdu_length, int)
            or not (max_pdu_length == 0 or 1024 <= max_pdu_length <= 0xFFFFFFFF)
        ):
            raise ValueError(
                f"max_pdu_length: expected 0 (no limit) or 1024..4294967295, got {max_pdu_length!r}"
            )
        calling: frozenset[str] | None = None
        if require_calling_ae_titles is not None:
            if isinstance(require_calling_ae_titles, str):
                raise ValueError(
                    "require_calling_ae_titles: expected a list of AE titles, got a string"
                )
            calling = frozenset(
                check_ae_title(t, parameter="require_calling_ae_titles")
                for t in require_calling_ae_titles
            )
            if not calling:
                raise ValueError(
                    "require_calling_ae_titles: an empty list would reject every SCU; use None"
                )
        associations = _check_int(max_associations, "max_associations", minimum=1)
        connections = (
            max(4 * associations, associations + 8)
            if max_connections is None
            else _check_int(max_connections, "max_connections", minimum=associations)
        )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed: expected an int or None, got {seed!r}")
        if tls is not None and not isinstance(tls, ssl.SSLContext):
            raise ValueError(f"tls: expected an ssl.SSLContext or None, got {type(tls).__name__}")
        if require_user_identity is not None and not (
            isinstance(require_user_identity, Mapping) or callable(require_user_identity)
        ):
            raise ValueError(
                "require_user_identity: expected a mapping username -> passcode, a callable "
                f"or None, got {require_user_identity!r}"
            )
        return cls(
            ae_title=check_ae_title(ae_title, parameter="ae_title"),
            host=host,
            port=_check_int(port, "port (0 = any free port)", minimum=0, maximum=65535),
            max_pdu_length=max_pdu_length,
            policy=build_policy(transfer_syntaxes, sop_classes, accept_unknown_sop_classes),
            require_called_ae_title=_check_bool(require_called_ae_title, "require_called_ae_title"),
            require_calling_ae_titles=calling,
            max_associations=associations,
            max_connections=connections,
            seed=seed,
            store_dir=None if store_dir is None else Path(store_dir),
            acse_timeout=check_timeout(acse_timeout, "acse_timeout"),
            dimse_timeout=check_timeout(dimse_timeout, "dimse_timeout"),
            network_timeout=check_timeout(network_timeout, "network_timeout"),
            strict=_check_bool(strict, "strict"),
            strict_rules=_check_bool(strict_rules, "strict_rules"),
            tls=tls,
            keep_data=_check_bool(keep_data, "keep_data"),
            memory_budget=_check_int(memory_budget, "memory_budget (bytes)", minimum=0),
            spool_dir=None if spool_dir is None else Path(spool_dir),
            max_dataset_size=(
                None
                if max_dataset_size is None
                else _check_int(max_dataset_size, "max_dataset_size (bytes)", minimum=1)
            ),
            require_user_identity=require_user_identity,
        )
