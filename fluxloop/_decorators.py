"""``@agent``, ``@prompt``, ``@tool`` and ``@trace``: wrap a function so each call is an OpenTelemetry span.

All the work that does not depend on the call (span name, static attributes, how to bind arguments) is done
once at decoration time, so the call path is short: read the config snapshot, decide sampling, start the span
with every attribute in one go, call, set the output, end.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Span


from fluxloop import _attributes as attr
from fluxloop import _runtime
from fluxloop._binding import make_binder
from fluxloop._context import current_scope
from fluxloop._errors import internal_error
from fluxloop._spans import attribute_value, put_json, record_exception
from fluxloop._tokens import token_usage

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

#: At most this many yielded items are kept as a generator's output.
MAX_YIELDED_ITEMS = 100

_get_current_span = otel_trace.get_current_span
_get_current_context = otel_context.get_current
_set_span_in_context = otel_trace.set_span_in_context
_attach = otel_context.attach
_detach = otel_context.detach


# -- decoration time ------------------------------------------------------------------------------------------
class _Spec:
    """Everything about one decorated function that does not change between calls."""

    __slots__ = ("span_name", "static_attrs", "capture_input", "capture_output", "capture_tokens", "record",
                 "target", "bind")

    def __init__(self, fn: Callable[..., Any], span_name: str, static_attrs: dict[str, Any],
                 capture_input: bool, capture_output: bool, capture_tokens: bool, record: bool) -> None:
        self.span_name = span_name
        self.static_attrs = static_attrs
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.capture_tokens = capture_tokens
        self.record = record
        self.target = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"
        self.bind = make_binder(fn)


# -- call time ------------------------------------------------------------------------------------------------
# (span, context token, recording token, attributes to set when the span ends)
_Begun = tuple[Span | None, Any, Any, dict[str, Any] | None]


def _begin(spec: _Spec, st: _runtime.CallState, args: tuple[Any, ...], kwargs: dict[str, Any],
           attach: bool = True) -> _Begun | None:
    """Start the call's span (and recording); None means "call straight through". Never raises."""
    span = None
    try:
        # Read the current context once and hand it on: the SDK, the sampler and set_span_in_context would
        # each look it up again otherwise.
        ctx = _get_current_context()
        parent = _get_current_span(ctx).get_span_context()
        if parent.is_valid:
            sampled = parent.trace_flags.sampled
        else:
            sampled = st.sample_rate > 0.0
        tracer = st.tracer if not sampled or st.tracer is not None else _runtime.RUNTIME.start()
        arguments = attrs = None
        if sampled and tracer is not None:
            scope = current_scope()
            attrs = {**scope.propagated_attributes(), **spec.static_attrs} if scope is not None \
                else spec.static_attrs.copy()
            if spec.capture_input and st.capture_input:
                arguments = spec.bind(args, kwargs)
                put_json(attrs, attr.INPUT, arguments, st)
            # The attributes are set once, when the span ends, together with the output: OpenTelemetry
            # validates attributes per call, and one validation pass instead of two is measurably cheaper.
            span = tracer.start_span(spec.span_name, context=ctx)
        rec = None
        if spec.record and (recorder := _runtime.RUNTIME.recorder).active:
            if arguments is None:
                arguments = spec.bind(args, kwargs)
            rec = recorder.on_agent_start(spec.target, arguments,
                                          span.get_span_context() if span is not None else None)
        if span is None and rec is None:
            return None
        token = _attach(_set_span_in_context(span, ctx)) if attach and span is not None else None
        return span, token, rec, attrs
    except Exception as exc:
        internal_error(f"starting span {spec.span_name!r}", exc)
        if span is not None:
            span.end()
        return None


def _finish(spec: _Spec, st: _runtime.CallState, begun: _Begun, exc: BaseException | None,
            result: Any = None, output: Any = None) -> None:
    """Detach, record the outcome and end the span; close the recording scope. Never raises."""
    span, token, rec, out = begun
    try:
        if token is not None:
            _detach(token)
        if span is not None:
            out = out if out is not None else {}
            if exc is None:
                if spec.capture_output and st.capture_output:
                    put_json(out, attr.OUTPUT, result if output is None else output, st)
                if spec.capture_tokens:
                    tokens_in, tokens_out = token_usage(result)
                    if tokens_in is not None:
                        out[attr.GEN_AI_USAGE_INPUT_TOKENS] = tokens_in
                    if tokens_out is not None:
                        out[attr.GEN_AI_USAGE_OUTPUT_TOKENS] = tokens_out
            span.set_attributes(out)
            if exc is not None:
                record_exception(span, exc)
            span.end()
    except Exception as inner:
        internal_error(f"ending span {spec.span_name!r}", inner)
    if rec is not None:
        try:
            _runtime.RUNTIME.recorder.on_agent_end(rec)
        except Exception as inner:
            internal_error("recording", inner)


class _Items:
    """The first MAX_YIELDED_ITEMS items a generator yields, and how many more there were."""

    __slots__ = ("items", "extra")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.extra = 0

    def add(self, item: Any) -> None:
        if len(self.items) < MAX_YIELDED_ITEMS:
            self.items.append(item)
        else:
            self.extra += 1

    def output(self) -> list[Any]:
        return [*self.items, f"...[{self.extra} more items]"] if self.extra else self.items


def _wrap(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            st = _runtime.STATE
            begun = _begin(spec, st, args, kwargs, attach=False) if st.enabled else None
            span = begun[0] if begun is not None else None
            ctx = _set_span_in_context(span) if span is not None else None
            items = _Items()
            try:
                agen = fn(*args, **kwargs)
                method, arg = agen.asend, None
                while True:
                    token = _attach(ctx) if ctx is not None else None
                    try:
                        item = await method(arg)
                    except StopAsyncIteration:
                        break
                    finally:
                        if token is not None:
                            _detach(token)
                    if begun is not None:
                        items.add(item)
                    try:
                        arg = yield item
                        method = agen.asend
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as thrown:
                        method, arg = agen.athrow, thrown
            except BaseException as exc:
                if begun is not None:  # closed early (GeneratorExit): a normal end with what was yielded
                    _finish(spec, st, begun, None if isinstance(exc, GeneratorExit) else exc, output=items.output())
                raise
            if begun is not None:
                _finish(spec, st, begun, None, output=items.output())
        return agen_wrapper

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            st = _runtime.STATE
            begun = _begin(spec, st, args, kwargs, attach=False) if st.enabled else None
            if begun is None:
                return (yield from fn(*args, **kwargs))
            span = begun[0]
            ctx = _set_span_in_context(span) if span is not None else otel_context.get_current()
            items = _Items()
            try:
                gen = fn(*args, **kwargs)
                method, arg = gen.send, None
                while True:
                    token = _attach(ctx)
                    try:
                        item = method(arg)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    finally:
                        _detach(token)
                    items.add(item)
                    try:
                        arg = yield item
                        method = gen.send
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as thrown:
                        method, arg = gen.throw, thrown
            except BaseException as exc:  # closed early (GeneratorExit): a normal end with what was yielded
                _finish(spec, st, begun, None if isinstance(exc, GeneratorExit) else exc, output=items.output())
                raise
            _finish(spec, st, begun, None, output=items.output())
            return result
        return gen_wrapper

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            st = _runtime.STATE
            if not st.enabled:
                return await fn(*args, **kwargs)
            begun = _begin(spec, st, args, kwargs)
            if begun is None:
                return await fn(*args, **kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _finish(spec, st, begun, exc)
                raise
            _finish(spec, st, begun, None, result)
            return result
        return async_wrapper

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        st = _runtime.STATE
        if not st.enabled:
            return fn(*args, **kwargs)
        begun = _begin(spec, st, args, kwargs)
        if begun is None:
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _finish(spec, st, begun, exc)
            raise
        _finish(spec, st, begun, None, result)
        return result
    return sync_wrapper


def _decorate(func: Any, build: Callable[[Callable[..., Any]], _Spec]) -> Any:
    """Apply to a function, or to a classmethod/staticmethod object (wrapping the function inside)."""
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(_wrap(func.__func__, build(func.__func__)))
    if not callable(func):
        raise TypeError(f"fluxloop decorators apply to functions, got {type(func).__name__}")
    return _wrap(func, build(func))


def _static_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if not metadata:
        return {}
    st = _runtime.STATE
    out: dict[str, Any] = {}
    masked: list[str] = []
    for key, value in metadata.items():
        out[attr.METADATA_PREFIX + str(key)], paths = attribute_value(str(key), value, st)
        masked.extend(f"metadata.{p}" for p in paths)
    if masked:
        out[attr.MASKED_PATHS] = masked
    return out


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _apply(func: Any, build: Callable[[Callable[..., Any]], _Spec]) -> Any:
    if func is None:
        return lambda f: _decorate(f, build)
    return _decorate(func, build)


# -- public decorators ----------------------------------------------------------------------------------------
@overload
def agent(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def agent(*, name: str | None = None, metadata: Mapping[str, Any] | None = None, capture_input: bool = True,
          capture_output: bool = True, record_args: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def agent(func: Any = None, /, *, name: str | None = None, metadata: Mapping[str, Any] | None = None,
          capture_input: bool = True, capture_output: bool = True, record_args: bool = True) -> Any:
    """Trace an agent entry point: span ``invoke_agent <name>`` with GenAI agent attributes.

    While recording is on, each call also writes a replay record of its arguments (``record_args=False``
    opts this function out).

    Example::

        @fluxloop.agent(name="ChatBot", metadata={"version": "1.0"})
        async def chat_bot(message: str) -> str: ...
    """
    def build(fn: Callable[..., Any]) -> _Spec:
        label = name or _fn_name(fn)
        return _Spec(fn, f"{attr.OP_INVOKE_AGENT} {label}", {
            **_static_metadata(metadata), attr.OBSERVATION_TYPE: attr.TYPE_AGENT, attr.NAME: label,
            attr.GEN_AI_OPERATION_NAME: attr.OP_INVOKE_AGENT, attr.GEN_AI_AGENT_NAME: label,
        }, capture_input, capture_output, False, record_args)
    return _apply(func, build)


@overload
def prompt(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def prompt(*, name: str | None = None, model: str | None = None, capture_tokens: bool = True,
           metadata: Mapping[str, Any] | None = None, capture_input: bool = True,
           capture_output: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def prompt(func: Any = None, /, *, name: str | None = None, model: str | None = None, capture_tokens: bool = True,
           metadata: Mapping[str, Any] | None = None, capture_input: bool = True,
           capture_output: bool = True) -> Any:
    """Trace an LLM generation: span ``chat <model>`` (``chat <name>`` without a model).

    With ``capture_tokens``, token usage found on the result (``usage.prompt_tokens``/``completion_tokens`` or
    ``input_tokens``/``output_tokens``, on objects or dicts) becomes ``gen_ai.usage.*``.

    Example::

        @fluxloop.prompt(model="gpt-4o-mini")
        def generate_response(query: str) -> str: ...
    """
    def build(fn: Callable[..., Any]) -> _Spec:
        label = name or _fn_name(fn)
        static = {**_static_metadata(metadata), attr.OBSERVATION_TYPE: attr.TYPE_GENERATION, attr.NAME: label,
                  attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT}
        if model:
            static[attr.GEN_AI_REQUEST_MODEL] = model
        return _Spec(fn, f"{attr.OP_CHAT} {model or label}", static, capture_input, capture_output,
                     capture_tokens, False)
    return _apply(func, build)


@overload
def tool(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def tool(*, name: str | None = None, description: str | None = None, metadata: Mapping[str, Any] | None = None,
         capture_input: bool = True, capture_output: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def tool(func: Any = None, /, *, name: str | None = None, description: str | None = None,
         metadata: Mapping[str, Any] | None = None, capture_input: bool = True, capture_output: bool = True) -> Any:
    """Trace a tool call: span ``execute_tool <name>`` with ``gen_ai.tool.name`` and ``gen_ai.tool.description``
    (default: the first line of the docstring).

    Example::

        @fluxloop.tool(description="Search the web")
        def web_search(query: str) -> list: ...
    """
    def build(fn: Callable[..., Any]) -> _Spec:
        label = name or _fn_name(fn)
        text = description if description is not None else (inspect.getdoc(fn) or "").split("\n", 1)[0]
        static = {**_static_metadata(metadata), attr.OBSERVATION_TYPE: attr.TYPE_TOOL, attr.NAME: label,
                  attr.GEN_AI_OPERATION_NAME: attr.OP_EXECUTE_TOOL, attr.GEN_AI_TOOL_NAME: label}
        if text:
            static[attr.GEN_AI_TOOL_DESCRIPTION] = text
        return _Spec(fn, f"{attr.OP_EXECUTE_TOOL} {label}", static, capture_input, capture_output, False, False)
    return _apply(func, build)


@overload
def trace(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def trace(*, name: str | None = None, observation_type: str = attr.TYPE_SPAN,
          metadata: Mapping[str, Any] | None = None, capture_input: bool = True,
          capture_output: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def trace(func: Any = None, /, *, name: str | None = None, observation_type: str = attr.TYPE_SPAN,
          metadata: Mapping[str, Any] | None = None, capture_input: bool = True, capture_output: bool = True) -> Any:
    """Trace any other step: span ``<name>`` with ``fluxloop.observation.type`` = ``observation_type``.

    Example::

        @fluxloop.trace(name="rerank")
        def rerank(docs: list[str]) -> list[str]: ...
    """
    if observation_type not in attr.OBSERVATION_TYPES:
        raise ValueError(f"trace(): observation_type must be one of {sorted(attr.OBSERVATION_TYPES)}, "
                         f"got {observation_type!r}")

    def build(fn: Callable[..., Any]) -> _Spec:
        label = name or _fn_name(fn)
        return _Spec(fn, label, {**_static_metadata(metadata), attr.OBSERVATION_TYPE: observation_type,
                                 attr.NAME: label}, capture_input, capture_output, False, False)
    return _apply(func, build)
