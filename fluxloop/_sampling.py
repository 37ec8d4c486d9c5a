"""Per-trace sampling by ``sample_rate``: every span of a trace is kept or dropped together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.util.types import Attributes

_TRACE_ID_LIMIT = (1 << 64) - 1
_ROOT_KEPT = SamplingResult(Decision.RECORD_AND_SAMPLE)  # immutable results, shared by every root span
_ROOT_DROPPED = SamplingResult(Decision.DROP)


def keeps_trace(trace_id: int, rate: float) -> bool:
    """Deterministic decision on the low 64 bits of the trace id, as OpenTelemetry's TraceIdRatioBased does."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return (trace_id & _TRACE_ID_LIMIT) < round(rate * (_TRACE_ID_LIMIT + 1))


class FluxLoopSampler(Sampler):
    """Parent-based sampler whose root ratio follows the live configuration (no provider rebuild needed).

    A span with a parent follows the parent's decision; a root span is kept when its trace id falls under
    ``rate``. Installed only on the TracerProvider FluxLoop creates itself.
    """

    def __init__(self, rate: float = 1.0) -> None:
        self.rate = rate

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None, trace_state: Any = None) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            if parent.trace_flags.sampled:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
            return SamplingResult(Decision.DROP, None, parent.trace_state)
        if keeps_trace(trace_id, self.rate):
            return _ROOT_KEPT if attributes is None else SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return _ROOT_DROPPED

    def get_description(self) -> str:
        return f"FluxLoopSampler{{parent-based, rate={self.rate}}}"
