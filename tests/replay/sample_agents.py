"""Targets for replay tests: importable as ``replay.sample_agents`` (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable, Dict

import fluxloop

#: What each MessageHandler call received, as (connection_id, data, user_connection).
RECEIVED: list[tuple[Any, ...]] = []


class MessageHandler:
    """The seed README's handler, recording itself, with a reply and an error path."""

    @fluxloop.agent(name="message_handler")
    async def handle_message(self, connection_id: str, data: Dict[str, Any], user_connection: Dict[str, Any],
                             send_message_callback: Callable, send_error_callback: Callable) -> None:
        fluxloop.record_call_args(
            target=f"{__name__}:MessageHandler.handle_message",
            connection_id=connection_id,
            data=data,
            user_connection=user_connection,
            send_message_callback=send_message_callback,
            send_error_callback=send_error_callback,
        )
        RECEIVED.append((connection_id, data, user_connection))
        content = data.get("content")
        if not content:
            await send_error_callback({"connection_id": connection_id, "error": "empty message"})
            return
        for word in content.split():
            await asyncio.sleep(0)
            await send_message_callback({"connection_id": connection_id, "word": word.upper()})
        send_message_callback({"connection_id": connection_id, "done": True})  # not awaited: also fine


class NestedHandler:
    """Records itself inside an instrument() block of its agent call."""

    @fluxloop.agent(name="nested_handler")
    async def handle_message(self, connection_id: str, data: Dict[str, Any], send_message_callback: Callable) -> None:
        with fluxloop.instrument("parse"):
            fluxloop.record_call_args(target=f"{__name__}:NestedHandler.handle_message",
                                      connection_id=connection_id, data=data,
                                      send_message_callback=send_message_callback)
        await send_message_callback({"connection_id": connection_id, "echo": data.get("content")})


@fluxloop.agent
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@fluxloop.agent
async def agreet(name: str) -> str:
    await asyncio.sleep(0)
    return f"hi {name}"


def plain(a: int, b: int) -> int:
    return a + b


def fails(x: int) -> None:
    raise ValueError(f"bad x {x}")


def count(n: int):
    yield from range(n)


async def acount(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def positional(a: int, /, b: int, *rest: int, **extra: Any) -> dict:
    return {"a": a, "b": b, "rest": list(rest), "extra": extra}


def uses_callbacks(text: str, notify: Callable, send: Callable, error: Callable) -> str:
    notify(text, level="info")
    send(text)
    error("oops")
    return "done"


def prints(x: int) -> int:
    print(f"target says {x}")
    return x


def with_secret(api_key: str, user: str) -> str:
    return f"{user}:{api_key}"


class Handler:
    def __init__(self) -> None:
        self.prefix = ">"

    def handle(self, text: str, send: Callable) -> str:
        send(self.prefix + text)
        return text

    async def ahandle(self, text: str, send: Callable) -> None:
        await send(self.prefix + text)


class NeedsArgs:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def handle(self, text: str) -> str:
        return self.prefix + text


def make_needs_args() -> NeedsArgs:
    return NeedsArgs("factory:")


class Broken:
    def __init__(self) -> None:
        raise RuntimeError("cannot build")

    def handle(self) -> None: ...


class Tools:
    @staticmethod
    def add(a: int, b: int) -> int:
        return a + b

    @classmethod
    def kind(cls, x: int) -> str:
        return f"{cls.__name__}:{x}"


class Outer:
    class Inner:
        def method(self, x: int) -> int:
            return x * 2


NOT_CALLABLE = 42


class Router:
    """A sync agent recorded automatically (no explicit record_call_args)."""

    @fluxloop.agent
    def route(self, text: str, options: Dict[str, Any], reply: Callable, fail: Callable) -> str:
        RECEIVED.append((text, options))
        if options.get("strict") and not text.isalpha():
            fail(f"not a word: {text}")
            return "rejected"
        reply({"route": "words" if text.isalpha() else "other", "text": text})
        return "routed"


#: Switches the comparison tests flip to stand for a change of ``quote``'s code between two releases.
RULES: dict[str, Any] = {"bulk_discount": 0.0, "reject_zero": True, "max_qty": None}


@fluxloop.agent
def quote(item: str, qty: int, send: Callable) -> dict:
    """Price ``qty`` of ``item``, tell ``send`` and return the quote (with a fresh, volatile id)."""
    if qty == 0 and RULES["reject_zero"]:
        raise ValueError("quantity must be positive")
    if RULES["max_qty"] is not None and qty > RULES["max_qty"]:
        raise ValueError(f"at most {RULES['max_qty']} per order")
    price = 2.5 * qty * (1 - RULES["bulk_discount"] if qty >= 10 else 1)
    send({"item": item, "price": price})
    return {"item": item, "qty": qty, "price": price, "quote_id": uuid.uuid4().hex}


async def broadcast(names: list, send: Callable) -> int:
    """Awaits ``send`` once per name (for ``<builtin:collector.send:async>`` callbacks)."""
    for name in names:
        await send({"to": name})
    return len(names)
