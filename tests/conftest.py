"""Shared fixtures: every test starts from a clean FluxLoop configuration that never touches the network."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from exporter._otlp_sink import OtlpSink

import fluxloop

_ENV_PREFIXES = ("FLUXLOOP_", "OTEL_")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C at its default, as in a terminal: a suite started in the background by a non-interactive shell
    (``make test &`` in a script, CI runners) inherits SIGINT ignored, and so would every child process a test
    starts; the tests that press Ctrl-C on a child would then see it ignored."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def clean_fluxloop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Clear FLUXLOOP_*/OTEL_* variables, write offline files under tmp_path, reset before and after."""
    import os

    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLUXLOOP_USE_COLLECTOR", "false")
    monkeypatch.setenv("FLUXLOOP_OFFLINE_DIR", str(tmp_path / "artifacts"))
    fluxloop.reset_config()
    yield
    fluxloop.reset_config()


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    """A real OTLP/HTTP collector on 127.0.0.1 that records what it receives (or answers as scripted)."""
    server = OtlpSink()
    yield server
    server.close()


@pytest.fixture
def refused_url() -> str:
    """A loopback URL whose port refuses connections (nothing listens there)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL that accepts connections (kernel backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
