"""The export stages' declared protocols and shared pieces: encoder, spool, counters, and oversize span cutting.

A batch flows encoder -> sender, and whatever the sender cannot take in time, or the collector does not accept,
goes to the spool on its own path (the batcher's worker or the sender's thread writes it; never the caller's).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from opentelemetry.sdk.trace import ReadableSpan

from fluxloop_otel_exporter._otlp_proto import encode_spans_protobuf

__all__ = ["CUT_MARKER_KEY", "Encoder", "ExportCounters", "ProtobufEncoder", "Spool", "cut_largest_attributes"]

#: Set on a span whose largest attributes were cut to fit a collector's size limit: the keys cut.
CUT_MARKER_KEY = "fluxloop.truncated_attributes"
_CUT_TO = 1024  # characters kept of a cut attribute
_CUT_SUFFIX = "...[cut by fluxloop: too large for the collector]"


class Encoder(Protocol):
    """Turns a batch of spans into one request body."""

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes: ...


class Spool(Protocol):
    """Stores a batch on disk; True once it is there."""

    def store(self, spans: Sequence[ReadableSpan]) -> bool: ...


class ProtobufEncoder:
    """OTLP protobuf ``ExportTraceServiceRequest`` bytes: FluxLoop's encoder (:mod:`._otlp_proto`), the stock
    OpenTelemetry encoder's exact bytes at about a quarter of its cost, the stock one taking what it cannot."""

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        return encode_spans_protobuf(spans)


class ExportCounters:
    """Span counts of one exporter, updated thread-safely.

    ``exported``: accepted by the collector (or written to files when the collector is not used);
    ``spooled``: written to files because the collector could not take them; ``failed``: lost (counted, logged);
    ``pending``: handed to the sender, not yet delivered or spooled.
    """

    __slots__ = ("_lock", "exported", "failed", "pending", "spooled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exported = 0
        self.spooled = 0
        self.failed = 0
        self.pending = 0

    def add(self, *, exported: int = 0, spooled: int = 0, failed: int = 0, pending: int = 0) -> None:
        with self._lock:
            self.exported += exported
            self.spooled += spooled
            self.failed += failed
            self.pending += pending

    def snapshot(self) -> dict[str, int]:
        """The counts, read together."""
        with self._lock:
            return {"exported": self.exported, "spooled": self.spooled, "failed": self.failed,
                    "pending": self.pending}

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self.exported = self.spooled = self.failed = self.pending = 0

    def __repr__(self) -> str:
        return f"ExportCounters({', '.join(f'{k}={v}' for k, v in self.snapshot().items())})"


def cut_largest_attributes(span: ReadableSpan, budget: int) -> ReadableSpan:
    """A copy of ``span`` whose largest string attributes are cut (and listed under :data:`CUT_MARKER_KEY`) until
    its attributes, events' attributes included, hold about ``budget`` characters."""
    attributes = dict(span.attributes or {})
    sizes = sorted(((len(v), k) for k, v in attributes.items() if isinstance(v, str)), reverse=True)
    total = sum(size for size, _ in sizes)
    cut: list[str] = []
    for size, key in sizes:
        if total <= budget or size <= _CUT_TO:
            break
        attributes[key] = str(attributes[key])[:_CUT_TO] + _CUT_SUFFIX
        total -= size - _CUT_TO
        cut.append(key)
    events = []
    for event in span.events:
        event_attributes = dict(event.attributes or {})
        for key, value in event_attributes.items():
            if isinstance(value, str) and len(value) > _CUT_TO:
                event_attributes[key] = value[:_CUT_TO] + _CUT_SUFFIX
                cut.append(f"event.{event.name}.{key}")
        events.append(type(event)(event.name, event_attributes, event.timestamp))
    attributes[CUT_MARKER_KEY] = tuple(cut)
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=attributes, events=events, links=span.links, kind=span.kind, status=span.status,
        start_time=span.start_time, end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )
