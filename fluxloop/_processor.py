"""FluxLoopSpanProcessor: a bounded queue and one background worker that exports spans in batches.

The calling thread only appends to a deque (``on_end`` is O(1), never blocks, never raises, does no I/O). The
worker exports a batch when ``batch_size`` spans are waiting or every ``flush_interval`` seconds, with
OpenTelemetry instrumentation suppressed so the exporter's own HTTP calls never become spans.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from fluxloop._process import HOOKS
from fluxloop._usage_seen import note_end
from fluxloop_otel_exporter._clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from fluxloop_otel_exporter import FluxLoopSpanExporter

_logger = logging.getLogger("fluxloop")

DROP_REPORT_INTERVAL = 60.0


def _takes_deadline(exporter: SpanExporter) -> TypeGuard[FluxLoopSpanExporter]:  # noqa: D401
    """Whether ``exporter`` is a FluxLoopSpanExporter, whose shutdown takes a deadline. Looked up in sys.modules so
    that importing this module does not import the exporter package (requests, protobuf): if that package is not
    loaded, no exporter can be one of its classes."""
    package = sys.modules.get("fluxloop_otel_exporter")
    return package is not None and isinstance(exporter, package.FluxLoopSpanExporter)


class _FlushRequest:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class FluxLoopSpanProcessor(SpanProcessor):
    """Batches finished, sampled spans to ``exporter`` from a background thread.

    Example::

        provider.add_span_processor(FluxLoopSpanProcessor(FluxLoopSpanExporter(endpoint=url)))

    When the queue holds ``max_queue_size`` spans, new spans are dropped and counted (see :meth:`stats`), with a
    warning at most once a minute. ``force_flush`` and ``shutdown`` honour their timeouts. After ``os.fork()``
    the child starts with an empty queue and its own worker: the parent's queued spans are never exported twice.
    ``clock`` (a test seam) times the flush interval, flush and shutdown deadlines and the drop warnings.
    """

    def __init__(self, exporter: SpanExporter, *, max_queue_size: int = 2048, batch_size: int = 512,
                 flush_interval: float = 5.0, clock: Clock = SYSTEM_CLOCK,
                 transform: Callable[[list[ReadableSpan]], list[ReadableSpan]] | None = None) -> None:
        self._exporter = exporter
        self._clock = clock
        self._transform = transform  # a stage run on each batch, on the worker, before the exporter (redaction)
        self._max_queue_size = max_queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._exported = 0
        self._failed = 0
        self._dropped = 0
        self._last_drop_report = float("-inf")
        self._dropped_since_report = 0
        self._shutdown = False
        self._init_worker_state()
        if _takes_deadline(exporter):  # its sender may make the worker wait for room while the queue is half empty
            exporter.sender.backlog_ok = self._has_room_to_wait
        # Start the worker now, not on the first span: starting a thread costs the calling thread about a
        # millisecond, which would show in that span's trace. (A forked child starts its own lazily.)
        self._ensure_worker()
        HOOKS.after_fork_in_child(self._after_fork_in_child)  # held weakly; guarded where fork does not exist

    # -- state that belongs to one process ------------------------------------------------------------------
    def _init_worker_state(self) -> None:
        self._drop_lock = threading.Lock()
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._flush_requests: collections.deque[_FlushRequest] = collections.deque()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._busy = False

    def _after_fork_in_child(self) -> None:
        # The parent's queued spans stay the parent's job: drop them here, start fresh (lazily) in the child.
        self._init_worker_state()

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None and not self._shutdown:
                self._worker = threading.Thread(target=self._run, name="fluxloop-span-processor", daemon=True)
                self._worker.start()

    # -- SpanProcessor ----------------------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        note_end(span)  # no double counting of tokens (see _usage_seen)
        if not span.context.trace_flags.sampled:
            return
        if self._shutdown:  # a span ending while configure() retires this pipeline: counted, never silently lost
            with self._drop_lock:
                self._dropped += 1
            return
        queue = self._queue
        if len(queue) >= self._max_queue_size:
            # Counted only (under a lock: `+=` from several threads can lose updates); the worker reports the
            # true count of a burst (see _run), the caller does no logging.
            with self._drop_lock:
                self._dropped += 1
                self._dropped_since_report += 1
            return
        queue.append(span)
        if self._worker is None:
            self._ensure_worker()
        # Event.set() takes a lock and notifies: only when the worker is not already woken.
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now, and wait for the exporter to deliver or spool it; False when
        ``timeout_millis`` passes first."""
        if self._shutdown:
            return True
        deadline = self._clock.monotonic() + max(timeout_millis, 0) / 1000.0
        if self._queue or self._busy:
            self._ensure_worker()
            request = _FlushRequest()
            self._flush_requests.append(request)
            self._wake.set()
            if not self._clock.wait(request.done, max(timeout_millis, 0) / 1000.0):
                return False
        if _takes_deadline(self._exporter):  # its sender may still hold batches
            return self._exporter.force_flush(int(max(0.0, deadline - self._clock.monotonic()) * 1000))
        return True

    def shutdown(self, timeout_millis: int = 30000) -> None:
        """Export what is queued within ``timeout_millis``, then stop the worker and the exporter. Idempotent."""
        if self._shutdown:
            return
        deadline = self._clock.monotonic() + max(timeout_millis, 0) / 1000.0
        flushed = self.force_flush(timeout_millis)
        self._shutdown = True
        self._wake.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - self._clock.monotonic()))
        if self._queue:
            # The worker did not finish within the budget: hand the rest to the exporter from here (it spools what
            # its sender cannot take, in milliseconds), so nothing queued is left uncounted.
            if not flushed:
                _logger.warning("fluxloop: shutdown timed out; spooling the %d span(s) still queued", len(self._queue))
            while self._queue:
                self._export_batch(self._queue)
        try:
            if _takes_deadline(self._exporter):  # it can wait for an export in flight: bound it
                self._exporter.shutdown(timeout_millis=max(0.0, deadline - self._clock.monotonic()) * 1000)
            else:
                self._exporter.shutdown()
        except Exception:  # pragma: no cover - exporter bug
            _logger.exception("fluxloop: exporter shutdown failed")
        while self._queue:  # a span appended by a thread that checked just before shutdown began: still spooled
            self._export_batch(self._queue)
        self._report_drops()
        self._log_summary()

    def _log_summary(self) -> None:
        """One line at shutdown (and so at exit) when any span was dropped or lost."""
        counts = self.stats()
        counters = getattr(self._exporter, "counters", None)
        if counters is not None:
            counts.update(exported=counters.exported, spooled=counters.spooled,
                          failed=max(counts["failed"], counters.failed))
        if counts["dropped"] or counts["failed"]:
            _logger.warning("fluxloop: spans this pipeline handled: %d exported, %d spooled, %d dropped (queue full), "
                            "%d failed", counts["exported"], counts.get("spooled", 0), counts["dropped"],
                            counts["failed"])

    def _has_room_to_wait(self) -> bool:
        return len(self._queue) < self._max_queue_size // 2 and not self._shutdown

    def _report_drops(self) -> None:
        # The count since the last report, read when reporting: at most once per DROP_REPORT_INTERVAL, by the
        # worker after a round (so a burst is reported with its true size), and once more at shutdown.
        self._last_drop_report = self._clock.monotonic()
        with self._drop_lock:
            count, self._dropped_since_report = self._dropped_since_report, 0
        if count:
            _logger.warning("fluxloop: span queue full (max_queue_size=%d): dropped %d span(s) (%d in all); "
                            "raise max_queue_size or lower the span rate", self._max_queue_size, count,
                            self._dropped)

    # -- inspection -------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters: queued now, exported, dropped (queue full), failed (exporter reported failure)."""
        counters = getattr(self._exporter, "counters", None)
        pending = getattr(counters, "pending", 0) if counters is not None else 0
        return {"queued": len(self._queue) + pending, "exported": self._exported, "dropped": self._dropped,
                "failed": self._failed}

    @property
    def exporter(self) -> SpanExporter:
        return self._exporter

    # -- worker -----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while True:
                timer = not self._clock.wait(self._wake, self._flush_interval)
                self._wake.clear()
                requests = []
                while self._flush_requests:
                    requests.append(self._flush_requests.popleft())
                # Woken because a batch filled: send full batches only, the rest waits for more spans or the
                # timer. On the timer, a flush or shutdown: send everything queued now.
                self._drain(full_batches_only=not (timer or requests or self._shutdown))
                for request in requests:
                    request.done.set()
                if (self._dropped_since_report
                        and self._clock.monotonic() - self._last_drop_report >= DROP_REPORT_INTERVAL):
                    self._report_drops()
                if self._shutdown:
                    self._drain()
                    return
        finally:
            detach(token)

    def _drain(self, full_batches_only: bool = False) -> None:
        # Export what is queued now, in batches; spans arriving meanwhile wait for the next round, so a
        # flush under a flat-out producer still ends.
        queue = self._queue
        target = len(queue)
        if full_batches_only:
            target -= target % self._batch_size
        sent = 0
        self._busy = True
        try:
            while queue and sent < target:
                self._export_batch(queue)
                sent += self._batch_size
        finally:
            self._busy = False

    def _export_batch(self, queue: collections.deque[ReadableSpan]) -> None:
        batch = []
        popleft = queue.popleft
        try:
            for _ in range(self._batch_size):
                batch.append(popleft())
        except IndexError:
            pass
        try:
            if self._transform is not None:
                batch = self._transform(batch)
            result = self._exporter.export(batch)
        except Exception:
            _logger.exception("fluxloop: exporter raised; %d span(s) lost", len(batch))
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._exported += len(batch)
        else:
            self._failed += len(batch)
