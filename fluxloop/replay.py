"""Replay recorded calls: load a recording, rebuild each call's arguments and run it again against current code.

Callback markers come back as collectors (``<builtin:collector.send>`` → :class:`MessageCollector`,
``<builtin:collector.error>`` → :class:`ErrorCollector`) and other callables as :class:`CallableStub`; all of
them can be called plainly or awaited. Masked values (``"***"``) are passed as they are and reported. Each
replay runs as its own trace (``replay <target>``, ``fluxloop.replay=true``), with recording suppressed.

Example::

    from fluxloop.replay import replay_file

    for result in replay_file("/tmp/agent_args.jsonl", all_records=True):
        print(result.record.target, result.ok, result.messages)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import inspect
import os
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from fluxloop import _attributes as attr
from fluxloop import recording
from fluxloop._context import instrument
from fluxloop._masking import MASK
from fluxloop._serialize import to_jsonable

__all__ = [
    "CallableStub",
    "ErrorCollector",
    "MessageCollector",
    "Record",
    "RebuiltCall",
    "ReplayError",
    "ReplayResult",
    "load_records",
    "rebuild_kwargs",
    "replay_file",
    "replay_record",
    "resolve_target",
    "select_records",
]

SEND_MARKER: Final = "<builtin:collector.send>"
ERROR_MARKER: Final = "<builtin:collector.error>"
_MAX_OUTPUT_ITEMS: Final = 100
_NO_TRACE: Final = "0" * 32


class ReplayError(Exception):
    """A problem with the input, not with FluxLoop: missing file, bad line, unknown target, stale arguments."""


@dataclass(frozen=True)
class Record:
    """One recorded call (a line of a recording file)."""

    target: str
    iteration: int
    kwargs: dict[str, Any]
    line: int = 0
    timestamp: str | None = None
    trace_id: str | None = None
    span_id: str | None = None


# -- loading ------------------------------------------------------------------------------------------------------
def load_records(path: str | os.PathLike[str],
                 on_malformed: Callable[[ReplayError], None] | None = None) -> list[Record]:
    """Every record of a recording file, in file order; ``ReplayError`` names the file and line of any problem.

    With ``on_malformed``, a malformed line (garbage, or the truncated last line a killed writer leaves) is passed
    to it and skipped instead, so the rest can still be replayed.

    Example::

        records = load_records("/tmp/agent_args.jsonl")
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        raise ReplayError(f"recording file not found: {name}") from None
    except IsADirectoryError:
        raise ReplayError(f"not a file: {name}") from None
    except OSError as exc:
        raise ReplayError(f"cannot read {name}: {exc.strerror or exc}") from None
    records = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            records.append(_parse_line(name, number, raw))
        except ReplayError as problem:
            if on_malformed is None:
                raise
            on_malformed(problem)
    if not records:
        raise ReplayError(f"no records in {name}")
    return records


def _parse_line(path: str, number: int, raw: bytes) -> Record:
    def bad(why: str) -> ReplayError:
        return ReplayError(f"{path}:{number}: malformed record: {why}")

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("_version", recording.RECORD_VERSION)
    if version != recording.RECORD_VERSION:
        raise bad(f"unsupported _version {version!r} (this FluxLoop reads version {recording.RECORD_VERSION!r})")
    target = data.get("target")
    if not isinstance(target, str) or ":" not in target:
        raise bad(f"'target' must be a 'module:function' or 'module:Class.method' string, got {target!r}")
    kwargs = data.get("kwargs")
    if not isinstance(kwargs, dict):
        raise bad(f"'kwargs' must be a JSON object, got {kwargs!r:.60}")
    iteration = data.get("iteration", 0)
    if isinstance(iteration, bool) or not isinstance(iteration, int):
        raise bad(f"'iteration' must be an integer, got {iteration!r:.60}")
    return Record(target, iteration, kwargs, number, _opt_str(data.get("timestamp")),
                  _opt_str(data.get("trace_id")), _opt_str(data.get("span_id")))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def select_records(records: Sequence[Record], *, target: str | None = None, iteration: int | None = None,
                   all_records: bool = False) -> list[Record]:
    """The records to replay: those of ``target`` (default: every target), then those with ``iteration``, or
    all of them with ``all_records``, else the last record of each target. ``ReplayError`` if none match."""
    chosen = list(records)
    if target is not None:
        chosen = [r for r in chosen if r.target == target]
        if not chosen:
            raise ReplayError(f"no records for target {target!r}; targets recorded: "
                              f"{_listing(sorted({r.target for r in records}))}")
    if iteration is not None:
        matching = [r for r in chosen if r.iteration == iteration]
        if not matching:
            raise ReplayError(f"no record with iteration {iteration}"
                              f"{f' for target {target!r}' if target else ''}; iterations recorded: "
                              f"{_listing(sorted({r.iteration for r in chosen}))}")
        return matching
    if all_records:
        return chosen
    last: dict[str, Record] = {}
    for record in chosen:
        last.pop(record.target, None)
        last[record.target] = record
    return sorted(last.values(), key=lambda r: r.line)


def _listing(items: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- rebuilding arguments -----------------------------------------------------------------------------------------
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
        elif value == SEND_MARKER:
            return call.messages
        elif value == ERROR_MARKER:
            return call.errors
        elif value.startswith(("<callable:", "<builtin:")) and value.endswith(">"):
            stub = CallableStub(value[1:-1].partition(":")[2])
            call.stubs[path] = stub
            return stub
        return value
    if isinstance(value, dict):
        return {k: _rebuild(v, f"{path}.{k}", call) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v, f"{path}[{i}]", call) for i, v in enumerate(value)]
    return value


# -- resolving the target -----------------------------------------------------------------------------------------
def load_callable(spec: str, what: str = "factory") -> Callable[..., Any]:
    """Import ``module:callable`` (e.g. a ``--factory``); ``ReplayError`` when that fails."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise ReplayError(f"{what} {spec!r} must look like 'module:callable'")
    obj: Any = _import(module_name, spec)
    for part in qualname.split("."):
        obj = _attribute(obj, part, spec)
    if not callable(obj):
        raise ReplayError(f"{what} {spec!r} is not callable")
    return obj


def resolve_target(target: str, factory: Callable[[], Any] | None = None) -> Callable[..., Any]:
    """The callable ``target`` names: ``module:function``, or ``module:Class.method`` on an instance made by
    ``factory()`` (default: ``Class()``). Static and class methods need no instance.

    Example::

        handle = resolve_target("examples.message_handler:MessageHandler.handle_message")
    """
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ReplayError(f"target {target!r} must look like 'module:function' or 'module:Class.method'")
    if "<locals>" in qualname:
        raise ReplayError(f"target {target!r} was defined inside a function and cannot be imported")
    owner: Any = _import(module_name, target)
    *path, name = qualname.split(".")
    for part in path:
        owner = _attribute(owner, part, target)
    if isinstance(owner, type):
        static = inspect.getattr_static(owner, name, None)
        if static is None:
            raise ReplayError(f"cannot find {target!r}: {owner.__qualname__} has no attribute {name!r}")
        if not isinstance(static, (staticmethod, classmethod)):
            owner = _instance(owner, factory, target)
    fn = _attribute(owner, name, target)
    if not callable(fn):
        raise ReplayError(f"target {target!r} is not callable")
    return fn


def _import(module_name: str, what: str) -> Any:
    if module_name == "__main__":
        return sys.modules["__main__"]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ReplayError(f"cannot import {what!r}: no module named {exc.name!r} (is it on sys.path? "
                              f"run from the project directory or set PYTHONPATH)") from None
        raise ReplayError(f"cannot import {what!r}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise ReplayError(f"cannot import {what!r}: importing {module_name!r} raised "
                          f"{type(exc).__name__}: {exc}") from None


def _attribute(owner: Any, name: str, what: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        pass
    except Exception as exc:  # a property or __getattr__ that raises
        raise ReplayError(f"cannot get {what!r}: looking up {name!r} raised {type(exc).__name__}: {exc}") from None
    label = getattr(owner, "__name__", None) or type(owner).__name__
    if getattr(owner, "__name__", None) == "__main__":
        raise ReplayError(f"cannot find {what!r}: it was recorded from a script run as __main__; record with "
                          "`python -m package.module`, or replay from that script with fluxloop.replay")
    raise ReplayError(f"cannot find {what!r}: {label} has no attribute {name!r}")


def _instance(cls: type, factory: Callable[[], Any] | None, target: str) -> Any:
    try:
        return factory() if factory is not None else cls()
    except Exception as exc:
        how = "the factory" if factory is not None else f"{cls.__qualname__}()"
        hint = "" if factory is not None else "; pass a factory (--factory module:callable) that returns one"
        raise ReplayError(f"cannot create an instance for {target!r}: {how} raised "
                          f"{type(exc).__name__}: {exc}{hint}") from None


def _call_arguments(fn: Callable[..., Any], kwargs: dict[str, Any], target: str) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``fn`` from recorded names; ``ReplayError`` if they no longer fit."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [], kwargs
    params = list(sig.parameters.values())
    keywords = dict(kwargs)
    var_positional = any(p.kind is p.VAR_POSITIONAL and p.name in keywords for p in params)
    args: list[Any] = []
    for p in params:
        if p.kind is p.POSITIONAL_ONLY or (var_positional and p.kind is p.POSITIONAL_OR_KEYWORD):
            if p.name in keywords:
                args.append(keywords.pop(p.name))
            elif p.default is not p.empty:
                args.append(p.default)
        elif p.kind is p.VAR_POSITIONAL and p.name in keywords:
            extra = keywords.pop(p.name)
            args.extend(extra if isinstance(extra, list) else [extra])
    try:
        sig.bind(*args, **keywords)
    except TypeError as exc:
        bare = sig.replace(parameters=[p.replace(annotation=p.empty) for p in params],
                           return_annotation=sig.empty)
        raise ReplayError(f"the recorded arguments no longer fit {target}{bare}: {exc}") from None
    return args, keywords


# -- running ------------------------------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    """The outcome of replaying one record."""

    record: Record
    ok: bool
    duration: float = 0.0  # seconds
    messages: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    stub_calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    masked: list[str] = field(default_factory=list)
    output: Any = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    trace_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``fluxloop replay --json`` prints, one per line)."""
        data = {
            "target": self.record.target, "iteration": self.record.iteration, "line": self.record.line,
            "status": "ok" if self.ok else "error", "duration_ms": round(self.duration * 1000, 3),
            "messages": self.messages, "errors": self.errors, "stub_calls": self.stub_calls,
            "masked": self.masked, "output": self.output, "error": self.error, "trace_id": self.trace_id,
            "original_trace_id": self.record.trace_id,
        }
        return to_jsonable(data)[0]


def replay_record(record: Record, *, factory: Callable[[], Any] | None = None, source: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> ReplayResult:
    """Call ``record``'s target again with its rebuilt arguments (``overrides`` replace arguments by name, e.g.
    a real value for a masked one). Problems with the target or arguments, and exceptions the target raises,
    come back as a failed result; nothing is raised.

    Example::

        result = replay_record(load_records("/tmp/agent_args.jsonl")[0])
        assert result.ok, result.error
    """
    call = rebuild_kwargs(record.kwargs)
    if overrides:
        call.kwargs.update(overrides)
        call.masked = [p for p in call.masked if p.partition(".")[0].partition("[")[0] not in overrides]
    result = ReplayResult(record, ok=False, masked=call.masked)
    try:
        fn = resolve_target(record.target, factory)
        args, kwargs = _call_arguments(fn, call.kwargs, record.target)
    except ReplayError as exc:
        result.error = str(exc)
        return result
    metadata = {"replay.original_trace_id": record.trace_id} if record.trace_id else None
    attributes: dict[str, Any] = {attr.REPLAY: True, attr.REPLAY_ITERATION: record.iteration}
    if source is not None:
        attributes[attr.REPLAY_SOURCE] = source
    start = time.perf_counter()
    try:
        with recording.suppressed(), instrument(f"replay {record.target}", new_trace=True, tags=["replay"],
                                                metadata=metadata, attributes=attributes) as ctx:
            trace_id = ctx.trace_id
            result.trace_id = trace_id if trace_id != _NO_TRACE else None
            result.output = to_jsonable(_invoke(fn, args, kwargs), str_limit=1000, item_limit=100)[0]
        result.ok = True
    except (Exception, asyncio.CancelledError, SystemExit) as exc:  # the target's failure, reported
        result.exception = exc
        result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    result.duration = time.perf_counter() - start
    result.messages = call.messages.messages
    result.errors = call.errors.errors
    result.stub_calls = {path: stub.calls for path, stub in call.stubs.items() if stub.calls}
    return result


def replay_file(path: str | os.PathLike[str], *, target: str | None = None, iteration: int | None = None,
                all_records: bool = False, factory: str | Callable[[], Any] | None = None,
                overrides: Mapping[str, Any] | None = None) -> list[ReplayResult]:
    """Load ``path``, select records (see :func:`select_records`) and replay each. File, selection and factory
    problems raise ``ReplayError`` before anything runs; each record's own outcome is in its result.

    Example::

        results = replay_file("/tmp/agent_args.jsonl", target="app:Handler.handle", all_records=True)
        failed = [r for r in results if not r.ok]
    """
    selected = select_records(load_records(path), target=target, iteration=iteration, all_records=all_records)
    make = load_callable(factory) if isinstance(factory, str) else factory
    source = os.path.abspath(os.fspath(path))
    return [replay_record(record, factory=make, source=source, overrides=overrides) for record in selected]


def _invoke(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call ``fn``; await what it returns if awaitable; drain generators (keeping at most 100 items)."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return _run_coroutine(_await(result))
    if inspect.isasyncgen(result):
        return _run_coroutine(_drain_async(result))
    if inspect.isgenerator(result):
        items: list[Any] = []
        for item in result:
            if len(items) < _MAX_OUTPUT_ITEMS:
                items.append(item)
        return items
    return result


async def _await(awaitable: Any) -> Any:
    result = await awaitable
    if inspect.isasyncgen(result):
        return await _drain_async(result)
    return result


async def _drain_async(agen: Any) -> list[Any]:
    items: list[Any] = []
    async for item in agen:
        if len(items) < _MAX_OUTPUT_ITEMS:
            items.append(item)
    return items


def _run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to completion: on a new event loop here, or on a helper thread when this thread already runs
    one (replay called from async code). The current context (trace, replay scope) goes along."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fluxloop-replay") as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()
