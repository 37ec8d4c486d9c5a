"""Rebuilding recorded arguments: callback markers become collectors and stubs, masked and cut values are noted."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fluxloop._masking import MASK

SEND_MARKER: Final = "<builtin:collector.send>"
ERROR_MARKER: Final = "<builtin:collector.error>"
_ASYNC_SUFFIX: Final = ":async>"
#: Values the recording could only describe: replayed as the text they are, and reported.
_REPR_PREFIX: Final = "<repr:"
_CUT_MARKERS: Final = ("...[truncated ", "<max depth>", "<cycle>", "<unrepresentable ")


class _Done:
    """What the rebuilt callables return: usable as a plain value, and awaitable (to None)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return None
        yield  # noqa: B901 - makes this a generator, so ``await`` works

    def __repr__(self) -> str:
        return "<replayed call>"


_DONE: Final = _Done()


def _sent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}


class MessageCollector:
    """Stands in for a ``<builtin:collector.send>`` callback: keeps what the target sends in :attr:`messages`."""

    __fluxloop_builtin__ = "collector.send"

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> _Done:
        self.messages.append(_sent(args, kwargs))
        return _DONE


class ErrorCollector:
    """Stands in for a ``<builtin:collector.error>`` callback: keeps what the target reports in :attr:`errors`."""

    __fluxloop_builtin__ = "collector.error"

    def __init__(self) -> None:
        self.errors: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> _Done:
        self.errors.append(_sent(args, kwargs))
        return _DONE


class CallableStub:
    """Stands in for any other recorded callable (``<callable:NAME>``): records its calls, returns None."""

    def __init__(self, name: str) -> None:
        self.__name__ = name
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> _Done:
        self.calls.append({"args": list(args), "kwargs": kwargs})
        return _DONE

    def __repr__(self) -> str:
        return f"<replay stub {self.__name__}>"


@dataclass
class RebuiltCall:
    """Arguments ready to call with, and the objects standing in for the recorded callables."""

    kwargs: dict[str, Any]
    messages: MessageCollector = field(default_factory=MessageCollector)
    errors: ErrorCollector = field(default_factory=ErrorCollector)
    stubs: dict[str, CallableStub] = field(default_factory=dict)
    masked: list[str] = field(default_factory=list)
    #: Paths of values the recording could not hold (``<repr:...>``, cut, cycles): replayed as their text.
    unrebuildable: list[str] = field(default_factory=list)


def rebuild_kwargs(kwargs: Mapping[str, Any]) -> RebuiltCall:
    """Turn recorded ``kwargs`` back into call arguments (markers → collectors and stubs; ``***`` reported).

    Example::

        call = rebuild_kwargs({"send": "<builtin:collector.send>"})
        call.kwargs["send"]("hi")
        assert call.messages.messages == ["hi"]
    """
    call = RebuiltCall({})
    call.kwargs = {key: _rebuild(value, key, call) for key, value in kwargs.items()}
    return call


def _rebuild(value: Any, path: str, call: RebuiltCall) -> Any:
    if isinstance(value, str):
        if value == MASK:
            call.masked.append(path)
        elif value in (SEND_MARKER, ERROR_MARKER):
            return call.messages if value == SEND_MARKER else call.errors
        elif value in (SEND_MARKER[:-1] + _ASYNC_SUFFIX, ERROR_MARKER[:-1] + _ASYNC_SUFFIX):
            return _async_collector(call.messages if value.startswith(SEND_MARKER[:-1]) else call.errors)
        elif value.startswith(("<callable:", "<builtin:")) and value.endswith(">"):
            stub = CallableStub(value[1:-1].partition(":")[2])
            call.stubs[path] = stub
            return stub
        elif value.startswith(_REPR_PREFIX) or any(marker in value for marker in _CUT_MARKERS):
            call.unrebuildable.append(path)
        return value
    if isinstance(value, dict):
        if "..." in value:
            call.unrebuildable.append(path)
        return {k: _rebuild(v, f"{path}.{k}", call) for k, v in value.items()}
    if isinstance(value, list):
        if value and isinstance(value[-1], str) and value[-1].startswith("...[") and value[-1].endswith(" more items]"):
            call.unrebuildable.append(path)
        return [_rebuild(v, f"{path}[{i}]", call) for i, v in enumerate(value)]
    return value


def _async_collector(collector: MessageCollector | ErrorCollector) -> Callable[..., Any]:
    """A coroutine function standing in for a ``<builtin:collector.send:async>`` (or ``.error:async``) callback:
    what it is called with lands in ``collector``; recorded again, it gives the same marker."""
    async def collect(*args: Any, **kwargs: Any) -> None:
        collector(*args, **kwargs)

    for name in ("messages", "errors"):
        if hasattr(collector, name):
            setattr(collect, name, getattr(collector, name))
    setattr(collect, "__fluxloop_builtin__", f"{collector.__fluxloop_builtin__}:async")
    return collect
