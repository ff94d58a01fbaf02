"""Sources in object storage: ``s3://bucket/key`` and any other URL fsspec can read
(``gs://``, ``az://``, ``http(s)://`` for single objects), each where its package is
installed (``pip install 'scukit[s3]'`` for S3).

An object is pinned when it is queued: its size and ETag (or, where a store has none,
its generation or modification time) are taken from the listing or a HEAD request, and
every later read asks for that version (S3: ``If-Match``; other stores: the size and
tag are compared when the object is opened). An object that changed after it was queued
fails with "changed since it was queued"; the transfer journal knows it by URL, size and
tag, so a resumed send never skips a changed object.

Where bytes come from, and how many:

* the header check (:meth:`RemoteObject.read_header`) reads an object whole only up to
  :data:`READ_WHOLE` bytes; beyond, it reads the first :data:`HEAD` bytes and walks the
  data set's structure through layouts that fetch, block by block, only the element
  headers the walk asks for (a 1 GB data set costs two or three small ranged reads);
  the head grows only if the file meta or the first elements do not fit in it;
* sending streams the data set with one ranged GET (S3) or fsspec's read-ahead file
  (other stores), chunk by chunk as the PDUs are written: memory does not grow with the
  object; each stream is opened by the worker that sends it, never shared;
* a file that must be converted is read whole (pydicom needs all of it).

fsspec and the store's package are imported only when a URL is used, so ``import scu``
needs neither. Errors name the URL and never carry credentials.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from scu.payload import SourceError
from scu.source import SNIFF_BYTES, EntryError, Header, header_of
from scu.sparse import HEAD, check_in_steps

__all__ = [
    "HEAD",
    "READ_WHOLE",
    "RemoteObject",
    "is_url",
    "listing",
    "s3_options",
    "stat",
]

#: Objects up to this size are read whole by the header check (one request).
READ_WHOLE = 256 * 1024
#: fsspec's read-ahead for streams from stores other than S3.
_STREAM_BLOCK = 4 * 1024 * 1024

_URL = re.compile(r"\A([A-Za-z][A-Za-z0-9+.\-]*)://")
_USERINFO = re.compile(r"(://)[^/@\s]+@")

#: Which package reads which protocol, and how to install it.
_PACKAGES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "pip install 'scukit[s3]'"),
    "s3a": ("s3fs", "pip install 'scukit[s3]'"),
    "gs": ("gcsfs", "pip install gcsfs"),
    "gcs": ("gcsfs", "pip install gcsfs"),
    "az": ("adlfs", "pip install adlfs"),
    "abfs": ("adlfs", "pip install adlfs"),
    "abfss": ("adlfs", "pip install adlfs"),
    "http": ("aiohttp", "pip install 'scukit[s3]' (fsspec and aiohttp)"),
    "https": ("aiohttp", "pip install 'scukit[s3]' (fsspec and aiohttp)"),
}
_S3 = frozenset({"s3", "s3a"})
#: Bounded retries and timeouts, so an unreachable endpoint fails in seconds, not
#: minutes; storage_options override them.
_S3_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"max_attempts": 2, "mode": "standard"},
    },
}
#: Option names whose values are secrets: they are blotted out of every message.
_SECRET_NAMES = re.compile(
    r"secret|token|password|passwd|credential|key\b|account_key|sas|session", re.I
)


def is_url(text: str) -> bool:
    """Whether a queued name is a URL (``scheme://...``) rather than a local path."""
    return _URL.match(text) is not None and not text.lower().startswith("file://")


def s3_options(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    anonymous: bool = False,
    profile: str | None = None,
) -> dict[str, Any]:
    """``storage_options`` for S3 and S3-compatible stores (MinIO, Ceph RGW):
    ``endpoint_url`` (``http(s)://host:port``), ``region``, ``anonymous`` (unsigned
    requests, for public buckets) and ``profile`` (a named profile of the AWS config
    files). Credentials otherwise come from the standard chain: environment, profile,
    instance or container role."""
    options: dict[str, Any] = {}
    if endpoint_url is not None:
        if not isinstance(endpoint_url, str) or not re.match(r"\Ahttps?://[^/\s]+", endpoint_url):
            raise ValueError(
                f"endpoint_url must be an http:// or https:// URL, got {endpoint_url!r}"
            )
        options["endpoint_url"] = endpoint_url
    if region is not None:
        if not isinstance(region, str) or not re.fullmatch(r"[a-z0-9-]{2,40}", region):
            raise ValueError(f"region must be a region name such as eu-west-1, got {region!r}")
        options["client_kwargs"] = {"region_name": region}
    if not isinstance(anonymous, bool):
        raise ValueError(f"anonymous must be True or False, got {anonymous!r}")
    if anonymous:
        if profile is not None:
            raise ValueError("anonymous and profile contradict each other; give one")
        options["anon"] = True
    if profile is not None:
        if not isinstance(profile, str) or not profile.strip():
            raise ValueError(f"profile must be a profile name, got {profile!r}")
        options["profile"] = profile
    return options


def check_storage_options(options: object) -> dict[str, Any]:
    """``StoreScu(storage_options=...)``: a mapping of fsspec options with string keys."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ValueError(
            "storage_options must be a mapping of option names to values (fsspec's "
            f"options for the store, e.g. scu.s3_options(...)), got {type(options).__name__}"
        )
    return dict(options)


# --- the store ------------------------------------------------------------------------


class _Store:
    """An fsspec filesystem for one protocol and set of options, and the secrets to blot
    out of what it says."""

    def __init__(self, protocol: str, options: Mapping[str, Any], url: str) -> None:
        self.protocol = protocol
        self.secrets = _secret_values(options)
        self.fs = _filesystem(protocol, options, url)
        self.s3 = protocol in _S3 and hasattr(self.fs, "_call_s3")

    def path(self, url: str) -> str:
        return str(self.fs._strip_protocol(url))

    def clean(self, text: str) -> str:
        """A message with credentials blotted out."""
        text = _USERINFO.sub(r"\1***@", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def sync(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        from fsspec.asyn import sync

        result: _T = sync(self.fs.loop, lambda: coroutine)
        return result


_T = TypeVar("_T")
_STORES: dict[tuple[str, str], _Store] = {}
_STORES_LOCK = threading.Lock()


def _store(url: str, options: Mapping[str, Any]) -> _Store:
    match = _URL.match(url)
    assert match is not None
    protocol = match.group(1).lower()
    key = (protocol, repr(sorted(options.items(), key=lambda item: item[0])))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = _Store(protocol, options, url)
    return store


def _filesystem(protocol: str, options: Mapping[str, Any], url: str) -> Any:
    package, install = _PACKAGES.get(protocol, ("fsspec", "pip install 'scukit[s3]'"))
    try:
        import fsspec
    except ImportError:
        raise ImportError(
            f"{url}: reading {protocol}:// sources needs fsspec and {package}: {install}"
        ) from None
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError:
        raise ImportError(
            f"{url}: reading {protocol}:// sources needs {package}: {install}"
        ) from None
    except ValueError:
        raise ValueError(f"{url}: unknown protocol {protocol}:// (not one fsspec knows)") from None
    merged = dict(_S3_DEFAULTS) if protocol in _S3 else {}
    for name, value in options.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    try:
        return cls(**merged)
    except Exception as exc:
        raise ValueError(
            f"{url}: storage_options not accepted by {protocol}:// ({type(exc).__name__}: "
            f"{_blot(str(exc), _secret_values(options))})"
        ) from None


def _secret_values(options: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            found += _secret_values(value)
        elif isinstance(value, str) and len(value) >= 4 and _SECRET_NAMES.search(name):
            found.append(value)
    return found


def _blot(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return _USERINFO.sub(r"\1***@", text)


# --- what went wrong, in words --------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _service_code(exc: BaseException) -> tuple[str | None, str | None]:
    """The storage service's error code and message (S3's ``AccessDenied``...), if any."""
    for link in _chain(exc):
        response = getattr(link, "response", None)
        if isinstance(response, Mapping):
            error = response.get("Error") or {}
            code = error.get("Code")
            if code:
                return str(code), error.get("Message")
    return None, None


_DENIED_CODES = frozenset(
    {
        "AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
        "ExpiredToken", "InvalidToken", "AccountProblem", "InvalidObjectState",
    }
)  # fmt: skip
_NETWORK = (
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ClientPayloadError", "ClientOSError",
    "IncompleteRead", "ResponseStreamingError", "TimeoutError", "FSTimeoutError",
    "ConnectionError", "ProxyConnectionError", "HTTPClientError",
)  # fmt: skip


@dataclass(frozen=True)
class _Fault:
    """What went wrong reading an object: the reason in words and its kind."""

    reason: str
    kind: type[OSError]
    changed: bool = False
    transient: bool = False


def _fault(exc: BaseException, store: _Store | None) -> _Fault:
    code, message = _service_code(exc)
    names = {type(link).__name__ for link in _chain(exc)}
    text = store.clean(str(exc)) if store is not None else _blot(str(exc), [])
    detail = f"{code}: {message}" if code and message else (code or text)
    if store is not None:
        detail = store.clean(detail)
    if (
        code == "PreconditionFailed"
        or "FileExpired" in names
        or (code == "412" or ("pre-conditions" in text or "Precondition" in text))
    ):
        return _Fault("changed since it was queued (its ETag no longer matches)", OSError, True)
    if code == "NoSuchBucket" or "bucket does not exist" in text:
        return _Fault("no such bucket", FileNotFoundError)
    if code in ("NoSuchKey", "404", "NotFound") or isinstance(exc, FileNotFoundError):
        return _Fault("no such object", FileNotFoundError)
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return _Fault(
            "no credentials: none in the environment, the AWS profile or an instance role "
            "(set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile, or read a public "
            "bucket anonymously: --s3-anonymous, s3_options(anonymous=True))",
            PermissionError,
        )
    if names & {"ProfileNotFound"}:
        return _Fault(f"no such profile ({text})", PermissionError)
    if code in _DENIED_CODES or isinstance(exc, PermissionError):
        return _Fault(f"access denied ({detail})", PermissionError)
    if names & set(_NETWORK) or isinstance(exc, ConnectionError | TimeoutError):
        return _Fault(f"cannot reach the store ({text})", ConnectionError, transient=True)
    return _Fault(f"{type(exc).__name__}: {detail}", OSError, transient=code is None)


# --- objects --------------------------------------------------------------------------


def _tag(info: Mapping[str, Any]) -> str | None:
    """The version of an object as its store describes it, for pinning and the journal."""
    for name in ("ETag", "etag", "generation", "md5Hash", "LastModified", "last_modified",
                 "updated", "mtime", "modified"):  # fmt: skip
        value = info.get(name)
        if value not in (None, ""):
            return f"{name}={str(value).strip(chr(34))}"
    return None


@dataclass(frozen=True)
class RemoteObject:
    """One object, pinned at the version seen when it was queued."""

    url: str
    path: str
    size: int
    #: The version: ``ETag=...`` (or another tag, see :func:`_tag`); None if the store has none.
    tag: str | None
    etag: str | None = field(default=None, repr=False)
    _store: _Store = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def journal_key(self) -> str:
        """What the transfer journal knows the object by: URL, size and version."""
        return f"url:{self.url}|{self.size}|{self.tag or '-'}"

    def _describe(self, exc: BaseException, what: str) -> _Fault:
        fault = _fault(exc, self._store)
        return _Fault(f"{what} {self.url}: {fault.reason}", fault.kind, fault.changed,
                      fault.transient)  # fmt: skip

    # -- ranged reads (the header check, conversions)
    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of the pinned version; :class:`EntryError` if not."""
        stop = min(stop, self.size)
        if stop <= start:
            return b""
        try:
            data = self._get(start, stop)
        except Exception as exc:
            raise EntryError(self._describe(exc, "cannot read").reason) from None
        if len(data) != stop - start:
            raise EntryError(
                f"cannot read {self.url}: asked for {stop - start} bytes at {start}, got "
                f"{len(data)} (changed since it was queued?)"
            )
        return data

    def read_all(self) -> bytes:
        return self.read(0, self.size)

    def _get(self, start: int, stop: int) -> bytes:
        store = self._store
        if store.s3:
            return store.sync(_s3_get(store.fs, self.path, self.etag, start, stop))
        self._check_version(store.fs.info(self.path))
        data: bytes = store.fs.cat_file(self.path, start=start, end=stop)
        return data

    def _check_version(self, info: Mapping[str, Any]) -> None:
        size, tag = int(info.get("size") or 0), _tag(info)
        if size != self.size or (self.tag is not None and tag != self.tag):
            raise _Changed(f"was {self.size} bytes {self.tag}, now {size} bytes {tag}")

    # -- streaming (sending)
    def open(self) -> _Stream:
        """A stream of the pinned version for one sender; ``seek`` before reading."""
        return _Stream(self)

    # -- the header check
    def read_header(self) -> Header:
        """The header check (:func:`scu.source.header_of`) on as few bytes as it needs."""
        if self.size <= READ_WHOLE:
            return header_of(self.read_all())
        return check_in_steps(self.size, self.read, self.url)


class _Changed(Exception):
    """The object is not the version that was queued."""


async def _s3_get(fs: Any, path: str, etag: str | None, start: int, stop: int) -> bytes:
    response = await _s3_request(fs, path, etag, start, stop)
    try:
        data: bytes = await response["Body"].read()
        return data
    finally:
        response["Body"].close()


async def _s3_request(fs: Any, path: str, etag: str | None, start: int, stop: int) -> Any:
    bucket, key, version = fs.split_path(path)
    extra: dict[str, Any] = {"IfMatch": etag} if etag else {}
    if version:
        extra["VersionId"] = version
    return await fs._call_s3(
        "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{stop - 1}", **extra
    )


async def _s3_fill(body: Any, want: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < want:
        piece: bytes = await body.read(want - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


async def _s3_close(body: Any) -> None:
    body.close()


class _Stream:
    """The bytes of one object from an offset, read as they are sent: one ranged GET on
    S3 (read in the chunks asked for), fsspec's read-ahead file elsewhere. Every failure
    is a :class:`SourceError` naming the URL; network errors are transient."""

    def __init__(self, obj: RemoteObject) -> None:
        self._obj = obj
        self._offset = 0
        self._body: Any = None
        self._file: Any = None

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seek(self, offset: int) -> int:
        if self._body is not None or self._file is not None:
            raise ValueError("seek only before the first read")
        self._offset = offset
        return offset

    def _fail(self, exc: BaseException) -> SourceError:
        if isinstance(exc, _Changed):
            return SourceError(f"cannot read {self._obj.url}: changed since it was queued ({exc})")
        fault = self._obj._describe(exc, "cannot read")
        return SourceError(fault.reason, transient=fault.transient)

    def readinto(self, view: memoryview) -> int:
        obj = self._obj
        store = obj._store
        want = min(len(view), obj.size - self._offset)
        if want <= 0:
            return 0
        try:
            if store.s3:
                if self._body is None:
                    response = store.sync(
                        _s3_request(store.fs, obj.path, obj.etag, self._offset, obj.size)
                    )
                    self._body = response["Body"]
                data = store.sync(_s3_fill(self._body, want))
                view[: len(data)] = data
                got = len(data)
            else:
                if self._file is None:
                    self._file = store.fs.open(
                        obj.path, "rb", block_size=_STREAM_BLOCK, cache_type="readahead"
                    )
                    details = getattr(self._file, "details", None)
                    obj._check_version(details or {"size": self._file.size})
                    self._file.seek(self._offset)
                got = int(self._file.readinto(view[:want]) or 0)
        except SourceError:
            raise
        except Exception as exc:
            raise self._fail(exc) from None
        self._offset += got
        return got

    def close(self) -> None:
        body, self._body = self._body, None
        handle, self._file = self._file, None
        try:
            if body is not None:
                self._obj._store.sync(_s3_close(body))
            if handle is not None:
                handle.close()
        except Exception:  # closing after a failure: nothing more to say
            pass


# --- queueing -------------------------------------------------------------------------


def _object(store: _Store, url: str, path: str, info: Mapping[str, Any]) -> RemoteObject:
    etag = info.get("ETag") or info.get("etag")
    return RemoteObject(
        url, path, int(info.get("size") or 0), _tag(info),
        str(etag) if etag else None, store,
    )  # fmt: skip


def _raise(exc: BaseException, store: _Store, url: str, what: str) -> None:
    fault = _fault(exc, store)
    raise fault.kind(f"{what}: {url}: {fault.reason}") from None


def stat(url: str, options: Mapping[str, Any]) -> RemoteObject:
    """One object, for ``add_file``: :class:`FileNotFoundError` (no such bucket or
    object), :class:`PermissionError` (access denied, no credentials),
    :class:`ConnectionError` (the store cannot be reached), :class:`IsADirectoryError`
    (a prefix), each naming the URL."""
    store = _store(url, options)
    path = store.path(url)
    try:
        info = store.fs.info(path)
    except Exception as exc:
        _raise(exc, store, url, "add_file")
    if info.get("type") == "directory":
        raise IsADirectoryError(
            f"add_file: {url} is a prefix (a folder), not an object; use add_directory()"
        )
    return _object(store, url, path, info)


def listing(
    url: str, options: Mapping[str, Any], *, recursive: bool
) -> list[tuple[str, RemoteObject]]:
    """The objects under a prefix, sorted by key, as (base name, object); for
    ``add_directory``. A prefix that holds nothing (or a missing bucket) raises
    :class:`FileNotFoundError`, as a missing folder does; an object raises
    :class:`NotADirectoryError`."""
    store = _store(url, options)
    root = store.path(url).rstrip("/")
    bucket_only = "/" not in root
    try:
        found = store.fs.find(root, maxdepth=None if recursive else 1, detail=True)
    except Exception as exc:
        _raise(exc, store, url, "add_directory")
    if not found and not bucket_only:
        raise FileNotFoundError(f"add_directory: no such prefix: {url} (no object under it)")
    if root in found and found[root].get("type") != "directory" and len(found) == 1:
        raise NotADirectoryError(f"add_directory: {url} is an object, not a prefix")
    given = url.rstrip("/")
    objects: list[tuple[str, RemoteObject]] = []
    for path in sorted(found):
        info = found[path]
        if info.get("type") == "directory" or not path.startswith(root + "/"):
            continue
        relative = path[len(root) + 1 :]
        if not relative or relative.endswith("/"):
            continue  # a "folder" marker object
        name = relative.rsplit("/", 1)[-1]
        objects.append((name, _object(store, f"{given}/{relative}", path, info)))
    return objects


def sniff_object(obj: RemoteObject) -> str:
    """:func:`scu.source.sniff` on an object's first bytes (one ranged read)."""
    from scu.source import sniff_head

    try:
        return sniff_head(obj.read(0, SNIFF_BYTES))
    except EntryError:
        return "other"
