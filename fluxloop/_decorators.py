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
from opentelemetry.trace import Span, SpanKind

import orjson

from fluxloop import _attributes as attr
from fluxloop import _genai, _runtime
from fluxloop._binding import make_binder
from fluxloop._context import InstrumentContext, current_scope, trace_tags
from fluxloop._errors import internal_error
from fluxloop._spans import attribute_value, put_io, put_json, record_exception
from fluxloop._stream_collector import Collector, SerializedItems
from fluxloop._streams import stream_kind
from fluxloop._streams import wrap as wrap_stream
from fluxloop._usage_seen import forget_span, has_usage_child, move_usage, watch

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_get_current_span = otel_trace.get_current_span
_get_current_context = otel_context.get_current
_set_span_in_context = otel_trace.set_span_in_context
_attach = otel_context.attach
_detach = otel_context.detach


# -- decoration time ------------------------------------------------------------------------------------------
class _Spec:
    """Everything about one decorated function that does not change between calls."""

    __slots__ = ("span_name", "kind", "static_attrs", "metadata", "_masked_metadata", "capture_input",
                 "capture_output", "capture_tokens", "genai", "tool", "record", "target", "bind")

    def __init__(self, fn: Callable[..., Any], span_name: str, static_attrs: dict[str, Any],
                 metadata: Mapping[str, Any] | None, capture_input: bool, capture_output: bool,
                 capture_tokens: bool, record: bool, genai: bool = False, tool: bool = False) -> None:
        self.span_name = span_name
        self.kind = SpanKind.CLIENT if genai else SpanKind.INTERNAL
        self.static_attrs = {**static_attrs,
                             attr.SPAN_KIND: attr.SPAN_KINDS[static_attrs[attr.OBSERVATION_TYPE]]}
        self.metadata = dict(metadata) if metadata else None
        self._masked_metadata: tuple[Any, dict[str, Any]] | None = None
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.capture_tokens = capture_tokens
        self.genai = genai
        self.tool = tool
        self.record = record
        self.target = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"
        self.bind = make_binder(fn)

    def metadata_attrs(self, st: _runtime.CallState) -> dict[str, Any]:
        """The decorator's ``metadata=`` as attributes, masked with the configuration in force now (cached
        per configuration: a new configuration brings a new masker)."""
        cached = self._masked_metadata
        if cached is not None and cached[0] is st.masker:
            return cached[1]
        out: dict[str, Any] = {}
        masked: list[str] = []
        for key, value in (self.metadata or {}).items():
            out[attr.METADATA_PREFIX + str(key)], paths = attribute_value(str(key), value, st)
            masked.extend(f"metadata.{p}" for p in paths)
        if masked:
            out[attr.MASKED_PATHS] = masked
        self._masked_metadata = (st.masker, out)
        return out


# -- call time ------------------------------------------------------------------------------------------------
class _Begun:
    """One call in flight: its span, context token, recording scope, end attributes and enclosing scope."""

    __slots__ = ("span", "token", "rec", "out", "scope", "provider")

    def __init__(self, span: Span | None, token: Any, rec: Any, scope: InstrumentContext | None,
                 provider: bool) -> None:
        self.span = span
        self.token = token
        self.rec = rec
        self.out: dict[str, Any] = {}
        self.scope = scope  # the instrument() context this span is a direct child of, if any
        self.provider = provider  # gen_ai.provider.name already set


def _metadata_json(attrs: dict[str, Any]) -> str | None:
    prefix, cut = attr.METADATA_PREFIX, len(attr.METADATA_PREFIX)
    found = {k[cut:]: v for k, v in attrs.items() if k.startswith(prefix)}
    return orjson.dumps(found).decode() if found else None


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
        direct = None
        provider = attr.GEN_AI_PROVIDER_NAME in spec.static_attrs
        if sampled and tracer is not None:
            scope = current_scope()
            attrs = {**scope.propagated_attributes(), **spec.static_attrs} if scope is not None \
                else spec.static_attrs.copy()
            if spec.metadata:
                attrs.update(spec.metadata_attrs(st))
            if scope is not None or spec.metadata:
                meta = _metadata_json(attrs)
                if meta is not None:
                    attrs[attr.METADATA_JSON] = meta
                    if not parent.is_valid:
                        attrs.update(trace_tags(attrs))
            if spec.capture_input and st.capture_input:
                arguments = spec.bind(args, kwargs)
                put_io(attrs, "input", arguments, st)
                if spec.genai:
                    _prompt_inputs(attrs, arguments, st, provider)
                    provider = provider or attr.GEN_AI_PROVIDER_NAME in attrs
                elif spec.tool:
                    call_id = arguments.get("tool_call_id") or arguments.get("call_id")
                    if isinstance(call_id, str):
                        attrs[attr.GEN_AI_TOOL_CALL_ID] = call_id
            span = tracer.start_span(spec.span_name, context=ctx, kind=spec.kind, attributes=attrs)
            if spec.genai:
                watch(span)
            if scope is not None and scope.span.get_span_context().span_id == parent.span_id:
                direct = scope
                direct.child_started(attrs.get(attr.INPUT_VALUE), attrs.get(attr.INPUT_MIME_TYPE))
        rec = None
        if spec.record and (recorder := _runtime.RUNTIME.recorder).active:
            if arguments is None:
                arguments = spec.bind(args, kwargs)
            rec = recorder.on_agent_start(spec.target, arguments,
                                          span.get_span_context() if span is not None else None)
        if span is None and rec is None:
            return None
        token = _attach(_set_span_in_context(span, ctx)) if attach and span is not None else None
        begun = _Begun(span, token, rec, direct, provider)
        if attrs is not None and attr.MASKED_PATHS in attrs:  # the end adds to this list, never replaces it
            begun.out[attr.MASKED_PATHS] = attrs[attr.MASKED_PATHS]
        return begun
    except Exception as exc:
        internal_error(f"starting span {spec.span_name!r}", exc)
        if span is not None:
            span.end()
        return None


def _prompt_inputs(attrs: dict[str, Any], arguments: dict[str, Any], st: _runtime.CallState,
                   provider: bool) -> None:
    """A ``@prompt`` call's chat messages (GenAI parts schema) and, when not given, its provider."""
    messages = _genai.input_messages(arguments)
    if messages is not None:
        put_json(attrs, attr.GEN_AI_INPUT_MESSAGES, messages, st)
    if not provider:
        found = _genai.provider_from_arguments(arguments)
        if found is not None:
            attrs[attr.GEN_AI_PROVIDER_NAME] = found


_UNSET: Any = object()


def _finish(spec: _Spec, st: _runtime.CallState, begun: _Begun, exc: BaseException | None,
            result: Any = None, output: Any = _UNSET, collector: Collector | None = None) -> None:
    """Detach, record the outcome and end the span; close the recording scope. Never raises."""
    span, rec, out = begun.span, begun.rec, begun.out
    try:
        if begun.token is not None:
            _detach(begun.token)
            begun.token = None
        if span is not None:
            if exc is None:
                if spec.capture_output and st.capture_output:
                    if isinstance(output, SerializedItems):  # a stream's items, serialized as they came
                        _put_items(out, output)
                    else:
                        put_io(out, "output", result if output is _UNSET else output, st)
                if collector is not None:
                    _stream_outputs(spec, st, out, collector)
                    if spec.genai and not begun.provider and collector.provider is not None:
                        out[attr.GEN_AI_PROVIDER_NAME] = collector.provider
                elif spec.genai:
                    _prompt_outputs(spec, st, out, result, begun.provider)
                if spec.genai and has_usage_child(span):
                    move_usage(out)
            if begun.scope is not None:
                begun.scope.child_ended(out.get(attr.OUTPUT_VALUE), out.get(attr.OUTPUT_MIME_TYPE))
            span.set_attributes(out)
            if exc is not None:
                record_exception(span, exc)
            span.end()
    except Exception as inner:
        internal_error(f"ending span {spec.span_name!r}", inner)
    finally:
        if spec.genai and span is not None:
            forget_span(span)
    if rec is not None:
        try:
            _runtime.RUNTIME.recorder.on_agent_end(rec)
        except Exception as inner:
            internal_error("recording", inner)


_TEXT_RESULTS = (str, bytes, int, float, bool, type(None))


def _prompt_outputs(spec: _Spec, st: _runtime.CallState, out: dict[str, Any], result: Any,
                    provider: bool) -> None:
    if type(result) in _TEXT_RESULTS:  # a plain answer: no response fields, usage or messages to read
        return
    found = _genai.response_attributes(result)
    if not spec.capture_tokens:
        found = {k: v for k, v in found.items() if not k.startswith(attr.GEN_AI_USAGE_PREFIX)}
    out.update(found)
    if not provider:
        name = _genai.provider_of(result)
        if name is not None:
            out[attr.GEN_AI_PROVIDER_NAME] = name
    if spec.capture_output and st.capture_output:
        messages = _genai.output_messages(result)
        if messages is not None:
            put_json(out, attr.GEN_AI_OUTPUT_MESSAGES, messages, st)


def _stream_outputs(spec: _Spec, st: _runtime.CallState, out: dict[str, Any], collector: Collector) -> None:
    found = collector.attributes()
    if not (spec.genai and spec.capture_tokens):
        found = {k: v for k, v in found.items() if not k.startswith(attr.GEN_AI_USAGE_PREFIX)}
    out.update(found)
    if spec.genai and spec.capture_output and st.capture_output:
        messages = collector.output_messages()
        if messages is not None:
            put_json(out, attr.GEN_AI_OUTPUT_MESSAGES, messages, st)


def _put_items(out: dict[str, Any], items: SerializedItems) -> None:
    out[attr.OUTPUT_VALUE], out[attr.OUTPUT_MIME_TYPE] = items.text, attr.MIME_JSON
    if items.masked:
        out[attr.MASKED_PATHS] = [*out.get(attr.MASKED_PATHS, ()), *(f"output.{p}" for p in items.masked)]


def _stream(spec: _Spec, st: _runtime.CallState, begun: _Begun, value: Any, kind: str) -> Any:
    """Hand the caller the stream ``value`` wrapped (a generator for a generator, a proxy for an SDK stream);
    the span ends when the stream does."""
    if begun.token is not None:  # the call returned: its context ends here, the span stays open
        _detach(begun.token)
        begun.token = None
    if begun.rec is not None:  # the recording scope is a context variable of the caller: close it here too
        rec, begun.rec = begun.rec, None
        try:
            _runtime.RUNTIME.recorder.on_agent_end(rec)
        except Exception as exc:
            internal_error("recording", exc)
    ctx = _set_span_in_context(begun.span) if begun.span is not None else None
    # Time to first chunk counts from the span's start (the request), not from when the stream came back.
    started = getattr(begun.span, "start_time", None)
    collector = Collector(st.max_attribute_length, st.masker, started if isinstance(started, int) else None)

    def on_end(exc: BaseException | None, collector: Collector) -> None:
        _finish(spec, st, begun, exc, output=collector.output(), collector=collector)
    return wrap_stream(value, kind, collector, on_end, ctx)


def _wrap(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    # Generator functions are wrapped by plain functions returning a real generator: the span starts (and takes
    # its parent) when the generator is created, not when it is first iterated. So the wrapper itself is not a
    # generator function for inspect (README, Streaming).
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            st = _runtime.STATE
            begun = _begin(spec, st, args, kwargs, attach=False) if st.enabled else None
            if begun is None:
                return fn(*args, **kwargs)
            try:
                gen = fn(*args, **kwargs)
            except BaseException as exc:
                _finish(spec, st, begun, exc)
                raise
            kind = stream_kind(gen)
            if kind is None:  # a generator function whose call returned something else (a mock, say)
                _finish(spec, st, begun, None, gen)
                return gen
            return _stream(spec, st, begun, gen, kind)
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
            kind = stream_kind(result)
            if kind is not None:
                return _stream(spec, st, begun, result, kind)
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
        kind = stream_kind(result)
        if kind is not None:
            return _stream(spec, st, begun, result, kind)
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
          capture_output: bool = True, record_args: bool = True, provider: str | None = None,
          agent_id: str | None = None, description: str | None = None
          ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def agent(func: Any = None, /, *, name: str | None = None, metadata: Mapping[str, Any] | None = None,
          capture_input: bool = True, capture_output: bool = True, record_args: bool = True,
          provider: str | None = None, agent_id: str | None = None, description: str | None = None) -> Any:
    """Trace an agent entry point: span ``invoke_agent <name>`` with GenAI agent attributes
    (``gen_ai.provider.name``, ``gen_ai.agent.id``/``.description`` when given).

    While recording is on, each call also writes a replay record of its arguments (``record_args=False``
    opts this function out).

    Example::

        @fluxloop.agent(name="ChatBot", metadata={"version": "1.0"})
        async def chat_bot(message: str) -> str: ...
    """
    def build(fn: Callable[..., Any]) -> _Spec:
        label = name or _fn_name(fn)
        static = {attr.OBSERVATION_TYPE: attr.TYPE_AGENT, attr.NAME: label,
                  attr.GEN_AI_OPERATION_NAME: attr.OP_INVOKE_AGENT, attr.GEN_AI_AGENT_NAME: label}
        for key, value in ((attr.GEN_AI_PROVIDER_NAME, provider), (attr.GEN_AI_AGENT_ID, agent_id),
                           (attr.GEN_AI_AGENT_DESCRIPTION, description)):
            if value:
                static[key] = value
        return _Spec(fn, f"{attr.OP_INVOKE_AGENT} {label}", static, metadata, capture_input, capture_output,
                     False, record_args)
    return _apply(func, build)


@overload
def prompt(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def prompt(*, name: str | None = None, model: str | None = None, capture_tokens: bool = True,
           metadata: Mapping[str, Any] | None = None, capture_input: bool = True,
           capture_output: bool = True, provider: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def prompt(func: Any = None, /, *, name: str | None = None, model: str | None = None, capture_tokens: bool = True,
           metadata: Mapping[str, Any] | None = None, capture_input: bool = True,
           capture_output: bool = True, provider: str | None = None) -> Any:
    """Trace an LLM generation: a CLIENT span ``chat <model>`` (``chat <name>`` without a model).

    ``provider`` becomes ``gen_ai.provider.name`` (else inferred from an openai/anthropic client argument or
    result). From an OpenAI or Anthropic result (SDK object or dict) come ``gen_ai.response.model/id/
    finish_reasons`` and, with ``capture_tokens``, ``gen_ai.usage.*`` (input/output, cache and reasoning
    counts). Chat messages in the arguments (``messages=``) and result are recorded in the GenAI parts schema
    (``gen_ai.input.messages``/``gen_ai.output.messages``). A returned stream keeps the span open until it ends.

    Example::

        @fluxloop.prompt(model="gpt-4o-mini")
        def generate_response(query: str) -> str: ...
    """
    def build(fn: Callable[..., Any]) -> _Spec:
        label = name or _fn_name(fn)
        static = {attr.OBSERVATION_TYPE: attr.TYPE_GENERATION, attr.NAME: label,
                  attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT}
        if model:
            static[attr.GEN_AI_REQUEST_MODEL] = model
        if provider:
            static[attr.GEN_AI_PROVIDER_NAME] = provider
        return _Spec(fn, f"{attr.OP_CHAT} {model or label}", static, metadata, capture_input, capture_output,
                     capture_tokens, False, genai=True)
    return _apply(func, build)


@overload
def tool(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def tool(*, name: str | None = None, description: str | None = None, metadata: Mapping[str, Any] | None = None,
         capture_input: bool = True, capture_output: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def tool(func: Any = None, /, *, name: str | None = None, description: str | None = None,
         metadata: Mapping[str, Any] | None = None, capture_input: bool = True, capture_output: bool = True) -> Any:
    """Trace a tool call: span ``execute_tool <name>`` with ``gen_ai.tool.name`` and ``gen_ai.tool.description``
    (default: the first line of the docstring), and ``gen_ai.tool.call.id`` from a ``tool_call_id``/``call_id``
    argument.

    Example::

        @fluxloop.tool(description="Search the web")
        def web_search(query: str) -> list: ...
    """
    def build(fn: Callable[..., Any]) -> _Spec:
        label = name or _fn_name(fn)
        text = description if description is not None else (inspect.getdoc(fn) or "").split("\n", 1)[0]
        static = {attr.OBSERVATION_TYPE: attr.TYPE_TOOL, attr.NAME: label,
                  attr.GEN_AI_OPERATION_NAME: attr.OP_EXECUTE_TOOL, attr.GEN_AI_TOOL_NAME: label,
                  attr.GEN_AI_TOOL_TYPE: "function"}
        if text:
            static[attr.GEN_AI_TOOL_DESCRIPTION] = text
        return _Spec(fn, f"{attr.OP_EXECUTE_TOOL} {label}", static, metadata, capture_input, capture_output,
                     False, False, tool=True)
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
        return _Spec(fn, label, {attr.OBSERVATION_TYPE: observation_type, attr.NAME: label}, metadata,
                     capture_input, capture_output, False, False)
    return _apply(func, build)
