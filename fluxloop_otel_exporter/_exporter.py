"""FluxLoopSpanExporter: OTLP/HTTP to a collector, with store-and-forward to offline files and a circuit breaker."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from fluxloop_otel_exporter._clock import SYSTEM_CLOCK, Clock
from fluxloop_otel_exporter._offline import DEFAULT_MAX_FILE_BYTES, OfflineSpanExporter
from fluxloop_otel_exporter._session import CollectorSession, describe_exception
from fluxloop_otel_exporter._stock_logs import describe_failure, stock_logs_captured

if TYPE_CHECKING:
    import requests

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


class ExportCounters:
    """Span counts of one exporter, updated thread-safely.

    ``exported``: accepted by the collector (or written to files when the collector is not used);
    ``spooled``: written to files because the collector could not take them; ``failed``: lost.
    """

    __slots__ = ("_lock", "exported", "failed", "spooled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exported = 0
        self.spooled = 0
        self.failed = 0

    def add(self, *, exported: int = 0, spooled: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.exported += exported
            self.spooled += spooled
            self.failed += failed

    def snapshot(self) -> dict[str, int]:
        """The three counts, read together."""
        with self._lock:
            return {"exported": self.exported, "spooled": self.spooled, "failed": self.failed}

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self.exported = self.spooled = self.failed = 0

    def __repr__(self) -> str:
        return f"ExportCounters({', '.join(f'{k}={v}' for k, v in self.snapshot().items())})"


class FluxLoopSpanExporter(SpanExporter):
    """Sends spans to a FluxLoop/OTLP collector over OTLP/HTTP protobuf, spooling to disk what it cannot deliver.

    Example::

        provider.add_span_processor(BatchSpanProcessor(FluxLoopSpanExporter("http://localhost:4318", api_key=k)))

    Delivery is done by a held stock ``OTLPSpanExporter`` (retries on 429/502/503/504 and connection errors with
    backoff and jitter, ``Retry-After`` honoured, one overall ``timeout`` per batch, retry waits cut short by
    ``shutdown()``). Its ``OTEL_EXPORTER_OTLP_*`` header, certificate and credential environment settings apply.
    With offline storage on, a refused connection (nothing listening) is not retried: the batch is spooled at
    once. ``compression`` (``gzip`` by default) is applied by FluxLoop's own session at level 1, which costs the
    export worker about a quarter of the stock exporter's level 9 for bodies a few percent larger; the request is
    ordinary gzip (``Content-Encoding: gzip``). ``session`` replaces the ``requests.Session`` used (and both rules:
    the stock exporter then compresses, at its level); a forked child keeps using it.

    Store and forward: a batch the collector does not accept is appended to OTLP/JSON files in ``offline_dir``
    (see :class:`OfflineSpanExporter`) when ``offline_enabled``; with ``use_collector=False`` every batch goes to
    the files only. After a failed delivery the collector is considered down: batches go straight to disk
    (or, with offline storage off, are dropped and counted as failed) without a network attempt, and one batch
    is tried as a probe every ``probe_interval`` seconds. One warning is logged when the collector becomes
    unreachable and one info when it is back. Spooled spans are **not** sent automatically when the collector
    comes back: send them with ``fluxloop upload``.

    ``export()`` returns SUCCESS when the batch was delivered or spooled, FAILURE when it was lost; it never
    raises. Counts are in :attr:`counters`. ``api_key`` is sent as ``Authorization: Bearer <api_key>`` and never
    shown in ``repr`` or logs. ``clock`` (a test seam) times the probes and the shutdown budget.
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
        session: requests.Session | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(probe_interval, bool) or not isinstance(probe_interval, (int, float)) or probe_interval < 0:
            raise ValueError(f"probe_interval must be a number of seconds >= 0, got {probe_interval!r}")
        self._url = traces_endpoint(endpoint)
        self._timeout = float(timeout)
        self._use_collector = bool(use_collector)
        self._probe_interval = float(probe_interval)
        self._session = session
        self._clock = clock
        self._otlp_options: dict[str, Any] = {
            "endpoint": self._url,
            "headers": _request_headers(api_key, headers),
            "timeout": self._timeout,
            "compression": _compression(compression),
        }
        self._offline = (
            OfflineSpanExporter(offline_dir, max_file_bytes=max_file_bytes) if offline_enabled else None
        )
        self.counters = ExportCounters()
        self._shutdown = False
        self._init_runtime_state()
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
        return not self._down

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Deliver ``spans`` to the collector, else spool them; SUCCESS unless they were lost. Never raises."""
        count = len(spans)
        if not count:
            return SpanExportResult.SUCCESS
        with self._state_lock:
            if self._shutdown:
                self.counters.add(failed=count)
                return SpanExportResult.FAILURE
            self._in_flight += 1
        try:
            return self._export(spans, count)
        except Exception:  # never let a bug here reach the export worker
            _logger.exception("fluxloop: unexpected error while exporting %d spans", count)
            self.counters.add(failed=count)
            return SpanExportResult.FAILURE
        finally:
            with self._state_lock:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.notify_all()

    def shutdown(self, timeout_millis: float = 30000) -> None:
        """Stop: cut retry waits short, let running exports spool their batch (within the timeout), close files.

        Idempotent.
        """
        with self._state_lock:
            if self._shutdown:
                return
            self._shutdown = True
            otlp = self._otlp
        deadline = self._clock.monotonic() + max(timeout_millis, 0) / 1000
        if otlp is not None:
            with stock_logs_captured():
                otlp.shutdown()
        with self._state_lock:
            while self._in_flight and (remaining := deadline - self._clock.monotonic()) > 0:
                self._clock.wait(self._idle, remaining)
        if self._offline is not None:
            self._offline.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: every export call finishes before it returns."""
        return True

    def __repr__(self) -> str:
        offline = str(self._offline.directory) if self._offline is not None else None
        return (f"FluxLoopSpanExporter(endpoint={self._url!r}, use_collector={self._use_collector}, "
                f"offline_dir={offline!r})")

    # --- internals ---

    def _init_runtime_state(self) -> None:
        self._state_lock = threading.Lock()
        self._idle = threading.Condition(self._state_lock)
        self._in_flight = 0
        self._down = False
        self._next_probe = 0.0
        self._spooled_while_down = 0
        self._otlp: OTLPSpanExporter | None = None
        self._otlp_stale = False
        self._collector_session: CollectorSession | None = None
        if self._use_collector:
            self._otlp = self._new_stock_exporter()

    def _new_stock_exporter(self) -> OTLPSpanExporter:
        options = dict(self._otlp_options)
        session = self._session
        if session is None:
            # With a spool, a refused batch is spooled at once instead of retried until the deadline. The body is
            # compressed by the session, at level 1, rather than by the stock exporter at level 9 (see _session).
            compression = options["compression"]
            session = CollectorSession(
                fail_fast_on_refused=self._offline is not None,
                content_encoding=None if compression is Compression.NoCompression else compression.value,
            )
            options["compression"] = Compression.NoCompression
        self._collector_session = session if isinstance(session, CollectorSession) else None
        return OTLPSpanExporter(**options, session=session)

    def _after_fork_in_child(self) -> None:
        # The child must not share the parent's locks (possibly held by a thread that does not exist in the
        # child) nor its pooled HTTP connections: new locks and zeroed counts now, a new stock exporter at the
        # first export (building it here could wait on a lock the parent held at fork time). The parent's
        # exporter is left untouched; the offline exporter reopens a file of its own by itself.
        self.counters._reset_after_fork()
        self._state_lock = threading.Lock()
        self._idle = threading.Condition(self._state_lock)
        self._in_flight = 0
        self._otlp = None
        self._otlp_stale = self._use_collector

    def _collector(self) -> OTLPSpanExporter | None:
        """The stock exporter (a new one in a forked child); None once shut down."""
        if not self._otlp_stale:
            return self._otlp
        with self._state_lock:
            if self._otlp_stale and not self._shutdown:
                self._otlp = self._new_stock_exporter()
                self._otlp_stale = False
            return self._otlp

    def _export(self, spans: Sequence[ReadableSpan], count: int) -> SpanExportResult:
        if not self._use_collector:  # files only
            if self._offline is not None and self._offline.export(spans) is SpanExportResult.SUCCESS:
                self.counters.add(exported=count)
                return SpanExportResult.SUCCESS
            self.counters.add(failed=count)
            return SpanExportResult.FAILURE

        otlp = self._collector()
        if otlp is not None and self._claim_attempt():
            session = self._collector_session
            if session is not None:
                session.take_outcome()  # forget an earlier call's outcome
            with stock_logs_captured() as records:
                try:
                    result = otlp.export(spans)
                    reason = None
                except Exception as error:  # an older stock exporter may let a transport error through
                    result, reason = SpanExportResult.FAILURE, describe_exception(error)
            if result is SpanExportResult.SUCCESS:
                self.counters.add(exported=count)
                self._mark_up()
                return SpanExportResult.SUCCESS
            if reason is None and session is not None:
                reason = session.take_outcome()
            self._mark_down(reason or describe_failure(records))
        return self._spool(spans, count)

    def _spool(self, spans: Sequence[ReadableSpan], count: int) -> SpanExportResult:
        if self._offline is not None and self._offline.export(spans) is SpanExportResult.SUCCESS:
            self.counters.add(spooled=count)
            with self._state_lock:
                self._spooled_while_down += count
            return SpanExportResult.SUCCESS
        self.counters.add(failed=count)
        return SpanExportResult.FAILURE

    def _claim_attempt(self) -> bool:
        """True when this batch may go to the network: the collector is up, or it is time for one probe."""
        with self._state_lock:
            if not self._down:
                return True
            now = self._clock.monotonic()
            if now < self._next_probe or self._shutdown:
                return False
            self._next_probe = now + self._probe_interval  # concurrent batches spool while this one probes
            return True

    def _mark_down(self, reason: str) -> None:
        with self._state_lock:
            was_down, self._down = self._down, True
            self._next_probe = self._clock.monotonic() + self._probe_interval
            if was_down or self._shutdown:
                return
            self._spooled_while_down = 0
        interval = f"{self._probe_interval:g}"
        if self._offline is not None:
            _logger.warning(
                "fluxloop: collector at %s unreachable (%s); spooling spans to %s; retrying every %s s; "
                "send spooled spans with `fluxloop upload`",
                self._url, reason, self._offline.directory.resolve(), interval,
            )
        else:
            _logger.warning(
                "fluxloop: collector at %s unreachable (%s); offline storage is off, so spans are dropped "
                "until it is back; retrying every %s s",
                self._url, reason, interval,
            )

    def _mark_up(self) -> None:
        with self._state_lock:
            if not self._down:
                return
            self._down = False
            spooled = self._spooled_while_down
        if self._offline is not None and spooled:
            _logger.info(
                "fluxloop: collector at %s reachable again; %d spans were spooled to %s meanwhile "
                "(send them with `fluxloop upload`)",
                self._url, spooled, self._offline.directory.resolve(),
            )
        else:
            _logger.info("fluxloop: collector at %s reachable again", self._url)


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
