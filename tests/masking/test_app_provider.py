"""Secrets in instrument() ids, tags and names never reach the application's OWN exporters either.

FluxLoop's export stage redacts what FluxLoop exports; an application that installed its own provider exports
the same live spans through its own processors, so these values are masked where they are set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SK = "sk-live-" + "a1B2c3D4e5F6g7H8i9J0kLmN"
BEARER = "tok" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0"

SCRIPT = textwrap.dedent(f"""
    import json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    app_exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(provider)

    import fluxloop
    fluxloop.configure(use_collector=False, offline_enabled=False)

    with fluxloop.instrument("job for Bearer {BEARER}", session_id="{SK}", user_id="Bearer {BEARER}",
                             tags=["key={SK}", "nightly"]):
        pass
    [span] = app_exporter.get_finished_spans()
    print(json.dumps({{"name": span.name, "attributes": dict(span.attributes)}}))
""")


def test_ids_tags_and_names_are_masked_for_the_applications_exporters() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FLUXLOOP_E2E": "0"})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    text = json.dumps(seen)
    assert SK not in text and BEARER not in text
    assert seen["name"] == "job for Bearer ***"
    attributes = seen["attributes"]
    assert attributes["user.id"] == "Bearer ***"
    assert attributes["session.id"] == attributes["gen_ai.conversation.id"] == "sk-***"
    assert attributes["fluxloop.tags"] == ["key=***", "nightly"]
