"""A fake OpenAI / Anthropic service behind the real SDK clients' HTTP transport (no network).

Responses follow the providers' documented JSON and server-sent-event shapes: a chat completion, a chat stream
whose last chunk carries the usage (``stream_options={"include_usage": True}``), an Anthropic message and an
Anthropic message stream (message_start / content_block_* / message_delta / message_stop).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai

ANSWER = ("OpenTelemetry is a vendor neutral framework for traces, metrics and logs. " * 30).strip()
WORDS = ANSWER.split(" ")  # 300 words, streamed one per chunk
OPENAI_USAGE = {"prompt_tokens": 31, "completion_tokens": 300, "total_tokens": 331,
                "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 5}}
ANTHROPIC_USAGE = {"input_tokens": 25, "output_tokens": 300, "cache_read_input_tokens": 4,
                   "cache_creation_input_tokens": 0}


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return "".join(out).encode()


def openai_completion(model: str, text: str = ANSWER, tool_call: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_call:
        message["tool_calls"] = [{"id": "call_1", "type": "function",
                                  "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    return {"id": "chatcmpl-123", "object": "chat.completion", "created": 1_764_600_000, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if tool_call else "stop"}],
            "usage": OPENAI_USAGE}


def openai_stream(model: str) -> bytes:
    base = {"id": "chatcmpl-456", "object": "chat.completion.chunk", "created": 1_764_600_000, "model": model}
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]})]
    for i, word in enumerate(WORDS):
        events.append((None, {**base, "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word},
                                                   "finish_reason": None}]}))
    events.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append((None, {**base, "choices": [], "usage": OPENAI_USAGE}))
    events.append((None, "[DONE]"))
    return _sse(events)


def openai_tool_stream(model: str) -> bytes:
    """A streamed tool call: the id and name first, the JSON arguments in pieces."""
    base = {"id": "chatcmpl-789", "object": "chat.completion.chunk", "created": 1_764_600_000, "model": model}

    def chunk(delta: dict[str, Any], reason: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
    call = {"index": 0, "id": "call_42", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return _sse([chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
                 *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                   for piece in ('{"ci', 'ty": "Pa', 'ris"}')),
                 chunk({}, "tool_calls"), (None, "[DONE]")])


def anthropic_message(model: str, text: str = ANSWER) -> dict[str, Any]:
    return {"id": "msg_123", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": ANTHROPIC_USAGE}


def anthropic_stream(model: str) -> bytes:
    start = {**anthropic_message(model, ""), "content": [], "stop_reason": None,
             "usage": {**ANTHROPIC_USAGE, "output_tokens": 1}}
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
    ]
    for i, word in enumerate(WORDS):
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta",
                                                         "text": word if i == 0 else " " + word}}))
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}}),
               ("message_stop", {"type": "message_stop"})]
    return _sse(events)


def anthropic_tool_stream(model: str) -> bytes:
    """A streamed tool_use block: its input JSON in pieces."""
    start = {**anthropic_message(model, ""), "content": [], "stop_reason": None,
             "usage": {**ANTHROPIC_USAGE, "output_tokens": 1}}
    pieces = ('{"ci', 'ty": "Pa', 'ris"}')
    return _sse([("message_start", {"type": "message_start", "message": start}),
                 ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                     "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
                 *(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "input_json_delta", "partial_json": piece}})
                   for piece in pieces),
                 ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                 ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use",
                                                                       "stop_sequence": None},
                                    "usage": {"output_tokens": 12}}),
                 ("message_stop", {"type": "message_stop"})])


def _handler(requests: list[dict[str, Any]]) -> Callable[[httpx2.Request], httpx2.Response]:
    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content or b"{}")
        requests.append(body)
        model = body.get("model", "m")
        sse = {"content-type": "text/event-stream"}
        if request.url.path.endswith("/chat/completions"):
            if body.get("stream"):
                content = openai_tool_stream(model) if body.get("tools") else openai_stream(model)
                return httpx2.Response(200, headers=sse, content=content)
            return httpx2.Response(200, json=openai_completion(model, tool_call=bool(body.get("tools"))))
        if request.url.path.endswith("/messages"):
            if body.get("stream"):
                content = anthropic_tool_stream(model) if body.get("tools") else anthropic_stream(model)
                return httpx2.Response(200, headers=sse, content=content)
            return httpx2.Response(200, json=anthropic_message(model))
        return httpx2.Response(404, json={"error": {"message": "not found"}})
    return handle


class FakeLLM:
    """Real ``openai``/``anthropic`` clients (sync and async) talking to the fake service; ``requests`` holds
    every request body received. ``anthropic_tracing=False`` turns the anthropic SDK's own spans off."""

    def __init__(self, anthropic_tracing: bool = True) -> None:
        self.requests: list[dict[str, Any]] = []
        transport = httpx2.MockTransport(_handler(self.requests))
        common = {"api_key": "sk-test-000000000000000000000000", "max_retries": 0}
        self.openai = openai.OpenAI(base_url="http://llm.test/v1", http_client=httpx2.Client(transport=transport),
                                    **common)
        self.async_openai = openai.AsyncOpenAI(base_url="http://llm.test/v1",
                                               http_client=httpx2.AsyncClient(transport=transport), **common)
        tracing: Any = None if anthropic_tracing else False
        self.anthropic = anthropic.Anthropic(base_url="http://llm.test", http_client=httpx2.Client(transport=transport),
                                             open_telemetry=tracing, **common)
        self.async_anthropic = anthropic.AsyncAnthropic(base_url="http://llm.test", open_telemetry=tracing,
                                                        http_client=httpx2.AsyncClient(transport=transport), **common)
