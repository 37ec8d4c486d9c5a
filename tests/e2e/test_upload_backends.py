"""``fluxloop upload`` end to end: spans spooled while the backend was down reach a real backend once, complete.

The agent runs with FluxLoop pointed at a port where nothing listens, so its store-and-forward path writes every
span to OTLP/JSON files. ``python -m fluxloop upload`` then sends them to Phoenix / MLflow: a first attempt while
the collector is still unreachable fails and marks nothing; the next one delivers every trace whole; a third
sends nothing, and each backend still holds each span once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

import fluxloop
import fluxloop_otel_exporter

from ._readback import Backend, Trace, json_value
from ._servers import REPO_ROOT

pytestmark = pytest.mark.e2e

SERVICE = "e2e-upload"
AGENT, PROMPT, TOOL = "invoke_agent courier", "chat gpt-4o-mini", "execute_tool lookup"


@fluxloop.prompt(name="compose", model="gpt-4o-mini")
def compose(topic: str) -> dict[str, Any]:
    return {"text": f"about {topic}", "usage": {"prompt_tokens": 9, "completion_tokens": 4}}


@fluxloop.tool(name="lookup", description="Look a topic up")
def lookup(topic: str) -> str:
    if topic == "void":
        raise KeyError("nothing on void")
    return f"facts on {topic}"


@fluxloop.agent(name="courier")
def courier(topic: str) -> str:
    compose(topic)
    lookup(topic)
    with contextlib.suppress(KeyError):  # the failed tool span is what the backends must show
        lookup("void")
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


def _upload(directory: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m fluxloop upload --dir D --json`` in a child process configured by ``env`` (FLUXLOOP_*)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")]))
    child_env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **env})
    return subprocess.run([sys.executable, "-m", "fluxloop", "upload", "--dir", str(directory), "--json",
                           "--batch-size", "4"], capture_output=True, text=True, env=child_env, timeout=120,
                          check=False)


def _assert_courier_trace(got: Trace, topic: str) -> None:
    assert got.names() == sorted([AGENT, PROMPT, TOOL, TOOL])
    assert len({span.span_id for span in got.spans}) == 4  # each span stored once
    agent, prompt = got.one(AGENT), got.one(PROMPT)
    tools = got.named(TOOL)
    assert agent.parent_id is None
    assert {span.parent_id for span in (prompt, *tools)} == {agent.span_id}
    assert json_value(agent.attributes["input.value"]) == {"topic": topic}
    assert prompt.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert prompt.attributes["gen_ai.usage.input_tokens"] == 9
    failed = next(span for span in tools if span.status_code == "ERROR")
    ok = next(span for span in tools if span.status_code != "ERROR")
    assert json_value(ok.attributes["output.value"]) == f"facts on {topic}"
    assert failed.attributes["error.type"] == "KeyError"
    assert [e.attributes["exception.type"] for e in failed.events if e.name == "exception"] == ["KeyError"]


def test_spans_written_while_the_backend_was_down_arrive_once_after_upload(backend: Backend, tmp_path: Path,
                                                                          refused_url: str) -> None:
    offline = tmp_path / "offline"
    fluxloop.configure(collector_url=refused_url, offline_dir=str(offline), service_name=SERVICE,
                       flush_interval=0.2, batch_size=2, probe_interval=3600.0, use_collector=True)
    before = fluxloop.get_stats()
    topics = ["otel", "phoenix", "mlflow"]
    trace_ids = [courier(topic) for topic in topics]
    assert fluxloop.flush(timeout=10)
    stats = {key: value - before[key] for key, value in fluxloop.get_stats().items()}
    assert (stats["spooled"], stats["exported"], stats["dropped"], stats["failed"]) == (12, 0, 0, 0)
    assert fluxloop_otel_exporter.iter_offline_files(offline)

    still_down = _upload(offline, FLUXLOOP_COLLECTOR_URL=refused_url, FLUXLOOP_TIMEOUT="0.5")
    assert still_down.returncode == 1, still_down.stderr
    assert json.loads(still_down.stdout)["spans"] == 0
    assert "Connection refused" in still_down.stderr

    headers = ",".join(f"{key}={value}" for key, value in backend.otlp_headers.items())
    backend_env = {"FLUXLOOP_COLLECTOR_URL": backend.base_url, "FLUXLOOP_HEADERS": headers}
    delivered = _upload(offline, **backend_env)
    assert delivered.returncode == 0, delivered.stderr
    summary = json.loads(delivered.stdout)
    assert (summary["spans"], summary["ok"], summary["error"]) == (12, True, None)
    # FluxLoop wrote lines of at most 2 spans; the upload merged neighbours into requests of at most 4.
    assert summary["lines"] >= 6 and summary["requests"] < summary["lines"]

    for trace_id, topic in zip(trace_ids, topics, strict=True):
        got = backend.read_trace(trace_id, min_spans=4)
        _assert_courier_trace(got, topic)
        if backend.name == "mlflow":
            assert got.resource["service.name"] == SERVICE

    again = _upload(offline, **backend_env)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["spans"], json.loads(again.stdout)["requests"]) == (0, 0)
    for trace_id, topic in zip(trace_ids, topics, strict=True):
        _assert_courier_trace(backend.read_trace(trace_id, min_spans=4), topic)
