"""Fixtures for the exporter tests: real spans from a real TracerProvider, and real OTLP/HTTP servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fluxloop_otel_exporter import FluxLoopSpanExporter

from ._otlp_sink import wait_for


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_spans() -> Iterator[Callable[..., list[ReadableSpan]]]:
    """``make_spans(n, name="op", **attributes)``: ``n`` finished root spans with the given attributes."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "exporter-tests"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.exporter", "1.0")

    def make(n: int = 3, name: str = "op", **attributes: Any) -> list[ReadableSpan]:
        memory.clear()
        for i in range(n):
            with tracer.start_as_current_span(f"{name}-{i}", attributes={**attributes, "index": i}):
                pass
        return list(memory.get_finished_spans())

    yield make
    provider.shutdown()


@pytest.fixture
def make_exporter(tmp_path: Path) -> Iterator[Callable[..., FluxLoopSpanExporter]]:
    """Builds FluxLoopSpanExporters spooling under ``tmp_path/spool`` and shuts them all down afterwards."""
    made: list[FluxLoopSpanExporter] = []

    def make(endpoint: str, **options: Any) -> FluxLoopSpanExporter:
        options.setdefault("offline_dir", tmp_path / "spool")
        options.setdefault("timeout", 2.0)
        options.setdefault("probe_interval", 60.0)
        options.setdefault("forward_spool", False)  # the forwarder has tests of its own (test_forwarding.py)
        exporter = FluxLoopSpanExporter(endpoint, **options)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown(timeout_millis=5000)


@pytest.fixture
def poll() -> Callable[..., Any]:
    """The ``wait_for(condition, timeout)`` polling helper."""
    return wait_for
