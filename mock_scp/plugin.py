"""pytest plugin: a mock Storage SCP, a StoreScu pointed at it, and synthetic DICOM files.

Registered through the ``pytest11`` entry point, so installing scukit is enough::

    def test_sender_reports_warnings(mock_scp, store_scu, dicom_file_factory):
        mock_scp.on_store(nth=2).warn("0xB000", comment="coerced")
        for path in dicom_file_factory(count=3):
            store_scu.add_file(path)
        result = store_scu.send()
        assert result.successful == 3 and len(result.warnings) == 1
        mock_scp.assert_stored(3)

Fixtures come in layers, as in pytest-httpserver:

- ``mock_scp_factory`` (session, a :class:`MockScpFactory`): ``mock_scp_factory(**kwargs)``
  returns a started server stopped at the end of the session;
  ``mock_scp_factory.shared(**kwargs)`` one server per configuration. Session scope
  makes it usable inside hypothesis tests.
- ``mock_scp`` (function): the shared server for ``mock_scp_options``, ``reset()``
  before the test. Right after the test body it waits for the associations to end and
  checks the server: an unmet ``expect=``, an error in a server thread, an SCU
  violation, or an association the SCU left open or ended without a release fails the
  *test* (not its teardown), with the journal in the message. Opt out of the release
  check with ``@pytest.mark.mock_scp(allow_unreleased=True)``.
- ``store_scu`` (function): a ``scu.StoreScu`` for ``mock_scp.addr`` (called AE title
  = the server's) plus ``store_scu_options``.
- ``dicom_file_factory`` (function, a :class:`DicomFileFactory`): writes synthetic files
  (``mock_scp.datagen``) under ``tmp_path``; each call gets distinct instances.

Configuration fixtures to override in a ``conftest.py`` or a module:
``mock_scp_options`` (MockScp keyword arguments, default ``{}``), ``store_scu_options``
(StoreScu keyword arguments, default ``{}``) and ``mock_scp_idle_timeout`` (seconds to
wait for the associations to end, default 2). ``pytest --mock-scp-journal DIR`` writes
the journal of every failing test that used ``mock_scp`` as JSON into DIR.

The guide with runnable recipes is ``docs/pytest-plugin.md``.

Imports of ``mock_scp``/``scu`` are deferred to fixture set-up so that loading the plugin
(which pytest does for every project where scukit is installed) costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import pytest

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mock_scp import MockScp
    from mock_scp.datagen import DatasetOptions
    from scu import StoreScu

__all__ = [
    "DicomFileFactory",
    "MockScpFactory",
    "dicom_file_factory",
    "mock_scp",
    "mock_scp_factory",
    "mock_scp_idle_timeout",
    "mock_scp_options",
    "store_scu",
    "store_scu_options",
]


def _options_key(options: dict[str, Any]) -> str:
    # Configurations are compared by their repr: options hold lists, paths and callables,
    # which are not all hashable, and two equal reprs configure the same server.
    return repr(sorted(options.items()))


class MockScpFactory:
    """Creates started :class:`mock_scp.MockScp` servers and stops them all at the end.

    Thread-safe, so hypothesis or threaded tests may call it concurrently.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: list[MockScp] = []
        self._shared: dict[str, MockScp] = {}

    def __call__(self, **options: Any) -> MockScp:
        """A new, started server configured with ``MockScp(**options)``."""
        from mock_scp import MockScp

        scp = MockScp(**options)
        scp.start()
        with self._lock:
            self._servers.append(scp)
        return scp

    def shared(self, **options: Any) -> MockScp:
        """The one server for this configuration, started on first use and then reused.

        Not reset here: callers that share it decide when its journal and rules go.
        """
        key = _options_key(options)
        with self._lock:
            existing = self._shared.get(key)
        if existing is not None:
            return existing
        scp = self(**options)
        with self._lock:
            # Another thread may have won the race; keep one and stop the spare.
            winner = self._shared.setdefault(key, scp)
        if winner is not scp:
            scp.stop()
        return winner

    def discard(self, scp: MockScp) -> None:
        """Stop ``scp`` and forget it, so ``shared()`` starts a fresh server next time."""
        with self._lock:
            for key, shared in list(self._shared.items()):
                if shared is scp:
                    del self._shared[key]
            if scp in self._servers:
                self._servers.remove(scp)
        scp.stop()

    @property
    def servers(self) -> list[MockScp]:
        """Every server this factory started, oldest first."""
        with self._lock:
            return list(self._servers)

    def stop_all(self) -> None:
        """Stop every server (newest first); errors from one do not keep others running."""
        with self._lock:
            servers, self._servers = self._servers, []
            self._shared.clear()
        failures: list[BaseException] = []
        for scp in reversed(servers):
            try:
                scp.stop()
            except Exception as exc:  # collect and re-raise below: stop the others first
                failures.append(exc)
        if failures:
            raise failures[0]


class DicomFileFactory:
    """Writes synthetic DICOM files into a directory (see :mod:`mock_scp.datagen`).

    ``factory(**options)`` writes one file and returns its ``Path``;
    ``factory(count=N, **options)`` writes ``N`` instances of one series into a fresh
    folder and returns their paths. Each call uses its own folder and, unless ``seed`` is
    given, its own seed, so files from different calls are always distinct instances.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._calls = 0
        self._lock = threading.Lock()

    @overload
    def __call__(self, *, count: None = None, **options: Unpack[DatasetOptions]) -> Path: ...

    @overload
    def __call__(self, *, count: int, **options: Unpack[DatasetOptions]) -> list[Path]: ...

    def __call__(
        self, *, count: int | None = None, **options: Unpack[DatasetOptions]
    ) -> Path | list[Path]:
        from mock_scp import datagen

        with self._lock:
            call = self._calls
            self._calls += 1
        folder = self.directory / f"set-{call:03d}"
        options.setdefault("seed", call)
        if count is None:
            return datagen.write_file(folder / "00000.dcm", **options)
        return datagen.write_files(folder, count=count, **options)


@pytest.fixture(scope="session")
def mock_scp_factory() -> Iterator[MockScpFactory]:
    """Session-scoped factory of started mock SCPs, all stopped at the end of the session."""
    factory = MockScpFactory()
    yield factory
    factory.stop_all()


@pytest.fixture
def mock_scp_options() -> dict[str, Any]:
    """``MockScp`` keyword arguments for the ``mock_scp`` fixture; override to configure."""
    return {}


@pytest.fixture
def mock_scp_idle_timeout() -> float:
    """Seconds ``mock_scp`` teardown waits for open associations to end; a server still
    busy after that is stopped and replaced (the next test gets a fresh one)."""
    return 2.0


@dataclass
class _Verdict:
    """What the check after the test body needs (kept in the test item's stash)."""

    scp: MockScp
    idle_timeout: float
    allow_unreleased: bool
    #: Whether the server was idle when checked (``None``: not checked).
    idle: bool | None = None

    def check(self) -> None:
        __tracebackhide__ = True
        # The SCU may still be releasing when the test body returns; what the server saw
        # of that release belongs to this test's verdict.
        from mock_scp import ViolationKind

        self.idle = self.scp.wait_idle(self.idle_timeout)
        # A connection the SCU dropped is also a dropped-connection violation: the
        # release check reports it (once), and the marker allows it with the rest.
        self.scp.check(
            allow_unreleased=self.allow_unreleased,
            ignore_violations=(ViolationKind.DROPPED_CONNECTION,),
        )


#: The options of ``@pytest.mark.mock_scp(...)`` and their defaults.
MARKER_OPTIONS: dict[str, bool] = {"allow_unreleased": False}


def _marker_options(node: pytest.Item) -> dict[str, bool]:
    """The ``mock_scp`` marker's options; a typo or a positional argument is an error
    rather than an option silently ignored."""
    options = dict(MARKER_OPTIONS)
    marker = node.get_closest_marker("mock_scp")
    if marker is None:
        return options
    problems = []
    if marker.args:
        problems.append(f"takes keyword arguments only, got {marker.args!r}")
    for key, value in marker.kwargs.items():
        if key not in MARKER_OPTIONS:
            import difflib

            close = difflib.get_close_matches(key, list(MARKER_OPTIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown option {key!r}{hint}; it takes {', '.join(MARKER_OPTIONS)}")
        elif not isinstance(value, bool):
            problems.append(f"{key}: expected True or False, got {value!r}")
        else:
            options[key] = value
    if problems:
        pytest.fail("@pytest.mark.mock_scp: " + "; ".join(problems), pytrace=False)
    return options


_VERDICT = pytest.StashKey[_Verdict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mock-scp-journal",
        metavar="DIR",
        default=None,
        help="write the mock SCP journal of each failing test that used mock_scp, as JSON",
    )


_JOURNAL_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mock_scp(allow_unreleased=False): options of the mock_scp fixture's check after "
        "the test (allow_unreleased: an association left open or ended by the SCU "
        "without a release does not fail the test)",
    )
    folder = config.getoption("--mock-scp-journal", None)
    if folder:
        # Resolved now: a test that changes the working directory must not move it.
        target = (config.invocation_params.dir / Path(folder).expanduser()).resolve()
        if target.exists() and not target.is_dir():
            raise pytest.UsageError(f"--mock-scp-journal: {folder} exists and is not a folder")
        config.stash[_JOURNAL_DIR] = target


def _journal_file(folder: Path, nodeid: str) -> Path:
    """``folder/<node id>.json``, the node id made a safe file name (long ones shortened
    with a digest, so that two tests never share a file)."""
    import hashlib
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    if len(name) > 200:
        name = f"{name[:180]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:12]}"
    return folder / f"{name}.json"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Check the mock SCP right after the test body, so that what it found fails the
    test itself (one outcome, not a pass and an error)."""
    __tracebackhide__ = True
    result = yield
    verdict = item.stash.get(_VERDICT, None)
    if verdict is not None:
        verdict.check()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failing test that used ``mock_scp``: the journal as a report section, and as
    JSON under ``--mock-scp-journal DIR``."""
    report = yield
    verdict = item.stash.get(_VERDICT, None)
    if verdict is None or not report.failed or call.when != "call":
        return report
    from mock_scp.report import format_journal, journal_dict

    text = format_journal(verdict.scp)
    folder = item.config.stash.get(_JOURNAL_DIR, None)
    if folder is not None:
        import json

        target = _journal_file(folder, item.nodeid)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(journal_dict(verdict.scp), indent=2, default=str))
        except OSError as exc:  # a report that cannot be written must not end the session
            text += f"\n(not written to {target}: {exc})"
        else:
            text += f"\n(written to {target})"
    report.sections.append(("mock SCP journal", text))
    return report


@pytest.fixture
def mock_scp(
    request: pytest.FixtureRequest,
    mock_scp_factory: MockScpFactory,
    mock_scp_options: dict[str, Any],
    mock_scp_idle_timeout: float,
) -> Iterator[MockScp]:
    """A running mock SCP, reset for this test and checked right after it.

    The server is shared by every test with the same ``mock_scp_options`` (starting one
    per test would cost a thread and a port each time); ``reset()`` clears rules, journal
    and the nth counter first. After the test body the check waits up to
    ``mock_scp_idle_timeout`` for associations to end and calls ``check()`` (see the
    module doc); at teardown a server still busy is stopped and replaced, so one test's
    traffic never lands in the next test's journal.
    """
    options = _marker_options(request.node)
    scp = mock_scp_factory.shared(**mock_scp_options)
    scp.reset()
    verdict = _Verdict(scp, mock_scp_idle_timeout, options["allow_unreleased"])
    request.node.stash[_VERDICT] = verdict
    yield scp
    # Busy at the check already (the SCU left an association open): no second wait.
    if not scp.wait_idle(0 if verdict.idle is False else mock_scp_idle_timeout):
        # Still busy (a stall outliving its SCU, a client left connected): stopping it is
        # the only way to keep this test's traffic out of the next test's journal.
        mock_scp_factory.discard(scp)


@pytest.fixture
def store_scu_options() -> dict[str, Any]:
    """``StoreScu`` keyword arguments for the ``store_scu`` fixture; override to configure."""
    return {}


@pytest.fixture
def store_scu(mock_scp: MockScp, store_scu_options: dict[str, Any]) -> StoreScu:
    """A ``scu.StoreScu`` pointed at ``mock_scp`` (called AE title = the server's)."""
    from scu import StoreScu

    options: dict[str, Any] = {"called_ae_title": mock_scp.ae_title, **store_scu_options}
    return StoreScu(mock_scp.addr, **options)


@pytest.fixture
def dicom_file_factory(tmp_path: Path) -> DicomFileFactory:
    """Writes synthetic DICOM files under ``tmp_path``; see :class:`DicomFileFactory`."""
    return DicomFileFactory(tmp_path / "dicom")
