"""What a traced stream yielded, assembled: text, tool calls, response fields, usage, time to first chunk.

Nothing a stream yields is kept: text is kept up to the attribute limit, other items are serialized (masked and
bounded, by the one serializer) when they arrive and only their JSON is kept, within ``max_attribute_length``.
"""

from __future__ import annotations

import time
from typing import Any

from fluxloop import _attributes as attr
from fluxloop import _genai
from fluxloop._errors import internal_error
from fluxloop._masking import Masker
from fluxloop._serialize import dumps_attribute
from fluxloop._tokens import get, usage_attributes

#: Room kept for the ``"...[N more items]"`` marker and the brackets of the item list.
_MARKER_ROOM = 48


class SerializedItems:
    """A stream's non-text items as one JSON array, already masked and bounded; the masked paths."""

    __slots__ = ("text", "masked")

    def __init__(self, text: str, masked: list[str]) -> None:
        self.text = text
        self.masked = masked


class Collector:
    """What a stream yielded, assembled: text, tool calls, response fields, usage, time to first chunk."""

    __slots__ = ("_text", "_text_len", "_items", "_item_budget", "_extra_items", "_masked", "_masker", "_calls",
                 "_usage", "_anthropic", "response", "reason", "limit", "started", "first_chunk", "llm", "provider")

    def __init__(self, limit: int, masker: Masker, started_ns: int | None = None) -> None:
        """``limit``: ``max_attribute_length``; ``started_ns``: the span's start (``time.time_ns()`` clock, as
        OpenTelemetry's), from which the time to first chunk is measured; None: now."""
        self._text: list[str] = []
        self._text_len = 0
        self._items: list[str] = []  # JSON of the items kept, never the items themselves
        self._item_budget = max(0, limit - _MARKER_ROOM)
        self._extra_items = 0
        self._masked: list[str] = []
        self._masker = masker
        self._calls: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, int] = {}
        self._anthropic: dict[str, Any] = {}
        self.response: dict[str, Any] = {}
        self.reason: str | None = None
        self.limit = limit
        self.started = time.time_ns() if started_ns is None else started_ns
        self.first_chunk: float | None = None
        self.llm = False
        self.provider: str | None = None

    # -- chunks -----------------------------------------------------------------------------------------------
    def add(self, item: Any) -> None:
        """Take one yielded item into account. Never raises."""
        try:
            if self.first_chunk is None:
                self.first_chunk = max(0, time.time_ns() - self.started) / 1e9
                self.provider = _genai.provider_of(item)
            if isinstance(item, str):
                self._add_text(item)
            elif get(item, "choices") is not None:
                self._openai_chunk(item)
            elif isinstance(get(item, "type"), str) and self._event(item):
                pass
            else:
                self._add_item(item)
        except Exception as exc:
            internal_error("reading a stream chunk", exc)

    def _add_text(self, text: str) -> None:
        if self._text_len <= self.limit:  # the attribute is cut at the limit anyway: keep no more
            self._text.append(text)
            self._text_len += len(text)

    def _add_item(self, item: Any) -> None:
        """Serialize ``item`` now (masked, bounded) and keep its JSON while it fits; once one does not fit, the
        rest are only counted. No reference to the item is kept."""
        if self._extra_items:
            self._extra_items += 1
            return
        text, masked = dumps_attribute(item, self.limit, self._masker)
        cost = len(text) + 1  # with its comma
        if cost > self._item_budget:
            self._extra_items = 1
            return
        self._item_budget -= cost
        index = len(self._items)
        self._items.append(text)
        self._masked.extend(f"[{index}]{p}" if p.startswith("[") else f"[{index}].{p}" for p in masked)

    def _response_fields(self, source: Any) -> None:
        for key, name in ((attr.GEN_AI_RESPONSE_ID, "id"), (attr.GEN_AI_RESPONSE_MODEL, "model")):
            value = get(source, name)
            if isinstance(value, str) and value:
                self.response[key] = value

    def _openai_chunk(self, chunk: Any) -> None:
        self.llm = True
        self._response_fields(chunk)
        for choice in get(chunk, "choices") or ():
            delta = get(choice, "delta")
            content = get(delta, "content")
            if isinstance(content, str):
                self._add_text(content)
            for call in get(delta, "tool_calls") or ():
                index = get(call, "index")
                slot = self._calls.setdefault(index if isinstance(index, int) else len(self._calls),
                                              {"type": "tool_call", "id": None, "name": None, "arguments": ""})
                fn = get(call, "function")
                if get(call, "id"):
                    slot["id"] = get(call, "id")
                if get(fn, "name"):
                    slot["name"] = get(fn, "name")
                if isinstance(get(fn, "arguments"), str):
                    slot["arguments"] += get(fn, "arguments")
            reason = get(choice, "finish_reason")
            if isinstance(reason, str):
                self.reason = reason
        if get(chunk, "usage") is not None:
            self._usage = usage_attributes(chunk)

    def _event(self, event: Any) -> bool:
        """Anthropic message events and OpenAI responses events; False for any other typed item."""
        kind = get(event, "type")
        if kind == "message_start":
            message = get(event, "message")
            self._response_fields(message)
            self._anthropic.update(_ints(get(message, "usage")))
        elif kind == "content_block_start":
            block = get(event, "content_block")
            if get(block, "type") == "tool_use":
                self._calls[get(event, "index") or 0] = {"type": "tool_call", "id": get(block, "id"),
                                                         "name": get(block, "name"), "arguments": ""}
        elif kind == "content_block_delta":
            delta = get(event, "delta")
            if get(delta, "type") == "text_delta":
                self._add_text(get(delta, "text") or "")
            elif get(delta, "type") == "input_json_delta":
                slot = self._calls.get(get(event, "index") or 0)
                if slot is not None:
                    slot["arguments"] += get(delta, "partial_json") or ""
        elif kind == "message_delta":
            reason = get(get(event, "delta"), "stop_reason")
            if isinstance(reason, str):
                self.reason = reason
            self._anthropic.update(_ints(get(event, "usage")))
        elif kind == "response.output_text.delta":
            self._add_text(get(event, "delta") or "")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = get(event, "response")
            self._response_fields(response)
            self._usage = usage_attributes(response)
            status = get(response, "status")
            self.reason = status if isinstance(status, str) else self.reason
        elif kind in ("message_stop", "content_block_stop", "ping") or kind.startswith("response."):
            pass
        elif kind in ("text", "input_json", "citation", "thinking", "signature"):
            pass  # anthropic MessageStream's derived events: the same content as the deltas beside them
        else:
            return False
        self.llm = True
        return True

    def final(self, message: Any) -> None:
        """Take a complete final message (an SDK stream's snapshot) as the authoritative result."""
        try:
            if message is None:
                return
            self.llm = True
            self.provider = self.provider or _genai.provider_of(message)
            self._response_fields(message)
            self._usage = usage_attributes(message) or self._usage
            reasons = _genai.finish_reasons(message)
            self.reason = reasons[0] if reasons else self.reason
            parts = _genai.output_messages(message)
            if parts:
                self._text = [p["content"] for p in parts[0]["parts"] if p.get("type") == "text"]
                self._text_len = sum(len(t) for t in self._text)
                calls = [p for p in parts[0]["parts"] if p.get("type") == "tool_call"]
                self._calls = dict(enumerate(calls))
        except Exception as exc:
            internal_error("reading a stream's final message", exc)

    # -- results ----------------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return "".join(self._text)

    def tool_calls(self) -> list[dict[str, Any]]:
        calls = []
        for _, call in sorted(self._calls.items(), key=lambda kv: kv[0] if isinstance(kv[0], int) else 0):
            arguments = call.get("arguments")
            calls.append({**call, "arguments": _genai.parse_json(arguments) if isinstance(arguments, str)
                          else arguments})
        return calls

    def output(self) -> Any:
        """The span's output: the assembled text; with tool calls, ``{"content": text, "tool_calls": [...]}``;
        for a stream of other items, their JSON array (bounded, with a ``...[N more items]`` marker)."""
        calls = self.tool_calls()
        if calls:
            return {"content": self.text, "tool_calls": calls}
        if self._text or self.llm or not (self._items or self._extra_items):
            return self.text
        items = self._items + [f'"...[{self._extra_items} more items]"'] if self._extra_items else self._items
        return SerializedItems(f"[{','.join(items)}]", self._masked)

    def attributes(self) -> dict[str, Any]:
        """Response fields, usage, finish reason and time to first chunk as span attributes."""
        out: dict[str, Any] = dict(self.response)
        usage = self._usage or (usage_attributes({"usage": self._anthropic}) if self._anthropic else {})
        out.update(usage)
        if self.reason:
            out[attr.GEN_AI_RESPONSE_FINISH_REASONS] = [self.reason]
        if self.first_chunk is not None:
            out[attr.TIME_TO_FIRST_CHUNK] = self.first_chunk
        return out

    def output_messages(self) -> list[dict[str, Any]] | None:
        if not self.llm:
            return None
        return _genai.assembled_output(self.text, self.tool_calls(), self.reason)


def _ints(usage: Any) -> dict[str, int]:
    out = {}
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = get(usage, key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    return out
