"""The testing kit's implementation (public through :mod:`fluxloop.testing`): capture spans in memory and assert.

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

    def snapshot(self) -> list[dict[str, Any]]:
        """The spans as plain dicts, oldest start first, with deterministic ids and times for exact assertions.

        Trace ids become 1, 2, ... in order of first appearance, span ids 1, 2, ... in start order; every distinct
        timestamp (starts, ends, events) becomes 1 s, 2 s, ... in nanoseconds, so order is kept and nothing
        depends on the clock or the random id generator.

        Example::

            assert spans.snapshot()[0] == {"name": "invoke_agent bot", "trace_id": 1, "span_id": 1,
                                           "parent_id": None, "start_time": 1_000_000_000, ...}
        """
        spans = sorted(self.spans, key=lambda s: (s.start_time or 0, s.context.span_id))
        stamps = sorted({t for s in spans for t in (s.start_time, s.end_time, *(e.timestamp for e in s.events))
                         if t is not None})
        time_of = {t: (i + 1) * _SECOND for i, t in enumerate(stamps)}
        traces: dict[int, int] = {}
        span_ids = {s.context.span_id: i + 1 for i, s in enumerate(spans)}
        out = []
        for s in spans:
            trace_no = traces.setdefault(s.context.trace_id, len(traces) + 1)
            parent = s.parent.span_id if s.parent is not None else None
            out.append({
                "name": s.name,
                "trace_id": trace_no,
                "span_id": span_ids[s.context.span_id],
                # A parent outside the capture (the application's span, say) shows as 0.
                "parent_id": None if parent is None else span_ids.get(parent, 0),
                "kind": s.kind.name,
                "start_time": time_of.get(s.start_time) if s.start_time is not None else None,
                "end_time": time_of.get(s.end_time) if s.end_time is not None else None,
                "status": s.status.status_code.name,
                "attributes": dict(s.attributes or {}),
                "events": [{"name": e.name, "timestamp": time_of[e.timestamp], "attributes": dict(e.attributes or {})}
                           for e in s.events],
            })
        return out


_SECOND = 1_000_000_000


@contextmanager
def capture_spans(*, deterministic_ids: bool = False) -> Iterator[CapturedSpans]:
    """Capture every span FluxLoop's pipeline would see inside the block (after sampling), in memory only.

    For the block's duration spans go nowhere else: no collector is contacted, no offline file is written, and
    if FluxLoop had not started yet it starts without building its export pipeline. With
    ``deterministic_ids=True`` spans from FluxLoop's own provider get trace/span ids 1, 2, 3, ... (ratio
    sampling then keeps every trace: leave it off when testing ``sample_rate``); :meth:`CapturedSpans.snapshot`
    gives deterministic ids and times either way.

    Example::

        with fluxloop.testing.capture_spans() as spans:
            my_agent("hi")
        assert spans.names == ["invoke_agent my_agent"]
    """
    exporter = InMemorySpanExporter()
    with _runtime.RUNTIME.capture(SimpleSpanProcessor(exporter), sequential_ids=deterministic_ids):
        yield CapturedSpans(exporter)


def _spans_during_test() -> Iterator[CapturedSpans]:
    """The spans FluxLoop produced during this test, captured in memory only (see :func:`capture_spans`)."""
    with capture_spans() as spans:
        yield spans


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for users: then a plain generator function
    fluxloop_spans = _spans_during_test
else:
    fluxloop_spans = pytest.fixture(name="fluxloop_spans")(_spans_during_test)
