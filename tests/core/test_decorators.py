"""Decorators: span names, GenAI + fluxloop attributes, every kind of callable, errors and cancellation."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from dataclasses import dataclass

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import fluxloop
from fluxloop import _runtime
from fluxloop.testing import CapturedSpans, capture_spans


@pytest.fixture
def spans():
    with capture_spans() as captured:
        yield captured


def attrs(span) -> dict:
    return dict(span.attributes)


# -- names and attributes -----------------------------------------------------------------------------------
def test_agent_span_name_and_attributes(spans: CapturedSpans) -> None:
    @fluxloop.agent(name="MyAgent", metadata={"version": "1.0", "layer": "entry"})
    def process_request(query: str) -> str:
        return query.upper()

    assert process_request("hi") == "HI"
    span = spans.by_name("invoke_agent MyAgent")
    a = attrs(span)
    assert a["fluxloop.observation.type"] == "agent"
    assert a["fluxloop.name"] == "MyAgent"
    assert a["gen_ai.operation.name"] == "invoke_agent"
    assert a["gen_ai.agent.name"] == "MyAgent"
    assert json.loads(a["input.value"]) == {"query": "hi"} and a["input.mime_type"] == "application/json"
    assert a["output.value"] == "HI" and a["output.mime_type"] == "text/plain"  # text stored as text
    assert a["openinference.span.kind"] == "AGENT"
    assert a["fluxloop.metadata.version"] == "1.0"
    assert a["fluxloop.metadata.layer"] == "entry"
    assert json.loads(a["metadata"]) == {"version": "1.0", "layer": "entry"}
    assert a["mlflow.traceTag.version"] == "1.0"  # a root span: its metadata are MLflow trace tags
    assert span.status.status_code is StatusCode.UNSET


def test_prompt_span_uses_model_and_captures_tokens(spans: CapturedSpans) -> None:
    @fluxloop.prompt(model="gpt-4o-mini")
    def generate_response(query: str) -> dict:
        return {"text": "ok", "usage": {"prompt_tokens": 12, "completion_tokens": 5}}

    generate_response("q")
    a = attrs(spans.by_name("chat gpt-4o-mini"))
    assert a["fluxloop.observation.type"] == "generation"
    assert a["fluxloop.name"] == "generate_response"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 5)


def test_prompt_without_model_is_named_after_the_prompt(spans: CapturedSpans) -> None:
    @fluxloop.prompt(name="GenerateResponse")
    def gen(prompt: str) -> str:
        return "x"

    gen("p")
    assert "gen_ai.request.model" not in attrs(spans.by_name("chat GenerateResponse"))


def test_token_usage_from_anthropic_style_object(spans: CapturedSpans) -> None:
    @dataclass
    class Usage:
        input_tokens: int
        output_tokens: int

    @dataclass
    class Message:
        content: str
        usage: Usage

    @fluxloop.prompt(model="claude")
    def call() -> Message:
        return Message("hi", Usage(7, 9))

    call()
    a = attrs(spans.by_name("chat claude"))
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (7, 9)


def test_capture_tokens_false_sets_no_usage(spans: CapturedSpans) -> None:
    @fluxloop.prompt(model="m", capture_tokens=False)
    def call() -> dict:
        return {"usage": {"input_tokens": 1, "output_tokens": 2}}

    call()
    assert "gen_ai.usage.input_tokens" not in attrs(spans.by_name("chat m"))


def test_tool_span(spans: CapturedSpans) -> None:
    @fluxloop.tool(name="WebSearch", description="Search the web for information")
    def search(query: str) -> list:
        return ["a", "b"]

    search("x")
    a = attrs(spans.by_name("execute_tool WebSearch"))
    assert a["fluxloop.observation.type"] == "tool"
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "WebSearch"
    assert a["gen_ai.tool.description"] == "Search the web for information"
    assert json.loads(a["output.value"]) == ["a", "b"]


def test_trace_decorator_and_observation_type(spans: CapturedSpans) -> None:
    @fluxloop.trace(name="rerank")
    def rerank(docs: list) -> list:
        return docs[::-1]

    @fluxloop.trace(observation_type="generation")
    def other() -> None:
        return None

    rerank([1, 2])
    other()
    assert attrs(spans.by_name("rerank"))["fluxloop.observation.type"] == "span"
    assert attrs(spans.by_name("other"))["fluxloop.observation.type"] == "generation"
    with pytest.raises(ValueError, match="observation_type"):
        fluxloop.trace(observation_type="bogus")


@pytest.mark.parametrize("style", ["bare", "empty", "named"])
def test_three_decorator_forms(spans: CapturedSpans, style: str) -> None:
    def f(x: int) -> int:
        return x + 1

    decorated = {"bare": fluxloop.agent(f), "empty": fluxloop.agent()(f), "named": fluxloop.agent(name="f")(f)}[style]
    assert decorated(1) == 2
    assert spans.names == ["invoke_agent f"]


def test_capture_flags(spans: CapturedSpans) -> None:
    @fluxloop.agent(capture_input=False, capture_output=False)
    def quiet(secret_prompt: str) -> str:
        return "out"

    quiet("in")
    a = attrs(spans.by_name("invoke_agent quiet"))
    assert "input.value" not in a and "output.value" not in a


def test_global_capture_option(spans: CapturedSpans) -> None:
    fluxloop.configure(capture_input=False)

    @fluxloop.tool
    def t(x: int) -> int:
        return x

    t(1)
    a = attrs(spans.by_name("execute_tool t"))
    assert "input.value" not in a and a["output.value"] == "1"


def test_defaults_and_kwargs_are_bound_by_name(spans: CapturedSpans) -> None:
    @fluxloop.tool
    def t(a, b=2, *rest, c=3, **extra):
        return None

    t(1, 5, 6, 7, c=4, d=8)

    @fluxloop.tool
    def u(a, b=2):
        return None

    u(1)
    assert json.loads(attrs(spans.by_name("execute_tool t"))["input.value"]) == {
        "a": 1, "b": 5, "rest": [6, 7], "c": 4, "d": 8}
    assert json.loads(attrs(spans.by_name("execute_tool u"))["input.value"]) == {"a": 1, "b": 2}


# -- kinds of callables ------------------------------------------------------------------------------------
def test_metadata_preserved() -> None:
    @fluxloop.agent
    async def handler(message: str, *, retries: int = 1) -> str:
        """Docs."""
        return message

    @fluxloop.tool
    def gen(n: int):
        yield n

    assert handler.__name__ == "handler" and handler.__doc__ == "Docs."
    assert str(inspect.signature(handler)) == "(message: 'str', *, retries: 'int' = 1) -> 'str'"
    assert inspect.iscoroutinefunction(handler)
    # a generator function's wrapper is a plain function returning a generator-like proxy: the span starts,
    # and takes its parent, at the call (DESIGN §2)
    assert gen.__name__ == "gen" and list(gen(3)) == [3]
    assert isinstance(handler, functools.partial) is False and handler.__wrapped__ is not None


async def test_async_function(spans: CapturedSpans) -> None:
    @fluxloop.agent(name="ChatBot")
    async def chat_bot(message: str) -> str:
        await asyncio.sleep(0)
        return message + "!"

    assert await chat_bot("hi") == "hi!"
    assert attrs(spans.by_name("invoke_agent ChatBot"))["output.value"] == "hi!"


def test_methods_never_capture_self_or_cls(spans: CapturedSpans) -> None:
    class Handler:
        secret = "not-captured"

        @fluxloop.agent(name="inst")
        def handle(self, x: int) -> int:
            return x

        @fluxloop.tool(name="cm")
        @classmethod
        def build(cls, y: int) -> int:
            return y

        @classmethod
        @fluxloop.tool(name="cm2")
        def build2(cls, y: int) -> int:
            return y

        @fluxloop.tool(name="sm")
        @staticmethod
        def util(z: int) -> int:
            return z

    h = Handler()
    assert (h.handle(1), Handler.build(2), Handler.build2(3), h.util(4), Handler.util(5)) == (1, 2, 3, 4, 5)
    assert json.loads(attrs(spans.by_name("invoke_agent inst"))["input.value"]) == {"x": 1}
    assert json.loads(attrs(spans.by_name("execute_tool cm"))["input.value"]) == {"y": 2}
    assert json.loads(attrs(spans.by_name("execute_tool cm2"))["input.value"]) == {"y": 3}
    inputs = [json.loads(attrs(s)["input.value"]) for s in spans if s.name == "execute_tool sm"]
    assert inputs == [{"z": 4}, {"z": 5}]


def test_generator_span_stays_open_and_captures_items(spans: CapturedSpans) -> None:
    @fluxloop.tool
    def child(i: int) -> int:
        return i

    @fluxloop.agent
    def stream(n: int):
        for i in range(n):
            yield child(i)
        return "done"

    gen = stream(3)
    assert spans.names == []
    first = next(gen)
    assert first == 0 and "invoke_agent stream" not in spans.names
    rest = list(gen)
    assert rest == [1, 2]
    parent = spans.by_name("invoke_agent stream")
    assert json.loads(attrs(parent)["output.value"]) == [0, 1, 2]
    assert len(spans.children_of(parent)) == 3  # the span was current while the generator ran


def test_consumer_code_between_items_is_not_under_the_generator_span(spans: CapturedSpans) -> None:
    @fluxloop.tool
    def outside() -> None:
        return None

    @fluxloop.agent
    def stream():
        yield 1
        yield 2

    for _ in stream():
        outside()
    parent = spans.by_name("invoke_agent stream")
    assert all(s.parent is None for s in spans if s.name == "execute_tool outside")
    assert spans.children_of(parent) == []


def test_generator_output_is_bounded(spans: CapturedSpans) -> None:
    @fluxloop.agent
    def many():
        yield from range(1000)

    assert sum(many()) == sum(range(1000))
    out = json.loads(attrs(spans.by_name("invoke_agent many"))["output.value"])
    assert out == list(range(1000))  # all kept while they fit max_attribute_length

    fluxloop.configure(max_attribute_length=1000)
    assert sum(many()) == sum(range(1000))
    value = attrs([s for s in spans if s.name == "invoke_agent many"][-1])["output.value"]
    out = json.loads(value)
    kept = len(out) - 1
    assert 0 < kept < 1000 and out[:kept] == list(range(kept)) and out[-1] == f"...[{1000 - kept} more items]"
    assert len(value) <= 1000  # the items are charged by their serialized length


def test_generator_closed_early_ends_span(spans: CapturedSpans) -> None:
    @fluxloop.agent
    def forever():
        i = 0
        while True:
            yield i
            i += 1

    gen = forever()
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    span = spans.by_name("invoke_agent forever")
    assert json.loads(attrs(span)["output.value"]) == [0, 1, 2]
    assert span.status.status_code is StatusCode.UNSET


def test_generator_send_and_throw_pass_through(spans: CapturedSpans) -> None:
    @fluxloop.tool
    def echo():
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "recovered"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("a") == "got a"
    assert gen.throw(KeyError("k")) == "got recovered"
    gen.close()
    assert "execute_tool echo" in spans.names


def test_generator_exception_marks_error(spans: CapturedSpans) -> None:
    @fluxloop.agent
    def broken():
        yield 1
        raise RuntimeError("mid-stream")

    with pytest.raises(RuntimeError, match="mid-stream"):
        list(broken())
    span = spans.by_name("invoke_agent broken")
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "mid-stream"


async def test_async_generator(spans: CapturedSpans) -> None:
    @fluxloop.tool
    async def child(i: int) -> int:
        return i

    @fluxloop.prompt(model="m")
    async def stream(n: int):
        for i in range(n):
            yield await child(i)

    items = [x async for x in stream(3)]
    assert items == [0, 1, 2]
    parent = spans.by_name("chat m")
    assert json.loads(attrs(parent)["output.value"]) == [0, 1, 2]
    assert len(spans.children_of(parent)) == 3


async def test_async_generator_asend_and_aclose(spans: CapturedSpans) -> None:
    @fluxloop.agent
    async def echo():
        value = yield "start"
        while True:
            value = yield f"echo {value}"

    agen = echo()
    assert await agen.asend(None) == "start"
    assert await agen.asend("x") == "echo x"
    await agen.aclose()
    assert "invoke_agent echo" in spans.names


# -- errors ---------------------------------------------------------------------------------------------------
def test_exception_sets_error_and_is_reraised_unchanged(spans: CapturedSpans) -> None:
    class Boom(Exception):
        pass

    original = Boom("kaput")

    @fluxloop.tool
    def explode() -> None:
        raise original

    with pytest.raises(Boom) as info:
        explode()
    assert info.value is original
    span = spans.by_name("execute_tool explode")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "kaput"
    assert attrs(span)["error.type"].endswith("Boom")
    event = next(e for e in span.events if e.name == "exception")
    assert event.attributes["exception.message"] == "kaput"


async def test_cancelled_task_is_recorded_as_cancelled(spans: CapturedSpans) -> None:
    started = asyncio.Event()

    @fluxloop.agent
    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = spans.by_name("invoke_agent slow")
    assert attrs(span)["fluxloop.cancelled"] is True
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "cancelled"


def test_instrumentation_errors_never_reach_the_call(spans: CapturedSpans) -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("repr exploded")

    cyclic: list = []
    cyclic.append(cyclic)

    @fluxloop.agent
    def f(a, b):
        return {"self_ref": cyclic, "bad": BadRepr()}

    result = f(BadRepr(), cyclic)
    assert result["self_ref"] is cyclic
    a = attrs(spans.by_name("invoke_agent f"))
    assert json.loads(a["input.value"]) == {"a": "<unrepresentable BadRepr>", "b": ["<cycle>"]}
    assert json.loads(a["output.value"]) == {"self_ref": ["<cycle>"], "bad": "<unrepresentable BadRepr>"}


def test_sensitive_input_is_masked_with_paths(spans: CapturedSpans) -> None:
    @fluxloop.tool
    def call(query: str, config: dict) -> str:
        return "Authorization: Bearer abcdefghijklmnop1234"

    call("q", {"api_key": "sk-live-aaaaaaaaaaaaaaaaaaaa", "nested": [{"password": "hunter2"}]})
    a = attrs(spans.by_name("execute_tool call"))
    assert "sk-live" not in a["input.value"] and "hunter2" not in a["input.value"]
    assert json.loads(a["input.value"])["config"] == {"api_key": "***", "nested": [{"password": "***"}]}
    assert "abcdefghijklmnop1234" not in a["output.value"]
    assert set(a["fluxloop.masked_paths"]) == {"input.config.api_key", "input.config.nested[0].password"}


def test_large_values_are_truncated_with_a_marker(spans: CapturedSpans) -> None:
    fluxloop.configure(max_attribute_length=1000)

    @fluxloop.tool
    def big(text: str) -> str:
        return text

    big("x" * 100_000)
    a = attrs(spans.by_name("execute_tool big"))
    for key in ("input.value", "output.value"):
        assert len(a[key]) <= 1100
        assert "truncated" in a[key]
    json.loads(a["input.value"])  # still valid JSON
    assert a["output.mime_type"] == "text/plain" and a["output.value"].endswith(" chars]")


# -- switches ---------------------------------------------------------------------------------------------------
def test_disabled_calls_straight_through(spans: CapturedSpans) -> None:
    fluxloop.configure(enabled=False)

    @fluxloop.agent
    def f(x: int) -> int:
        return x * 2

    assert f(2) == 4
    assert spans.names == []


def test_otel_sdk_disabled_env(monkeypatch: pytest.MonkeyPatch, spans: CapturedSpans) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    fluxloop.reset_config()

    @fluxloop.agent
    def f() -> int:
        return 1

    assert f() == 1
    assert spans.names == []


def test_sample_rate_zero_records_nothing_and_children_follow(spans: CapturedSpans) -> None:
    fluxloop.configure(sample_rate=0.0)

    @fluxloop.tool
    def child() -> int:
        return 1

    @fluxloop.agent
    def parent() -> int:
        return child() + 1

    assert parent() == 2
    with fluxloop.instrument("wf"):
        parent()
    assert spans.names == []


def test_sampling_is_decided_once_per_trace(spans: CapturedSpans) -> None:
    fluxloop.configure(sample_rate=0.5)

    @fluxloop.tool
    def child() -> int:
        return 1

    @fluxloop.agent
    def parent() -> int:
        return child() + child()

    for _ in range(400):
        parent()
    roots = [s for s in spans if s.name == "invoke_agent parent"]
    assert 100 < len(roots) < 300  # about half the traces
    kept_traces = {s.context.trace_id for s in roots}
    children = [s for s in spans if s.name == "execute_tool child"]
    assert len(children) == 2 * len(roots)  # every kept trace is complete
    assert {s.context.trace_id for s in children} == kept_traces


# -- what the backends read, and when ---------------------------------------------------------------------------
def test_every_span_has_a_kind_both_backends_read(spans: CapturedSpans) -> None:
    @fluxloop.trace
    def step() -> int:
        return 1

    @fluxloop.tool
    def look(tool_call_id: str) -> str:
        return "found"

    @fluxloop.prompt(model="m", provider="acme")
    def ask() -> str:
        return "x"

    @fluxloop.agent(provider="openai", agent_id="a-1", description="Answers")
    def main() -> None:
        step()
        look("call_7")
        ask()

    main()
    kinds = {s.name: dict(s.attributes)["openinference.span.kind"] for s in spans}
    assert kinds == {"step": "CHAIN", "execute_tool look": "TOOL", "chat m": "LLM", "invoke_agent main": "AGENT"}
    assert spans.by_name("chat m").kind is SpanKind.CLIENT and spans.by_name("step").kind is SpanKind.INTERNAL
    assert dict(spans.by_name("chat m").attributes)["gen_ai.provider.name"] == "acme"
    agent = dict(spans.by_name("invoke_agent main").attributes)
    assert (agent["gen_ai.provider.name"], agent["gen_ai.agent.id"], agent["gen_ai.agent.description"]) == (
        "openai", "a-1", "Answers")
    assert dict(spans.by_name("execute_tool look").attributes)["gen_ai.tool.call.id"] == "call_7"


def test_sampler_and_on_start_see_the_routing_attributes(spans: CapturedSpans,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # What the SDK hands a sampler and every on_start processor is what start_span receives: spy on that call
    # of FluxLoop's own tracer (whichever provider it joined), and check a real on_start processor too.
    tracer = _runtime.RUNTIME.start()
    seen: list[dict] = []
    real_start = tracer.start_span

    def spy(name, context=None, kind=SpanKind.INTERNAL, attributes=None, *args, **kwargs):
        seen.append(dict(attributes or {}))
        span = real_start(name, context, kind, attributes, *args, **kwargs)
        seen.append(dict(span.attributes or {}))  # what an on_start processor reads off the span
        return span

    monkeypatch.setattr(tracer, "start_span", spy)

    @fluxloop.prompt(name="answer", model="gpt-4o-mini", provider="openai")
    def answer(q: str) -> str:
        return q

    answer("hi")
    assert len(seen) == 2
    for start in seen:
        assert {k: start.get(k) for k in ("gen_ai.operation.name", "gen_ai.request.model", "gen_ai.provider.name",
                                          "fluxloop.observation.type", "openinference.span.kind")} == {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.provider.name": "openai", "fluxloop.observation.type": "generation",
            "openinference.span.kind": "LLM"}


def test_decorator_metadata_is_masked_with_the_configuration_at_call_time(spans: CapturedSpans) -> None:
    @fluxloop.agent(metadata={"deployment": "eu-1", "customer_ref": "C-991"})
    def handle() -> None:
        return None

    handle()
    fluxloop.configure(mask_patterns=["customer_ref"])  # configured after decoration: applies to later calls
    handle()
    first, second = (dict(s.attributes) for s in spans if s.name == "invoke_agent handle")
    assert first["fluxloop.metadata.customer_ref"] == "C-991"
    assert second["fluxloop.metadata.customer_ref"] == "***" and "C-991" not in second["metadata"]
    assert list(second["fluxloop.masked_paths"]) == ["metadata.customer_ref"]
    assert second["fluxloop.metadata.deployment"] == "eu-1"


@fluxloop.agent
def tokens(n: int):
    yield from range(n)


@fluxloop.agent
def other(x: int) -> int:
    return x


def test_a_returned_stream_leaves_no_recording_scope_open(spans: CapturedSpans, tmp_path) -> None:
    recording_file = tmp_path / "args.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(recording_file))
    stream = tokens(3)  # recorded at the call; its scope is not left open in the caller's context
    other(7)  # a separate agent call, not nested in the stream's
    assert list(stream) == [0, 1, 2]
    assert fluxloop.flush(timeout=10)
    records = [json.loads(line) for line in recording_file.read_text().splitlines()]
    assert [(r["target"].rsplit(":", 1)[-1], r["kwargs"]) for r in records] == [("tokens", {"n": 3}),
                                                                                 ("other", {"x": 7})]
