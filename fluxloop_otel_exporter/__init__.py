"""FluxLoop's OpenTelemetry span exporters, usable in any OpenTelemetry SDK pipeline (no ``fluxloop`` needed).

Add FluxLoop to an application that already has a ``TracerProvider`` (``provider``)::

    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from fluxloop_otel_exporter import FluxLoopSpanExporter

    exporter = FluxLoopSpanExporter(endpoint="http://localhost:4318", api_key="...")
    provider.add_span_processor(BatchSpanProcessor(exporter))

Spans go to ``<endpoint>/v1/traces`` as OTLP/HTTP protobuf, by FluxLoop's own client on a sender thread; what the
collector cannot take in time is spooled as OTLP/JSON lines under ``./fluxloop_artifacts``, and forwarded in the
background once the collector is back (or sent with ``fluxloop upload``). ``OfflineSpanExporter`` writes those
files on its own; ``iter_offline_files`` and ``read_requests`` read them back (the typed reader is
``fluxloop_otel_exporter._spool_format``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluxloop_otel_exporter._exporter import ExportCounters, FluxLoopSpanExporter, traces_endpoint
    from fluxloop_otel_exporter._offline import OfflineSpanExporter, iter_offline_files, read_requests
    from fluxloop_otel_exporter._otlp_json import encode_spans_json
    from fluxloop_otel_exporter._otlp_json_proto import request_to_protobuf

# Public name -> the private module defining it. Loaded on first use (PEP 562), so importing a light module of
# this package (the clock seam) does not pull in requests and protobuf.
_EXPORTS = {
    "ExportCounters": "_exporter",
    "FluxLoopSpanExporter": "_exporter",
    "traces_endpoint": "_exporter",
    "OfflineSpanExporter": "_offline",
    "iter_offline_files": "_offline",
    "read_requests": "_offline",
    "encode_spans_json": "_otlp_json",
    "request_to_protobuf": "_otlp_json_proto",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
