"""The export pipeline built from a config, behind one stable span processor whose pipeline can be swapped.

OpenTelemetry cannot remove a processor from a provider, so FluxLoop registers one :class:`PipelineSwitch`
per provider, once, and ``configure()`` swaps the :class:`FluxLoopSpanProcessor` behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from fluxloop._config import FluxLoopConfig, report_env_warnings, resolve_env
from fluxloop._processor import FluxLoopSpanProcessor
from fluxloop._sampling import keeps_trace
from fluxloop_otel_exporter import FluxLoopSpanExporter

_logger = logging.getLogger("fluxloop")


def exporter_options(config: FluxLoopConfig) -> dict[str, Any]:
    """``FluxLoopSpanExporter`` keyword arguments for ``config``."""
    return {"endpoint": config.collector_url, "api_key": config.api_key, "headers": dict(config.headers),
            "timeout": config.timeout, "use_collector": config.use_collector,
            "offline_enabled": config.offline_enabled, "offline_dir": config.offline_dir,
            "max_file_bytes": config.offline_max_file_bytes, "probe_interval": config.probe_interval}


def build_processor(config: FluxLoopConfig) -> FluxLoopSpanProcessor | None:
    """The processor + exporter chain ``config`` asks for; None when nothing is to be exported."""
    if not config.enabled:
        return None
    if not config.use_collector and not config.offline_enabled:
        _logger.warning("fluxloop: use_collector and offline_enabled are both off: spans are not exported")
        return None
    exporter = FluxLoopSpanExporter(**exporter_options(config))
    return FluxLoopSpanProcessor(exporter, max_queue_size=config.max_queue_size, batch_size=config.batch_size,
                                 flush_interval=config.flush_interval)


class EnvConfiguredSpanExporter(FluxLoopSpanExporter):
    """The ``fluxloop`` entry point of the ``opentelemetry_traces_exporter`` group.

    OpenTelemetry's auto-configuration (``OTEL_TRACES_EXPORTER=fluxloop`` with ``opentelemetry-instrument``)
    builds exporters with no arguments; this one takes its settings from ``FLUXLOOP_*`` / ``OTEL_*`` through the
    same resolver as ``configure()``.
    """

    def __init__(self, **overrides: Any) -> None:
        resolved = resolve_env()
        report_env_warnings(resolved)
        super().__init__(**{**exporter_options(resolved.config), **overrides})


class PipelineSwitch(SpanProcessor):
    """The one processor FluxLoop adds to a provider; forwards to the current pipeline, or, while test listeners
    (``capture_spans()``) are attached, to them only.

    ``filter_rate`` applies FluxLoop's ``sample_rate`` per trace when the provider is the application's (whose
    sampler FluxLoop does not own); on FluxLoop's own provider the sampler has already decided.
    """

    def __init__(self) -> None:
        self.pipeline: FluxLoopSpanProcessor | None = None
        self.listeners: tuple[SpanProcessor, ...] = ()
        self.filter_rate: float = 1.0
        self.shutdown_timeout: float = 10.0
        #: Called instead of shutting the pipeline down when the provider shuts this switch down (the runtime).
        self.on_shutdown: Callable[[], None] | None = None
        #: Set by the runtime once shut down: spans ending then are counted in ``dropped_closed``.
        self.closed = False
        self.dropped_closed = 0
        self._lock = threading.Lock()

    def swap(self, pipeline: FluxLoopSpanProcessor | None) -> FluxLoopSpanProcessor | None:
        """Install ``pipeline``; return the previous one (the caller shuts it down)."""
        with self._lock:
            old, self.pipeline = self.pipeline, pipeline
        return old

    def add_listener(self, listener: SpanProcessor) -> None:
        with self._lock:
            self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: SpanProcessor) -> None:
        with self._lock:
            self.listeners = tuple(x for x in self.listeners if x is not listener)

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        rate = self.filter_rate
        if rate < 1.0 and not keeps_trace(span.context.trace_id, rate):
            return
        listeners = self.listeners
        if listeners:
            for listener in listeners:
                try:
                    listener.on_end(span)
                except Exception:  # a test listener must not break the pipeline
                    _logger.exception("fluxloop: span listener failed")
            return
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.on_end(span)
        elif self.closed and span.context.trace_flags.sampled:
            self.dropped_closed += 1

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        pipeline = self.pipeline
        return True if pipeline is None else pipeline.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()
            return
        pipeline = self.swap(None)
        if pipeline is not None:
            pipeline.shutdown(int(self.shutdown_timeout * 1000))
