"""The forwarder: spooled spans sent in the background, at a bounded rate, once the collector answers again.

Started by the sender when a delivery succeeds after an outage (and at the first delivery of the process, for
spools left by earlier runs). It runs the same spool delivery as ``fluxloop upload`` under the same folder lock,
so the two together send each line exactly once; when an upload holds the lock, the forwarder leaves the folder to
it. A failure that may pass stops forwarding until the collector is back again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from fluxloop_otel_exporter._delivery import FolderLock, SpoolDelivery
from fluxloop_otel_exporter._http import OtlpHttpClient

__all__ = ["DEFAULT_RATE", "SpoolForwarder"]

DEFAULT_RATE = 5_000.0  # spans per second: well below what a collector takes, a small share of the CPU

_logger = logging.getLogger("fluxloop.exporter")


class SpoolForwarder:
    """Forwards the spool folder ``directory`` with clients from ``client_factory``, at most ``rate`` spans/s."""

    def __init__(self, directory: Path, client_factory: Callable[[], OtlpHttpClient], *, timeout: float,
                 batch_size: int = 512, rate: float = DEFAULT_RATE) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of spans per second, got {rate!r}")
        self.directory = directory
        self._client_factory = client_factory
        self._timeout = timeout
        self._batch_size = batch_size
        self._rate = rate
        self.forwarded = 0  # spans delivered by this forwarder (reported in logs; not in the exporter's counts)
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._again = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: OtlpHttpClient | None = None
        self._pid = os.getpid()

    def after_fork_in_child(self) -> None:
        self._init_process_state()

    def kick(self) -> None:
        """Forward what the folder holds now (a run already going picks this up when it ends). Never blocks."""
        with self._lock:
            if self._stop.is_set() or self._pid != os.getpid():
                return
            self._again.set()
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="fluxloop-forwarder", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # the interpreter is finalizing (3.12+): the spool stays on disk for later
                    return
                self._thread = thread

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no forwarding runs (tests, shutdown); False when ``timeout`` passes first."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def shutdown(self, timeout: float) -> None:
        """Stop forwarding: the pace wait and the request in flight end at once. Idempotent."""
        with self._lock:
            self._stop.set()
            client = self._client
        if client is not None:
            client.abort()
        self.wait_idle(max(timeout, 0.0))

    def _run(self) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while self._again.is_set() and not self._stop.is_set():
                self._again.clear()
                self._forward_once()
        except Exception:  # pragma: no cover - a bug here must not reach the application
            _logger.exception("fluxloop: forwarding the spool failed")
        finally:
            detach(token)

    def _forward_once(self) -> None:
        if not any(self.directory.glob("*.jsonl")):
            return
        lock = FolderLock(self.directory)
        try:
            if not lock.acquire():
                _logger.debug("fluxloop: spool %s is being uploaded by another process; not forwarding", self.directory)
                return
        except OSError as error:
            _logger.debug("fluxloop: cannot lock spool %s: %s", self.directory, error)
            return
        client = self._client_factory()
        with self._lock:
            self._client = client
        if self._stop.is_set():
            client.abort()
        try:
            delivery = SpoolDelivery(self.directory, client, timeout=self._timeout, batch_size=self._batch_size,
                                     warn=self._warn, pace=self._pace)
            report = delivery.run()
        finally:
            lock.release()
            client.close()
            with self._lock:
                self._client = None
        self.forwarded += report.spans
        if report.spans or report.quarantined_lines:
            _logger.info("fluxloop: forwarded %d spooled spans from %s to %s%s", report.spans, self.directory,
                         client.url_shown, f"; {report.quarantined_lines} refused lines set aside in quarantine/"
                         if report.quarantined_lines else "")

    def _pace(self, spans: int) -> bool:
        return not self._stop.wait(spans / self._rate)

    def _warn(self, message: str) -> None:
        level = logging.DEBUG if message.startswith("note:") else logging.WARNING
        _logger.log(level, "fluxloop: forwarding spool: %s", message)
