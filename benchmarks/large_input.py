"""Case 12: a 4 MB base64 argument (an image, a document) to a decorated call, on the calling thread.

DESIGN §5: ≤ 5 ms per call, an absolute target (no ratio). The real offline-file pipeline runs; the time is the
calling thread's only (the export worker writes the bounded span meanwhile). Raw OTel putting the same argument
through orjson into an attribute is shown beside it, for information.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fluxloop
from benchmarks import harness
from benchmarks.cases_fluxloop import base_config

TARGET_MS = 5.0
ARGUMENT_BYTES = 4 * 1024 * 1024


def _describe(image_b64: str, question: str) -> dict[str, Any]:
    return {"answer": "a cat", "chars": len(image_b64)}


def _per_call_ms(call: Callable[[], Any], calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def run(args: argparse.Namespace, files_dir: Path, report: harness.Report,
        progress: Callable[[str], None]) -> None:
    """Measure case 12 into ``report`` (a section and its verdict)."""
    calls = 5 if args.smoke else 61
    image = base64.b64encode(os.urandom(ARGUMENT_BYTES * 3 // 4)).decode()
    fluxloop.configure(**base_config(files_dir))
    agent = fluxloop.agent(name="describe")(_describe)
    agent(image, "what is in it?")  # FluxLoop starts lazily: not in the timing
    progress(f"large input: {calls} calls with a {len(image) / 1e6:.1f} MB base64 argument")
    fluxloop_ms = _per_call_ms(lambda: agent(image, "what is in it?"), calls)
    fluxloop.flush(timeout=30)

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    tracer = provider.get_tracer("raw")

    def raw() -> None:
        with tracer.start_as_current_span("describe") as span:
            span.set_attribute("input.value", orjson.dumps({"image_b64": image, "question": "?"}).decode())
            span.set_attribute("output.value", orjson.dumps(_describe(image, "?")).decode())

    raw_ms = _per_call_ms(raw, calls)
    provider.shutdown()

    median = statistics.median(fluxloop_ms)
    label = "12 4 MB argument (base64), calling thread"
    verdict = "PASS (met)" if median <= TARGET_MS else "FAIL (not met)"
    report.verdicts.append((label, f"≤ {TARGET_MS:g} ms per call", f"{median:.2f} ms", verdict))
    report.sections.append("\n".join([
        f"## Case 12: a {len(image) / 1e6:.1f} MB base64 argument, {calls} calls, medians", "",
        "| case | median ms | p90 ms | note |", "|---|---:|---:|---|",
        f"| {label} | {median:.2f} | {statistics.quantiles(fluxloop_ms, n=10)[-1]:.2f} | "
        f"target ≤ {TARGET_MS:g} ms: {'met' if median <= TARGET_MS else 'not met'} |",
        f"| 12 raw OTel, orjson input/output attributes (unbounded), for information | "
        f"{statistics.median(raw_ms):.2f} | {statistics.quantiles(raw_ms, n=10)[-1]:.2f} | info |",
    ]))
