"""An application with its own OpenTelemetry setup sends its spans to FluxLoop too.

The app owns its TracerProvider (its resource, its sampler, its other exporters); it adds FluxLoop's exporter
with the standard BatchSpanProcessor. `fluxloop_otel_exporter` does not need the `fluxloop` SDK at all.
Run: python examples/existing_otel_pipeline.py [COLLECTOR_URL]   (no collector: spans land in ./fluxloop_artifacts)
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from fluxloop_otel_exporter import FluxLoopSpanExporter


def main(collector_url: str = "http://localhost:8000") -> int:
    provider = TracerProvider(resource=Resource.create({"service.name": "existing-app"}))
    exporter = FluxLoopSpanExporter(collector_url, offline_dir="./fluxloop_artifacts")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    tracer = trace.get_tracer("existing-app")
    with tracer.start_as_current_span("handle_request") as span:
        span.set_attribute("http.route", "/ask")
        with tracer.start_as_current_span("invoke_agent helper") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.agent.name", "helper")

    provider.shutdown()  # flushes the batch processor: delivered, or spooled to ./fluxloop_artifacts
    counters = exporter.counters
    print(f"exported={counters.exported} spooled={counters.spooled} failed={counters.failed}")
    return 0 if counters.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
