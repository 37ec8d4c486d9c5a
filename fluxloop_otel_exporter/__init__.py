"""FluxLoop's OpenTelemetry span exporters, usable in any OpenTelemetry SDK pipeline (no ``fluxloop`` needed).

Add FluxLoop to an application that already has a ``TracerProvider`` (``provider``)::

    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from fluxloop_otel_exporter import FluxLoopSpanExporter

    exporter = FluxLoopSpanExporter(endpoint="http://localhost:4318", api_key="...")
    provider.add_span_processor(BatchSpanProcessor(exporter))

Spans go to ``<endpoint>/v1/traces`` as OTLP/HTTP protobuf; what the collector cannot take is spooled as OTLP/JSON
lines under ``./fluxloop_artifacts`` (send it later with ``fluxloop upload``). ``OfflineSpanExporter`` writes
those files on its own; ``iter_offline_files`` and ``read_requests`` read them back.
"""

from fluxloop_otel_exporter._exporter import ExportCounters, FluxLoopSpanExporter, traces_endpoint
from fluxloop_otel_exporter._offline import OfflineSpanExporter, iter_offline_files, read_requests
from fluxloop_otel_exporter._otlp_json import encode_spans_json, request_to_protobuf

__all__ = [
    "ExportCounters",
    "FluxLoopSpanExporter",
    "OfflineSpanExporter",
    "encode_spans_json",
    "iter_offline_files",
    "read_requests",
    "request_to_protobuf",
    "traces_endpoint",
]
