"""``instrument()``: an explicit span whose metadata, tags, user and session reach every span started inside it.

The innermost :class:`InstrumentContext` lives in a ContextVar, so it follows ``await``, ``asyncio.gather``,
tasks and threads started with ``contextvars.copy_context()``. The object itself is shared, not copied, so
metadata added after a task was created still reaches spans that task starts afterwards.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, cast

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace

from fluxloop import _attributes as attr
from fluxloop import _runtime
from fluxloop._current import CURRENT
from fluxloop._errors import internal_error
from fluxloop._spans import attribute_value, masked_text, put_io, record_exception

_NO_INPUT: Any = object()

# The variable lives in _current so that the pipeline's on_start can read it without importing this module.
_CURRENT = cast("contextvars.ContextVar[InstrumentContext | None]", CURRENT)


def trace_tags(attrs: Mapping[str, Any]) -> dict[str, str]:
    """MLflow trace tags for a root span: ``mlflow.traceTag.<key>`` per metadata key (its value as text) and
    per tag (``"true"``), so both are tags there and ``search_traces`` can filter on them.

    A tag becomes part of an attribute *key* here, which the export stage's redaction (values only) never sees:
    it is masked now."""
    out: dict[str, str] = {}
    state = _runtime.STATE
    prefix, cut = attr.METADATA_PREFIX, len(attr.METADATA_PREFIX)
    for key, value in attrs.items():
        if key.startswith(prefix):
            out[attr.MLFLOW_TRACE_TAG_PREFIX + key[cut:]] = value if isinstance(value, str) else \
                orjson.dumps(value).decode()
    for tag in attrs.get(attr.TAGS, ()):
        out.setdefault(attr.MLFLOW_TRACE_TAG_PREFIX + state.masker.mask_bounded(tag, state.max_attribute_length)[0],
                       "true")
    return out


def _masked(text: object) -> str:
    """``text`` as masked, bounded text: ids, tags and names are set on live spans, which an application's own
    exporters read too, so they are masked here and not only in FluxLoop's export stage."""
    return masked_text(str(text), _runtime.STATE)[0]


#: The innermost active ``instrument()`` context, or None (the bound method itself: it is on the call path).
current_scope = _CURRENT.get


def get_current_context() -> InstrumentContext | None:
    """The innermost active ``instrument()`` context, or None.

    Example::

        with fluxloop.instrument("job"):
            fluxloop.get_current_context().add_tag("nightly")
    """
    return _CURRENT.get()


class InstrumentContext:
    """Handle returned by ``fluxloop.instrument()``; see :func:`instrument`."""

    __slots__ = ("name", "_parent", "_own", "_tags", "_span", "_tokens", "_initial", "_new_trace", "_io",
                 "_explicit")

    def __init__(self, name: str, *, session_id: str | None = None, user_id: str | None = None,
                 metadata: Mapping[str, Any] | None = None, tags: Iterable[str] | None = None,
                 attributes: Mapping[str, Any] | None = None, new_trace: bool = False,
                 input: Any = _NO_INPUT) -> None:
        self.name = name
        self._parent: InstrumentContext | None = None
        self._own: dict[str, Any] = {}
        self._tags: list[str] = []
        self._span: trace.Span = trace.INVALID_SPAN
        self._tokens: tuple[Any, Any] | None = None
        self._initial = (session_id, user_id, dict(metadata or {}), list(tags or ()), dict(attributes or {}))
        self._new_trace = new_trace
        # input/output previews: {"input": (value, mime), "output": ...}; explicit ones are never replaced
        self._io: dict[str, tuple[Any, Any]] = {}
        self._explicit: set[str] = set()
        if input is not _NO_INPUT:
            self._explicit.add("input")
            self._io["input"] = (input, None)  # serialized on entry, with the configuration then in force

    # -- what spans inside inherit ------------------------------------------------------------------------------
    def propagated_attributes(self) -> dict[str, Any]:
        """Metadata, tags, user and session of this context and its enclosing ones (inner wins)."""
        merged = self._parent.propagated_attributes() if self._parent is not None else {}
        parent_tags = merged.get(attr.TAGS, ())
        merged.update(self._own)
        if self._tags:
            merged[attr.TAGS] = merged[attr.TAG_TAGS] = [*parent_tags,
                                                         *(t for t in self._tags if t not in parent_tags)]
        return merged

    def _set(self, key: str, value: Any) -> None:
        self._own[key] = value
        if self._span.is_recording():
            self._span.set_attribute(key, value)

    def add_metadata(self, key: str, value: Any) -> None:
        """Attach ``key=value`` as ``fluxloop.metadata.<key>`` here and on spans started inside afterwards."""
        try:
            shown, masked = attribute_value(str(key), value, _runtime.STATE)
            self._set(attr.METADATA_PREFIX + str(key), shown)
            self._note_masked(f"metadata.{p}" for p in masked)
        except Exception as exc:
            internal_error("add_metadata", exc)

    def _note_masked(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        if paths and self._span.is_recording():
            previous = (getattr(self._span, "attributes", None) or {}).get(attr.MASKED_PATHS, ())
            self._span.set_attribute(attr.MASKED_PATHS, [*previous, *paths])

    def add_tag(self, tag: str) -> None:
        """Add ``tag`` to ``fluxloop.tags`` (no duplicates)."""
        try:
            tag = _masked(tag)
            if tag not in self._tags:
                self._tags.append(tag)
            if self._span.is_recording():
                tags = self.propagated_attributes()[attr.TAGS]
                self._span.set_attributes({attr.TAGS: tags, attr.TAG_TAGS: tags})
        except Exception as exc:
            internal_error("add_tag", exc)

    def set_user(self, user_id: str) -> None:
        """Set ``user.id``."""
        try:
            self._set(attr.USER_ID, _masked(user_id))
        except Exception as exc:
            internal_error("set_user", exc)

    def set_session(self, session_id: str) -> None:
        """Set ``session.id`` (and ``gen_ai.conversation.id``)."""
        try:
            masked = _masked(session_id)
            self._set(attr.SESSION_ID, masked)
            self._set(attr.GEN_AI_CONVERSATION_ID, masked)
        except Exception as exc:
            internal_error("set_session", exc)

    def set_input(self, value: Any) -> None:
        """Set this span's input (``input.value``): what trace and session previews show. Without it, the input
        of the first call made directly inside is used.

        Example::

            with fluxloop.instrument("chat", session_id="s-1") as ctx:
                ctx.set_input(question)
        """
        self._explicit.add("input")
        self._put("input", value)

    def set_output(self, value: Any) -> None:
        """Set this span's output (``output.value``). Without it, the output of the last call made directly
        inside is used."""
        self._explicit.add("output")
        self._put("output", value)

    def _put(self, which: str, value: Any) -> None:
        try:
            found: dict[str, Any] = {}
            put_io(found, which, value, _runtime.STATE)
            key, mime = (attr.INPUT_VALUE, attr.INPUT_MIME_TYPE) if which == "input" else \
                (attr.OUTPUT_VALUE, attr.OUTPUT_MIME_TYPE)
            self._io[which] = (found[key], found[mime])
            self._note_masked(found.get(attr.MASKED_PATHS, ()))
        except Exception as exc:
            internal_error(f"set_{which}", exc)

    def child_started(self, value: Any, mime: Any) -> None:
        """A call directly inside started with input ``value``: the first one becomes the input preview."""
        if value is not None and "input" not in self._io:
            self._io["input"] = (value, mime)

    def child_ended(self, value: Any, mime: Any) -> None:
        """A call directly inside returned ``value``: the last one becomes the output preview."""
        if value is not None and "output" not in self._explicit:
            self._io["output"] = (value, mime)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set any attribute on this context's own span only (not inherited)."""
        try:
            if self._span.is_recording():
                shown, masked = attribute_value(key, value, _runtime.STATE)
                self._span.set_attribute(key, shown)
                self._note_masked(masked)
        except Exception as exc:
            internal_error("set_attribute", exc)

    @property
    def span(self) -> trace.Span:
        """The OpenTelemetry span of this context."""
        return self._span

    @property
    def trace_id(self) -> str:
        """Hex trace id (32 characters)."""
        return trace.format_trace_id(self._span.get_span_context().trace_id)

    @property
    def span_id(self) -> str:
        """Hex span id (16 characters)."""
        return trace.format_span_id(self._span.get_span_context().span_id)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def __enter__(self) -> InstrumentContext:
        session_id, user_id, metadata, tags, attributes = self._initial
        self._parent = _CURRENT.get()
        try:
            state = _runtime.STATE
            tracer = state.tracer or (_runtime.RUNTIME.start() if state.enabled else None)
            if tracer is not None:
                self.name = _masked(self.name)
                parent_ctx = otel_context.Context() if self._new_trace else None
                self._span = tracer.start_span(self.name, context=parent_ctx, attributes={
                    **(self._parent.propagated_attributes() if self._parent is not None else {}),
                    attr.OBSERVATION_TYPE: attr.TYPE_TRACE, attr.NAME: self.name, attr.SPAN_KIND: attr.KIND_CHAIN})
            if "input" in self._explicit and self._io["input"][1] is None:
                self._put("input", self._io["input"][0])
            for key, value in metadata.items():
                self.add_metadata(key, value)
            for tag in tags:
                self.add_tag(tag)
            if user_id is not None:
                self.set_user(user_id)
            if session_id is not None:
                self.set_session(session_id)
            for key, value in attributes.items():
                self.set_attribute(key, value)
            otel_token = otel_context.attach(trace.set_span_in_context(self._span)) \
                if self._span is not trace.INVALID_SPAN else None
        except Exception as exc:
            internal_error("instrument", exc)
            otel_token = None
        self._tokens = (_CURRENT.set(self), otel_token)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is None:
            return
        scope_token, otel_token = tokens
        try:
            _CURRENT.reset(scope_token)
        except ValueError:  # exited in another context (e.g. a different task): leave that context alone
            pass
        try:
            if otel_token is not None:
                otel_context.detach(otel_token)
            if self._span.is_recording():
                self._span.set_attributes(self._closing_attributes())
            if exc is not None:
                record_exception(self._span, exc)
            self._span.end()
        except Exception as inner:
            internal_error("instrument exit", inner)

    def _closing_attributes(self) -> dict[str, Any]:
        """Input/output previews, the ``metadata`` JSON and, on a root span, MLflow trace tags."""
        out: dict[str, Any] = {}
        for which, (key, mime_key) in (("input", (attr.INPUT_VALUE, attr.INPUT_MIME_TYPE)),
                                       ("output", (attr.OUTPUT_VALUE, attr.OUTPUT_MIME_TYPE))):
            found = self._io.get(which)
            if found is not None and found[1] is not None:
                out[key], out[mime_key] = found
        merged = self.propagated_attributes()
        cut = len(attr.METADATA_PREFIX)
        metadata = {k[cut:]: v for k, v in merged.items() if k.startswith(attr.METADATA_PREFIX)}
        if metadata:
            out[attr.METADATA_JSON] = orjson.dumps(metadata).decode()
        parent = getattr(self._span, "parent", None)
        if parent is None:
            out.update(trace_tags(merged))
        return out

    async def __aenter__(self) -> InstrumentContext:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)


def instrument(name: str, *, session_id: str | None = None, user_id: str | None = None,
               metadata: Mapping[str, Any] | None = None, tags: Iterable[str] | None = None,
               attributes: Mapping[str, Any] | None = None, new_trace: bool = False,
               input: Any = _NO_INPUT) -> InstrumentContext:
    """A span named ``name`` around a block, with ``with`` or ``async with``.

    Metadata, tags, user and session set on it apply to its span and to every span started inside it
    afterwards. ``new_trace=True`` starts a new trace even inside another span. ``input=`` (or
    ``ctx.set_input``/``ctx.set_output``) sets the span's input/output previews; by default they are the input
    of the first and the output of the last call made directly inside.

    Example::

        with fluxloop.instrument("my_workflow", session_id="s-1") as ctx:
            ctx.add_metadata("version", "1.0.0")
            ctx.add_tag("production")
            ctx.set_user("user-123")
            result = my_agent.process(input_data)
    """
    return InstrumentContext(name, session_id=session_id, user_id=user_id, metadata=metadata, tags=tags,
                             attributes=attributes, new_trace=new_trace, input=input)
