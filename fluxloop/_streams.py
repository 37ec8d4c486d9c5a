"""Streams returned by traced calls: keep the span open until the stream ends, feeding what it yields to a collector.

A decorated call that returns a generator or an async generator hands the caller a real generator (async
generator) that drives the original under the call's span: ``send``/``throw``/``close`` (``asend``/``athrow``/
``aclose``) and the return value pass through, spans started in the body are children of the call's span, and
``inspect.isgenerator``/``isasyncgen`` hold. An LLM SDK stream (openai ``Stream``/``AsyncStream``, anthropic
``Stream``/``MessageStream`` and their ``...StreamManager``) is handed back as a proxy offering exactly the
methods of the original (iteration, ``with``/``async with``, ``close()``, ``get_final_message()``...) plus every
other attribute by delegation. Either way the span ends exactly once: when the stream is exhausted, closed, exits
its context, raises, or is garbage-collected unread.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from opentelemetry import context as otel_context

from fluxloop._errors import internal_error
from fluxloop._stream_collector import Collector

#: Called once when a stream ends: (exception or None, the collector).
Finish = Callable[[BaseException | None, Collector], None]

_GENERATOR, _ASYNC_GENERATOR = "generator", "async_generator"
_SYNC, _ASYNC, _SYNC_MANAGER, _ASYNC_MANAGER = "sync", "async", "sync_manager", "async_manager"
_SDKS = ("openai", "anthropic")

#: Result types that are never streams: the common results skip every other check.
_PLAIN: frozenset[type] = frozenset({str, bytes, int, float, bool, type(None), dict, list, tuple, set})
_ENDED_CLEANLY = (GeneratorExit, StopIteration, StopAsyncIteration)


def stream_kind(value: Any) -> str | None:
    """How to wrap ``value`` (``generator``, ``async_generator``, ``sync``, ``async``, ``sync_manager``,
    ``async_manager``), or None: not a stream."""
    if type(value) in _PLAIN:
        return None
    if inspect.isgenerator(value):
        return _GENERATOR
    if inspect.isasyncgen(value):
        return _ASYNC_GENERATOR
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


def wrap(value: Any, kind: str, collector: Collector, finish: Finish, ctx: Any = None) -> Any:
    """The stream ``value`` wrapped so that ``finish`` is called once when it ends. ``ctx`` (an OTel context) is
    made current while a generator's body runs, so spans it starts are children of the call's span."""
    if kind == _GENERATOR:
        return _traced_generator(value, _Ender(collector, finish), ctx)
    if kind == _ASYNC_GENERATOR:
        return _traced_async_generator(value, _Ender(collector, finish), ctx)
    if kind == _SYNC_MANAGER:
        return _SyncManagerProxy(value, collector, finish)
    if kind == _ASYNC_MANAGER:
        return _AsyncManagerProxy(value, collector, finish)
    return _proxy(value, collector, finish)


def _snapshot(stream: Any) -> Any:
    """The final message an SDK stream assembled itself (anthropic ``MessageStream``), or None."""
    try:
        reader = getattr(type(stream), "_current_snapshot_or_none", None)
        return reader(stream) if reader is not None else None
    except Exception:
        return None


def _end_once(collector: Collector, finish: Finish, exc: BaseException | None, target: Any = None) -> None:
    if isinstance(exc, _ENDED_CLEANLY):
        exc = None
    if target is not None:
        collector.final(_snapshot(target))
    try:
        finish(exc, collector)
    except Exception as inner:
        internal_error("ending a stream's span", inner)


# -- generators -----------------------------------------------------------------------------------------------
class _Ender:
    """Ends a generator's span once. Held only by the traced generator's frame: a generator dropped before it
    ever ran (whose body, and so its ``finally``, never runs) ends the span when this object is collected."""

    __slots__ = ("collector", "_finish", "_done")

    def __init__(self, collector: Collector, finish: Finish) -> None:
        self.collector = collector
        self._finish = finish
        self._done = False

    def end(self, exc: BaseException | None) -> None:
        if not self._done:
            self._done = True
            _end_once(self.collector, self._finish, exc)

    def __del__(self) -> None:
        try:
            self.end(None)
        except Exception:
            pass


def _traced_generator(gen: Generator[Any, Any, Any], ender: _Ender, ctx: Any) -> Generator[Any, Any, Any]:
    """Drive ``gen`` as ``yield from`` would (PEP 380), with ``ctx`` current while its body runs."""
    add = ender.collector.add
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx) if ctx is not None else None
            try:
                item = gen.send(sent) if thrown is None else gen.throw(thrown)
            except StopIteration as stop:
                return stop.value
            finally:
                if token is not None:
                    otel_context.detach(token)
            thrown = None
            add(item)
            try:
                sent = yield item
            except GeneratorExit:
                token = otel_context.attach(ctx) if ctx is not None else None
                try:
                    gen.close()
                finally:
                    if token is not None:
                        otel_context.detach(token)
                raise
            except BaseException as exc:  # gen.throw() on the traced generator: forwarded
                thrown, sent = exc, None
    except BaseException as exc:
        ender.end(exc)
        raise
    finally:
        ender.end(None)


async def _traced_async_generator(agen: AsyncGenerator[Any, Any], ender: _Ender,
                                  ctx: Any) -> AsyncGenerator[Any, Any]:
    """Drive ``agen`` item by item (``asend``/``athrow``/``aclose`` forwarded), with ``ctx`` current while its
    body runs."""
    add = ender.collector.add
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx) if ctx is not None else None
            try:
                item = await (agen.asend(sent) if thrown is None else agen.athrow(thrown))
            except StopAsyncIteration:
                return
            finally:
                if token is not None:
                    otel_context.detach(token)
            thrown = None
            add(item)
            try:
                sent = yield item
            except GeneratorExit:
                token = otel_context.attach(ctx) if ctx is not None else None
                try:
                    await agen.aclose()
                finally:
                    if token is not None:
                        otel_context.detach(token)
                raise
            except BaseException as exc:  # athrow() on the traced generator: forwarded
                thrown, sent = exc, None
    except BaseException as exc:
        ender.end(exc)
        raise
    finally:
        ender.end(None)


# -- SDK stream proxies ---------------------------------------------------------------------------------------
class _Base:
    """A proxy's state and delegation. Its methods come from :class:`_SyncMethods`/:class:`_AsyncMethods`, only
    those the target's class has (see :func:`_proxy`), so ``hasattr`` and ``with`` behave as on the target."""

    __slots__ = ("_target", "_collector", "_on_finish", "_done", "_it", "__weakref__")

    def __init__(self, target: Any, collector: Collector, finish: Finish) -> None:
        self._target = target
        self._collector = collector
        self._on_finish = finish
        self._done = False
        self._it: Any = None

    def _end(self, exc: BaseException | None) -> None:
        if not self._done:
            self._done = True
            _end_once(self._collector, self._on_finish, exc, self._target)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    def __repr__(self) -> str:
        return repr(self._target)

    def __del__(self) -> None:
        try:
            self._end(None)  # dropped before it ended: end the span with what was read
        except Exception:
            pass


class _SyncMethods(_Base):
    """Every method a sync SDK stream proxy may offer; never instantiated."""

    __slots__ = ()
    #: The target's method that brings each group of proxy methods.
    GROUPS = {"__iter__": ("__iter__", "__next__"), "__enter__": ("__enter__", "__exit__"), "close": ("close",),
              "until_done": ("until_done",), "get_final_message": ("get_final_message",),
              "get_final_text": ("get_final_text",)}

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = iter(self._target)
        try:
            item = next(self._it)
        except BaseException as exc:
            self._end(exc)
            raise
        self._collector.add(item)
        return item

    def close(self) -> None:
        try:
            self._target.close()
        finally:
            self._end(None)

    def __enter__(self) -> Any:
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


class _AsyncMethods(_Base):
    """Every method an async SDK stream proxy may offer; never instantiated."""

    __slots__ = ()
    GROUPS = {"__aiter__": ("__aiter__", "__anext__"), "__aenter__": ("__aenter__", "__aexit__"),
              "close": ("close",), "aclose": ("aclose",), "until_done": ("until_done",),
              "get_final_message": ("get_final_message",), "get_final_text": ("get_final_text",)}

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = self._target.__aiter__()
        try:
            item = await self._it.__anext__()
        except BaseException as exc:
            self._end(exc)
            raise
        self._collector.add(item)
        return item

    async def close(self) -> None:
        try:
            await self._target.close()
        finally:
            self._end(None)

    async def aclose(self) -> None:
        try:
            await self._target.aclose()
        finally:
            self._end(None)

    async def __aenter__(self) -> Any:
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


_PROXY_TYPES: dict[type, type] = {}  # one per SDK stream class seen: a handful at most


def _proxy(target: Any, collector: Collector, finish: Finish) -> Any:
    """A proxy of the SDK stream ``target`` whose class has exactly the stream methods ``target``'s class has."""
    cls = type(target)
    proxy_type = _PROXY_TYPES.get(cls)
    if proxy_type is None:
        methods: type[_SyncMethods] | type[_AsyncMethods] = \
            _AsyncMethods if hasattr(cls, "__aiter__") or hasattr(cls, "__anext__") else _SyncMethods
        namespace: dict[str, Any] = {"__slots__": (), "__module__": __name__}
        for needed, names in methods.GROUPS.items():
            if hasattr(cls, needed):
                namespace.update((name, methods.__dict__[name]) for name in names)
        proxy_type = _PROXY_TYPES.setdefault(cls, type(f"Traced{cls.__name__}", (_Base,), namespace))
    return proxy_type(target, collector, finish)


def _noop(exc: BaseException | None, collector: Collector) -> None:
    """The stream inside a manager: the manager's proxy ends the span."""


class _SyncManagerProxy(_Base):
    """A ``with client.messages.stream(...) as stream`` manager: the span ends when the block exits."""

    __slots__ = ("_stream",)

    def __init__(self, target: Any, collector: Collector, finish: Finish) -> None:
        super().__init__(target, collector, finish)
        self._stream: Any = None

    def __enter__(self) -> Any:
        try:
            self._stream = self._target.__enter__()
        except BaseException as exc:
            self._end(exc)
            raise
        return _proxy(self._stream, self._collector, _noop)

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self._target.__exit__(*exc_info)
        finally:
            self._collector.final(_snapshot(self._stream))
            self._end(exc_info[1])


class _AsyncManagerProxy(_Base):
    """An ``async with client.messages.stream(...) as stream`` manager."""

    __slots__ = ("_stream",)

    def __init__(self, target: Any, collector: Collector, finish: Finish) -> None:
        super().__init__(target, collector, finish)
        self._stream: Any = None

    async def __aenter__(self) -> Any:
        try:
            self._stream = await self._target.__aenter__()
        except BaseException as exc:
            self._end(exc)
            raise
        return _proxy(self._stream, self._collector, _noop)

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._target.__aexit__(*exc_info)
        finally:
            self._collector.final(_snapshot(self._stream))
            self._end(exc_info[1])
