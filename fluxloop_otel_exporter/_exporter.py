"""FluxLoopSpanExporter: the export stages put together (encoder -> sender | spool), usable in any OTel pipeline."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from fluxloop_otel_exporter._clock import SYSTEM_CLOCK, Clock
from fluxloop_otel_exporter._forwarder import SpoolForwarder
from fluxloop_otel_exporter._http import OtlpHttpClient, redact_url
from fluxloop_otel_exporter._offline import DEFAULT_MAX_FILE_BYTES, OfflineSpanExporter
from fluxloop_otel_exporter._sender import CollectorSender
from fluxloop_otel_exporter._stages import Encoder, ExportCounters, ProtobufEncoder
from fluxloop_otel_exporter._transport import SessionTransport, Transport

__all__ = ["DEFAULT_ENDPOINT", "ExportCounters", "FluxLoopSpanExporter", "traces_endpoint"]

DEFAULT_ENDPOINT = "http://localhost:8000"
TRACES_PATH = "/v1/traces"

_logger = logging.getLogger("fluxloop.exporter")


def traces_endpoint(url: str) -> str:
    """The OTLP/HTTP traces URL for a collector ``url``: ``/v1/traces`` is appended unless already there.

    Example::

        traces_endpoint("http://localhost:4318/")          # 'http://localhost:4318/v1/traces'
        traces_endpoint("https://c.example/v1/traces")     # unchanged
    """
    base = url.strip() if isinstance(url, str) else ""
    if not base:
        raise ValueError(f"collector endpoint must be a non-empty URL, got {url!r}")
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class FluxLoopSpanExporter(SpanExporter):
    """Sends spans to a FluxLoop/OTLP collector over OTLP/HTTP protobuf, spooling to disk what it cannot deliver.

    Example::

        provider.add_span_processor(BatchSpanProcessor(FluxLoopSpanExporter("http://localhost:4318", api_key=k)))

    ``export()`` encodes the batch and hands it to the sender, a thread of its own that posts it with FluxLoop's
    OTLP/HTTP client (retries on 429/502/503/504 with backoff and jitter, ``Retry-After`` honoured, ``timeout``
    bounding the whole attempt, connect to last byte). When the sender already holds a batch in flight and one
    waiting, or the collector is held for down, the batch goes straight to the spool instead: a slow, hung,
    trickling or resetting collector never makes the caller's queue fill. A batch the collector does not accept is
    spooled too. A 413 splits the batch; a single span still too large is sent with its largest attributes cut.

    Store and forward: spooled batches are OTLP/JSON lines in ``offline_dir`` (see :class:`OfflineSpanExporter`)
    when ``offline_enabled``; with ``use_collector=False`` every batch goes to the files only. After a failed
    delivery the collector is held for down: batches go straight to disk (or, with offline storage off, are
    counted as failed) and one batch probes it every ``probe_interval`` seconds. One warning is logged when the
    collector becomes unreachable and one info when it is back. With ``forward_spool`` (on by default), spooled
    spans are then forwarded in the background at a bounded rate (see :class:`SpoolForwarder`), exactly once
    together with ``fluxloop upload``, which sends them on demand.

    ``export()`` returns SUCCESS when the batch was handed to the sender or spooled, FAILURE when it was lost; it
    never raises. ``force_flush`` waits for the sender. Counts are in :attr:`counters`. ``api_key`` is sent as
    ``Authorization: Bearer <api_key>`` and never shown in ``repr`` or logs; neither is a password in the URL.
    Seams for tests: ``transport`` (the network), ``clock`` (time); ``session`` (a ``requests.Session``) is still
    accepted and used as the transport.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        use_collector: bool = True,
        offline_enabled: bool = True,
        offline_dir: str | os.PathLike[str] = "./fluxloop_artifacts",
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        probe_interval: float = 30.0,
        compression: Compression | str = Compression.Gzip,
        session: Any = None,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        encoder: Encoder | None = None,
        forward_spool: bool = True,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(probe_interval, bool) or not isinstance(probe_interval, (int, float)) or probe_interval < 0:
            raise ValueError(f"probe_interval must be a number of seconds >= 0, got {probe_interval!r}")
        self._url = traces_endpoint(endpoint)
        self._timeout = float(timeout)
        self._use_collector = bool(use_collector)
        self._clock = clock
        request_headers = _request_headers(api_key, headers)
        compression_name = _compression(compression).value
        if transport is None and session is not None:
            transport = SessionTransport(session)
        self._offline = (
            OfflineSpanExporter(offline_dir, max_file_bytes=max_file_bytes) if offline_enabled else None
        )
        self.counters = ExportCounters()
        self._encoder: Encoder = encoder if encoder is not None else ProtobufEncoder()

        def new_client() -> OtlpHttpClient:
            return OtlpHttpClient(self._url, headers=request_headers, compression=compression_name,
                                  transport=transport, clock=clock, retry_refused=offline_enabled is False)

        self._sender = CollectorSender(
            new_client, self._encoder, self._offline, self.counters, timeout=self._timeout,
            probe_interval=float(probe_interval), clock=clock,
            spool_place=str(self._offline.directory.resolve()) if self._offline is not None else "",
        )
        self._forwarder: SpoolForwarder | None = None
        if forward_spool and self._use_collector and self._offline is not None:
            self._forwarder = SpoolForwarder(self._offline.directory, new_client, timeout=self._timeout)
            self._sender.on_up = self._forwarder.kick
        self._lock = threading.Lock()
        self._shutdown = False
        weak_reinit = weakref.WeakMethod(self._after_fork_in_child)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: (m := weak_reinit()) and m())

    @property
    def endpoint(self) -> str:
        """The full traces URL batches are posted to."""
        return self._url

    @property
    def offline_exporter(self) -> OfflineSpanExporter | None:
        """The file exporter used for spooling (and for everything when ``use_collector`` is off)."""
        return self._offline

    @property
    def collector_available(self) -> bool:
        """False while the circuit breaker holds the collector for down."""
        return self._sender.collector_available

    @property
    def forwarder(self) -> SpoolForwarder | None:
        """The background forwarder of spooled spans (None when ``forward_spool`` is off or there is no spool)."""
        return self._forwarder

    @property
    def sender(self) -> CollectorSender:
        """The sender stage (its ``on_up`` hook starts forwarding when the collector is back)."""
        return self._sender

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Hand ``spans`` to the sender, else spool them; SUCCESS unless they were lost. Never raises."""
        count = len(spans)
        if not count:
            return SpanExportResult.SUCCESS
        try:
            if not self._use_collector:  # files only
                if self._offline is not None and self._offline.store(spans):
                    self.counters.add(exported=count)
                    return SpanExportResult.SUCCESS
                self.counters.add(failed=count)
                return SpanExportResult.FAILURE
            # Encode for the sender only when it may take the batch: a batch bound for the spool is encoded once.
            if not self._shutdown and self._sender.may_take():
                if self._sender.offer(spans, self._encoder.encode(spans)):
                    return SpanExportResult.SUCCESS
            return self._spool(spans, count)
        except Exception:  # never let a bug here reach the export worker
            _logger.exception("fluxloop: unexpected error while exporting %d spans", count)
            self.counters.add(failed=count)
            return SpanExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30000) -> None:
        """Stop: spool what waits, give the request in flight most of the budget, then spool it too. Idempotent.

        Batches exported after shutdown (a processor's last drain) are still spooled, not lost.
        """
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        budget = max(timeout_millis, 0) / 1000
        if self._forwarder is not None:
            self._forwarder.shutdown(budget / 10)  # its request in flight is cut off: the lines stay on disk
        self._sender.shutdown(budget)
        if self._offline is not None:
            self._offline.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every batch handed to the sender was delivered or spooled; False on timeout."""
        return self._sender.flush(max(timeout_millis, 0) / 1000)

    def __repr__(self) -> str:
        offline = str(self._offline.directory) if self._offline is not None else None
        return (f"FluxLoopSpanExporter(endpoint={redact_url(self._url)!r}, use_collector={self._use_collector}, "
                f"offline_dir={offline!r})")

    # --- internals ---

    def _after_fork_in_child(self) -> None:
        # The child must not share the parent's locks, thread or connections: fresh ones, zeroed counts.
        self.counters._reset_after_fork()
        self._lock = threading.Lock()
        self._sender.after_fork_in_child()
        if self._forwarder is not None:
            self._forwarder.after_fork_in_child()

    def _spool(self, spans: Sequence[ReadableSpan], count: int) -> SpanExportResult:
        if self._offline is not None and self._offline.store(spans):
            self.counters.add(spooled=count)
            return SpanExportResult.SUCCESS
        self.counters.add(failed=count)
        return SpanExportResult.FAILURE


def _request_headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    merged = {str(k): str(v) for k, v in (headers or {}).items()}
    if api_key:
        merged = {k: v for k, v in merged.items() if k.lower() != "authorization"}
        merged["Authorization"] = f"Bearer {api_key}"
    return merged


def _compression(value: Compression | str) -> Compression:
    if isinstance(value, Compression):
        return value
    try:
        return Compression(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(c.value for c in Compression)
        raise ValueError(f"compression must be one of {choices}, got {value!r}") from None
