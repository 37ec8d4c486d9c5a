"""Harness self-test: plain OpenTelemetry (stock OTLP/HTTP exporter) to each backend, read back and checked.

If this fails, the harness or the backend is at fault, not FluxLoop.
"""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from ._readback import Backend, PhoenixBackend, json_value

pytestmark = pytest.mark.e2e


def _send_agent_trace(backend: Backend, resource: Resource) -> str:
    """agent → prompt, agent → failing tool, through OTLPSpanExporter + SimpleSpanProcessor; the trace id."""
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=backend.traces_endpoint, headers=backend.otlp_headers))
    )
    tracer = provider.get_tracer("fluxloop-e2e-harness")
    try:
        with tracer.start_as_current_span(
            "invoke_agent planner",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
                        "input.value": '{"question": "why?"}', "harness.count": 3, "harness.flag": True},
        ) as agent:
            with tracer.start_as_current_span(
                "chat gpt-4o-mini",
                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"},
            ):
                pass
            with tracer.start_as_current_span(
                "execute_tool search",
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
                record_exception=False, set_status_on_exception=False,
            ) as tool:
                error = ValueError("boom")
                tool.record_exception(error)
                tool.set_status(Status(StatusCode.ERROR, "boom"))
                tool.set_attribute("error.type", "ValueError")
            trace_id = format(agent.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()
    return trace_id


def test_plain_otel_trace_round_trips(backend: Backend) -> None:
    project = f"e2e-harness-{uuid.uuid4().hex[:8]}"
    resource = Resource.create({"service.name": "e2e-harness", "openinference.project.name": project})
    trace_id = _send_agent_trace(backend, resource)
    reader = backend.in_project(project) if isinstance(backend, PhoenixBackend) else backend

    trace = reader.read_trace(trace_id, min_spans=3)

    assert trace.names() == ["chat gpt-4o-mini", "execute_tool search", "invoke_agent planner"]
    agent, prompt, tool = (trace.one(n) for n in ("invoke_agent planner", "chat gpt-4o-mini", "execute_tool search"))
    assert {s.trace_id for s in trace.spans} == {trace_id}
    assert agent.parent_id is None
    assert prompt.parent_id == agent.span_id
    assert tool.parent_id == agent.span_id
    assert agent.attributes["gen_ai.agent.name"] == "planner"
    assert agent.attributes["harness.count"] == 3
    assert agent.attributes["harness.flag"] is True
    assert json_value(agent.attributes["input.value"]) == {"question": "why?"}
    assert prompt.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert agent.status_code == "UNSET"
    assert (tool.status_code, tool.status_message) == ("ERROR", "boom")
    assert tool.attributes["error.type"] == "ValueError"
    [event] = [e for e in tool.events if e.name == "exception"]
    assert (event.attributes["exception.type"], event.attributes["exception.message"]) == ("ValueError", "boom")
    if backend.name == "mlflow":
        assert trace.resource["service.name"] == "e2e-harness"


def test_backend_refuses_garbage(backend: Backend) -> None:
    """A body that is not protobuf is refused with a 4xx: the backend really parses what it is sent."""
    status = backend.post_otlp(b"\xff\xfe not a protobuf message")
    assert 400 <= status < 500
