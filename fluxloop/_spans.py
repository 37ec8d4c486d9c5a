"""Span lifecycle helpers shared by the decorators and ``instrument()``: errors, cancellation, attribute values."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from fluxloop import _attributes as attr
from fluxloop._errors import internal_error
from fluxloop import _runtime
from fluxloop._runtime import CallState
from fluxloop._serialize import dumps_attribute

_PRIMITIVE = (str, bool, int, float)


def record_exception(span: Span, exc: BaseException) -> None:
    """ERROR status with the message, the ``exception`` event and ``error.type``; cancellation marked as such.

    Token-like text in the message or stack trace (a bearer token in an HTTP error, say) is masked."""
    try:
        if isinstance(exc, asyncio.CancelledError):
            span.set_attributes({attr.CANCELLED: True, attr.ERROR_TYPE: "asyncio.CancelledError"})
            span.set_status(Status(StatusCode.ERROR, "cancelled"))
            return
        if isinstance(exc, GeneratorExit):
            return
        masker = _runtime.STATE.masker
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {type(exc).__name__}>"
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message, stack = masker.mask_text(message), masker.mask_text(stack)
        span.set_attribute(attr.ERROR_TYPE, type(exc).__qualname__)
        span.record_exception(exc, attributes={"exception.message": message, "exception.stacktrace": stack},
                              escaped=True)
        span.set_status(Status(StatusCode.ERROR, message))
    except Exception as inner:
        internal_error("record_exception", inner)


def attribute_value(key: str, value: Any, state: CallState) -> tuple[Any, list[str]]:
    """A metadata value as an OTel attribute (primitives as they are, other values as JSON) with secrets masked,
    and the paths masked (``key``, ``key.nested.password``), never the values."""
    masker = state.masker
    if masker.is_sensitive_key(key):
        return "***", [key]
    if isinstance(value, str):
        return (masker.mask_text(value), [key]) if masker.has_secret_text(value) else (value, [])
    if isinstance(value, _PRIMITIVE):
        return value, []
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        masked = [masker.mask_text(v) for v in value]
        return masked, ([key] if masked != list(value) else [])
    text, paths = dumps_attribute(value, state.max_attribute_length, masker)
    return text, [f"{key}.{p}" for p in paths]


def put_json(into: dict[str, Any], key: str, value: Any, state: CallState) -> None:
    """Put ``key`` = ``value`` as JSON into ``into``; masked paths (never values) are added to
    ``fluxloop.masked_paths`` there."""
    text, masked = dumps_attribute(value, state.max_attribute_length, state.masker)
    into[key] = text
    if masked:
        prefix = "input" if key == attr.INPUT else "output"
        into[attr.MASKED_PATHS] = [*into.get(attr.MASKED_PATHS, ()), *(f"{prefix}.{p}" for p in masked)]
