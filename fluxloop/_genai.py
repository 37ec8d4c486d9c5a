"""GenAI attributes read from LLM calls: provider, response fields, usage and chat messages (parts schema).

Recognizes OpenAI-style (chat completions, responses) and Anthropic-style (messages) arguments and results, as
SDK objects or plain dicts. Anything else yields nothing: these readers never guess and never raise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fluxloop import _attributes as attr
from fluxloop._tokens import get, usage_attributes

_PROVIDERS = ("openai", "anthropic")
_CHUNK_LIMIT = 64  # messages considered at most (the serializer bounds the attribute's size anyway)


def provider_of(value: Any) -> str | None:
    """``openai``/``anthropic`` when ``value`` is an object of that SDK (a client, a response) or a dict shaped
    like that provider's response; else None."""
    root = (getattr(type(value), "__module__", "") or "").split(".", 1)[0]
    if root in _PROVIDERS:
        return root
    if isinstance(value, Mapping):
        obj = value.get("object")
        if isinstance(obj, str) and (obj.startswith("chat.completion") or obj == "response"):
            return "openai"
        if value.get("type") == "message" and "stop_reason" in value:
            return "anthropic"
    return None


def provider_from_arguments(arguments: Mapping[str, Any]) -> str | None:
    """The provider of an SDK client (or other SDK object) passed as an argument."""
    for value in arguments.values():
        root = (getattr(type(value), "__module__", "") or "").split(".", 1)[0]
        if root in _PROVIDERS:
            return root
    return None


def response_attributes(result: Any) -> dict[str, Any]:
    """``gen_ai.response.model/id/finish_reasons`` and ``gen_ai.usage.*`` from an LLM result."""
    out: dict[str, Any] = {}
    if result is None or isinstance(result, (str, bytes, int, float, bool, list, tuple)):
        return out
    try:
        model, ident = get(result, "model"), get(result, "id")
        if provider_of(result) is None and get(result, "choices") is None and get(result, "stop_reason") is None:
            return usage_attributes(result)
        if isinstance(model, str) and model:
            out[attr.GEN_AI_RESPONSE_MODEL] = model
        if isinstance(ident, str) and ident:
            out[attr.GEN_AI_RESPONSE_ID] = ident
        reasons = finish_reasons(result)
        if reasons:
            out[attr.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        out.update(usage_attributes(result))
    except Exception:
        return {}
    return out


def finish_reasons(result: Any) -> list[str]:
    """Finish reasons of an OpenAI chat completion (one per choice) or an Anthropic message (stop_reason)."""
    stop = get(result, "stop_reason")
    if isinstance(stop, str):
        return [stop]
    choices = get(result, "choices")
    if isinstance(choices, Sequence) and not isinstance(choices, (str, bytes)):
        return [r for r in (get(c, "finish_reason") for c in choices[:_CHUNK_LIMIT]) if isinstance(r, str)]
    status = get(result, "status")  # OpenAI responses API
    return [status] if isinstance(status, str) and get(result, "output") is not None else []


# -- messages in the GenAI parts schema ---------------------------------------------------------------------------
def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _parts(content: Any) -> list[dict[str, Any]]:
    """Parts of an OpenAI or Anthropic message ``content`` (a string or a list of blocks)."""
    if isinstance(content, str):
        return [_text_part(content)]
    parts: list[dict[str, Any]] = []
    if not isinstance(content, Sequence) or isinstance(content, (bytes, bytearray)):
        return parts
    for block in content[:_CHUNK_LIMIT]:
        kind = get(block, "type")
        if kind in ("text", "input_text", "output_text"):
            text = get(block, "text")
            if isinstance(text, str):
                parts.append(_text_part(text))
        elif kind == "tool_use":  # Anthropic
            parts.append({"type": "tool_call", "id": get(block, "id"), "name": get(block, "name"),
                          "arguments": get(block, "input")})
        elif kind == "tool_result":  # Anthropic
            parts.append({"type": "tool_call_response", "id": get(block, "tool_use_id"),
                          "response": get(block, "content")})
        elif isinstance(block, str):
            parts.append(_text_part(block))
    return parts


def _openai_tool_calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(calls, Sequence) and not isinstance(calls, (str, bytes)):
        for call in calls[:_CHUNK_LIMIT]:
            fn = get(call, "function")
            out.append({"type": "tool_call", "id": get(call, "id"), "name": get(fn, "name"),
                        "arguments": parse_json(get(fn, "arguments"))})
    return out


def parse_json(text: Any) -> Any:
    """``text`` parsed as JSON (tool-call arguments arrive as JSON text), else ``text`` unchanged."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message(msg: Any) -> dict[str, Any] | None:
    role = get(msg, "role")
    if not isinstance(role, str):
        return None
    parts = _parts(get(msg, "content"))
    parts.extend(_openai_tool_calls(get(msg, "tool_calls")))
    if role == "tool":  # OpenAI tool result
        parts = [{"type": "tool_call_response", "id": get(msg, "tool_call_id"), "response": get(msg, "content")}]
    return {"role": role, "parts": parts}


def input_messages(arguments: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The chat messages of a call's arguments (``messages=[{"role": ..., "content": ...}]``, with an Anthropic
    ``system=`` prompt first; an OpenAI responses ``input=`` list of messages), or None when they hold none."""
    messages = arguments.get("messages")
    if messages is None:
        messages = arguments.get("input")
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        return None
    out = []
    system = arguments.get("system")
    if isinstance(system, str) and system:
        out.append({"role": "system", "parts": [_text_part(system)]})
    for msg in messages[:_CHUNK_LIMIT]:
        converted = _message(msg)
        if converted is None:
            return None  # not chat messages after all
        out.append(converted)
    return out


def output_messages(result: Any) -> list[dict[str, Any]] | None:
    """The assistant messages of an OpenAI chat completion or an Anthropic message, or None."""
    try:
        choices = get(result, "choices")
        if isinstance(choices, Sequence) and not isinstance(choices, (str, bytes)) and choices:
            out = []
            for choice in choices[:_CHUNK_LIMIT]:
                msg = _message(get(choice, "message")) or {"role": "assistant", "parts": []}
                msg["finish_reason"] = get(choice, "finish_reason") or "stop"
                out.append(msg)
            return out
        output = get(result, "output")  # OpenAI responses API: message and function_call items
        if get(result, "object") == "response" and isinstance(output, Sequence) and output:
            parts: list[dict[str, Any]] = []
            for item in output[:_CHUNK_LIMIT]:
                if get(item, "type") == "message":
                    parts.extend(_parts(get(item, "content")))
                elif get(item, "type") == "function_call":
                    parts.append({"type": "tool_call", "id": get(item, "call_id"), "name": get(item, "name"),
                                  "arguments": parse_json(get(item, "arguments"))})
            return [{"role": "assistant", "parts": parts, "finish_reason": get(result, "status") or "stop"}]
        if get(result, "role") == "assistant" and get(result, "content") is not None:
            return [{"role": "assistant", "parts": _parts(get(result, "content")),
                     "finish_reason": get(result, "stop_reason") or "stop"}]
    except Exception:
        return None
    return None


def assembled_output(text: str, tool_calls: list[dict[str, Any]], reason: str | None) -> list[dict[str, Any]]:
    """One assistant output message from a stream's assembled text and tool calls."""
    parts: list[dict[str, Any]] = [_text_part(text)] if text else []
    parts.extend(tool_calls)
    return [{"role": "assistant", "parts": parts, "finish_reason": reason or "stop"}]
