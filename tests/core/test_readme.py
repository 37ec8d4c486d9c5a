"""The README's Python code blocks run as written, in order, in one namespace, as a reader following it would.

Only what a reader supplies is supplied: their LLM and search clients (``llm``, ``search_engine``) and their
``TracerProvider`` (``provider``). Collector URLs point at a local OTLP sink and file paths into ``tmp_path``, so
the Quick start's trace is read back from what the collector received.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from exporter._otlp_sink import OtlpSink
from opentelemetry.sdk.trace import TracerProvider

import fluxloop
from fluxloop.testing import capture_spans

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


class _LLM:
    def generate(self, query: str, results: list[str]) -> str:
        return f"{len(results)} result(s) for {query}"


class _SearchEngine:
    def search(self, query: str) -> list[str]:
        return [f"result for {query}"]


def _attributes(span: Any) -> dict[str, Any]:
    def value(v: Any) -> Any:
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [value(item) for item in v.array_value.values]
        return getattr(v, kind) if kind else None
    return {kv.key: value(kv.value) for kv in span.attributes}


def _received(sink: OtlpSink) -> list[Any]:
    return [span for attempt in sink.delivered() for rs in attempt.request.resource_spans
            for ss in rs.scope_spans for span in ss.spans]


def _localised(code: str, sink: OtlpSink, tmp_path: Path) -> str:
    return (code.replace("http://localhost:8000", sink.url)
                .replace("/tmp/agent_args.jsonl", str(tmp_path / "agent_args.jsonl")))


@pytest.fixture(autouse=True)
def _as_a_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FLUXLOOP_USE_COLLECTOR=false from the suite's defaults: a reader's environment has none."""
    monkeypatch.delenv("FLUXLOOP_USE_COLLECTOR")
    fluxloop.reset_config()


def test_the_readme_has_its_python_blocks() -> None:
    assert len(BLOCKS) >= 5
    assert "@fluxloop.tool" in BLOCKS[0] and "instrument(" in BLOCKS[0]  # the Quick start comes first


def test_every_python_block_runs_in_order(sink: OtlpSink, tmp_path: Path) -> None:
    provider = TracerProvider()
    namespace: dict[str, Any] = {"__name__": "readme", "llm": _LLM(), "search_engine": _SearchEngine(),
                                 "provider": provider}
    try:
        for index, code in enumerate(BLOCKS):
            exec(compile(_localised(code, sink, tmp_path), f"README.md python block {index}", "exec"), namespace)
            if "def test_agent" in code:  # the "Testing your agents" block: run its tests as pytest would
                namespace["test_agent"]()
                with capture_spans() as spans:
                    namespace["test_with_fixture"](spans)
    finally:
        provider.shutdown()
        fluxloop.shutdown()


def test_quick_start_sends_the_trace_it_describes(sink: OtlpSink, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "readme", "llm": _LLM(), "search_engine": _SearchEngine()}
    exec(compile(_localised(BLOCKS[0], sink, tmp_path), "README.md quick start", "exec"), namespace)
    assert fluxloop.flush(timeout=30)

    spans = {span.name: span for span in _received(sink)}
    assert set(spans) == {"my_workflow", "invoke_agent MyAgent", "execute_tool web_search", "chat gpt-4o-mini"}
    workflow, agent = spans["my_workflow"], spans["invoke_agent MyAgent"]
    assert agent.parent_span_id == workflow.span_id
    assert spans["execute_tool web_search"].parent_span_id == agent.span_id
    assert spans["chat gpt-4o-mini"].parent_span_id == agent.span_id
    for span in spans.values():  # "each carrying the metadata, tags, user and session"
        attributes = _attributes(span)
        assert attributes["fluxloop.metadata.version"] == "1.0.0"
        assert attributes["fluxloop.tags"] == ["production"]
        assert attributes["user.id"] == "user-123" and attributes["session.id"] == "s-1"
    assert {a.headers["authorization"] for a in sink.delivered()} == {"Bearer your-api-key"}


def test_recording_block_records_the_quick_start_agent(sink: OtlpSink, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "readme", "llm": _LLM(), "search_engine": _SearchEngine()}
    exec(compile(_localised(BLOCKS[0], sink, tmp_path), "README.md quick start", "exec"), namespace)
    [block] = [code for code in BLOCKS if "fluxloop.configure(record_args=True" in code]
    exec(compile(_localised(block, sink, tmp_path), "README.md recording", "exec"), namespace)
    namespace["process_request"]("recorded?")
    assert fluxloop.flush(timeout=30)
    [line] = (tmp_path / "agent_args.jsonl").read_bytes().splitlines()
    record = orjson.loads(line)
    assert record["target"] == "readme:process_request" and record["kwargs"] == {"query": "recorded?"}
