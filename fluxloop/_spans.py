"""Span lifecycle helpers shared by the decorators and ``instrument()``: errors, cancellation, attribute values."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from fluxloop import _attributes as attr
from fluxloop._errors import internal_error
from fluxloop import _runtime
from fluxloop._runtime import CallState
from fluxloop._masking import SCAN_MARGIN
from fluxloop._serialize import dumps_attribute

_PRIMITIVE = (str, bool, int, float)


def _is_cancellation(exc: BaseException) -> bool:
    # asyncio is looked up, not imported: without it loaded no task can have been cancelled, and importing it
    # would cost every `import fluxloop` about a third of `import opentelemetry.sdk.trace`.
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


def record_exception(span: Span, exc: BaseException) -> None:
    """ERROR status with the message, the ``exception`` event and ``error.type``; cancellation marked as such.

    Message and stack trace are bounded like other attributes (``max_attribute_length``) and secret-shaped text
    in them (a bearer token in an HTTP error, say) is masked; neither is formatted or scanned beyond the bound."""
    try:
        if _is_cancellation(exc):
            span.set_attributes({attr.CANCELLED: True, attr.ERROR_TYPE: "asyncio.CancelledError"})
            span.set_status(Status(StatusCode.ERROR, "cancelled"))
            return
        if isinstance(exc, GeneratorExit):
            return
        state = _runtime.STATE
        limit = state.max_attribute_length
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {type(exc).__name__}>"
        message = masked_text(message, state)[0]
        stack = masked_text(_stack_prefix(exc, limit + SCAN_MARGIN), state)[0]
        span.set_attribute(attr.ERROR_TYPE, type(exc).__qualname__)
        # Not span.record_exception: it formats the whole traceback and message, however large, on this thread.
        span.add_event("exception", {
            "exception.type": _type_name(type(exc), ("builtins",)),
            "exception.message": message, "exception.stacktrace": stack, "exception.escaped": "True"})
        span.set_status(Status(StatusCode.ERROR, message))
    except Exception as inner:
        internal_error("record_exception", inner)


_CHAIN_LIMIT = 8
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _stack_prefix(exc: BaseException, budget: int) -> str:
    """The traceback of ``exc`` (with its causes) as Python prints it, with each message cut to ``budget``:
    a huge message is never formatted or copied whole."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < _CHAIN_LIMIT and all(link is not seen for seen in chain):
        chain.append(link)
        link = link.__cause__ if link.__cause__ is not None else \
            (None if link.__suppress_context__ else link.__context__)
    parts: list[str] = []
    for index, link in enumerate(reversed(chain)):
        if index:
            parts.append(_CAUSE if _raised_from_previous(chain, link) else _CONTEXT)
        if link.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_list(traceback.extract_tb(link.__traceback__)))
        try:
            text = str(link)[:budget]
        except Exception:
            text = f"<unprintable {type(link).__name__}>"
        name = _type_name(type(link), ("__main__", "builtins"))
        parts.append(f"{name}: {text}\n" if text else f"{name}\n")
    return "".join(parts)[:budget]


def _type_name(cls: type, bare_modules: tuple[str, ...]) -> str:
    module = cls.__module__
    return cls.__qualname__ if not module or module in bare_modules else f"{module}.{cls.__qualname__}"


def _raised_from_previous(chain: list[BaseException], link: BaseException) -> bool:
    """True when ``link`` was raised ``from`` the exception printed before it."""
    position = next(i for i, item in enumerate(chain) if item is link)
    return chain[position + 1] is link.__cause__ if position + 1 < len(chain) else False


def attribute_value(key: str, value: Any, state: CallState) -> tuple[Any, list[str]]:
    """A metadata value as an OTel attribute (primitives as they are, other values as JSON) with secrets masked,
    and the paths masked (``key``, ``key.nested.password``), never the values."""
    masker = state.masker
    if masker.is_sensitive_key(key):
        return "***", [key]
    if isinstance(value, str):
        shown, secret = masked_text(value, state)
        return shown, ([key] if secret else [])
    if isinstance(value, _PRIMITIVE):
        return value, []
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        pairs = [masked_text(v, state) for v in value]
        return [shown for shown, _ in pairs], ([key] if any(secret for _, secret in pairs) else [])
    text, paths = dumps_attribute(value, state.max_attribute_length, masker)
    return text, [f"{key}.{p}" for p in paths]


_IO_KEYS = {"input": (attr.INPUT_VALUE, attr.INPUT_MIME_TYPE), "output": (attr.OUTPUT_VALUE, attr.OUTPUT_MIME_TYPE)}


def bounded_text(text: str, state: CallState) -> tuple[str, bool]:
    """``text`` masked and cut to ``max_attribute_length`` with its ``...[truncated N chars]`` marker inside the
    limit, and whether a secret was masked. Scans at most the limit plus the masker's margin."""
    limit = state.max_attribute_length
    masked, cut = state.masker.mask_bounded(text, limit)
    secret = not text.startswith(masked)
    if cut:
        keep = max(0, min(len(masked), limit - len(f"...[truncated {len(text)} chars]")))
        masked = f"{masked[:keep]}...[truncated {len(text) - keep} chars]"
    return masked, secret


def put_io(into: dict[str, Any], which: str, value: Any, state: CallState) -> None:
    """Put the span's ``which`` (``input``/``output``) into ``into`` as ``<which>.value`` + ``.mime_type``:
    text as ``text/plain``, anything else as JSON. Masked paths (never values) go to ``fluxloop.masked_paths``."""
    key, mime_key = _IO_KEYS[which]
    if isinstance(value, str):
        # Secret-shaped text is masked in place; like the serializer, only masked keys are listed as paths.
        into[key], into[mime_key] = bounded_text(value, state)[0], attr.MIME_TEXT
        masked: list[str] = []
    else:
        into[key], masked = dumps_attribute(value, state.max_attribute_length, state.masker)
        into[mime_key] = attr.MIME_JSON
    if masked:
        into[attr.MASKED_PATHS] = [*into.get(attr.MASKED_PATHS, ()), *(f"{which}.{p}" for p in masked)]


def masked_text(value: str, state: CallState) -> tuple[str, bool]:
    """``value`` masked, then cut to ``max_attribute_length`` like any attribute; and whether a secret was masked.
    Scans at most the limit plus the masker's margin."""
    masked, cut = state.masker.mask_bounded(value, state.max_attribute_length)
    return (f"{masked}...[truncated {cut} chars]" if cut else masked), not value.startswith(masked)


def put_json(into: dict[str, Any], key: str, value: Any, state: CallState) -> None:
    """Put ``key`` = ``value`` as JSON into ``into`` (masked and bounded); masked paths go to
    ``fluxloop.masked_paths`` under ``key``'s name."""
    text, masked = dumps_attribute(value, state.max_attribute_length, state.masker)
    into[key] = text
    if masked:
        into[attr.MASKED_PATHS] = [*into.get(attr.MASKED_PATHS, ()), *(f"{key}.{p}" for p in masked)]
