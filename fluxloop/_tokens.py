"""Token usage read from LLM results: OpenAI- and Anthropic-style objects, and plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_INPUT_KEYS = ("input_tokens", "prompt_tokens")
_OUTPUT_KEYS = ("output_tokens", "completion_tokens")


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _first_int(obj: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = _get(obj, key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def token_usage(result: Any) -> tuple[int | None, int | None]:
    """(input_tokens, output_tokens) from ``result.usage`` / ``result["usage"]`` or the result itself.

    Example::

        >>> token_usage({"usage": {"prompt_tokens": 12, "completion_tokens": 3}})
        (12, 3)
    """
    if result is None or isinstance(result, (str, bytes, int, float)):
        return None, None
    try:
        usage = _get(result, "usage")
        for source in (usage, result):
            if source is None:
                continue
            found = _first_int(source, _INPUT_KEYS), _first_int(source, _OUTPUT_KEYS)
            if found != (None, None):
                return found
    except Exception:  # an exotic result object: no usage rather than an error
        pass
    return None, None
