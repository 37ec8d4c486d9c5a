"""FluxLoop's one OTLP/HTTP client: retries with backoff and jitter, Retry-After, one deadline, interruptible waits.

Used by :class:`FluxLoopSpanExporter` and by ``fluxloop upload``. The network is behind a :class:`Transport` and
time behind a :class:`Clock`, so tests script the collector's answers and drive the waits on a fake clock.

Example::

    client = OtlpHttpClient("http://localhost:4318/v1/traces", headers={"Authorization": "Bearer k"})
    outcome = client.send(body, timeout=10.0)
    if outcome.delivered: ...
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from fluxloop_otel_exporter._clock import SYSTEM_CLOCK, Clock
from fluxloop_otel_exporter._redact import redact_url, safe_reason
from fluxloop_otel_exporter._transport import HttpResponse, SocketTransport, Transport, TransportError

__all__ = ["RETRYABLE_STATUS", "Outcome", "OtlpHttpClient", "SendOutcome", "redact_url", "safe_reason"]

#: Answers worth another attempt within the deadline (OTLP/HTTP spec: 429, 502, 503, 504).
RETRYABLE_STATUS: frozenset[int] = frozenset({429, 502, 503, 504})
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 32.0
JITTER = 0.2  # each wait is the backoff times a factor in [1 - JITTER, 1 + JITTER]


class Outcome(Enum):
    DELIVERED = "delivered"
    TOO_LARGE = "too_large"  # 413: split the body and send the halves
    REJECTED = "rejected"  # a permanent 4xx: sending the same body again cannot succeed
    FAILED = "failed"  # no answer, 5xx, or retries ran out of time: the collector may take it later


@dataclass(frozen=True)
class SendOutcome:
    outcome: Outcome
    reason: str  # safe to log: no credentials
    status: int | None = None
    attempts: int = 0
    refused: bool = False
    body: bytes = b""  # the collector's answer to a delivered request (a partial success names rejected spans)

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED


def retry_after_seconds(value: str | None, now_wall: float) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now_wall
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


class OtlpHttpClient:
    """POSTs OTLP/HTTP protobuf bodies to ``url`` (a full traces URL) with retries inside one deadline.

    ``compression`` ``"gzip"`` (level 1, cheap for the worker), ``"deflate"`` or ``"none"``. A refused connection is retried only
    when ``retry_refused`` (no spool to fall back on). :meth:`interrupt` ends every backoff wait at once; the attempt
    in flight ends at its deadline, or at once when the transport supports ``abort()`` and :meth:`abort` is called.
    After an interrupt each send still makes its first attempt (what is queued at shutdown may still get through).
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, compression: str = "gzip",
                 transport: Transport | None = None, clock: Clock = SYSTEM_CLOCK,
                 wall_time: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random,
                 retry_refused: bool = False) -> None:
        if compression not in ("gzip", "deflate", "none"):
            raise ValueError(f"compression must be one of gzip, deflate, none, got {compression!r}")
        self.url = url
        self._headers = {"Content-Type": "application/x-protobuf", **dict(headers or {})}
        if compression != "none":
            self._headers["Content-Encoding"] = compression
        self._wbits = {"gzip": 31, "deflate": 15}.get(compression)
        self._transport: Transport = transport if transport is not None else SocketTransport()
        self._clock = clock
        self._wall_time = wall_time
        self._jitter = jitter
        self._retry_refused = retry_refused
        self._stop = threading.Event()

    @property
    def url_shown(self) -> str:
        """The URL without credentials, for messages."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"OtlpHttpClient(url={self.url_shown!r})"

    def send(self, body: bytes, timeout: float, *, deadline: float | None = None) -> SendOutcome:
        """Deliver ``body`` within ``timeout`` seconds (or by ``deadline`` on the clock, whichever is first)."""
        start = self._clock.monotonic()
        end = start + timeout if deadline is None else min(deadline, start + timeout)
        data = body if self._wbits is None else _compress(body, self._wbits)
        backoff = INITIAL_BACKOFF
        attempts = 0
        while True:
            now = self._clock.monotonic()
            if now >= end:
                return SendOutcome(Outcome.FAILED, "timed out", None, attempts)
            attempts += 1
            refused = False
            try:
                # The transport reads time.monotonic(): hand it the same remaining time on its scale.
                response: HttpResponse | None = self._transport.post(
                    self.url, data, self._headers, time.monotonic() + (end - now))
                reason = ""
            except TransportError as error:
                response, reason, refused = None, error.reason, error.refused
            except Exception as error:  # a transport bug must not kill the sender
                response, reason = None, type(error).__name__
            wait: float | None = None
            if response is not None:
                status = response.status
                if 200 <= status < 300:
                    return SendOutcome(Outcome.DELIVERED, f"HTTP {status}", status, attempts, body=response.body)
                reason = f"HTTP {status} {response.reason}".strip()
                if status == 413:
                    return SendOutcome(Outcome.TOO_LARGE, reason, status, attempts)
                if status not in RETRYABLE_STATUS:
                    detail = safe_reason(response.body.decode("utf-8", "replace")) if response.body else ""
                    kind = Outcome.REJECTED if 400 <= status < 500 else Outcome.FAILED
                    return SendOutcome(kind, f"{reason}: {detail}" if detail else reason, status, attempts)
                wait = retry_after_seconds(response.headers.get("retry-after"), self._wall_time())
            elif refused and not self._retry_refused:
                return SendOutcome(Outcome.FAILED, reason, None, attempts, refused=True)
            if wait is None:
                wait = backoff * (1 - JITTER + 2 * JITTER * self._jitter())
                backoff = min(backoff * 2, MAX_BACKOFF)
            if self._stop.is_set():
                return SendOutcome(Outcome.FAILED, f"{reason}; shut down", None, attempts, refused)
            if self._clock.monotonic() + wait >= end:
                status_code = response.status if response is not None else None
                return SendOutcome(Outcome.FAILED, f"{reason}, retries exhausted", status_code, attempts, refused)
            if self._clock.wait(self._stop, wait):
                return SendOutcome(Outcome.FAILED, f"{reason}; shut down", None, attempts, refused)

    def interrupt(self) -> None:
        """End backoff waits now, and from then on give each send one attempt only (shutdown)."""
        self._stop.set()

    def abort(self) -> None:
        """Interrupt, and close connections in flight when the transport can."""
        self.interrupt()
        abort = getattr(self._transport, "abort", None)
        if callable(abort):
            abort()

    def close(self) -> None:
        self._transport.close()


def _compress(body: bytes, wbits: int) -> bytes:
    # Level 1: about a quarter of level 9's CPU for bodies a few percent larger (the worker shares the GIL).
    compressor = zlib.compressobj(1, zlib.DEFLATED, wbits)
    return compressor.compress(body) + compressor.flush()
