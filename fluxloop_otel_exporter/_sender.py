"""The sender stage: its own thread posts encoded batches to the collector; what it cannot take goes to the spool.

:meth:`CollectorSender.offer` never blocks: it takes a batch only while the sender has room (one batch in flight,
``max_pending`` in all) and the collector is not held for down, else the caller spools the batch itself. So a
slow, hung, trickling or resetting collector costs at most ``max_pending`` batches of latency, never a full queue.
A 413 splits the batch and sends the halves; a single span still too large is sent with its largest attributes
cut (and marked). A circuit breaker holds the collector for down after a failure and lets one batch probe it every
``probe_interval`` seconds; ``on_up`` is called when it answers again (the forwarder starts then).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Sequence

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan

from fluxloop_otel_exporter._clock import SYSTEM_CLOCK, Clock
from fluxloop_otel_exporter._http import Outcome, OtlpHttpClient, redact_url
from fluxloop_otel_exporter._stages import Encoder, ExportCounters, Spool, cut_largest_attributes

__all__ = ["CollectorSender"]

_logger = logging.getLogger("fluxloop.exporter")
_ABORT_SHARE = 0.8
_STORE_GRACE = 0.5  # how long shutdown waits, past its budget, for a spool write the sender thread is doing
_RECHECK = 0.01  # seconds between looks at the batcher's backlog while waiting for the sender
  # of a shutdown budget waited for the request in flight before its connection is closed


class _Batch:
    __slots__ = ("body", "settled", "spans")

    def __init__(self, spans: Sequence[ReadableSpan], body: bytes) -> None:
        self.spans = spans
        self.body = body
        self.settled = False  # counted (delivered, spooled or failed) by the sender or by shutdown


class CollectorSender:
    """Delivers batches on a thread of its own, within ``timeout`` per batch; spools what fails."""

    def __init__(self, client_factory: Callable[[], OtlpHttpClient], encoder: Encoder, spool: Spool | None,
                 counters: ExportCounters, *, timeout: float, probe_interval: float, spool_place: str = "",
                 max_pending: int = 2, clock: Clock = SYSTEM_CLOCK, on_up: Callable[[], None] | None = None) -> None:
        self._client_factory = client_factory
        self._encoder = encoder
        self._spool = spool
        self._counters = counters
        self._timeout = timeout
        self._probe_interval = probe_interval
        self._spool_place = spool_place
        self._max_pending = max_pending
        self._clock = clock
        self.on_up = on_up
        #: How long a request may be in flight before the batches behind it go to disk instead of waiting.
        self.spill_after = min(max(timeout / 4, 0.05), 1.0)
        #: Whether the batcher can afford to wait for the sender (set by a processor that knows its queue).
        self.backlog_ok: Callable[[], bool] | None = None
        self._stopping = False
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._inbox: collections.deque[_Batch] = collections.deque()
        self._in_flight: _Batch | None = None
        self._in_flight_since: float | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._client = self._client_factory()
        self._down = False
        self._delivered_once = False
        self._next_probe = 0.0
        self._spooled_while_down = 0

    def after_fork_in_child(self) -> None:
        """The parent's batches stay the parent's: start empty, with a client (and connections) of our own."""
        self._init_process_state()

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def max_pending(self) -> int:
        """How many batches the sender holds at most (waiting or in flight), beside the batcher's queue."""
        return self._max_pending

    @property
    def collector_available(self) -> bool:
        return not self._down

    def may_take(self) -> bool:
        """A cheap look before encoding: False when :meth:`offer` would refuse now (the caller spools at once)."""
        if self._stopping or self._pid != os.getpid():
            return False
        if self._down and self._clock.monotonic() < self._next_probe:
            return False
        if len(self._inbox) + (self._in_flight is not None) < self._max_pending:
            return True
        if self.backlog_ok is not None:
            return self.backlog_ok()
        started = self._in_flight_since
        return started is None or self._clock.monotonic() - started < self.spill_after

    def offer(self, spans: Sequence[ReadableSpan], body: bytes) -> bool:
        """Queue ``body`` for delivery; False when the sender cannot take it in time (the caller spools it).

        While the sender is full, the caller waits for room as long as ``backlog_ok()`` holds (FluxLoop's batcher:
        its queue is less than half full) or, without it (another processor), while the request in flight is
        younger than ``spill_after`` seconds: a collector that answers keeps getting everything, one that does not
        costs the caller's queue nothing.
        """
        with self._lock:
            while True:
                if self._stopping or self._pid != os.getpid():
                    return False
                if self._down:
                    now = self._clock.monotonic()
                    if now < self._next_probe:
                        return False
                if len(self._inbox) + (self._in_flight is not None) < self._max_pending:
                    break
                if self.backlog_ok is not None:  # the batcher says how long it can wait: its queue's fill
                    if not self.backlog_ok():
                        return False
                elif (started := self._in_flight_since) is not None and \
                        self._clock.monotonic() - started >= self.spill_after:
                    return False
                self._clock.wait(self._changed, _RECHECK)
            if self._down:  # this batch probes; the next ones spool until it answers
                self._next_probe = self._clock.monotonic() + self._probe_interval
            self._inbox.append(_Batch(spans, body))
            self._counters.add(pending=len(spans))
            run_here = False
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="fluxloop-sender", daemon=True)
                try:
                    thread.start()
                except RuntimeError:
                    # Python 3.12+ starts no thread once the interpreter is finalizing: an exit hook's first
                    # export. The calling thread (the exit hook's) sends what waits instead.
                    run_here = True
                else:
                    self._thread = thread
            self._changed.notify_all()
        if run_here:
            self._run(until_idle=True)
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every batch taken was delivered or spooled; False when ``timeout`` passes first."""
        deadline = self._clock.monotonic() + max(timeout, 0.0)
        with self._lock:
            while self._inbox or self._in_flight is not None:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    return False
                self._clock.wait(self._changed, remaining)
        return True

    def shutdown(self, timeout: float) -> None:
        """Stop: no retry waits from now on; what the sender holds gets its one attempt within most of ``timeout``,
        then the connection is cut and whatever is left is spooled. Idempotent."""
        deadline = self._clock.monotonic() + max(timeout, 0.0)
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        self._client.interrupt()
        start = self._clock.monotonic()
        if not self._wait_idle(start + max(0.0, deadline - start) * _ABORT_SHARE):
            with self._lock:
                waiting = list(self._inbox)
                self._inbox.clear()
                for batch in waiting:
                    batch.settled = True
            for batch in waiting:
                self._store(batch.spans, pending=len(batch.spans))
            self._client.abort()  # the request in flight fails at once, and the sender thread spools it
            if not self._wait_idle(deadline):
                with self._lock:
                    stuck = self._in_flight
                    claim = stuck is not None and not stuck.settled
                    if stuck is not None:
                        stuck.settled = True
                if claim and stuck is not None:
                    self._store(stuck.spans, pending=len(stuck.spans))
                elif stuck is not None:  # the sender thread is writing it to disk right now: milliseconds
                    self._wait_idle(self._clock.monotonic() + _STORE_GRACE)
        self._client.close()

    # -- the sender's thread ----------------------------------------------------------------------------------
    def _wait_idle(self, until: float) -> bool:
        with self._lock:
            while self._in_flight is not None or self._inbox:
                remaining = until - self._clock.monotonic()
                if remaining <= 0:
                    return False
                self._clock.wait(self._changed, remaining)
        return True

    def _run(self, until_idle: bool = False) -> None:
        """Send batches until stopped (the sender's thread), or until none waits (``until_idle``)."""
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while True:
                with self._lock:
                    while not self._inbox and not self._stopping:
                        if until_idle:
                            return
                        self._changed.wait()
                    if not self._inbox:
                        return
                    batch = self._in_flight = self._inbox.popleft()
                    self._in_flight_since = self._clock.monotonic()
                try:
                    self._deliver(batch)
                except Exception:  # a bug here must not stop the sender: spool what it held
                    _logger.exception("fluxloop: unexpected error while sending %d spans", len(batch.spans))
                    self._settle(batch, 0, batch.spans)
                finally:
                    with self._lock:
                        self._in_flight = None
                        self._in_flight_since = None
                        self._changed.notify_all()
        finally:
            detach(token)

    def _deliver(self, batch: _Batch) -> None:
        deadline = self._clock.monotonic() + self._timeout
        result = self._client.send(batch.body, self._timeout, deadline=deadline)
        if result.outcome is Outcome.DELIVERED:
            self._mark_up()
            self._settle(batch, len(batch.spans), ())
        elif result.outcome is Outcome.TOO_LARGE:
            delivered, leftover = self._send_split(batch.spans, deadline)
            self._settle(batch, delivered, leftover)
        else:
            self._mark_down(result.reason)
            self._settle(batch, 0, batch.spans)

    def _send_split(self, spans: Sequence[ReadableSpan], deadline: float) -> tuple[int, list[ReadableSpan]]:
        """Send ``spans`` the collector found too large as halves (recursively); (delivered, left over)."""
        if len(spans) == 1:
            cut = cut_largest_attributes(spans[0], budget=0)
            result = self._send(cut, deadline)
            if result is Outcome.DELIVERED:
                _logger.warning("fluxloop: span %r was too large for the collector; sent with its largest "
                                "attributes cut (listed in its fluxloop.truncated_attributes)", spans[0].name)
                return 1, []
            if result is Outcome.FAILED:
                return 0, [cut]
            self._counters.add(failed=1)
            _logger.warning("fluxloop: span %r is too large for the collector even with its attributes cut; "
                            "not delivered (counted in failed)", spans[0].name)
            return 0, []
        half = len(spans) // 2
        delivered, leftover = 0, []
        for part in (spans[:half], spans[half:]):
            outcome = self._send(part, deadline)
            if outcome is Outcome.DELIVERED:
                delivered += len(part)
            elif outcome is Outcome.TOO_LARGE:
                more, rest = self._send_split(part, deadline)
                delivered += more
                leftover += rest
            else:
                leftover += part
        return delivered, leftover

    def _send(self, spans: Sequence[ReadableSpan] | ReadableSpan, deadline: float) -> Outcome:
        part = [spans] if isinstance(spans, ReadableSpan) else list(spans)
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            return Outcome.FAILED
        result = self._client.send(self._encoder.encode(part), remaining, deadline=deadline)
        if result.outcome is Outcome.FAILED or result.outcome is Outcome.REJECTED:
            self._mark_down(result.reason)
        return result.outcome

    def _settle(self, batch: _Batch, delivered: int, leftover: Sequence[ReadableSpan]) -> None:
        with self._lock:
            if batch.settled:  # shutdown spooled it already (its budget ran out first)
                return
            batch.settled = True
        # Spans neither delivered nor left over were counted failed by _send_split (refused even when cut).
        self._counters.add(exported=delivered, pending=-len(batch.spans))
        if leftover:
            self._store(leftover, pending=0)

    def _store(self, spans: Sequence[ReadableSpan], *, pending: int) -> None:
        stored = self._spool is not None and self._spool.store(spans)
        self._counters.add(spooled=len(spans) if stored else 0, failed=0 if stored else len(spans),
                           pending=-pending)
        if stored:
            with self._lock:
                self._spooled_while_down += len(spans)

    # -- circuit breaker ----------------------------------------------------------------------------------------
    def _mark_down(self, reason: str) -> None:
        with self._lock:
            was_down, self._down = self._down, True
            self._next_probe = self._clock.monotonic() + self._probe_interval
            if was_down or self._stopping:
                return
            self._spooled_while_down = 0
        url, interval = redact_url(self.url), f"{self._probe_interval:g}"
        if self._spool is not None:
            _logger.warning("fluxloop: collector at %s unreachable (%s); spooling spans to %s; retrying every %s s; "
                            "%s", url, reason, self._spool_place, interval,
                            "spooled spans are forwarded when it is back, or sent by `fluxloop upload`"
                            if self.on_up is not None else "send spooled spans with `fluxloop upload`")
        else:
            _logger.warning("fluxloop: collector at %s unreachable (%s); offline storage is off, so spans are "
                            "dropped until it is back; retrying every %s s", url, reason, interval)

    def _mark_up(self) -> None:
        with self._lock:
            first, self._delivered_once = not self._delivered_once, True
            was_down, self._down = self._down, False
            spooled = self._spooled_while_down
        if not was_down:
            if first:  # the collector answers: forward what earlier runs may have spooled
                self._call_on_up()
            return
        if spooled:
            _logger.info("fluxloop: collector at %s reachable again; %d spans were spooled to %s meanwhile (%s)",
                         redact_url(self.url), spooled, self._spool_place,
                         "being forwarded in the background" if self.on_up is not None
                         else "send them with `fluxloop upload`")
        else:
            _logger.info("fluxloop: collector at %s reachable again", redact_url(self.url))
        self._call_on_up()

    def _call_on_up(self) -> None:
        if self.on_up is not None:
            try:
                self.on_up()
            except Exception:  # pragma: no cover - forwarder bug
                _logger.exception("fluxloop: could not start forwarding spooled spans")
