"""FluxLoop end to end: decorated agent code → FluxLoop's OTLP/HTTP export → a real backend → spans read back.

Also store and forward: spans written to OTLP/JSON files while the backend is "down", forwarded later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import fluxloop
import fluxloop_otel_exporter

from ._readback import Backend, StoredSpan, Trace, json_value

pytestmark = pytest.mark.e2e

SERVICE = "e2e-svc"
AGENT, PROMPT, TOOL = "invoke_agent planner", "chat gpt-4o-mini", "execute_tool search"
# How each backend classifies the agent, chat and tool spans (from openinference.span.kind).
_KIND_LABELS = {"phoenix": ("AGENT", "LLM", "TOOL"), "mlflow": ("AGENT", "LLM", "TOOL")}


@fluxloop.prompt(name="draft", model="gpt-4o-mini")
def draft(question: str) -> str:
    return f"draft answer to: {question}"


@fluxloop.tool(name="search", description="Search the web")
def search(query: str) -> list[str]:
    if query == "explode":
        raise ValueError("boom")
    return [f"hit for {query}"]


@fluxloop.agent(name="planner")
def planner(question: str) -> dict[str, Any]:
    """Drafts, searches, retries a failing search; reports the trace id it ran in."""
    context = trace.get_current_span().get_span_context()
    text = draft(question)
    hits = search(question)
    try:
        search("explode")
    except ValueError as error:
        failure = str(error)
    return {"trace_id": format(context.trace_id, "032x"), "draft": text, "hits": hits, "failure": failure}


def _run_planner() -> str:
    result = planner("what is otel?")
    assert result["failure"] == "boom"
    return str(result["trace_id"])


def _assert_planner_trace(trace_: Trace, backend: Backend) -> None:
    assert trace_.names() == [PROMPT, TOOL, TOOL, AGENT]
    agent = trace_.one(AGENT)
    prompt = trace_.one(PROMPT)
    tools = trace_.named(TOOL)
    ok_tool = next(s for s in tools if s.status_code != "ERROR")
    bad_tool = next(s for s in tools if s.status_code == "ERROR")

    assert agent.parent_id is None
    assert {s.parent_id for s in (prompt, *tools)} == {agent.span_id}
    assert {s.trace_id for s in trace_.spans} == {trace_.trace_id}

    _assert_attributes(agent, "agent", "planner", "invoke_agent", {"gen_ai.agent.name": "planner"})
    _assert_attributes(prompt, "generation", "draft", "chat", {"gen_ai.request.model": "gpt-4o-mini"})
    for tool in tools:
        _assert_attributes(tool, "tool", "search", "execute_tool",
                           {"gen_ai.tool.name": "search", "gen_ai.tool.description": "Search the web"})

    assert json_value(agent.attributes["input.value"]) == {"question": "what is otel?"}
    output = json_value(agent.attributes["output.value"])
    assert (output["draft"], output["hits"], output["failure"]) == (
        "draft answer to: what is otel?", ["hit for what is otel?"], "boom")
    assert json_value(prompt.attributes["input.value"]) == {"question": "what is otel?"}
    assert json_value(prompt.attributes["output.value"]) == "draft answer to: what is otel?"
    assert json_value(ok_tool.attributes["input.value"]) == {"query": "what is otel?"}
    assert json_value(ok_tool.attributes["output.value"]) == ["hit for what is otel?"]

    assert agent.status_code != "ERROR"
    assert ok_tool.status_code != "ERROR"
    assert json_value(bad_tool.attributes["input.value"]) == {"query": "explode"}
    assert "output.value" not in bad_tool.attributes
    assert bad_tool.status_message == "boom"
    assert bad_tool.attributes["error.type"] == "ValueError"
    [event] = [e for e in bad_tool.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom"

    # Each backend understands the GenAI conventions well enough to classify the spans.
    assert (agent.kind_label, prompt.kind_label, ok_tool.kind_label) == _KIND_LABELS[backend.name]
    if backend.name == "mlflow":  # Phoenix's REST API does not return resource attributes
        assert trace_.resource["service.name"] == SERVICE


def _assert_attributes(span: StoredSpan, kind: str, name: str, operation: str, genai: dict[str, str]) -> None:
    expected = {"fluxloop.observation.type": kind, "fluxloop.name": name, "gen_ai.operation.name": operation,
                **genai}
    assert {key: span.attributes.get(key) for key in expected} == expected, span.name


def test_decorated_agent_reaches_backend(backend: Backend, tmp_path: Path) -> None:
    fluxloop.configure(collector_url=backend.base_url, headers=backend.otlp_headers, service_name=SERVICE,
                       offline_dir=str(tmp_path / "offline"), flush_interval=0.2, use_collector=True)

    trace_id = _run_planner()
    assert fluxloop.flush(timeout=10)

    _assert_planner_trace(backend.read_trace(trace_id, min_spans=4), backend)
    stats = fluxloop.get_stats()
    assert stats["exported"] >= 4
    assert (stats["dropped"], stats["failed"], stats["spooled"]) == (0, 0, 0)
    assert fluxloop_otel_exporter.iter_offline_files(tmp_path / "offline") == []  # nothing spooled when up


def _forward(directory: Path, backend: Backend) -> int:
    """Send every request in the offline files of ``directory`` to ``backend``; the number of requests sent."""
    files = fluxloop_otel_exporter.iter_offline_files(directory)
    assert files, f"no offline files in {directory}"
    sent = 0
    for path in files:
        for number, request, error in fluxloop_otel_exporter.read_requests(path):
            assert error is None, f"{path}:{number}: {error}"
            assert request is not None
            body = fluxloop_otel_exporter.request_to_protobuf(request)
            assert backend.post_otlp(body) == 200, f"{path}:{number} refused"
            sent += 1
    return sent


def test_offline_files_forwarded_later(backend: Backend, tmp_path: Path) -> None:
    """Store and forward with the exporter alone: write OTLP/JSON lines, then replay them to the backend."""
    spool = tmp_path / "spool"
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-offline"}))
    provider.add_span_processor(SimpleSpanProcessor(fluxloop_otel_exporter.OfflineSpanExporter(spool)))
    tracer = provider.get_tracer("fluxloop-e2e-offline")
    try:
        with tracer.start_as_current_span("invoke_agent planner", attributes={"gen_ai.agent.name": "planner",
                                                                              "input.value": '{"n": 1}'}) as root:
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes={"gen_ai.usage.input_tokens": 7}):
                pass
            try:
                with tracer.start_as_current_span("execute_tool search"):
                    raise ValueError("boom")
            except ValueError:
                pass
            trace_id = format(root.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()

    assert _forward(spool, backend) == 3  # SimpleSpanProcessor: one request per span

    got = backend.read_trace(trace_id, min_spans=3)
    assert got.names() == [PROMPT, TOOL, AGENT]
    agent, prompt, tool = got.one(AGENT), got.one(PROMPT), got.one(TOOL)
    assert prompt.parent_id == agent.span_id and tool.parent_id == agent.span_id and agent.parent_id is None
    assert json_value(agent.attributes["input.value"]) == {"n": 1}
    assert prompt.attributes["gen_ai.usage.input_tokens"] == 7
    assert tool.status_code == "ERROR"
    assert [e.attributes["exception.message"] for e in tool.events if e.name == "exception"] == ["boom"]
    if backend.name == "mlflow":
        assert got.resource["service.name"] == "e2e-offline"


def test_fluxloop_offline_mode_forwarded_later(backend: Backend, tmp_path: Path) -> None:
    """FluxLoop with the collector off writes its spans to ``offline_dir``; forwarded, they are the same trace."""
    offline = tmp_path / "offline"
    fluxloop.configure(use_collector=False, offline_dir=str(offline), service_name=SERVICE, flush_interval=0.2)

    trace_id = _run_planner()
    assert fluxloop.flush(timeout=10)

    assert _forward(offline, backend) >= 1
    _assert_planner_trace(backend.read_trace(trace_id, min_spans=4), backend)
