"""End-to-end tests against real OTLP backends (Arize Phoenix, an MLflow tracking server) started per session.

The backends live in their own venvs, installed by ``make backends`` (see ``mk/backends.mk``). The tests find
them through ``FLUXLOOP_E2E_PHOENIX`` / ``FLUXLOOP_E2E_MLFLOW`` (paths of the ``phoenix`` / ``mlflow``
executables, exported by ``make``), else at ``.cache/backends/<name>/venv/bin/<name>`` under the repo root.
A missing backend FAILS the tests that need it, with a message saying to run ``make backends``.

Environment:

- ``FLUXLOOP_E2E=0``: deselect every test marked ``e2e`` (quick local runs); nothing is started.
- ``FLUXLOOP_E2E_START_TIMEOUT``: seconds a backend may take to become ready (default 120).

Each backend runs on 127.0.0.1 on free ports, with its data, home and log under the session's tmp dir, and is
stopped by process group at the end of the session, also when tests fail. Every backend that the selected
tests need is launched at the first such test, so their start-ups overlap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._readback import Backend, MLflowBackend, PhoenixBackend
from ._servers import SPECS, ServerProcess, launch, start_timeout

_HANDLES = {"phoenix": PhoenixBackend, "mlflow": MLflowBackend}
_LAUNCH_ATTEMPTS = 3  # a port picked as free can be taken before the server binds it
# Read before any fixture runs: the suite-wide autouse fixture deletes every FLUXLOOP_* variable for each test.
_ENVIRON_AT_START = dict(os.environ)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _ENVIRON_AT_START.get("FLUXLOOP_E2E", "").strip() != "0":
        return
    deselected = [item for item in items if item.get_closest_marker("e2e")]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker("e2e")]
        config.hook.pytest_deselected(items=deselected)


def _backends_needed(session: pytest.Session) -> list[str]:
    needed: set[str] = set()
    for item in session.items:
        names = set(getattr(item, "fixturenames", ()))
        needed |= names & SPECS.keys()
        callspec = getattr(item, "callspec", None)
        if "backend" in names and callspec is not None and callspec.params.get("backend") in SPECS:
            needed.add(callspec.params["backend"])
    return sorted(needed)


class BackendPool:
    """Launches backends lazily (all the session needs, together) and stops every one it started."""

    def __init__(self, session: pytest.Session, root: Path) -> None:
        self._session = session
        self._root = root
        self._servers: dict[str, ServerProcess] = {}
        self._errors: dict[str, str] = {}
        self._handles: dict[str, Backend] = {}
        self._launched_all = False

    def get(self, name: str) -> Backend:
        if name in self._handles:
            return self._handles[name]
        if not self._launched_all:
            self._launched_all = True
            for wanted in dict.fromkeys([name, *_backends_needed(self._session)]):
                self._launch(wanted, attempt=1)
        if name in self._errors:
            pytest.fail(self._errors[name], pytrace=False)
        server = self._wait(name)
        self._handles[name] = _HANDLES[name](server.base_url, server.log_tail)
        return self._handles[name]

    def _launch(self, name: str, attempt: int) -> None:
        try:
            self._servers[name] = launch(SPECS[name], self._root / f"{name}-{attempt}", _ENVIRON_AT_START)
        except FileNotFoundError as error:
            self._errors[name] = str(error)

    def _wait(self, name: str) -> ServerProcess:
        for attempt in range(1, _LAUNCH_ATTEMPTS + 1):
            server = self._servers[name]
            try:
                server.wait_ready(start_timeout(_ENVIRON_AT_START))
            except RuntimeError as error:
                port_taken = server.process.poll() is not None and "address already in use" in str(error).lower()
                if port_taken and attempt < _LAUNCH_ATTEMPTS:
                    server.stop()
                    self._launch(name, attempt + 1)
                    continue
                self._errors[name] = str(error)
                pytest.fail(str(error), pytrace=False)
            print(f"\n[e2e] {name} ready at {server.base_url} after {server.ready_after:.1f} s", file=sys.stderr)
            return server
        raise AssertionError("unreachable")

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()


@pytest.fixture(scope="session")
def backend_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendPool]:
    pool = BackendPool(request.session, tmp_path_factory.mktemp("backends"))
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="session")
def phoenix(backend_pool: BackendPool) -> PhoenixBackend:
    """A running Arize Phoenix (spans read from its ``default`` project)."""
    handle = backend_pool.get("phoenix")
    assert isinstance(handle, PhoenixBackend)
    return handle


@pytest.fixture(scope="session")
def mlflow(backend_pool: BackendPool) -> MLflowBackend:
    """A running MLflow tracking server (OTLP into experiment 0)."""
    handle = backend_pool.get("mlflow")
    assert isinstance(handle, MLflowBackend)
    return handle


@pytest.fixture(params=sorted(SPECS))
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    handle = request.getfixturevalue(request.param)
    assert isinstance(handle, Backend)
    return handle
