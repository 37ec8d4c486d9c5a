"""instrument(): its own span, and metadata/tags/user/session reaching every span started inside it."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.trace import StatusCode

import fluxloop
from fluxloop.testing import CapturedSpans, capture_spans


@pytest.fixture
def spans():
    with capture_spans() as captured:
        yield captured


@fluxloop.tool
def step(i: int) -> int:
    return i


@fluxloop.tool
async def astep(i: int) -> int:
    await asyncio.sleep(0)
    return i


def test_instrument_span_and_context_api(spans: CapturedSpans) -> None:
    with fluxloop.instrument("my_workflow") as ctx:
        ctx.add_metadata("version", "1.0.0")
        ctx.add_metadata("user_tier", "premium")
        ctx.add_tag("production")
        ctx.add_tag("production")
        ctx.set_user("user-123")
        ctx.set_session("sess-9")
        assert fluxloop.get_current_context() is ctx
        assert len(ctx.trace_id) == 32 and len(ctx.span_id) == 16
        current = otel_trace.get_current_span().get_span_context()
        assert otel_trace.format_trace_id(current.trace_id) == ctx.trace_id
    assert fluxloop.get_current_context() is None
    a = dict(spans.by_name("my_workflow").attributes)
    assert a["fluxloop.observation.type"] == "trace"
    assert a["fluxloop.name"] == "my_workflow"
    assert a["fluxloop.metadata.version"] == "1.0.0"
    assert a["fluxloop.metadata.user_tier"] == "premium"
    assert a["fluxloop.tags"] == ("production",)
    assert (a["user.id"], a["session.id"]) == ("user-123", "sess-9")


def test_constructor_arguments(spans: CapturedSpans) -> None:
    with fluxloop.instrument("wf", session_id="s", user_id="u", metadata={"k": 1}, tags=["a", "b"]):
        step(1)
    for span in spans:
        a = dict(span.attributes)
        assert (a["session.id"], a["user.id"], a["fluxloop.metadata.k"], a["fluxloop.tags"]) == ("s", "u", 1,
                                                                                                   ("a", "b"))


def test_inner_spans_inherit_only_what_was_set_before_they_started(spans: CapturedSpans) -> None:
    with fluxloop.instrument("wf") as ctx:
        step(1)
        ctx.add_metadata("phase", "two")
        ctx.add_tag("late")
        step(2)
    first, second = [s for s in spans if s.name == "execute_tool step"]
    assert "fluxloop.metadata.phase" not in first.attributes
    assert second.attributes["fluxloop.metadata.phase"] == "two"
    assert second.attributes["fluxloop.tags"] == ("late",)
    root = spans.by_name("wf")
    assert first.parent.span_id == root.context.span_id


def test_nested_instrument_merges_and_inner_wins(spans: CapturedSpans) -> None:
    with fluxloop.instrument("outer", user_id="u1", tags=["outer"], metadata={"a": 1, "b": 1}):
        with fluxloop.instrument("inner", tags=["inner", "outer"], metadata={"b": 2}) as inner:
            assert fluxloop.get_current_context() is inner
            step(1)
    a = dict(spans.by_name("execute_tool step").attributes)
    assert a["user.id"] == "u1"
    assert a["fluxloop.tags"] == ("outer", "inner")
    assert (a["fluxloop.metadata.a"], a["fluxloop.metadata.b"]) == (1, 2)


async def test_async_with_and_gather(spans: CapturedSpans) -> None:
    async with fluxloop.instrument("batch", session_id="sess") as ctx:
        ctx.add_metadata("run", "r1")
        results = await asyncio.gather(*(astep(i) for i in range(20)))
    assert results == list(range(20))
    root = spans.by_name("batch")
    tools = [s for s in spans if s.name == "execute_tool astep"]
    assert len(tools) == 20
    for span in tools:
        assert span.parent.span_id == root.context.span_id
        assert span.attributes["session.id"] == "sess"
        assert span.attributes["fluxloop.metadata.run"] == "r1"


async def test_concurrent_tasks_keep_their_own_trees(spans: CapturedSpans) -> None:
    @fluxloop.agent
    async def job(n: int) -> int:
        async with fluxloop.instrument(f"job-{n}", user_id=f"user-{n}"):
            await asyncio.sleep(0)
            return await astep(n)

    await asyncio.gather(*(job(n) for n in range(50)))
    by_id = {s.context.span_id: s for s in spans}
    for tool in (s for s in spans if s.name == "execute_tool astep"):
        n = int(tool.attributes["user.id"].split("-")[1])
        scope = by_id[tool.parent.span_id]
        assert scope.name == f"job-{n}"
        assert by_id[scope.parent.span_id].name == "invoke_agent job"
        assert tool.attributes["input.value"] == f'{{"i":{n}}}'


def test_threads_started_with_copied_context(spans: CapturedSpans) -> None:
    with fluxloop.instrument("fanout", tags=["threads"]) as ctx:
        ctx.set_user("u-t")
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(step, i)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    root = spans.by_name("fanout")
    tools = [s for s in spans if s.name == "execute_tool step"]
    assert len(tools) == 8
    assert all(s.parent.span_id == root.context.span_id and s.attributes["user.id"] == "u-t" for s in tools)


def test_exception_inside_instrument_is_recorded_and_reraised(spans: CapturedSpans) -> None:
    with pytest.raises(KeyError):
        with fluxloop.instrument("wf"):
            raise KeyError("missing")
    span = spans.by_name("wf")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "KeyError"


def test_sensitive_metadata_is_masked(spans: CapturedSpans) -> None:
    with fluxloop.instrument("wf") as ctx:
        ctx.add_metadata("password", "hunter2")
        ctx.add_metadata("note", "use Bearer abcdefghijklmnopqrstuvwxyz")
        ctx.add_metadata("payload", {"nested": {"auth": "x"}, "ok": 1})
    a = dict(spans.by_name("wf").attributes)
    assert a["fluxloop.metadata.password"] == "***"
    assert "abcdefghijklmnopqrstuvwxyz" not in a["fluxloop.metadata.note"]
    assert a["fluxloop.metadata.payload"] == '{"nested":{"auth":"***"},"ok":1}'


def test_new_trace_starts_a_new_root(spans: CapturedSpans) -> None:
    with fluxloop.instrument("outer") as outer:
        with fluxloop.instrument("replay", new_trace=True) as inner:
            pass
    assert outer.trace_id != inner.trace_id
    assert spans.by_name("replay").parent is None


def test_disabled_instrument_is_a_harmless_no_op(spans: CapturedSpans) -> None:
    fluxloop.configure(enabled=False)
    with fluxloop.instrument("wf") as ctx:
        ctx.add_metadata("a", 1)
        ctx.add_tag("t")
        ctx.set_user("u")
        assert ctx.trace_id == "0" * 32
    assert spans.names == []


# -- what the backends' UIs read -------------------------------------------------------------------------------
def test_root_previews_default_to_first_input_and_last_output(spans: CapturedSpans) -> None:
    with fluxloop.instrument("conversation", session_id="s-9", tags=["beta"], metadata={"plan": "pro"}):
        step(1)
        step(2)
    root = dict(spans.by_name("conversation").attributes)
    assert root["openinference.span.kind"] == "CHAIN"
    assert (root["input.value"], root["input.mime_type"]) == ('{"i":1}', "application/json")
    assert (root["output.value"], root["output.mime_type"]) == ("2", "application/json")
    assert list(root["tag.tags"]) == list(root["fluxloop.tags"]) == ["beta"]
    assert json.loads(root["metadata"]) == {"plan": "pro"}
    assert root["mlflow.traceTag.plan"] == "pro" and root["mlflow.traceTag.beta"] == "true"
    assert root["session.id"] == root["gen_ai.conversation.id"] == "s-9"
    tool = dict([s for s in spans if s.name == "execute_tool step"][0].attributes)
    assert list(tool["tag.tags"]) == ["beta"] and json.loads(tool["metadata"]) == {"plan": "pro"}
    assert not any(k.startswith("mlflow.traceTag.") for k in tool)  # trace tags live on the root only


def test_explicit_previews_win(spans: CapturedSpans) -> None:
    with fluxloop.instrument("turn", input={"question": "why?"}) as ctx:
        step(1)
        ctx.set_output("because")
        step(2)
    root = dict(spans.by_name("turn").attributes)
    assert json.loads(root["input.value"]) == {"question": "why?"}
    assert (root["output.value"], root["output.mime_type"]) == ("because", "text/plain")

    with fluxloop.instrument("turn2") as ctx:
        ctx.set_input("hello, Bearer abcdefghijklmnopqrstuvwxyz123456")
    root = dict(spans.by_name("turn2").attributes)
    assert root["input.value"].startswith("hello, Bearer ") and "abcdefghijklmnop" not in root["input.value"]


def test_only_direct_children_feed_the_previews(spans: CapturedSpans) -> None:
    @fluxloop.agent
    def outer(q: str) -> str:
        step(99)
        return q.upper()

    with fluxloop.instrument("root"):
        outer("hi")
    root = dict(spans.by_name("root").attributes)
    assert (root["input.value"], root["output.value"]) == ('{"q":"hi"}', "HI")
