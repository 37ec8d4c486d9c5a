"""Replay recorded calls: load a recording, rebuild each call's arguments and run it again against current code.

Callback markers come back as collectors (``<builtin:collector.send>`` → :class:`MessageCollector`,
``<builtin:collector.error>`` → :class:`ErrorCollector`) and other callables as :class:`CallableStub`; all of
them can be called plainly or awaited; ``:async`` markers come back as coroutine functions. Masked values
(``"***"``) and values the recording could only describe (``<repr:...>``, cut values) are passed as they are and
reported. Each replay runs as its own trace (``replay <target>``, ``fluxloop.replay=true``), with recording
suppressed. :func:`save_outcomes` and :func:`compare_file` turn a recording into a regression test.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from fluxloop import _attributes, _context, _recorder, _replay_compare, _serialize
from fluxloop._replay_compare import CompareReport, Comparison, outcomes_path
from fluxloop._replay_rebuild import (
    CallableStub,
    ErrorCollector,
    MessageCollector,
    RebuiltCall,
    rebuild_kwargs,
)
from fluxloop._replay_records import ReplayError, Record, load_records, select_records

__all__ = [
    "CallableStub",
    "CompareReport",
    "Comparison",
    "ErrorCollector",
    "MessageCollector",
    "RebuiltCall",
    "Record",
    "ReplayError",
    "ReplayResult",
    "compare_file",
    "load_callable",
    "load_records",
    "outcomes_path",
    "rebuild_kwargs",
    "replay_file",
    "replay_record",
    "resolve_target",
    "save_outcomes",
    "select_records",
]

_MAX_OUTPUT_ITEMS: Final = 100
_NO_TRACE: Final = "0" * 32


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
    return cast(Callable[..., Any], obj)


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
    return cast(Callable[..., Any], fn)


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
    unrebuildable: list[str] = field(default_factory=list)

    def outcome(self) -> dict[str, Any]:
        """What ``--compare`` compares: return value, callback messages and errors, other callbacks' calls,
        and the exception (type and message) when the call failed. JSON-ready."""
        if self.ok:
            exception = None
        elif self.exception is not None:
            exception = {"type": type(self.exception).__name__, "message": str(self.exception)}
        else:  # the call could not be made (target or arguments): ReplayError
            exception = {"type": ReplayError.__name__, "message": self.error or ""}
        data = {"status": "ok" if self.ok else "error", "output": self.output, "messages": self.messages,
                "errors": self.errors, "stub_calls": self.stub_calls, "exception": exception}
        return _serialize.to_jsonable(data, str_limit=10_000, item_limit=1000)[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``fluxloop replay --json`` prints, one per line)."""
        data = {
            "target": self.record.target, "iteration": self.record.iteration, "line": self.record.line,
            "status": "ok" if self.ok else "error", "duration_ms": round(self.duration * 1000, 3),
            "messages": self.messages, "errors": self.errors, "stub_calls": self.stub_calls,
            "masked": self.masked, "output": self.output, "error": self.error, "trace_id": self.trace_id,
            "original_trace_id": self.record.trace_id, "unrebuildable": self.unrebuildable,
        }
        return _serialize.to_jsonable(data)[0]


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
    result = ReplayResult(record, ok=False, masked=call.masked, unrebuildable=call.unrebuildable)
    try:
        fn = resolve_target(record.target, factory)
        args, kwargs = _call_arguments(fn, call.kwargs, record.target)
    except ReplayError as exc:
        result.error = str(exc)
        return result
    metadata = {"replay.original_trace_id": record.trace_id} if record.trace_id else None
    attributes: dict[str, Any] = {_attributes.REPLAY: True, _attributes.REPLAY_ITERATION: record.iteration}
    if source is not None:
        attributes[_attributes.REPLAY_SOURCE] = source
    start = time.perf_counter()
    try:
        with _recorder.suppressed(), _context.instrument(f"replay {record.target}", new_trace=True,
                                                         tags=["replay"], metadata=metadata,
                                                         attributes=attributes) as ctx:
            trace_id = ctx.trace_id
            result.trace_id = trace_id if trace_id != _NO_TRACE else None
            result.output = _serialize.to_jsonable(_invoke(fn, args, kwargs), str_limit=1000, item_limit=100)[0]
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


def save_outcomes(path: str | os.PathLike[str], *, factory: str | Callable[[], Any] | None = None,
                  outcomes: str | os.PathLike[str] | None = None) -> list[ReplayResult]:
    """Replay every record of ``path`` and keep each outcome beside the recording (``x.outcomes.jsonl``, or
    ``outcomes``): the baseline :func:`compare_file` checks later runs against.

    Example::

        save_outcomes("calls.jsonl")   # once, with code you trust; commit both files
    """
    results = replay_file(path, all_records=True, factory=factory)
    _replay_compare.write_outcomes(os.fspath(outcomes) if outcomes is not None else outcomes_path(path),
                   [(result.record, result.outcome()) for result in results])
    return results


def compare_file(path: str | os.PathLike[str], *, ignore: Sequence[str] = (),
                 factory: str | Callable[[], Any] | None = None,
                 outcomes: str | os.PathLike[str] | None = None) -> CompareReport:
    """Replay every record of ``path`` against the current code and compare each outcome with the saved one:
    same / changed (with a diff) / now failing / now passing / new (nothing saved). ``ignore`` holds paths left
    out of the comparison (``output.id``, ``messages[*].timestamp``, ``**.created_at``).
    ``ReplayError`` when the recording or its saved outcomes cannot be read.

    Example::

        report = compare_file("calls.jsonl", ignore=["output.request_id"])
        assert not report.regressed, report.summary()
    """
    saved = _replay_compare.read_outcomes(os.fspath(outcomes) if outcomes is not None else outcomes_path(path))
    results = replay_file(path, all_records=True, factory=factory)
    return CompareReport(os.fspath(path), [
        _replay_compare.compare(r.record, saved.get(r.record.key), r.outcome(), ignore, r.duration) for r in results])


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
