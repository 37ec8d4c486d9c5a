"""Streams returned by traced calls: keep the span open until the stream ends, and assemble what it yielded.

A decorated call that returns a generator, an async generator or an LLM SDK stream (openai ``Stream``/
``AsyncStream``, anthropic ``Stream``/``MessageStream`` and their ``...StreamManager``) hands the caller a
proxy that behaves like the original (iteration, ``with``/``async with``, ``close()``, every other attribute
through delegation) and ends the span exactly once: when the stream is exhausted, closed, exits its context,
raises, or is garbage-collected unread. The proxy assembles the text (and tool calls) from OpenAI chunks,
Anthropic events or plain strings, and keeps the usage of the final chunk/event.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context

from fluxloop import _attributes as attr
from fluxloop import _genai
from fluxloop._errors import internal_error
from fluxloop._tokens import get, usage_attributes

#: Called once when a stream ends: (exception or None, the collector).
Finish = Callable[[BaseException | None, "Collector"], None]

_SYNC, _ASYNC, _SYNC_MANAGER, _ASYNC_MANAGER = "sync", "async", "sync_manager", "async_manager"
_SDKS = ("openai", "anthropic")
_ITEM_BUDGET_PER_ITEM = 64  # approximate size of a non-text item when bounding what is kept


#: Result types that are never streams: the common results skip every other check.
_PLAIN: frozenset[type] = frozenset({str, bytes, int, float, bool, type(None), dict, list, tuple, set})


def stream_kind(value: Any) -> str | None:
    """How to wrap ``value`` (``sync``, ``async``, ``sync_manager``, ``async_manager``), or None: not a stream."""
    if type(value) in _PLAIN:
        return None
    if inspect.isgenerator(value):
        return _SYNC
    if inspect.isasyncgen(value):
        return _ASYNC
    cls = type(value)
    if (getattr(cls, "__module__", "") or "").split(".", 1)[0] not in _SDKS:
        return None
    name = cls.__name__
    if name.endswith("StreamManager"):
        return _ASYNC_MANAGER if hasattr(cls, "__aenter__") else _SYNC_MANAGER
    if name.endswith("Stream"):
        return _ASYNC if hasattr(cls, "__anext__") or hasattr(cls, "__aiter__") else \
            _SYNC if hasattr(cls, "__iter__") else None
    return None


def wrap(value: Any, kind: str, finish: Finish, limit: int, ctx: Any = None) -> Any:
    """A proxy for the stream ``value`` that calls ``finish`` once when it ends. ``ctx`` (an OTel context) is
    made current while a generator's body runs, so spans it starts are children of the call's span."""
    collector = Collector(limit)
    if kind == _SYNC:
        return _SyncProxy(value, collector, finish, ctx)
    if kind == _ASYNC:
        return _AsyncProxy(value, collector, finish, ctx)
    if kind == _SYNC_MANAGER:
        return _SyncManagerProxy(value, collector, finish)
    return _AsyncManagerProxy(value, collector, finish)


class Collector:
    """What a stream yielded, assembled: text, tool calls, response fields, usage, time to first chunk."""

    __slots__ = ("_text", "_text_len", "_items", "_item_budget", "_extra_items", "_calls", "_usage", "_anthropic",
                 "response", "reason", "limit", "started", "first_chunk", "llm", "provider")

    def __init__(self, limit: int) -> None:
        self._text: list[str] = []
        self._text_len = 0
        self._items: list[Any] = []
        self._item_budget = limit
        self._extra_items = 0
        self._calls: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, int] = {}
        self._anthropic: dict[str, Any] = {}
        self.response: dict[str, Any] = {}
        self.reason: str | None = None
        self.limit = limit
        self.started = time.perf_counter()
        self.first_chunk: float | None = None
        self.llm = False
        self.provider: str | None = None

    # -- chunks -----------------------------------------------------------------------------------------------
    def add(self, item: Any) -> None:
        """Take one yielded item into account. Never raises."""
        try:
            if self.first_chunk is None:
                self.first_chunk = time.perf_counter() - self.started
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
        cost = len(item) if isinstance(item, (bytes, bytearray)) else _ITEM_BUDGET_PER_ITEM
        if self._item_budget >= cost:
            self._item_budget -= cost
            self._items.append(item)
        else:
            self._extra_items += 1

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
        for a stream of other items, the items (bounded)."""
        calls = self.tool_calls()
        if calls:
            return {"content": self.text, "tool_calls": calls}
        if self._text or self.llm or not self._items:
            return self.text
        return [*self._items, f"...[{self._extra_items} more items]"] if self._extra_items else self._items

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


def _snapshot(stream: Any) -> Any:
    """The final message an SDK stream assembled itself (anthropic ``MessageStream``), or None."""
    try:
        reader = getattr(type(stream), "_current_snapshot_or_none", None)
        return reader(stream) if reader is not None else None
    except Exception:
        return None


class _Base:
    __slots__ = ("_target", "_collector", "_on_finish", "_ctx", "_done", "__weakref__")

    def __init__(self, target: Any, collector: Collector, finish: Finish, ctx: Any = None) -> None:
        self._target = target
        self._collector = collector
        self._on_finish = finish
        self._ctx = ctx
        self._done = False

    def _end(self, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        if isinstance(exc, (GeneratorExit, StopIteration, StopAsyncIteration)):
            exc = None
        self._collector.final(_snapshot(self._target))
        try:
            self._on_finish(exc, self._collector)
        except Exception as inner:
            internal_error("ending a stream's span", inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    def __repr__(self) -> str:
        return repr(self._target)

    def __del__(self) -> None:
        try:
            self._end(None)  # dropped before it ended: end the span with what was read
        except Exception:
            pass


class _SyncProxy(_Base):
    """A sync generator or SDK stream."""

    __slots__ = ("_it",)

    def __init__(self, target: Any, collector: Collector, finish: Finish, ctx: Any = None) -> None:
        super().__init__(target, collector, finish, ctx)
        self._it: Any = None

    def __iter__(self) -> _SyncProxy:
        return self

    def _step(self, call: Callable[..., Any], *args: Any) -> Any:
        token = otel_context.attach(self._ctx) if self._ctx is not None else None
        try:
            item = call(*args)
        except BaseException as exc:
            if token is not None:
                otel_context.detach(token)
                token = None
            self._end(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._collector.add(item)
        return item

    def __next__(self) -> Any:
        if inspect.isgenerator(self._target):
            return self._step(self._target.send, None)
        if self._it is None:
            self._it = iter(self._target)
        return self._step(next, self._it)

    def send(self, value: Any) -> Any:
        return self._step(self._target.send, value)

    def throw(self, *args: Any) -> Any:
        return self._step(self._target.throw, *args)

    def close(self) -> None:
        try:
            self._target.close()
        finally:
            self._end(None)

    def __enter__(self) -> _SyncProxy:
        self._target.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self._target.__exit__(*exc_info)
        finally:
            self._end(exc_info[1])

    def until_done(self) -> None:
        try:
            self._target.until_done()
        finally:
            self._end(None)

    def get_final_message(self) -> Any:
        message = self._target.get_final_message()
        self._end(None)
        return message

    def get_final_text(self) -> Any:
        text = self._target.get_final_text()
        self._end(None)
        return text


class _AsyncProxy(_Base):
    """An async generator or async SDK stream."""

    __slots__ = ("_it",)

    def __init__(self, target: Any, collector: Collector, finish: Finish, ctx: Any = None) -> None:
        super().__init__(target, collector, finish, ctx)
        self._it: Any = None

    def __aiter__(self) -> _AsyncProxy:
        return self

    async def _step(self, call: Callable[..., Any], *args: Any) -> Any:
        token = otel_context.attach(self._ctx) if self._ctx is not None else None
        try:
            item = await call(*args)
        except BaseException as exc:
            if token is not None:
                otel_context.detach(token)
                token = None
            self._end(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._collector.add(item)
        return item

    async def __anext__(self) -> Any:
        if inspect.isasyncgen(self._target):
            return await self._step(self._target.asend, None)
        if self._it is None:
            self._it = self._target.__aiter__()
        return await self._step(self._it.__anext__)

    async def asend(self, value: Any) -> Any:
        return await self._step(self._target.asend, value)

    async def athrow(self, *args: Any) -> Any:
        return await self._step(self._target.athrow, *args)

    async def aclose(self) -> None:
        try:
            await self._target.aclose()
        finally:
            self._end(None)

    async def close(self) -> None:
        try:
            await self._target.close()
        finally:
            self._end(None)

    async def __aenter__(self) -> _AsyncProxy:
        await self._target.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._target.__aexit__(*exc_info)
        finally:
            self._end(exc_info[1])

    async def until_done(self) -> None:
        try:
            await self._target.until_done()
        finally:
            self._end(None)

    async def get_final_message(self) -> Any:
        message = await self._target.get_final_message()
        self._end(None)
        return message

    async def get_final_text(self) -> Any:
        text = await self._target.get_final_text()
        self._end(None)
        return text


class _SyncManagerProxy(_Base):
    """A ``with client.messages.stream(...) as stream`` manager: the span ends when the block exits."""

    __slots__ = ("_stream",)

    def __init__(self, target: Any, collector: Collector, finish: Finish, ctx: Any = None) -> None:
        super().__init__(target, collector, finish, ctx)
        self._stream: Any = None

    def __enter__(self) -> Any:
        try:
            self._stream = self._target.__enter__()
        except BaseException as exc:
            self._end(exc)
            raise
        return _SyncProxy(self._stream, self._collector, lambda exc, col: None)

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self._target.__exit__(*exc_info)
        finally:
            self._collector.final(_snapshot(self._stream))
            self._end(exc_info[1])


class _AsyncManagerProxy(_Base):
    """An ``async with client.messages.stream(...) as stream`` manager."""

    __slots__ = ("_stream",)

    def __init__(self, target: Any, collector: Collector, finish: Finish, ctx: Any = None) -> None:
        super().__init__(target, collector, finish, ctx)
        self._stream: Any = None

    async def __aenter__(self) -> Any:
        try:
            self._stream = await self._target.__aenter__()
        except BaseException as exc:
            self._end(exc)
            raise
        return _AsyncProxy(self._stream, self._collector, lambda exc, col: None)

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._target.__aexit__(*exc_info)
        finally:
            self._collector.final(_snapshot(self._stream))
            self._end(exc_info[1])
