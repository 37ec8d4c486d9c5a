"""Shared fixtures: every test starts from a clean FluxLoop configuration that never touches the network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import fluxloop

_ENV_PREFIXES = ("FLUXLOOP_", "OTEL_")


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
