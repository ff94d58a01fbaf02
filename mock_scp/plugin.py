"""pytest plugin: a mock Storage SCP, a StoreScu pointed at it, and synthetic DICOM files.

Registered through the ``pytest11`` entry point, so installing scukit is enough::

    def test_sender_reports_warnings(mock_scp, store_scu, dicom_file_factory):
        mock_scp.on_store(nth=2).warn(0xB000, comment="coerced")
        store_scu.add_directory(dicom_file_factory(count=3)[0].parent)
        result = store_scu.send()
        assert result.successful == 3 and len(result.warnings) == 1

Fixtures come in layers, as in pytest-httpserver:

- ``mock_scp_factory`` (session): ``mock_scp_factory(**MockScp kwargs)`` returns a started
  server that is stopped at the end of the session; ``mock_scp_factory.shared(**kwargs)``
  returns one server per distinct configuration, started once. Session scope makes it
  usable inside hypothesis tests (``@given`` forbids function-scoped fixtures per example).
- ``mock_scp`` (function): the shared server for ``mock_scp_options``, ``reset()`` before
  the test; at teardown it waits for the server to go idle and calls ``check()``, so an
  unmet ``expect=``, an error in a server thread or an SCU violation fails the test (as an
  error at teardown) instead of passing silently.
- ``store_scu`` (function): a ``scu.StoreScu`` for ``mock_scp.addr`` with the called AE
  title set to the server's, plus ``store_scu_options``.
- ``dicom_file_factory`` (function): writes synthetic files (``mock_scp.datagen``) under
  ``tmp_path`` and returns their path(s); each call gets distinct instances.

Configuration fixtures to override in a ``conftest.py`` or a test module:
``mock_scp_options`` (dict of MockScp keyword arguments, default ``{}``),
``store_scu_options`` (dict of StoreScu keyword arguments, default ``{}``) and
``mock_scp_idle_timeout`` (seconds teardown waits for open associations, default 2).

Imports of ``mock_scp``/``scu`` are deferred to fixture set-up so that loading the plugin
(which pytest does for every project where scukit is installed) costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
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


@pytest.fixture
def mock_scp(
    mock_scp_factory: MockScpFactory,
    mock_scp_options: dict[str, Any],
    mock_scp_idle_timeout: float,
) -> Iterator[MockScp]:
    """A running mock SCP, reset for this test and checked at its teardown.

    The server is shared by every test with the same ``mock_scp_options`` (starting one
    per test would cost a thread and a port each time); ``reset()`` clears rules, journal
    and the nth counter first. Teardown waits up to ``mock_scp_idle_timeout`` for
    associations to end (a server still busy is stopped and replaced, so one test's
    traffic never lands in the next test's journal), then calls ``check()``: unmet
    ``expect=`` counts, errors raised in server threads and SCU violations make the test
    fail at teardown.
    """
    scp = mock_scp_factory.shared(**mock_scp_options)
    scp.reset()
    yield scp
    # The SCU may still be releasing when the test body returns; what the server saw of
    # that release belongs to this test's verdict, not to the next test's journal.
    if not scp.wait_idle(mock_scp_idle_timeout):
        # Still busy (a stall outliving its SCU, a client left connected): stopping it is
        # the only way to keep this test's traffic out of the next test's journal.
        mock_scp_factory.discard(scp)
    scp.check()


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
