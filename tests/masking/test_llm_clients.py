"""Real LLM clients (``openai`` traced by OpenInference's instrumentation, ``anthropic`` tracing itself) driven
through their HTTP transport against an in-process fake: their spans go through FluxLoop's pipeline masked and
carry the ``instrument()`` block's user and session."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from openinference.instrumentation.openai import OpenAIInstrumentor

import fluxloop
from fluxloop import _attributes as attr

from .conftest import Exported, artifact_text, as_json, by_name

SK = "sk-live-" + uuid.uuid4().hex + uuid.uuid4().hex[:8]

OPENAI_COMPLETION = {
    "id": "chatcmpl-Bx1", "object": "chat.completion", "created": 1764547200, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Rotate that key now; it is exposed.", "refusal": None}}],
    "usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
    "system_fingerprint": "fp_0ba0d124f1",
}
ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Please revoke it."}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 28, "output_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}


class FakeProvider:
    """The LLM service behind the clients' transport: answers with realistic JSON and keeps what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        if request.url.path.endswith("/chat/completions"):
            return httpx2.Response(200, json=OPENAI_COMPLETION)
        if request.url.path.endswith("/messages"):
            return httpx2.Response(200, json=ANTHROPIC_MESSAGE)
        return httpx2.Response(404, json={"error": {"message": "not found"}})


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def openai_client(provider: FakeProvider) -> Iterator[openai.OpenAI]:
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument()
    client = openai.OpenAI(api_key="sk-test-client", base_url="http://llm.invalid/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(provider)))
    yield client
    client.close()
    instrumentor.uninstrument()


@pytest.fixture
def anthropic_client(provider: FakeProvider) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(api_key="sk-ant-test-client", base_url="http://llm.invalid", max_retries=0,
                                 http_client=httpx2.Client(transport=httpx2.MockTransport(provider)))
    yield client
    client.close()


def test_a_key_in_a_message_is_masked_in_third_party_llm_spans(
        openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic, provider: FakeProvider,
        exported: Callable[[], list[Exported]], offline_dir: Path) -> None:
    question = f"I pasted my key {SK} in a ticket, what now?"

    @fluxloop.prompt(name="advise", model="gpt-4o-mini")
    def advise(messages: list[dict[str, str]], max_tokens: int) -> str:
        result = openai_client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=max_tokens)
        return result.choices[0].message.content or ""

    with fluxloop.instrument("support turn", user_id="user-123", session_id="sess-9", tags=["support"]):
        answer = advise([{"role": "user", "content": question}], max_tokens=64)
        reply = anthropic_client.messages.create(model="claude-sonnet-4-5", max_tokens=128,
                                                 messages=[{"role": "user", "content": question}])
    assert answer == "Rotate that key now; it is exposed." and reply.content[0].text == "Please revoke it."
    assert all(request["messages"][0]["content"] == question for request in provider.requests)  # sent as is

    spans = exported()
    [openinference] = [s for s in spans if s.scope.startswith("openinference")]
    [claude] = [s for s in spans if s.scope == "com.anthropic.sdk.python"]
    prompt = by_name(spans, "chat gpt-4o-mini")
    assert openinference.parent_id == prompt.span_id
    assert openinference.attributes["llm.input_messages.0.message.content"] == \
        "I pasted my key sk-*** in a ticket, what now?"
    assert "sk-***" in openinference.attributes["input.value"]
    assert openinference.attributes["llm.token_count.prompt"] == 31  # counts untouched
    assert as_json(openinference.attributes["llm.invocation_parameters"])["max_tokens"] == 64
    assert claude.attributes["gen_ai.request.max_tokens"] == 128
    assert claude.attributes["gen_ai.usage.input_tokens"] == 28
    for span in (openinference, claude, prompt):
        assert span.attributes[attr.USER_ID] == "user-123"
        assert span.attributes[attr.SESSION_ID] == "sess-9"
        assert span.attributes[attr.TAGS] == ["support"]
    assert as_json(prompt.attributes[attr.INPUT_VALUE])["max_tokens"] == 64
    assert SK not in artifact_text(offline_dir)


def test_async_clients_in_concurrent_tasks_carry_the_instrument_context(
        provider: FakeProvider, exported: Callable[[], list[Exported]], offline_dir: Path) -> None:
    import asyncio

    async def turn() -> list[str]:
        client = anthropic.AsyncAnthropic(api_key="sk-ant-test-client", base_url="http://llm.invalid", max_retries=0,
                                          http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(provider)))
        async with fluxloop.instrument("async turn", user_id="user-async", session_id="sess-async"):
            replies = await asyncio.gather(*(client.messages.create(
                model="claude-sonnet-4-5", max_tokens=32,
                messages=[{"role": "user", "content": f"task {n}: token={SK}"}]) for n in range(3)))
        await client.close()
        return [r.content[0].text for r in replies]

    assert asyncio.run(turn()) == ["Please revoke it."] * 3
    spans = exported()
    claude = [s for s in spans if s.scope == "com.anthropic.sdk.python"]
    root = by_name(spans, "async turn")
    assert len(claude) == 3
    for span in claude:
        assert span.parent_id == root.span_id
        assert span.attributes[attr.USER_ID] == "user-async"
        assert span.attributes[attr.SESSION_ID] == "sess-async"
    assert SK not in artifact_text(offline_dir)
