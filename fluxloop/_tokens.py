"""Token usage read from LLM results: OpenAI- and Anthropic-style objects, and plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluxloop import _attributes as attr

_INPUT_KEYS = ("input_tokens", "prompt_tokens")
_OUTPUT_KEYS = ("output_tokens", "completion_tokens")


def get(obj: Any, key: str) -> Any:
    """``obj[key]`` for a mapping, ``obj.key`` otherwise; None when absent. Never raises."""
    try:
        if type(obj) is dict or isinstance(obj, Mapping):  # dict first: skips the ABC check
            return obj.get(key)
        return getattr(obj, key, None)
    except Exception:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_int(obj: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = _int(get(obj, key))
        if value is not None:
            return value
    return None


def usage_attributes(result: Any) -> dict[str, int]:
    """``gen_ai.usage.*`` attributes from a result or a usage object: input/output tokens plus cache-read,
    cache-creation and reasoning counts when the provider reports them.

    Anthropic counts cached input apart from ``input_tokens``; the GenAI conventions count it in, so it is
    added. Example::

        >>> usage_attributes({"usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 5}})
        {'gen_ai.usage.input_tokens': 15, 'gen_ai.usage.output_tokens': 2, 'gen_ai.usage.cache_read.input_tokens': 5}
    """
    if result is None or isinstance(result, (str, bytes, int, float)):
        return {}
    try:
        usage = get(result, "usage")
        for source in (usage, result):
            if source is None or isinstance(source, (str, bytes, int, float)):
                continue
            tokens_in, tokens_out = _first_int(source, _INPUT_KEYS), _first_int(source, _OUTPUT_KEYS)
            if tokens_in is None and tokens_out is None:
                continue
            return _with_details(source, tokens_in, tokens_out)
    except Exception:  # an exotic result object: no usage rather than an error
        pass
    return {}


def _with_details(usage: Any, tokens_in: int | None, tokens_out: int | None) -> dict[str, int]:
    out: dict[str, int] = {}
    cache_read = _int(get(usage, "cache_read_input_tokens"))  # Anthropic: not part of input_tokens
    cache_write = _int(get(usage, "cache_creation_input_tokens"))
    if tokens_in is not None and (cache_read is not None or cache_write is not None):
        tokens_in += (cache_read or 0) + (cache_write or 0)
    if cache_read is None:  # OpenAI: a detail of prompt/input tokens
        details = get(usage, "prompt_tokens_details") or get(usage, "input_tokens_details")
        cache_read = _int(get(details, "cached_tokens")) if details is not None else None
    details = get(usage, "completion_tokens_details") or get(usage, "output_tokens_details")
    reasoning = _int(get(details, "reasoning_tokens")) if details is not None else None
    for key, value in ((attr.GEN_AI_USAGE_INPUT_TOKENS, tokens_in), (attr.GEN_AI_USAGE_OUTPUT_TOKENS, tokens_out),
                       (attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read),
                       (attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, cache_write),
                       (attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning)):
        if value is not None:
            out[key] = value
    return out
