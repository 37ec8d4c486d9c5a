"""What users see in the backends' UIs: a FluxLoop trace against the same trace written natively.

One scenario - ``instrument()`` with session, user, tags and metadata → agent → prompt → two tools, one failing -
is sent by FluxLoop and written with each backend's own conventions (Phoenix: OpenInference attributes over
plain OpenTelemetry, as its SDK writes them; MLflow: the MLflow SDK itself, run in the backend's venv). Both are
read back through what the UI reads (Phoenix GraphQL; MLflow ``get_trace``/``search_traces``) and compared field
by field.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from llm._fake import FakeLLM
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

import fluxloop

from ._readback import MLflowBackend, PhoenixBackend
from ._servers import REPO_ROOT

pytestmark = pytest.mark.e2e

ROOT, AGENT, LLM, TOOL = "support-turn", "invoke_agent planner", "chat gpt-4o-mini", "execute_tool search"
QUESTION = "what is otel?"
ANSWER = "OpenTelemetry is a vendor-neutral telemetry framework."
LLM_RESULT = {"id": "chatcmpl-e2e", "object": "chat.completion", "model": "gpt-4o-mini",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
AGENT_INPUT = {"question": QUESTION}
AGENT_OUTPUT = {"draft": ANSWER, "hits": [f"hit for {QUESTION}"], "failure": "boom"}
TAGS = ["e2e", "beta"]
_READ_TIMEOUT = 60.0
_POLL = 0.25


@fluxloop.prompt(name="draft", model="gpt-4o-mini", provider="openai")
def draft(question: str) -> dict[str, Any]:
    return LLM_RESULT


@fluxloop.tool(name="search", description="Search the web")
def search(query: str) -> list[str]:
    if query == "explode":
        raise ValueError("boom")
    return [f"hit for {query}"]


@fluxloop.agent(name="planner")
def planner(question: str) -> dict[str, Any]:
    result = draft(question)
    hits = search(question)
    try:
        search("explode")
    except ValueError as error:
        failure = str(error)
    return {"draft": result["choices"][0]["message"]["content"], "hits": hits, "failure": failure}


def _fluxloop_turn(backend_url: str, headers: dict[str, str], tmp_path: Path, session: str, run: str) -> str:
    fluxloop.configure(collector_url=backend_url, headers=headers, service_name="e2e-ui",
                       offline_dir=str(tmp_path / "offline"), flush_interval=0.2, use_collector=True)
    with fluxloop.instrument(ROOT, session_id=session, user_id="user-7", tags=TAGS,
                             metadata={"tier": "pro", "run": run}) as ctx:
        assert planner(QUESTION) == AGENT_OUTPUT
    assert fluxloop.flush(timeout=10)
    return ctx.trace_id


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _differences(ours: dict[str, Any], native: dict[str, Any]) -> list[str]:
    """Every UI field where FluxLoop's trace shows something else than the native one."""
    found = []
    for name, spans in native["spans"].items():
        for index, (mine, theirs) in enumerate(zip(ours["spans"].get(name, []), spans)):
            found += [f"{name}[{index}].{k}: {mine.get(k)!r} != {v!r}" for k, v in theirs.items() if mine.get(k) != v]
        if len(ours["spans"].get(name, [])) != len(spans):
            found.append(f"{name}: {len(ours['spans'].get(name, []))} spans != {len(spans)}")
    found += [f"{k}: {ours[k]!r} != {v!r}" for k, v in native.items() if k != "spans" and ours[k] != v]
    return found


# -- Phoenix ------------------------------------------------------------------------------------------------------
_GRAPHQL = """query ($project: String!, $trace: ID!) {
  getProjectByName(name: $project) { trace(traceId: $trace) {
    spans(first: 50) { edges { node { name spanKind metadata tokenCountTotal statusCode
      input { value mimeType } output { value mimeType } } } }
    session { sessionId firstInput { value } lastOutput { value } tokenUsage { total } } } } }"""


def _phoenix_query(phoenix: PhoenixBackend, trace_id: str, spans: int) -> dict[str, Any]:
    """The trace as Phoenix's UI reads it (GraphQL), once all ``spans`` are in and its session is built."""
    deadline = time.monotonic() + _READ_TIMEOUT
    while True:
        body = json.dumps({"query": _GRAPHQL, "variables": {"project": "default", "trace": trace_id}}).encode()
        request = urllib.request.Request(phoenix.base_url + "/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        trace = (answer["data"]["getProjectByName"] or {}).get("trace")
        if trace and len(trace["spans"]["edges"]) >= spans and trace["session"] is not None:
            return trace
        assert time.monotonic() < deadline, f"phoenix: trace {trace_id} incomplete: {trace}"
        time.sleep(_POLL)  # Phoenix ingests asynchronously: poll with a deadline


def _phoenix_view(trace: dict[str, Any]) -> dict[str, Any]:
    """What the UI shows, per span name (same-named spans ordered by input)."""
    spans: dict[str, list[Any]] = {}
    for edge in trace["spans"]["edges"]:
        node = edge["node"]
        spans.setdefault(node["name"], []).append({
            "kind": node["spanKind"], "status": node["statusCode"],
            "input": _parsed((node["input"] or {}).get("value")), "output": _parsed((node["output"] or {}).get("value")),
            "metadata": node["metadata"] and _parsed(node["metadata"]), "tokens": node["tokenCountTotal"] or 0})
    session = trace["session"]
    return {"spans": {name: sorted(found, key=json.dumps) for name, found in spans.items()},
            "session_first_input": _parsed(session["firstInput"]["value"]),
            "session_last_output": _parsed(session["lastOutput"]["value"]),
            "session_tokens": session["tokenUsage"]["total"],
            "trace_tokens": sum(s["tokens"] for found in spans.values() for s in found)}


def _openinference_turn(phoenix: PhoenixBackend, session: str, run: str) -> str:
    """The scenario as OpenInference instrumentation writes it (session, user, metadata, tags on every span)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=phoenix.traces_endpoint)))
    tracer = provider.get_tracer("native-openinference")
    common = {"session.id": session, "user.id": "user-7", "metadata": json.dumps({"tier": "pro", "run": run}),
              "tag.tags": TAGS}

    def io(kind: str, given: Any, result: Any = None) -> dict[str, Any]:
        out = {**common, "openinference.span.kind": kind, "input.value": json.dumps(given),
               "input.mime_type": "application/json"}
        if result is not None:
            out.update({"output.value": json.dumps(result), "output.mime_type": "application/json"})
        return out
    try:
        with tracer.start_as_current_span(ROOT, attributes=io("CHAIN", AGENT_INPUT, AGENT_OUTPUT)) as root:
            with tracer.start_as_current_span(AGENT, attributes=io("AGENT", AGENT_INPUT, AGENT_OUTPUT)):
                with tracer.start_as_current_span(LLM, attributes={
                        **io("LLM", AGENT_INPUT, LLM_RESULT), "llm.model_name": "gpt-4o-mini",
                        "llm.token_count.prompt": 11, "llm.token_count.completion": 7,
                        "llm.token_count.total": 18}):
                    pass
                with tracer.start_as_current_span(TOOL, attributes=io("TOOL", {"query": QUESTION},
                                                                      [f"hit for {QUESTION}"])):
                    pass
                with tracer.start_as_current_span(TOOL, attributes=io("TOOL", {"query": "explode"}),
                                                  record_exception=False, set_status_on_exception=False) as bad:
                    bad.set_status(Status(StatusCode.ERROR, "boom"))
        return format(root.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()


def test_phoenix_shows_what_its_own_instrumentation_shows(phoenix: PhoenixBackend, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    ours = _phoenix_view(_phoenix_query(
        phoenix, _fluxloop_turn(phoenix.base_url, {}, tmp_path, f"s-fl-{run}", run), 5))
    native = _phoenix_view(_phoenix_query(phoenix, _openinference_turn(phoenix, f"s-oi-{run}", run), 5))
    assert ours["spans"].keys() == native["spans"].keys() == {ROOT, AGENT, LLM, TOOL}
    diffs = _differences(ours, native)
    assert not diffs, "\n".join(diffs)
    # and the values are the scenario's, not merely equal
    [root] = ours["spans"][ROOT]
    assert (root["kind"], root["input"], root["output"], root["metadata"]) == (
        "chain", AGENT_INPUT, AGENT_OUTPUT, {"tier": "pro", "run": run})  # GraphQL spells kinds in lower case
    assert ours["session_first_input"] == AGENT_INPUT and ours["session_last_output"] == AGENT_OUTPUT
    assert ours["trace_tokens"] == ours["session_tokens"] == 18


def test_phoenix_counts_a_self_tracing_client_once(phoenix: PhoenixBackend, tmp_path: Path) -> None:
    fluxloop.configure(collector_url=phoenix.base_url, service_name="e2e-ui", offline_dir=str(tmp_path / "o"),
                       flush_interval=0.2, use_collector=True)
    llm = FakeLLM()  # the anthropic SDK traces its own calls

    @fluxloop.prompt(model="claude-haiku")
    def ask(question: str) -> Any:
        return llm.anthropic.messages.create(model="claude-haiku", max_tokens=64,
                                             messages=[{"role": "user", "content": question}])

    with fluxloop.instrument("self-tracing", session_id=f"s-{uuid.uuid4().hex[:8]}") as ctx:
        message = ask("hi")
    assert fluxloop.flush(timeout=10)
    real = message.usage.input_tokens + message.usage.cache_read_input_tokens + message.usage.output_tokens
    view = _phoenix_view(_phoenix_query(phoenix, ctx.trace_id, 3))
    assert view["trace_tokens"] == view["session_tokens"] == real


# -- MLflow -------------------------------------------------------------------------------------------------------
def _mlflow_python() -> str:
    path = os.environ.get("FLUXLOOP_E2E_MLFLOW") or str(REPO_ROOT / ".cache/backends/mlflow/venv/bin/mlflow")
    return str(Path(path).with_name("python"))


def _mlflow_native(command: str, mlflow: MLflowBackend, payload: dict[str, Any]) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLUXLOOP_", "MLFLOW_"))}
    env.update({"MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false", "PYTHONPATH": ""})
    done = subprocess.run([_mlflow_python(), str(Path(__file__).with_name("_mlflow_native.py")), command,
                           mlflow.base_url, json.dumps(payload)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mlflow_view(trace: dict[str, Any]) -> dict[str, Any]:
    spans: dict[str, list[Any]] = {}
    for span in trace["spans"]:
        spans.setdefault(span["name"], []).append({
            "type": span["span_type"], "inputs": _parsed(span["inputs"]), "outputs": _parsed(span["outputs"]),
            # MLflow's SDK sets OK where OpenTelemetry instrumentation leaves UNSET; errors must agree
            "error": span["status"].endswith("ERROR"), "root": not span["parent"]})
    return {"spans": {name: sorted(found, key=json.dumps) for name, found in spans.items()},
            "request_preview": _parsed(trace["request_preview"]), "response_preview": _parsed(trace["response_preview"]),
            # MLflow also stores an OTLP trace's resource attributes as tags: compare the user's tags
            "tags": {k: v for k, v in trace["tags"].items() if not k.startswith(_RESOURCE_TAGS)},
            "user": trace["user"], "token_usage": trace["token_usage"]}


_RESOURCE_TAGS = ("service.", "telemetry.", "deployment.")


def test_mlflow_shows_what_its_own_sdk_shows(mlflow: MLflowBackend, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    ours_id = "tr-" + _fluxloop_turn(mlflow.base_url, mlflow.otlp_headers, tmp_path, f"s-fl-{run}", run)
    native_id = _mlflow_native("write", mlflow, {
        "root": ROOT, "agent": AGENT, "llm": LLM, "tool": TOOL, "agent_input": AGENT_INPUT,
        "agent_output": AGENT_OUTPUT, "llm_output": LLM_RESULT, "tool_input": {"query": QUESTION},
        "tool_output": [f"hit for {QUESTION}"], "bad_tool_input": {"query": "explode"},
        "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18},
        "tags": {"tier": "pro", "run": run, "e2e": "true", "beta": "true"},
        "session": f"s-oi-{run}", "user": "user-7"})["trace_id"]
    deadline = time.monotonic() + _READ_TIMEOUT
    while True:  # the OTLP trace is stored asynchronously: poll until both are complete and searchable
        read = _mlflow_native("read", mlflow, {"trace_ids": [ours_id, native_id], "filter": f"tags.run = '{run}'"})
        ours, native = read["traces"][ours_id], read["traces"][native_id]
        if ours and native and len(ours["spans"]) == 5 and set(read["search"]) == {ours_id, native_id}:
            break
        assert time.monotonic() < deadline, f"mlflow: incomplete: {read}"
        time.sleep(_POLL)
    ours_view, native_view = _mlflow_view(ours), _mlflow_view(native)
    assert ours_view["spans"].keys() == native_view["spans"].keys() == {ROOT, AGENT, LLM, TOOL}
    diffs = _differences(ours_view, native_view)
    assert not diffs, "\n".join(diffs)
    assert ours_view["request_preview"] == AGENT_INPUT and ours_view["response_preview"] == AGENT_OUTPUT
    assert ours_view["tags"] == {"tier": "pro", "run": run, "e2e": "true", "beta": "true"}


def test_mlflow_totals_count_a_self_tracing_client_once(mlflow: MLflowBackend, tmp_path: Path) -> None:
    fluxloop.configure(collector_url=mlflow.base_url, headers=mlflow.otlp_headers, service_name="e2e-ui",
                       offline_dir=str(tmp_path / "o"), flush_interval=0.2, use_collector=True)
    llm = FakeLLM()  # the anthropic SDK traces its own calls
    run = uuid.uuid4().hex[:8]

    @fluxloop.prompt(model="claude-haiku")
    def ask(question: str) -> Any:
        return llm.anthropic.messages.create(model="claude-haiku", max_tokens=64,
                                             messages=[{"role": "user", "content": question}])

    with fluxloop.instrument("self-tracing", metadata={"run": run}) as ctx:
        message = ask("hi")
    assert fluxloop.flush(timeout=10)
    real = message.usage.input_tokens + message.usage.cache_read_input_tokens + message.usage.output_tokens
    trace_id = "tr-" + ctx.trace_id
    deadline = time.monotonic() + _READ_TIMEOUT
    while True:
        read = _mlflow_native("read", mlflow, {"trace_ids": [trace_id], "filter": f"tags.run = '{run}'"})
        found = read["traces"][trace_id]
        if found and len(found["spans"]) >= 3 and found["token_usage"]:
            break
        assert time.monotonic() < deadline, f"mlflow: incomplete: {read}"
        time.sleep(_POLL)
    assert found["token_usage"]["total_tokens"] == real
