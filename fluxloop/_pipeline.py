"""The export pipeline built from a config, behind one stable span processor whose pipeline can be swapped.

OpenTelemetry cannot remove a processor from a provider, so FluxLoop registers one :class:`PipelineSwitch`
per provider, once, and ``configure()`` swaps the :class:`ExportPipeline` behind it. The switch also decides
which spans of an application's provider are FluxLoop's to export (``export_scope``) and gives spans that other
instrumentations start inside ``instrument()`` its metadata, tags, user and session; the pipeline redacts every
span on its worker (:mod:`fluxloop._redaction`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExportResult

from fluxloop import _attributes as attr
from fluxloop._config import FluxLoopConfig, report_env_warnings, resolve_env
from fluxloop._current import CURRENT
from fluxloop._masking import Masker
from fluxloop._processor import FluxLoopSpanProcessor
from fluxloop._redaction import SpanRedactor, is_fluxloop_span, is_own_provider_span
from fluxloop._sampling import keeps_trace
from fluxloop_otel_exporter import FluxLoopSpanExporter

_logger = logging.getLogger("fluxloop")


def exporter_options(config: FluxLoopConfig) -> dict[str, Any]:
    """``FluxLoopSpanExporter`` keyword arguments for ``config``."""
    return {"endpoint": config.collector_url, "api_key": config.api_key, "headers": dict(config.headers),
            "timeout": config.timeout, "use_collector": config.use_collector,
            "offline_enabled": config.offline_enabled, "offline_dir": config.offline_dir,
            "max_file_bytes": config.offline_max_file_bytes, "probe_interval": config.probe_interval,
            "forward_spool": config.forward_spool}


#: ``export_scope`` values.
SCOPE_FLUXLOOP = "fluxloop"
SCOPE_ALL = "all"
# Open spans of an application's provider that are in FluxLoop's scope are remembered by span id until they end;
# past this many (spans that never end), new ones are not tracked, so memory stays bounded.
_SCOPE_TRACK_LIMIT = 65536


def redactor_for(config: FluxLoopConfig) -> SpanRedactor:
    """The export stage's redactor: ``config``'s mask rules, and its service name when one was configured."""
    configured = config.service_name if config.service_name != FluxLoopConfig.service_name else None
    return SpanRedactor(Masker(config.mask_patterns, config.mask_function), configured)


class ExportPipeline(FluxLoopSpanProcessor):
    """FluxLoop's processor with its export stage: ``redactor`` runs on each batch on the worker thread."""

    def __init__(self, exporter: FluxLoopSpanExporter, redactor: SpanRedactor, export_scope: str,
                 **options: Any) -> None:
        super().__init__(exporter, transform=redactor.redact_batch, **options)
        self.redactor = redactor
        self.export_scope = export_scope


def build_processor(config: FluxLoopConfig) -> ExportPipeline | None:
    """The processor + exporter chain ``config`` asks for; None when nothing is to be exported."""
    if not config.enabled:
        return None
    if not config.use_collector and not config.offline_enabled:
        _logger.warning("fluxloop: use_collector and offline_enabled are both off: spans are not exported")
        return None
    exporter = FluxLoopSpanExporter(**exporter_options(config))
    return ExportPipeline(exporter, redactor_for(config), config.export_scope, max_queue_size=config.max_queue_size,
                          batch_size=config.batch_size, flush_interval=config.flush_interval)


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
        self._redactor = redactor_for(resolved.config)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Redact (on the exporting thread of the application's span processor), then export."""
        return super().export(self._redactor.redact_batch(spans))


class PipelineSwitch(SpanProcessor):
    """The one processor FluxLoop adds to a provider; forwards to the current pipeline, or, while test listeners
    (``capture_spans()``) are attached, to them only.

    At start, a span another instrumentation starts inside ``instrument()`` gets that context's metadata, tags,
    user and session. On an application's provider with ``export_scope="fluxloop"``, only FluxLoop's spans and
    the spans started under them (tracked by span id while open, bounded) are forwarded.

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
        self._in_scope: dict[int, None] = {}  # open in-scope spans of application providers, by span id
        #: The last pipeline's export stage (defaults before any): its redactor also redacts what test listeners
        #: see, and its scope applies while no pipeline is installed (shut down, capturing).
        self.redactor = SpanRedactor(Masker())
        self.export_scope = SCOPE_FLUXLOOP

    def swap(self, pipeline: FluxLoopSpanProcessor | None) -> FluxLoopSpanProcessor | None:
        """Install ``pipeline``; return the previous one (the caller shuts it down)."""
        with self._lock:
            old, self.pipeline = self.pipeline, pipeline
            if isinstance(pipeline, ExportPipeline):
                self.redactor, self.export_scope = pipeline.redactor, pipeline.export_scope
        return old

    def add_listener(self, listener: SpanProcessor) -> None:
        with self._lock:
            self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: SpanProcessor) -> None:
        with self._lock:
            self.listeners = tuple(x for x in self.listeners if x is not listener)

    def _scope_limited(self, span: ReadableSpan) -> bool:
        """True when only in-scope spans of ``span``'s provider are exported: an application's provider with
        ``export_scope="fluxloop"``."""
        return self.export_scope == SCOPE_FLUXLOOP and not is_own_provider_span(span)

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == attr.SCOPE_NAME:
            return  # FluxLoop's own: the decorators set what it inherits, and it is always in scope
        try:
            current = CURRENT.get()
            if current is not None:
                inherited = current.propagated_attributes()
                present = span.attributes or {}
                missing = {key: value for key, value in inherited.items() if key not in present}
                if missing:
                    span.set_attributes(missing)
            if self._scope_limited(span) and len(self._in_scope) < _SCOPE_TRACK_LIMIT:
                parent = trace.get_current_span(parent_context)
                if current is not None or is_fluxloop_span(parent) \
                        or parent.get_span_context().span_id in self._in_scope:
                    self._in_scope[span.context.span_id] = None
        except Exception:  # never break the span being started
            _logger.debug("fluxloop: on_start failed", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        rate = self.filter_rate
        if rate < 1.0 and not keeps_trace(span.context.trace_id, rate):
            self._in_scope.pop(span.context.span_id, None)
            return
        if self._scope_limited(span):
            tracked = self._in_scope.pop(span.context.span_id, False) is None
            if not tracked and not is_fluxloop_span(span):
                return  # an application span outside FluxLoop's spans: the application's, not ours to export
        listeners = self.listeners
        if listeners:
            # Test listeners see what would be exported: redacted (here on the calling thread: test use only).
            span = self.redactor.redact(span)
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
