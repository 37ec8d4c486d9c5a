"""Fixtures of the reliability suite: real collectors on 127.0.0.1 and child processes, all cleaned up."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._harness import Child, LateCollector, StatsSince, child_env, refused_url

# The figures tests measured (counts, times, memory); shown after the run with `-v`, quoted in docs/guarantees.md.
_FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _FIGURES and config.getoption("verbose") > 0:
        terminalreporter.section("reliability figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figure("spooled", 10000)``: keep a measured figure, tagged with the test's name, for the summary."""

    def note(name: str, value: object) -> None:
        _FIGURES.append(f"{request.node.name}: {name} = {value}")

    return note


@pytest.fixture
def stats() -> StatsSince:
    """``stats()``: FluxLoop's span counters since the test started."""
    return StatsSince()


@pytest.fixture
def offline_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def refused() -> str:
    """A collector URL on 127.0.0.1 where nothing listens: connections are refused."""
    return refused_url()


@pytest.fixture
def silent(silent_url: str) -> str:
    """A collector URL on 127.0.0.1 that accepts connections (kernel backlog) and never answers."""
    return silent_url


@pytest.fixture
def late_collector() -> Iterator[LateCollector]:
    """A collector whose port refuses connections until ``.up()``."""
    collector = LateCollector()
    yield collector
    collector.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``spawn(script, *args, env=None)``: a Python child (script dedented); killed with its group at teardown."""
    children: list[Child] = []

    def start(script: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Child:
        child = Child(textwrap.dedent(script), list(args), env or child_env(), cwd or tmp_path,
                      tmp_path / f"child-{len(children)}.stderr")
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
