"""The one serializer: Python values to JSON for span attributes and recordings alike.

Rules (DESIGN §4), the same for both uses so they can never disagree:

- JSON-native values as they are; dataclasses, pydantic models, mappings, sequences, sets, datetimes, enums,
  UUIDs converted; non-string keys stringified; huge integers and NaN/inf made JSON-safe.
- Callables become markers: ``<builtin:VALUE>`` (``__fluxloop_builtin__``), ``<builtin:collector.send>`` (has a
  ``.messages`` list), ``<builtin:collector.error>`` (has an ``.errors`` list), else ``<callable:NAME>``.
- Values under a sensitive key become ``***`` at any depth; token-like text is masked; the paths masked are
  reported, never the values.
- Anything else becomes ``<repr:...>`` around ``repr(value)`` cut to 100 characters (the original FluxLoop's
  form, which replay tools read as "not rebuildable"); cycles and excessive depth get markers; a
  ``__repr__`` that raises gives ``<unrepresentable T>``. Nothing here raises.

Span attributes take a fast path (orjson on the raw value) and fall back to the walk only when the result
contains something to mask, fails to encode, or is too long.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

import orjson

from fluxloop._masking import DEFAULT_MASKER, MASK, SCAN_MARGIN, Masker

REPR_LIMIT: Final = 100
MAX_DEPTH: Final = 64
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_ORJSON_OPTS: Final = orjson.OPT_NON_STR_KEYS
_PRIMITIVES: Final = (str, int, float, bool, type(None))


def _truncated_repr(value: Any, masker: Masker = DEFAULT_MASKER) -> str:
    """``repr(value)`` masked, then cut to ``REPR_LIMIT`` (a secret cut by the limit is masked before the cut);
    bytes are represented from a bounded slice, never copied whole."""
    try:
        if isinstance(value, (bytes, bytearray, memoryview)) and len(value) > REPR_LIMIT + SCAN_MARGIN:
            value = bytes(value[:REPR_LIMIT + SCAN_MARGIN])
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
    if not isinstance(text, str):
        return f"<unrepresentable {type(value).__name__}>"
    return masker.mask_bounded(text, REPR_LIMIT)[0]


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and isinstance(getattr(type(value), "_fields", None), tuple)


def repr_marker(value: Any, masker: Masker = DEFAULT_MASKER) -> str:
    """``<repr:...>``: a value JSON cannot hold, as the recording format writes it (masked before the cut)."""
    text = _truncated_repr(value, masker)
    return text if text.startswith("<unrepresentable ") else f"<repr:{text}>"


def _collector_kind(obj: Any, method_name: str) -> str | None:
    has_messages = isinstance(getattr(obj, "messages", None), list)
    has_errors = isinstance(getattr(obj, "errors", None), list)
    if has_messages and has_errors:  # one object collecting both: its error method is the error callback
        return "error" if "err" in method_name.lower() or "fail" in method_name.lower() else "send"
    return "send" if has_messages else "error" if has_errors else None


def callable_marker(value: Any) -> str:
    """The recording marker for a callable (DESIGN §4), looking at the callable and, for a bound method, at the
    object it is bound to."""
    method_name = getattr(value, "__name__", "") or ""
    for obj in (value, getattr(value, "__self__", None)):
        if obj is None:
            continue
        builtin = getattr(obj, "__fluxloop_builtin__", None)
        if builtin is not None:
            return f"<builtin:{builtin}>"
        kind = _collector_kind(obj, method_name if obj is not value else "")
        if kind is not None:
            return f"<builtin:collector.{kind}>"
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or type(value).__name__
    return f"<callable:{name}>"


def _key_text(key: Any) -> str:
    # Stringify keys the way orjson's OPT_NON_STR_KEYS does, so both paths give the same JSON.
    if isinstance(key, str):
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: JSON encoders refuse them
            return key.encode("utf-8", "replace").decode("utf-8")
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, (int, float)):
        return str(key)
    if isinstance(key, enum.Enum):
        return _key_text(key.value)
    if isinstance(key, (_dt.date, _dt.time)):
        return key.isoformat()
    if isinstance(key, uuid.UUID):
        return str(key)
    return _truncated_repr(key)


def _is_secret_pair(item: Any, masker: Masker) -> bool:
    return (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
            and masker.is_sensitive_key(item[0]))


def _is_pydantic_model(value: Any) -> bool:
    return callable(getattr(type(value), "model_dump", None)) and hasattr(type(value), "model_fields")


class _Walker:
    """One walk of one value; not shared between threads."""

    __slots__ = ("masker", "str_limit", "item_limit", "masked", "_active")

    def __init__(self, masker: Masker, str_limit: int | None, item_limit: int | None) -> None:
        self.masker = masker
        self.str_limit = str_limit
        self.item_limit = item_limit
        self.masked: list[str] = []
        self._active: set[int] = set()

    def walk(self, value: Any, path: str, depth: int) -> Any:
        if value is None or value is True or value is False:
            return value
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, int):
            if isinstance(value, enum.Enum):
                return self.walk(value.value, path, depth)
            return int(value) if _INT_MIN <= value <= _INT_MAX else str(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else None
        if depth >= MAX_DEPTH:
            return "<max depth>"
        if isinstance(value, enum.Enum):
            return self.walk(value.value, path, depth)
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, (Decimal, PurePath)):
            return str(value)
        ident = id(value)
        if ident in self._active:
            return "<cycle>"
        self._active.add(ident)
        try:
            return self._container(value, path, depth)
        finally:
            self._active.discard(ident)

    def _container(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, Mapping):
            return self._mapping(value.items(), path, depth)
        if _is_namedtuple(value):  # an object with field names, so a field like api_key is masked
            return self._mapping(zip(type(value)._fields, value), path, depth)
        if isinstance(value, (list, tuple, set, frozenset)):
            return self._sequence(value, path, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._mapping(((f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)),
                                 path, depth)
        if _is_pydantic_model(value):
            try:
                dumped = value.model_dump()
            except Exception:
                return _truncated_repr(value, self.masker)
            return self._mapping(dumped.items(), path, depth)
        if callable(value):
            return callable_marker(value)
        return repr_marker(value, self.masker)

    def _mapping(self, items: Any, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        limit = self.item_limit
        try:
            for key, item in items:
                if limit is not None and len(out) >= limit:
                    out["..."] = "[more items truncated]"
                    break
                text = self._text(_key_text(key))  # a key can be a secret too (an sk- key as a dict key)
                sub = f"{path}.{text}" if path else text
                try:  # one hostile value must not hide its siblings
                    if self.masker.is_sensitive_key(text):
                        self.masked.append(sub)
                        out[text] = self.walk(self.masker.masked_value(text, item), sub, depth + 1) \
                            if self.masker.mask_function is not None else "***"
                    else:
                        out[text] = self.walk(item, sub, depth + 1)
                except RecursionError:
                    raise
                except Exception:
                    out[text] = f"<unrepresentable {type(item).__name__}>"
        except RecursionError:
            raise
        except Exception:  # a mapping whose iteration raises
            out["<error>"] = "<iteration failed>"
        return out

    def _sequence(self, value: Any, path: str, depth: int) -> list[Any]:
        out: list[Any] = []
        limit = self.item_limit
        try:
            for index, item in enumerate(value):
                if limit is not None and index >= limit:
                    out.append(f"...[{len(value) - limit} more items]")
                    break
                sub = f"{path}[{index}]"
                if _is_secret_pair(item, self.masker):  # ("Authorization", "..."): headers as a list of pairs
                    self.masked.append(f"{sub}[1]")
                    out.append([self._text(item[0]), self.walk(self.masker.masked_value(item[0], item[1]), sub,
                                                               depth + 1)
                                if self.masker.mask_function is not None else MASK])
                    continue
                out.append(self.walk(item, sub, depth + 1))
        except RecursionError:
            raise
        except Exception:
            out.append("<iteration failed>")
        return out

    def _text(self, text: str) -> str:
        """``text`` masked; with a limit, cut first, so no more than ``limit + SCAN_MARGIN`` is scanned or copied."""
        try:
            limit = self.str_limit
            cut = 0
            if limit is not None:
                text, cut = self.masker.mask_bounded(text, limit)
            else:
                text = self.masker.mask_text(text)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: JSON encoders refuse them
                text = text.encode("utf-8", "replace").decode("utf-8")
        except Exception:
            return "<unrepresentable str>"
        return f"{text}...[truncated {cut} chars]" if cut else text


def to_jsonable(value: Any, masker: Masker = DEFAULT_MASKER, *, str_limit: int | None = None,
                item_limit: int | None = None) -> tuple[Any, list[str]]:
    """``value`` as JSON-ready Python data by the rules above, with the list of masked paths.

    Example::

        >>> to_jsonable({"auth_token": "abc", "n": 1})
        ({'auth_token': '***', 'n': 1}, ['auth_token'])
    """
    walker = _Walker(masker, str_limit, item_limit)
    try:
        return walker.walk(value, "", 0), walker.masked
    except RecursionError:
        return "<max depth>", walker.masked
    except Exception:
        return _truncated_repr(value, masker), walker.masked


def _orjson_default(value: Any) -> Any:
    if _is_namedtuple(value):
        return dict(zip(type(value)._fields, value))
    if _is_pydantic_model(value):
        return value.model_dump()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (Decimal, PurePath)):
        return str(value)
    if callable(value):
        return callable_marker(value)
    return repr_marker(value)


_PROBE_BUDGET: Final = 32


def _too_long(value: Any, max_length: int) -> bool:
    """True when a string or bytes value among the first few at the top two levels of ``value`` is longer than
    ``max_length``: such a value goes straight to the walk, which copies and scans only a bounded slice of it,
    instead of being encoded whole by the fast path first. Exact type checks: this runs on every call."""
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        return len(value) > max_length
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return False
    budget = _PROBE_BUDGET
    for item in items:
        budget -= 1
        if budget < 0:
            return False
        kind = type(item)
        if kind is str or kind is bytes or kind is bytearray:
            if len(item) > max_length:
                return True
        elif kind is dict or kind is list or kind is tuple:
            for inner in (item.values() if kind is dict else item):
                budget -= 1
                if budget < 0:
                    return False
                kind = type(inner)
                if (kind is str or kind is bytes or kind is bytearray) and len(inner) > max_length:
                    return True
    return False


def dumps(value: Any, masker: Masker = DEFAULT_MASKER) -> tuple[bytes, list[str]]:
    """JSON bytes of ``value`` with no length limit (recordings), and the masked paths."""
    data, masked = to_jsonable(value, masker)
    return orjson.dumps(data, option=_ORJSON_OPTS), masked


def dumps_bounded(value: Any, masker: Masker, str_limit: int, item_limit: int) -> bytes:
    """JSON bytes of ``value`` for a recording, strings cut at ``str_limit`` and collections at ``item_limit``.

    Fast path, as for span attributes: orjson straight on the value when nothing needs masking and the whole
    text is within ``str_limit`` (so no single value can be over it); otherwise the walk.
    """
    if not _too_long(value, str_limit):
        try:
            data = orjson.dumps(value, default=_orjson_default, option=_ORJSON_OPTS)
            if len(data) <= str_limit and not masker.json_needs_masking(data.decode()):
                return data
        except Exception:
            pass
    walked, _ = to_jsonable(value, masker, str_limit=str_limit, item_limit=item_limit)
    return orjson.dumps(walked, option=_ORJSON_OPTS)


def dumps_attribute(value: Any, max_length: int, masker: Masker = DEFAULT_MASKER) -> tuple[str, list[str]]:
    """A JSON string of ``value`` for a span attribute, at most about ``max_length`` characters.

    Fast path: orjson straight on the value when it needs no masking and fits. Otherwise the walk, with long
    strings and collections cut and marked; as a last resort, the JSON text itself cut and wrapped as a JSON
    string ending in ``...[truncated N chars]``. The result is always valid JSON.
    """
    if not _too_long(value, max_length):
        try:
            raw = orjson.dumps(value, default=_orjson_default, option=_ORJSON_OPTS)
            if len(raw) <= max_length:
                text = raw.decode()
                if not masker.json_needs_masking(text):
                    return text, []
        except Exception:
            pass
    data, masked = to_jsonable(value, masker, str_limit=max(16, max_length // 4), item_limit=256)
    try:
        text = orjson.dumps(data, option=_ORJSON_OPTS).decode()
    except Exception:  # cannot happen for walked data; kept so this function never raises
        text = orjson.dumps(_truncated_repr(data)).decode()
    if len(text) > max_length:
        # Cut, then encode as a JSON string: escaping can grow the text, so cut again until it fits.
        keep = max(0, max_length - 40)
        while True:
            wrapped = orjson.dumps(f"{text[:keep]}...[truncated {len(text) - keep} chars]").decode()
            if len(wrapped) <= max_length or keep == 0:
                break
            keep = max(0, keep - (len(wrapped) - max_length) - 8)
        text = wrapped
    return text, masked
