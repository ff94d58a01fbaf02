"""What the ``send``, ``echo`` and ``preflight`` subcommands share: exit codes, the
association, TLS, user-identity and queue options, and how they become a StoreScu."""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scu import AssociationError, AssociationRejected, StoreScu, UserIdentity, s3_options
from scu.remote import is_url

__all__ = [
    "EXIT_ASSOCIATION",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PASSWORD_ENV",
    "UsageError",
    "add_association_options",
    "add_queue_options",
    "association_failure",
    "connection_options",
    "make_scu",
    "parse_bandwidth",
    "parse_rate",
    "print_json",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ASSOCIATION = 3
EXIT_INTERRUPTED = 130

#: The environment variable a password may come from (never the command line).
PASSWORD_ENV = "SCUKIT_PASSWORD"


class UsageError(Exception):
    """Bad input from the user, found before anything is sent (exit code 2)."""


# Options ---------------------------------------------------------------------------


def add_association_options(parser: argparse.ArgumentParser, *, max_pdu: bool = True) -> None:
    parser.add_argument(
        "addr", metavar="ADDR", help='the SCP: "host:port", "AE@host:port" or "[IPv6]:port"'
    )
    group = parser.add_argument_group("association")
    group.add_argument("--calling-ae", default="STORE-SCU", help="our AE title (STORE-SCU)")
    group.add_argument(
        "--called-ae",
        default=None,
        help="the SCP's AE title (default: the AE in ADDR, else ANY-SCP)",
    )
    if max_pdu:
        group.add_argument(
            "--max-pdu",
            type=int,
            default=16384,
            metavar="BYTES",
            help="max PDU length we receive, 4096..131072 or 0 for no limit (16384)",
        )
    timeouts = parser.add_argument_group("timeouts (seconds)")
    for name, default in (("connect", 10.0), ("acse", 30.0), ("dimse", 30.0), ("network", 60.0)):
        timeouts.add_argument(
            f"--{name}-timeout", type=float, default=default, metavar="S", help=f"({default:g})"
        )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="associate over TLS (verifying the SCP)")
    tls.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="trust these CA certificates (PEM) instead of the system's; implies --tls",
    )
    tls.add_argument(
        "--tls-cert", type=Path, default=None, metavar="FILE",
        help="present this client certificate (PEM); implies --tls",
    )  # fmt: skip
    tls.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                     help="the client certificate's private key (PEM)")  # fmt: skip
    tls.add_argument(
        "--tls-no-verify",
        action="store_true",
        help="do not verify the SCP's certificate or host name (insecure: for tests only)",
    )
    _add_identity_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log the protocol exchange")
    parser.add_argument("--json", action="store_true", help="print JSON only on stdout")


def _add_identity_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "user identity (PS3.7 D.3.3.7)",
        f"The password is read from --password-file or from ${PASSWORD_ENV}, never from "
        "the command line (where every user of the machine can read it).",
    )
    group.add_argument("--user", default=None, metavar="NAME", help="present this username")
    group.add_argument(
        "--password-file",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the passcode for --user, from this file (else ${PASSWORD_ENV} if set)",
    )
    group.add_argument(
        "--password", dest="password_on_command_line", default=None, help=argparse.SUPPRESS
    )
    for kind, what in (
        ("jwt", "a JSON Web Token"),
        ("kerberos", "a Kerberos service ticket"),
        ("saml", "a SAML assertion"),
    ):
        group.add_argument(
            f"--{kind}-file",
            type=Path,
            default=None,
            metavar="FILE",
            help=f"present {what} read from this file",
        )
    group.add_argument(
        "--no-identity-response",
        action="store_true",
        help="do not ask the SCP to confirm the identity (it is asked by default)",
    )


def add_queue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", metavar="PATH", nargs="+", help="DICOM files or folders")
    group = parser.add_argument_group("queue")
    group.add_argument(
        "--pattern",
        default="*.dcm",
        help="file name pattern inside folders, whatever the case (*.dcm)",
    )
    group.add_argument(
        "--all-files",
        action="store_true",
        help="inside folders, take every file that is DICOM by its content, whatever "
        "its name (instead of --pattern)",
    )
    group.add_argument(
        "--recursive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="descend into sub-folders (default: yes)",
    )
    group.add_argument(
        "--transfer-syntax",
        default=None,
        metavar="NAME|UID",
        help="send every file in this syntax (e.g. ExplicitVRLittleEndian, JPEGLSLossless)",
    )
    group.add_argument(
        "--never-transcode",
        action="store_true",
        help="never convert a file: refuse it when its own syntax is not accepted",
    )
    s3 = parser.add_argument_group(
        "object storage (s3:// URLs as PATH; needs pip install 'scukit[s3]')",
        "Credentials come from the standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        "the AWS profile, an instance or container role.",
    )
    s3.add_argument(
        "--s3-endpoint", default=None, metavar="URL",
        help="an S3-compatible endpoint (MinIO, Ceph RGW): http(s)://host:port",
    )  # fmt: skip
    s3.add_argument("--s3-region", default=None, metavar="NAME", help="the bucket's region")
    s3.add_argument(
        "--s3-anonymous", action="store_true", help="unsigned requests (a public bucket)"
    )
    s3.add_argument(
        "--s3-profile", default=None, metavar="NAME", help="a profile of the AWS config files"
    )


# From options to keyword arguments -------------------------------------------------------


def connection_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of StoreScu and echo that the association options give."""
    options: dict[str, Any] = {"calling_ae_title": args.calling_ae}
    if args.called_ae is not None:
        options["called_ae_title"] = args.called_ae
    options.update(
        connect_timeout=args.connect_timeout,
        acse_timeout=args.acse_timeout,
        dimse_timeout=args.dimse_timeout,
        network_timeout=args.network_timeout,
    )
    options.update(_tls(args))
    identity = _identity(args)
    if identity is not None:
        options["user_identity"] = identity
    return options


def _tls(args: argparse.Namespace) -> dict[str, Any]:
    """``tls=`` from the TLS options, or nothing."""
    wanted = (
        args.tls
        or args.tls_no_verify
        or any(value is not None for value in (args.tls_ca, args.tls_cert, args.tls_key))
    )
    if not wanted:
        return {}
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    try:
        context = ssl.create_default_context(
            cafile=None if args.tls_ca is None else str(args.tls_ca)
        )
        if args.tls_cert is not None:
            context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"TLS: {exc}") from None
    if args.tls_no_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        print(
            f"scukit {args.command}: WARNING: --tls-no-verify: the SCP's certificate is not "
            "checked; anyone on the path can read and change what is sent",
            file=sys.stderr,
        )
    return {"tls": context}


def _read_secret(path: Path, option: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{option} {str(path)!r}: {exc.strerror or exc}") from None
    if not data.strip():
        raise UsageError(f"{option} {str(path)!r}: the file is empty")
    return data


def _identity(args: argparse.Namespace) -> UserIdentity | None:
    if args.password_on_command_line is not None:
        raise UsageError(
            "--password is not taken on the command line (every user of the machine can "
            f"read it there): use --password-file FILE or ${PASSWORD_ENV}"
        )
    positive = not args.no_identity_response
    tokens = [
        (kind, path)
        for kind, path in (
            ("jwt", args.jwt_file),
            ("kerberos", args.kerberos_file),
            ("saml", args.saml_file),
        )
        if path is not None
    ]
    given = (["--user"] if args.user is not None else []) + [f"--{k}-file" for k, _ in tokens]
    if len(given) > 1:
        raise UsageError(f"one user identity at a time, got {' and '.join(given)}")
    if args.password_file is not None and args.user is None:
        raise UsageError("--password-file needs --user")
    if args.user is not None:
        password: str | None = None
        if args.password_file is not None:
            raw = _read_secret(args.password_file, "--password-file")
            try:
                password = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise UsageError(
                    f"--password-file {str(args.password_file)!r}: not UTF-8 text"
                ) from None
        elif os.environ.get(PASSWORD_ENV):
            password = os.environ[PASSWORD_ENV]
        try:
            return UserIdentity.username(args.user, password, positive_response=positive)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if tokens:
        kind, path = tokens[0]
        data = _read_secret(path, f"--{kind}-file")
        if kind != "kerberos":  # text tokens: the file's final newline is not part of it
            data = data.rstrip(b"\r\n")
        return UserIdentity.token(kind, data, positive_response=positive)
    return None


def make_scu(args: argparse.Namespace, **extra: Any) -> StoreScu:
    """A StoreScu from the options, with every PATH queued (folders by --pattern, or by
    content with --all-files)."""
    try:
        storage = s3_options(
            endpoint_url=args.s3_endpoint,
            region=args.s3_region,
            anonymous=args.s3_anonymous,
            profile=args.s3_profile,
        )
        scu = StoreScu(
            args.addr,
            max_pdu_length=args.max_pdu,
            verbose=args.verbose,
            transfer_syntax=args.transfer_syntax,
            never_transcode=args.never_transcode,
            storage_options=storage,
            **connection_options(args),
            **extra,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pattern = None if args.all_files else args.pattern
    for path in args.paths:
        try:
            if is_url(path):
                _add_url(scu, path, pattern, args.recursive)
            elif os.path.isdir(path):
                before = len(scu.skipped)
                if scu.add_directory(path, pattern=pattern, recursive=args.recursive) == 0:
                    where = "or its sub-folders " if args.recursive else ""
                    wanted = "DICOM by its content" if pattern is None else f"matching {pattern!r}"
                    found = len(scu.skipped) - before
                    raise UsageError(
                        f"folder {path!r} {where}holds no file {wanted}"
                        + (f" ({found} skipped)" if found else "")
                    )
            else:
                scu.add_file(path)
        except FileNotFoundError as exc:
            if is_url(path):
                raise UsageError(str(exc)) from None
            raise UsageError(f"{path!r}: no such file or directory ({exc})") from None
        except (ValueError, OSError, ImportError) as exc:
            raise UsageError(str(exc) if is_url(path) else f"{path!r}: {exc}") from None
    return scu


def _add_url(scu: StoreScu, url: str, pattern: str | None, recursive: bool) -> None:
    """An object, or every object under a prefix (a URL ending in ``/``, or one that
    names no object but a prefix)."""
    if not url.endswith("/"):
        try:
            scu.add_file(url)
            return
        except IsADirectoryError:
            pass
    before = len(scu.skipped)
    if scu.add_directory(url, pattern=pattern, recursive=recursive) == 0:
        wanted = "DICOM by its content" if pattern is None else f"matching {pattern!r}"
        found = len(scu.skipped) - before
        raise UsageError(
            f"{url}: no object {wanted} under this prefix"
            + (f" ({found} skipped)" if found else "")
        )


_RATE = re.compile(r"\A\s*(?P<n>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:/\s*s)?\s*\Z", re.I)
_BANDWIDTH = re.compile(
    r"\A\s*(?P<n>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[kmgt]?i?b?)\s*(?:/\s*s)?\s*\Z", re.I
)


def parse_rate(text: str) -> float:
    """``--max-rate``: files per second, ``50`` or ``50/s``."""
    match = _RATE.match(text)
    if match is None or float(match["n"]) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a positive number of files per second, such as 50/s"
        )
    return float(match["n"])


def parse_bandwidth(text: str) -> float:
    """``--max-bandwidth``: bytes per second, such as ``20MB/s``, ``512KiB/s`` or
    ``1000000``; units are B, kB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB
    (powers of 1024)."""
    match = _BANDWIDTH.match(text)
    unit = "" if match is None else match["unit"].lower().removesuffix("b")
    if match is None or float(match["n"]) <= 0 or unit == "i":
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a positive rate such as 20MB/s, 512KiB/s or 1000000 (bytes/s)"
        )
    base = 1024 if unit.endswith("i") else 1000
    prefix = unit.removesuffix("i")
    power = " kmgt".index(prefix) if prefix else 0
    return float(match["n"]) * float(base**power)


# Output --------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def association_failure(
    args: argparse.Namespace, exc: AssociationError, extra: dict[str, Any] | None = None
) -> int:
    """Report a failed association (exit 3): words on stderr, JSON on stdout if asked."""
    print(f"scukit {args.command}: {exc}", file=sys.stderr)
    if args.json:
        data: dict[str, Any] = exc.result.to_dict() if exc.result is not None else {}
        data.update(extra or {})
        data["error"] = str(exc)
        data["rejection"] = asdict(exc.rejection) if isinstance(exc, AssociationRejected) else None
        print_json(data)
    return EXIT_ASSOCIATION
