"""No double counting: which open ``@prompt`` spans have a child span that already reports token usage.

When ``@prompt`` wraps a client that traces itself (the anthropic SDK, an OpenAI instrumentation), the child
LLM span carries ``gen_ai.usage.*`` and backends that sum over LLM spans (Phoenix) would count the tokens
twice. The span processor notes such children as they end; the ``@prompt`` span then keeps its counts under
``fluxloop.usage.*`` instead. Entries live only while their ``@prompt`` span is open.
"""

from __future__ import annotations

from typing import Any

from fluxloop import _attributes as attr

_USAGE_KEYS = (attr.GEN_AI_USAGE_INPUT_TOKENS, attr.GEN_AI_USAGE_OUTPUT_TOKENS,
               "llm.token_count.prompt", "llm.token_count.completion")

#: span id of each open @prompt span -> whether a child reported usage
_OPEN: dict[int, bool] = {}


def watch(span: Any) -> None:
    """Start watching the children of the ``@prompt`` span ``span``."""
    _OPEN[span.get_span_context().span_id] = False


def forget_span(span: Any) -> None:
    """Stop watching ``span`` (it ended)."""
    _OPEN.pop(span.get_span_context().span_id, None)


def note_end(span: Any) -> None:
    """Called by the span processor for every ending span: cheap when no ``@prompt`` span is open."""
    if not _OPEN:
        return
    parent = span.parent
    if parent is None or parent.span_id not in _OPEN:
        return
    attributes = span.attributes or {}
    if any(key in attributes for key in _USAGE_KEYS):
        _OPEN[parent.span_id] = True


def has_usage_child(span: Any) -> bool:
    """True when a child of ``span`` reported token usage."""
    return _OPEN.get(span.get_span_context().span_id, False)


def move_usage(out: dict[str, Any]) -> None:
    """Rename ``gen_ai.usage.*`` in ``out`` to ``fluxloop.usage.*`` (still readable, not summed again)."""
    cut = len(attr.GEN_AI_USAGE_PREFIX)
    for key in [k for k in out if k.startswith(attr.GEN_AI_USAGE_PREFIX)]:
        out[attr.FLUXLOOP_USAGE_PREFIX + key[cut:]] = out.pop(key)
