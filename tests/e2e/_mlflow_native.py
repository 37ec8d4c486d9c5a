"""Run with the MLflow backend's own Python (not imported by the tests): write the scenario's trace with the
MLflow SDK, or read traces back the way MLflow's UI gets them (``mlflow.get_trace``, ``search_traces``).

    python _mlflow_native.py write <tracking_uri> '<scenario json>'   -> {"trace_id": "tr-..."}
    python _mlflow_native.py read <tracking_uri> '<request json>'     -> {"traces": {...}, "search": [...]}
"""

from __future__ import annotations

import json
import sys
from typing import Any

import mlflow
from mlflow.entities import SpanType


def write(uri: str, s: dict[str, Any]) -> dict[str, Any]:
    """The scenario as a native MLflow user writes it: a root span with the turn's input/output, trace tags,
    session and user; agent → LLM (with token usage) → two tools, the second failing."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id="0")
    with mlflow.start_span(name=s["root"], span_type=SpanType.CHAIN) as root:
        root.set_inputs(s["agent_input"])
        mlflow.update_current_trace(tags=s["tags"], session_id=s["session"], user=s["user"])
        with mlflow.start_span(name=s["agent"], span_type=SpanType.AGENT) as agent:
            agent.set_inputs(s["agent_input"])
            with mlflow.start_span(name=s["llm"], span_type=SpanType.LLM) as llm:
                llm.set_inputs(s["agent_input"])
                llm.set_outputs(s["llm_output"])
                llm.set_attribute("mlflow.chat.tokenUsage", s["usage"])
            with mlflow.start_span(name=s["tool"], span_type=SpanType.TOOL) as tool:
                tool.set_inputs(s["tool_input"])
                tool.set_outputs(s["tool_output"])
            try:
                with mlflow.start_span(name=s["tool"], span_type=SpanType.TOOL) as bad:
                    bad.set_inputs(s["bad_tool_input"])
                    raise ValueError("boom")
            except ValueError:
                pass
            agent.set_outputs(s["agent_output"])
        root.set_outputs(s["agent_output"])
        trace_id = root.trace_id
    return {"trace_id": trace_id}  # logged synchronously: the caller sets MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false


def read(uri: str, request: dict[str, Any]) -> dict[str, Any]:
    mlflow.set_tracking_uri(uri)
    out: dict[str, Any] = {}
    for trace_id in request["trace_ids"]:
        trace = mlflow.get_trace(trace_id)
        if trace is None:
            out[trace_id] = None
            continue
        info = trace.info
        out[trace_id] = {
            "request_preview": info.request_preview,
            "response_preview": info.response_preview,
            "tags": {k: v for k, v in info.tags.items() if not k.startswith("mlflow.")},
            "session": info.trace_metadata.get("mlflow.trace.session"),
            "user": info.trace_metadata.get("mlflow.trace.user"),
            "token_usage": info.token_usage,
            "spans": [{"name": span.name, "span_type": span.span_type, "inputs": span.inputs,
                       "outputs": span.outputs, "status": str(span.status.status_code),
                       "parent": span.parent_id is not None} for span in trace.data.spans],
        }
    found = mlflow.search_traces(locations=["0"], filter_string=request["filter"], return_type="list",
                                 include_spans=False)
    return {"traces": out, "search": [t.info.trace_id for t in found]}


if __name__ == "__main__":
    command, tracking_uri, payload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = write(tracking_uri, payload) if command == "write" else read(tracking_uri, payload)
    print(json.dumps(result, default=str))
