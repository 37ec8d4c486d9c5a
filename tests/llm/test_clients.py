"""Real openai/anthropic clients against the fake service: what FluxLoop exports for plain calls and streams."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from core.test_streams import _one, exported, start_ns  # noqa: F401 (exported is a fixture)
from llm._fake import ANSWER, FakeLLM

import fluxloop


@pytest.fixture
def llm() -> FakeLLM:
    """The clients, with the anthropic SDK's own spans off: @prompt is the only span reporting usage."""
    return FakeLLM(anthropic_tracing=False)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is OpenTelemetry?"}]


def test_openai_chat_completion(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="gpt-4o-mini")
    def ask(client: Any, messages: list[dict[str, str]]) -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    with fluxloop.instrument("chat", session_id="s-1"):
        assert ask(llm.openai, MESSAGES).choices[0].message.content == ANSWER
    spans = exported()
    a = _one(spans, "chat gpt-4o-mini").attributes
    root = _one(spans, "chat").attributes  # previews: the first direct child's input, the last one's output
    assert (root["input.value"], root["output.value"]) == (a["input.value"], a["output.value"])
    assert a["gen_ai.provider.name"] == "openai"  # inferred from the client argument
    assert a["gen_ai.conversation.id"] == "s-1" and a["openinference.span.kind"] == "LLM"
    assert (a["gen_ai.response.model"], a["gen_ai.response.id"]) == ("gpt-4o-mini", "chatcmpl-123")
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (31, 300)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 8 and a["gen_ai.usage.reasoning.output_tokens"] == 5
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "What is OpenTelemetry?"}]}]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}]
    assert a["output.mime_type"] == "application/json"
    assert json.loads(a["output.value"])["choices"][0]["message"]["content"] == ANSWER


def test_openai_tool_call_in_output_messages(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt
    def plan(client: Any) -> Any:
        return client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[{
            "type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])

    plan(llm.openai)
    a = _one(exported(), "chat plan").attributes
    [message] = json.loads(a["gen_ai.output.messages"])
    assert message["finish_reason"] == "tool_calls"
    assert message["parts"][-1] == {"type": "tool_call", "id": "call_1", "name": "get_weather",
                                    "arguments": {"city": "Paris"}}


def test_openai_stream_keeps_the_span_open_and_assembles_the_answer(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="gpt-4o-mini", provider="openai")
    def ask(question: str) -> Any:
        return llm.openai.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": question}])

    with fluxloop.instrument("chat") as ctx:
        stream = ask("What is OpenTelemetry?")
    assert stream.response.status_code == 200  # the SDK object's attributes pass through
    assert exported() == [] or all(s.name != "chat gpt-4o-mini" for s in exported())  # not ended yet
    with stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == ANSWER
    spans = exported()
    span = _one(spans, "chat gpt-4o-mini")
    a = span.attributes
    assert span.parent_id == ctx.span_id  # parented at the call, though read after the block
    assert a["output.value"] == ANSWER and a["output.mime_type"] == "text/plain"  # all 300 words
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (31, 300)
    assert a["gen_ai.response.finish_reasons"] == ["stop"] and a["gen_ai.response.id"] == "chatcmpl-456"
    assert a["fluxloop.stream.time_to_first_chunk"] >= 0
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": ANSWER}]
    assert "output.value" not in _one(spans, "chat").attributes  # the block ended before the stream did


async def test_async_openai_stream(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="gpt-4o-mini")
    async def ask() -> Any:
        return await llm.async_openai.chat.completions.create(
            model="gpt-4o-mini", stream=True, stream_options={"include_usage": True}, messages=MESSAGES)

    stream = await ask()
    chunks = [c async for c in stream]
    assert len(chunks) == 303 + 30  # role chunk, a chunk a word, finish, usage
    a = _one(exported(), "chat gpt-4o-mini").attributes
    assert a["output.value"] == ANSWER and a["gen_ai.usage.output_tokens"] == 300


def test_anthropic_message_stream_manager(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="claude-sonnet-4-5")
    def ask(system: str, messages: list[dict[str, str]]) -> Any:
        return llm.anthropic.messages.stream(model="claude-sonnet-4-5", max_tokens=1024, system=system,
                                             messages=messages)

    with ask("Be brief.", [{"role": "user", "content": "What is OpenTelemetry?"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == ANSWER
    a = _one(exported(), "chat claude-sonnet-4-5").attributes
    assert a["gen_ai.provider.name"] == "anthropic"  # inferred from the streamed message
    assert a["output.value"] == ANSWER
    assert a["gen_ai.usage.input_tokens"] == 25 + 4 and a["gen_ai.usage.cache_read.input_tokens"] == 4
    assert a["gen_ai.usage.output_tokens"] == 300 and a["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert json.loads(a["gen_ai.input.messages"])[0] == {"role": "system",
                                                         "parts": [{"type": "text", "content": "Be brief."}]}


async def test_async_anthropic_raw_event_stream(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="claude-haiku")
    async def ask() -> Any:
        return await llm.async_anthropic.messages.create(model="claude-haiku", max_tokens=64, stream=True,
                                                         messages=[{"role": "user", "content": "hi"}])

    stream = await ask()
    async with stream:
        kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    a = _one(exported(), "chat claude-haiku").attributes
    assert a["output.value"] == ANSWER and a["gen_ai.response.id"] == "msg_123"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (29, 300)


def test_stream_closed_early_ends_its_span(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="gpt-4o-mini")
    def ask() -> Any:
        return llm.openai.chat.completions.create(model="gpt-4o-mini", stream=True, messages=MESSAGES)

    stream = ask()
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert len(first) == 3
    a = _one(exported(), "chat gpt-4o-mini").attributes
    assert a["output.value"] == "OpenTelemetry is"


def test_generator_created_inside_instrument_stays_in_its_trace(exported: Any) -> None:
    @fluxloop.prompt(name="words")
    def words() -> Any:
        yield from ANSWER.split(" ")

    with fluxloop.instrument("job") as ctx:
        gen = words()
    assert " ".join(gen) == ANSWER  # consumed after the block
    spans = exported()
    span = _one(spans, "chat words")
    assert span.trace_id == ctx.trace_id and span.parent_id == ctx.span_id
    assert span.attributes["output.value"] == "".join(ANSWER.split(" "))  # the yielded text, assembled


def test_prompt_around_a_self_tracing_client_does_not_count_tokens_twice(exported: Any) -> None:
    llm = FakeLLM()  # the anthropic SDK traces its calls itself, by default

    @fluxloop.prompt(model="claude-haiku")
    def ask() -> Any:
        return llm.anthropic.messages.create(model="claude-haiku", max_tokens=64,
                                             messages=[{"role": "user", "content": "hi"}])

    ask()
    spans = exported()
    prompt = _one(spans, "chat claude-haiku")
    children = [s for s in spans if s.parent_id == prompt.span_id]
    if not any("gen_ai.usage.input_tokens" in c.attributes for c in children):
        pytest.fail(f"the anthropic SDK traced nothing under @prompt: {[c.name for c in spans]}")
    total = sum(s.attributes.get("gen_ai.usage.input_tokens", 0) + s.attributes.get("gen_ai.usage.output_tokens", 0)
                for s in spans)
    assert total == 29 + 300  # counted once, on the client's span
    assert prompt.attributes["fluxloop.usage.output_tokens"] == 300  # kept, under a key nobody sums


def test_responses_api_shaped_result(exported: Any) -> None:
    @fluxloop.prompt(model="gpt-4.1")
    def respond(input: list[dict[str, str]]) -> dict[str, Any]:
        return {"id": "resp_1", "object": "response", "model": "gpt-4.1", "status": "completed",
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": "Hello."}]},
                           {"type": "function_call", "call_id": "call_9", "name": "lookup", "arguments": "{}"}],
                "usage": {"input_tokens": 12, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 2},
                          "output_tokens_details": {"reasoning_tokens": 1}}}

    respond([{"role": "user", "content": "Hi"}])
    a = _one(exported(), "chat gpt-4.1").attributes
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.response.finish_reasons"] == ["completed"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 3)
    assert (a["gen_ai.usage.cache_read.input_tokens"], a["gen_ai.usage.reasoning.output_tokens"]) == (2, 1)
    assert json.loads(a["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]
    assert json.loads(a["gen_ai.output.messages"]) == [{"role": "assistant", "finish_reason": "completed", "parts": [
        {"type": "text", "content": "Hello."}, {"type": "tool_call", "id": "call_9", "name": "lookup", "arguments": {}}]}]


def test_streamed_tool_call_is_assembled(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="gpt-4o")
    def plan() -> Any:
        return llm.openai.chat.completions.create(model="gpt-4o", stream=True, messages=MESSAGES, tools=[{
            "type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])

    pieces = [c.choices[0].delta.tool_calls for c in plan() if c.choices and c.choices[0].delta.tool_calls]
    assert len(pieces) == 4
    a = _one(exported(), "chat gpt-4o").attributes
    call = {"type": "tool_call", "id": "call_42", "name": "get_weather", "arguments": {"city": "Paris"}}
    assert json.loads(a["output.value"]) == {"content": "", "tool_calls": [call]}
    assert a["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert json.loads(a["gen_ai.output.messages"]) == [{"role": "assistant", "parts": [call],
                                                        "finish_reason": "tool_calls"}]


async def test_async_anthropic_streamed_tool_use(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="claude-sonnet-4-5")
    def plan() -> Any:
        return llm.async_anthropic.messages.stream(
            model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": "weather?"}],
            tools=[{"name": "get_weather", "input_schema": {"type": "object"}}])

    async with plan() as stream:
        events = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert "content_block_delta" in events and final.content[0].input == {"city": "Paris"}
    a = _one(exported(), "chat claude-sonnet-4-5").attributes
    call = {"type": "tool_call", "id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    assert json.loads(a["output.value"]) == {"content": "", "tool_calls": [call]}
    assert a["gen_ai.response.finish_reasons"] == ["tool_use"] and a["gen_ai.usage.output_tokens"] == 12


_STREAM_METHODS = ("__iter__", "__next__", "__enter__", "__exit__", "close", "send", "throw", "until_done",
                   "get_final_message", "get_final_text", "__aiter__", "__anext__", "__aenter__", "__aexit__",
                   "aclose", "asend", "athrow")


def test_stream_proxy_offers_only_what_the_stream_has(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="gpt-4o-mini")
    def ask() -> Any:
        return llm.openai.chat.completions.create(model="gpt-4o-mini", stream=True, messages=MESSAGES)

    stream = ask()
    assert [n for n in _STREAM_METHODS if hasattr(stream, n)] == \
        [n for n in _STREAM_METHODS if hasattr(openai.Stream, n)]
    with pytest.raises(AttributeError, match="send"):
        stream.send(None)  # as on the stream itself; the span is not touched
    with stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == ANSWER
    span = _one(exported(), "chat gpt-4o-mini")
    assert span.status_code == 0 and span.attributes["output.value"] == ANSWER


async def test_async_stream_proxies_offer_only_what_each_stream_has(llm: FakeLLM, exported: Any) -> None:
    @fluxloop.prompt(model="claude-haiku")
    async def ask() -> Any:
        return await llm.async_anthropic.messages.create(model="claude-haiku", max_tokens=64, stream=True,
                                                         messages=[{"role": "user", "content": "hi"}])

    @fluxloop.prompt(model="claude-haiku")
    def managed() -> Any:
        return llm.anthropic.messages.stream(model="claude-haiku", max_tokens=64,
                                             messages=[{"role": "user", "content": "hi"}])

    stream = await ask()
    assert [n for n in _STREAM_METHODS if hasattr(stream, n)] == \
        [n for n in _STREAM_METHODS if hasattr(anthropic.AsyncStream, n)]  # no aclose on this one
    async with stream:
        assert len([event async for event in stream]) > 300
    with managed() as message_stream:
        assert [n for n in _STREAM_METHODS if hasattr(message_stream, n)] == \
            [n for n in _STREAM_METHODS if hasattr(anthropic.lib.streaming.MessageStream, n)]
        assert message_stream.get_final_text() == ANSWER
    assert [s.attributes["output.value"] for s in exported()] == [ANSWER, ANSWER]


def test_time_to_first_chunk_includes_the_request(llm: FakeLLM, exported: Any, tmp_path: Path) -> None:
    @fluxloop.prompt(model="gpt-4o-mini")
    def ask() -> Any:
        return llm.openai.chat.completions.create(model="gpt-4o-mini", stream=True, messages=MESSAGES)

    stream = ask()  # the HTTP response has arrived when this returns
    before = time.time_ns()
    next(stream)
    after = time.time_ns()
    stream.close()
    a = _one(exported(), "chat gpt-4o-mini").attributes
    first = start_ns(tmp_path / "artifacts", "chat gpt-4o-mini") + round(a["fluxloop.stream.time_to_first_chunk"] * 1e9)
    assert before - 1_000 <= first <= after + 1_000  # measured from the span's start, on its clock
