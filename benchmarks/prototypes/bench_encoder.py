"""Throughput of the OTLP/JSON and protobuf encoders on FluxLoop-like spans (not a test; run it by hand).

    PYTHONPATH=. .venv/bin/python -m benchmarks.prototypes.bench_encoder
"""

from __future__ import annotations

import time

import orjson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fluxloop_otel_exporter._otlp_proto import encode_spans_protobuf
from fluxloop_otel_exporter import encode_spans_json

N_SPANS = 20_000
BATCH = 512


def make_spans(n: int) -> list[ReadableSpan]:
    """``n`` spans shaped like FluxLoop's: GenAI attributes, JSON input/output, metadata, tags."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("fluxloop", "0.1.0")
    payload = orjson.dumps({"messages": [{"role": "user", "content": "hello " * 20}], "temperature": 0.2}).decode()
    for i in range(n // 4):
        with tracer.start_as_current_span("invoke_agent planner") as agent:
            agent.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
                                  "fluxloop.observation.type": "agent", "fluxloop.input": payload,
                                  "fluxloop.tags": ["a", "b"], "session.id": f"s{i}"})
            for j in range(3):
                with tracer.start_as_current_span("execute_tool search") as tool:
                    tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                                         "fluxloop.input": payload, "fluxloop.output": payload,
                                         "fluxloop.metadata.step": j, "gen_ai.usage.input_tokens": 120})
    provider.shutdown()
    return list(memory.get_finished_spans())


def rate(fn, spans: list[ReadableSpan]) -> float:
    batches = [spans[i:i + BATCH] for i in range(0, len(spans), BATCH)]
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return len(spans) / (time.perf_counter() - start)


def main() -> None:
    spans = make_spans(N_SPANS)
    rate(encode_spans_json, spans[:2048])  # warm up
    best_json = max(rate(encode_spans_json, spans) for _ in range(3))
    best_pb = max(rate(lambda b: encode_spans(b).SerializeToString(), spans) for _ in range(3))
    best_ours = max(rate(encode_spans_protobuf, spans) for _ in range(3))
    size = len(encode_spans_json(spans[:BATCH])) / BATCH
    print(f"encode_spans_json: {best_json:,.0f} spans/s ({size:.0f} bytes/span, batches of {BATCH})")
    print(f"encode_spans_protobuf: {best_ours:,.0f} spans/s")
    print(f"stock protobuf encode_spans + SerializeToString: {best_pb:,.0f} spans/s (reference)")


if __name__ == "__main__":
    main()
