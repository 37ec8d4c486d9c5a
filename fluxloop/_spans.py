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


_IO_KEYS = {"input": (attr.INPUT_VALUE, attr.INPUT_MIME_TYPE), "output": (attr.OUTPUT_VALUE, attr.OUTPUT_MIME_TYPE)}
_TEXT_MARGIN = 256  # characters scanned past the limit, so a secret cut at the limit is still recognised


def bounded_text(text: str, state: CallState) -> tuple[str, bool]:
    """``text`` masked and cut to ``max_attribute_length`` (marked ``...[truncated N chars]``), and whether it
    was masked. Scans at most the limit plus a small margin."""
    limit = state.max_attribute_length
    head = text[:limit + _TEXT_MARGIN] if len(text) > limit else text
    masker = state.masker
    masked = masker.has_secret_text(head)
    if masked:
        head = masker.mask_text(head)
    if len(text) > limit or len(head) > limit:  # the marker counts towards the limit too
        keep = max(0, limit - len(f"...[truncated {len(text)} chars]"))
        head = f"{head[:keep]}...[truncated {len(text) - keep} chars]"
    return head, masked


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


def put_json(into: dict[str, Any], key: str, value: Any, state: CallState) -> None:
    """Put ``key`` = ``value`` as JSON into ``into`` (masked and bounded); masked paths go to
    ``fluxloop.masked_paths`` under ``key``'s name."""
    text, masked = dumps_attribute(value, state.max_attribute_length, state.masker)
    into[key] = text
    if masked:
        into[attr.MASKED_PATHS] = [*into.get(attr.MASKED_PATHS, ()), *(f"{key}.{p}" for p in masked)]
