"""Testing kit: capture the spans your own agents produce and assert on them.

Also a pytest plugin (registered through the ``pytest11`` entry point) providing the ``fluxloop_spans`` fixture.

Example::

    def test_my_agent(fluxloop_spans):
        my_agent("hi")
        span = fluxloop_spans.by_name("invoke_agent my_agent")
        assert span.attributes["fluxloop.observation.type"] == "agent"
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, overload

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fluxloop import _runtime

__all__ = ["CapturedSpans", "capture_spans"]


class CapturedSpans(Sequence[ReadableSpan]):
    """The finished spans captured so far, oldest first (a live view)."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self._exporter.get_finished_spans()

    @overload
    def __getitem__(self, index: int) -> ReadableSpan: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ReadableSpan]: ...
    def __getitem__(self, index: Any) -> Any:
        return self.spans[index]

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def names(self) -> list[str]:
        """Span names in finishing order."""
        return [s.name for s in self.spans]

    def by_name(self, name: str) -> ReadableSpan:
        """The one span called ``name``; AssertionError when there is none or more than one."""
        found = [s for s in self.spans if s.name == name]
        assert len(found) == 1, f"expected one span named {name!r}, found {len(found)} among {self.names}"
        return found[0]

    def children_of(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """Spans whose parent is ``parent``."""
        return [s for s in self.spans if s.parent is not None and s.parent.span_id == parent.context.span_id]

    def clear(self) -> None:
        self._exporter.clear()


@contextmanager
def capture_spans() -> Iterator[CapturedSpans]:
    """Capture every span FluxLoop's pipeline sees inside the block (after sampling).

    Example::

        with fluxloop.testing.capture_spans() as spans:
            my_agent("hi")
        assert spans.names == ["invoke_agent my_agent"]
    """
    _runtime.RUNTIME.start()
    exporter = InMemorySpanExporter()
    listener = SimpleSpanProcessor(exporter)
    switch = _runtime.RUNTIME.switch
    switch.add_listener(listener)
    try:
        yield CapturedSpans(exporter)
    finally:
        switch.remove_listener(listener)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for users
    pass
else:
    @pytest.fixture
    def fluxloop_spans() -> Iterator[CapturedSpans]:
        """The spans FluxLoop produced during this test."""
        with capture_spans() as spans:
            yield spans
