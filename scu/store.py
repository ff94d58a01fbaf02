"""``StoreScu``: the documented node-dicom StoreScu API, in Python, keeping its promises.

This module holds the API: the options (all checked at construction), the queue, and
``send()``/``send_async()``/``preflight()``, which hand the work to
:mod:`scu.transfer` and :mod:`scu.preflight`. Everything association-related goes
through one :class:`scu.association.Endpoint`; everything about transfer syntaxes
through one :class:`scu.planning.SyntaxPolicy`.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scu import remote
from scu.association import Endpoint, Timeouts
from scu.events import FileError, FileSending, FileSent, TransferCompleted, TransferStarted
from scu.journal import TransferJournal
from scu.options import Address, parse_address, validate_max_pdu, validate_timeout
from scu.planning import SyntaxPolicy
from scu.preflight import preflight
from scu.protocol.ae import check_ae_title
from scu.protocol.identity import UserIdentity
from scu.ratelimit import RateLimiter
from scu.result import PreflightItem, TransferResult
from scu.source import Entry, file_kind, sniff
from scu.transfer import Callback, Callbacks, Transfer
from scu.worker import RetryPolicy

__all__ = ["UNSET", "Skipped", "StoreScu", "build_endpoint", "resolve_called_ae_title"]


@dataclass(frozen=True)
class Skipped:
    """A file ``add_directory`` did not queue, and why."""

    path: str
    reason: str


_DEFAULT_CALLED = "ANY-SCP"
#: The default of ``called_ae_title``: not given (``None`` is not a title).
UNSET: Any = object()


def resolve_called_ae_title(address: Address, addr: str, called_ae_title: object) -> str:
    """The called AE title: the one given, else the one in ``addr``, else ANY-SCP; the
    two must not contradict each other."""
    if called_ae_title is UNSET:
        return address.ae_title or _DEFAULT_CALLED
    called = check_ae_title(called_ae_title, parameter="called_ae_title")
    if address.ae_title is not None and address.ae_title != called:
        raise ValueError(
            f"called_ae_title {called!r} contradicts the AE title in addr {addr!r}; "
            "give it in one place"
        )
    return called


def build_endpoint(
    addr: str,
    *,
    user_identity: UserIdentity | None = None,
    calling_ae_title: str,
    called_ae_title: object,
    max_pdu_length: int,
    connect_timeout: float | None,
    acse_timeout: float | None,
    dimse_timeout: float | None,
    network_timeout: float | None,
    tls: ssl.SSLContext | None,
    log: logging.Logger,
) -> Endpoint:
    """Every association option checked once; ``ValueError`` naming the bad one."""
    address = parse_address(addr)
    if tls is not None and not isinstance(tls, ssl.SSLContext):
        raise ValueError(f"tls must be an ssl.SSLContext or None, got {type(tls).__name__}")
    if user_identity is not None and not isinstance(user_identity, UserIdentity):
        raise ValueError(
            "user_identity must be a UserIdentity (UserIdentity.username(...) or "
            f".token(...)) or None, got {user_identity!r}"
        )
    return Endpoint(
        address=address,
        calling_ae_title=check_ae_title(calling_ae_title, parameter="calling_ae_title"),
        called_ae_title=resolve_called_ae_title(address, addr, called_ae_title),
        max_pdu_length=validate_max_pdu(max_pdu_length),
        timeouts=Timeouts(
            connect=validate_timeout(connect_timeout, parameter="connect_timeout"),
            acse=validate_timeout(acse_timeout, parameter="acse_timeout"),
            dimse=validate_timeout(dimse_timeout, parameter="dimse_timeout"),
            network=validate_timeout(network_timeout, parameter="network_timeout"),
        ),
        tls=tls,
        log=log,
        user_identity=user_identity,
    )


class StoreScu:
    """A DICOM Storage SCU: queue files, then ``send()`` them to ``addr``.

    ``addr`` is ``"host:port"``, ``"AE@host:port"`` (the AE is the called AE title
    unless ``called_ae_title`` is given) or ``"[IPv6]:port"``. Every option is checked
    here; a bad value raises :class:`ValueError` naming the parameter and what is
    accepted. Timeouts are seconds (``None``: wait forever); see
    :mod:`scu.association` for what each one bounds.
    """

    def __init__(
        self,
        addr: str,
        *,
        calling_ae_title: str = "STORE-SCU",
        called_ae_title: str = UNSET,
        max_pdu_length: int = 16384,
        verbose: bool = False,
        transfer_syntax: str | None = None,
        concurrency: int = 1,
        connect_timeout: float | None = 10.0,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
        tls: ssl.SSLContext | None = None,
        never_transcode: bool = False,
        fail_fast: bool = False,
        retries: int = 0,
        retry_backoff: float = 1.0,
        max_rate: float | None = None,
        max_bandwidth: float | None = None,
        user_identity: UserIdentity | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        for name, flag in (
            ("never_transcode", never_transcode),
            ("fail_fast", fail_fast),
            ("verbose", verbose),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self._log = _verbose_logger() if verbose else _QUIET_LOG
        self.endpoint = build_endpoint(
            addr,
            calling_ae_title=calling_ae_title,
            called_ae_title=called_ae_title,
            max_pdu_length=max_pdu_length,
            connect_timeout=connect_timeout,
            acse_timeout=acse_timeout,
            dimse_timeout=dimse_timeout,
            network_timeout=network_timeout,
            tls=tls,
            log=self._log,
            user_identity=user_identity,
        )
        self.policy = SyntaxPolicy.from_options(transfer_syntax, never_transcode)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
            raise ValueError(f"retries must be an integer 0..100, got {retries!r}")
        if (
            isinstance(retry_backoff, bool)
            or not isinstance(retry_backoff, int | float)
            or not 0 <= retry_backoff <= 3600  # also refuses NaN
        ):
            raise ValueError(
                f"retry_backoff must be a number of seconds 0..3600 (0: no wait between "
                f"tries), got {retry_backoff!r}"
            )
        # The back-off doubles up to 30 s between tries, or up to retry_backoff if more.
        backoff = float(retry_backoff)
        self.retry = RetryPolicy(retries, backoff, max_backoff=max(30.0, backoff))
        for name, rate in (("max_rate", max_rate), ("max_bandwidth", max_bandwidth)):
            if rate is not None and (
                isinstance(rate, bool)
                or not isinstance(rate, int | float)
                or not math.isfinite(rate)
                or not rate > 0
            ):
                raise ValueError(
                    f"{name} must be a positive number per second or None, got {rate!r}"
                )
        self.max_rate = max_rate
        self.max_bandwidth = max_bandwidth
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.addr = addr
        self.concurrency = concurrency
        self.fail_fast = fail_fast
        self.verbose = verbose
        # Options of the object store for URL sources (fsspec's; scu.s3_options builds
        # them for S3); kept private: they may hold credentials.
        self._storage_options = remote.check_storage_options(storage_options)
        self._entries: list[Entry] = []
        #: Files ``add_directory`` left out, with the reason.
        self.skipped: list[Skipped] = []

    # --- the options, as given and resolved ---------------------------------------------

    @property
    def calling_ae_title(self) -> str:
        return self.endpoint.calling_ae_title

    @property
    def called_ae_title(self) -> str:
        return self.endpoint.called_ae_title

    @property
    def max_pdu_length(self) -> int:
        return self.endpoint.max_pdu_length

    @property
    def timeouts(self) -> Timeouts:
        return self.endpoint.timeouts

    @property
    def tls(self) -> ssl.SSLContext | None:
        return self.endpoint.tls

    @property
    def transfer_syntax(self) -> str | None:
        """The forced transfer syntax UID, or ``None`` (each file in its own)."""
        return self.policy.forced

    @property
    def never_transcode(self) -> bool:
        return self.policy.never_transcode

    # --- the queue -----------------------------------------------------------------

    def add_file(self, path: str | os.PathLike[str]) -> None:
        """Queue one file, or one object by URL (``s3://bucket/key``; see
        :mod:`scu.remote`). Raises :class:`FileNotFoundError` if it does not exist."""
        text = os.fspath(path)
        if remote.is_url(text):
            obj = remote.stat(text, self._storage_options)
            self._entries.append(Entry(text, remote=obj))
            return
        try:
            mode = os.stat(text).st_mode
        except FileNotFoundError:
            raise FileNotFoundError(f"add_file: no such file: {text}") from None
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"add_file: {text} is a directory; use add_directory()")
        if not stat.S_ISREG(mode):
            raise ValueError(
                f"add_file: {text} is {file_kind(mode)}, not a regular file; only regular "
                "files (or add_file_from_memory) can be sent"
            )
        self._entries.append(Entry(text, path=text))

    def add_directory(
        self,
        path: str | os.PathLike[str],
        pattern: str | None = "*.dcm",
        recursive: bool = True,
    ) -> int:
        """Queue the regular files under ``path`` whose names match ``pattern`` (an
        ``fnmatch`` pattern, whatever the case: ``*.dcm`` takes ``A.DCM``), sorted by
        path. ``pattern=None`` queues every file that looks like DICOM by its content
        (the ``DICM`` marker, or a plausible data set without file meta), whatever its
        name. A DICOMDIR (by name, or by content) is never queued. What is left out is
        listed in :attr:`skipped` with the reason. Returns how many were queued.

        ``path`` may be a URL prefix (``s3://bucket/prefix/``): its objects are queued
        the same way, sorted by key; "sub-folders" are the key's ``/``-separated parts.
        """
        if pattern is not None and (not isinstance(pattern, str) or not pattern):
            raise ValueError(
                f"add_directory: pattern must be a non-empty string or None, got {pattern!r}"
            )
        if remote.is_url(os.fspath(path)):
            return self._add_prefix(os.fspath(path), pattern, recursive)
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"add_directory: no such directory: {os.fspath(path)}")
        if not root.is_dir():
            raise NotADirectoryError(f"add_directory: {os.fspath(path)} is not a directory")
        wanted = None if pattern is None else pattern.lower()
        found: list[str] = []
        walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
        for folder, dirs, names in walker:
            dirs.sort()
            for name in names:
                full = os.path.join(folder, name)
                try:
                    mode = os.stat(full).st_mode
                except OSError as exc:
                    self.skipped.append(Skipped(full, f"cannot be read ({exc.strerror})"))
                    continue
                if not stat.S_ISREG(mode):
                    self.skipped.append(Skipped(full, f"{file_kind(mode)}, not a regular file"))
                    continue
                if wanted is not None and not fnmatch.fnmatchcase(name.lower(), wanted):
                    self.skipped.append(Skipped(full, f"does not match {pattern}"))
                    continue
                if wanted is None or "dicomdir" in name.lower():
                    kind = sniff(full)
                    if kind == "dicomdir":
                        self.skipped.append(Skipped(full, "a DICOMDIR (media directory)"))
                        continue
                    if kind != "dicom":
                        self.skipped.append(Skipped(full, "not DICOM by its content"))
                        continue
                found.append(full)
        found.sort()
        self._entries.extend(Entry(p, path=p) for p in found)
        return len(found)

    def _add_prefix(self, url: str, pattern: str | None, recursive: bool) -> int:
        """``add_directory`` for a URL prefix: the same rules on the objects' names."""
        wanted = None if pattern is None else pattern.lower()
        found: list[Entry] = []
        for name, obj in remote.listing(url, self._storage_options, recursive=recursive):
            if wanted is not None and not fnmatch.fnmatchcase(name.lower(), wanted):
                self.skipped.append(Skipped(obj.url, f"does not match {pattern}"))
                continue
            if wanted is None or "dicomdir" in name.lower():
                kind = remote.sniff_object(obj)
                if kind == "dicomdir":
                    self.skipped.append(Skipped(obj.url, "a DICOMDIR (media directory)"))
                    continue
                if kind != "dicom":
                    self.skipped.append(Skipped(obj.url, "not DICOM by its content"))
                    continue
            found.append(Entry(obj.url, remote=obj))
        self._entries.extend(found)
        return len(found)

    def add_file_from_memory(self, data: bytes | bytearray | memoryview, name: str) -> None:
        """Queue a file held in memory; ``name`` identifies it in events and results."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"add_file_from_memory: data must be bytes, got {type(data).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError("add_file_from_memory: name must be a non-empty string")
        self._entries.append(Entry(name, data=bytes(data)))

    def clean(self) -> None:
        """Empty the queue and the list of skipped files (``send()`` does not)."""
        self._entries.clear()
        self.skipped.clear()

    @property
    def files(self) -> list[str]:
        """The names of the queued entries, in queue order."""
        return [entry.name for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    # --- sending -------------------------------------------------------------------

    def _transfer(
        self, callbacks: Callbacks, journal: str | os.PathLike[str] | None, resume: bool
    ) -> Transfer:
        if resume and journal is None:
            raise ValueError("resume=True needs journal=PATH (the journal to resume from)")
        return Transfer(
            self._entries,
            endpoint=self.endpoint,
            policy=self.policy,
            concurrency=self.concurrency,
            fail_fast=self.fail_fast,
            callbacks=callbacks,
            retry=self.retry,
            limiter=RateLimiter(self.max_rate, self.max_bandwidth),
            journal=None if journal is None else TransferJournal(journal),
            resume=resume,
        )

    def send(
        self,
        *,
        on_transfer_started: Callback[TransferStarted] = None,
        on_file_sending: Callback[FileSending] = None,
        on_file_sent: Callback[FileSent] = None,
        on_file_error: Callback[FileError] = None,
        on_transfer_completed: Callback[TransferCompleted] = None,
        journal: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ) -> TransferResult:
        """Send every queued entry; callbacks run on this thread, one at a time.

        ``journal`` records each entry's outcome durably as it happens (SQLite, see
        :mod:`scu.journal`); with ``resume=True`` the entries this destination already
        acknowledged there are left out (listed in ``result.already_sent``).

        Raises :class:`ConnectionFailed` / :class:`AssociationRejected` only when no
        association could be established at all (``.result`` accounts every entry as
        failed), :class:`CallbackError` after the transfer if a callback raised, and
        :class:`Interrupted` (a ``KeyboardInterrupt``) after accounting for every entry
        when interrupted (Ctrl-C): the store in flight gets a moment to be answered; a
        second Ctrl-C stops at once.
        """
        transfer = self._transfer(Callbacks(
            on_transfer_started, on_file_sending, on_file_sent, on_file_error, on_transfer_completed
        ), journal, resume)  # fmt: skip
        try:
            with transfer.sigint_interrupts():
                transfer.prepare()
                if transfer.use_processes:
                    transfer.run_processes()
                elif self.concurrency == 1:
                    transfer.run_inline()
                else:
                    transfer.run_threads()
        except BaseException:  # a callback's SystemExit, say: the journal is not left open
            transfer.close_journal()
            raise
        return transfer.finish()

    async def send_async(
        self,
        *,
        on_transfer_started: Callback[TransferStarted] = None,
        on_file_sending: Callback[FileSending] = None,
        on_file_sent: Callback[FileSent] = None,
        on_file_error: Callback[FileError] = None,
        on_transfer_completed: Callback[TransferCompleted] = None,
        journal: str | os.PathLike[str] | None = None,
        resume: bool = False,
    ) -> TransferResult:
        """Like :meth:`send`, without blocking the event loop; callbacks run on the
        loop's thread, one at a time. Cancelled, it accounts for every entry as an
        interrupted ``send()`` does, then raises ``CancelledError`` with ``.result``."""
        import asyncio

        transfer = self._transfer(Callbacks(
            on_transfer_started, on_file_sending, on_file_sent, on_file_error, on_transfer_completed
        ), journal, resume)  # fmt: skip
        try:
            preparing = asyncio.ensure_future(asyncio.to_thread(transfer.prepare))
            try:
                await asyncio.shield(preparing)
            except asyncio.CancelledError:  # while the files were being read: stop reading
                transfer.interruption.interrupt()
                transfer.cancelled = True
                await preparing
            if transfer.use_processes:
                await transfer.run_processes_async()
            else:
                await transfer.run_async()
        except BaseException:
            transfer.close_journal()
            raise
        return transfer.finish()

    def preflight(self) -> list[PreflightItem]:
        """Negotiate without sending: what would happen to each queued entry.

        Raises :class:`ConnectionFailed` / :class:`AssociationRejected` like ``send()``.
        """
        return preflight(list(self._entries), endpoint=self.endpoint, policy=self.policy)

    @property
    def user_identity(self) -> UserIdentity | None:
        return self.endpoint.user_identity

    def __repr__(self) -> str:
        return (
            f"StoreScu({self.addr!r}, calling_ae_title={self.calling_ae_title!r}, "
            f"called_ae_title={self.called_ae_title!r}, queued={len(self._entries)})"
        )


_QUIET_LOG = logging.getLogger("scu.association")
_VERBOSE_LOG = logging.getLogger("scu.verbose")


def _verbose_logger() -> logging.Logger:
    """The logger of ``verbose=True`` instances: it lets their protocol exchange through
    at DEBUG (other instances log to ``scu.association``, which follows the
    application's logging set-up), and prints to stderr when nothing is configured."""
    _VERBOSE_LOG.setLevel(logging.DEBUG)
    if not _VERBOSE_LOG.hasHandlers():  # nothing here or above would print it
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        _VERBOSE_LOG.addHandler(handler)
    return _VERBOSE_LOG
