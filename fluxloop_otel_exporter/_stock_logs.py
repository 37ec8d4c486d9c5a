"""Silence the stock OTLP exporter's per-batch log records during FluxLoop's own exports, and keep them as the reason.

The stock exporter logs a warning per retry and an error per failed batch. FluxLoop reports an unreachable
collector once, itself, so while one of its own export calls runs on a thread, a filter on the stock loggers
takes their records aside instead of letting them through. Other exporters in the process (the application's
own ``OTLPSpanExporter``) log as usual: the filter only acts on the thread, and during the call, that asked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fluxloop_otel_exporter._session import describe_exception

__all__ = ["describe_failure", "stock_logs_captured"]

# The loggers the stock OTLP/HTTP span exporter and its HTTP client write to during export().
STOCK_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http._common",
    "urllib3.connectionpool",
)
_MAX_KEPT = 16
_MAX_REASON = 200


class _CaptureOwnExports(logging.Filter):
    """Drops (and keeps) records logged on a thread while it runs one of FluxLoop's own exports."""

    def __init__(self) -> None:
        super().__init__()
        self.state = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        kept: list[logging.LogRecord] | None = getattr(self.state, "kept", None)
        if kept is None:
            return True
        if len(kept) < _MAX_KEPT:
            kept.append(record)
        return False


_FILTER = _CaptureOwnExports()
_STOCK_LOGGER_OBJECTS = tuple(logging.getLogger(name) for name in STOCK_LOGGERS)


def _ensure_installed() -> None:
    # Checked on every call, not once: a later logging.config call may have reset the loggers' filters.
    for logger in _STOCK_LOGGER_OBJECTS:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)  # addFilter itself ignores a filter that is already there


@contextmanager
def stock_logs_captured() -> Iterator[list[logging.LogRecord]]:
    """Within the block, records of the stock loggers on this thread are dropped and collected in the list."""
    _ensure_installed()
    state = _FILTER.state
    previous = getattr(state, "kept", None)
    kept: list[logging.LogRecord] = []
    state.kept = kept
    try:
        yield kept
    finally:
        state.kept = previous


def describe_failure(records: list[logging.LogRecord]) -> str:
    """A short reason for a failed export from the stock exporter's records, when the session could not tell."""
    for record in reversed(records):
        for arg in _args(record):
            if isinstance(arg, BaseException):
                return describe_exception(arg)
    for record in records:
        args = _args(record)
        codes = [a for a in args if isinstance(a, int) and not isinstance(a, bool) and 100 <= a <= 599]
        if codes:
            reason = next((a for a in args[args.index(codes[0]) + 1:] if isinstance(a, str)), "")
            return f"HTTP {codes[0]} {reason}".strip()
    for record in records:
        if record.msg and str(record.msg).startswith("Transient error") and _args(record):
            return f"{_args(record)[0]}, retries exhausted"[:_MAX_REASON]
    return records[-1].getMessage()[:_MAX_REASON] if records else "export failed"


def _args(record: logging.LogRecord) -> tuple[object, ...]:
    args = record.args
    return args if isinstance(args, tuple) else ()
