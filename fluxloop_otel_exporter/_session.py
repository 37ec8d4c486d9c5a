"""The HTTP session FluxLoop hands the stock OTLP exporter: it remembers why a request failed, and can fail fast.

The stock exporter retries connection errors with backoff until its deadline (about 7 s of a 10 s timeout when
nothing listens on the port). When failed batches are spooled to disk, waiting gains nothing and stalls the
export worker (and process exit) while spans pile up, so with ``fail_fast_on_refused`` a refused connection is
raised as an error the stock exporter does not retry. Resets, timeouts and 429/5xx answers keep the stock
retries. The outcome of the last request on each thread is kept to word the "collector unreachable" warning.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import requests

__all__ = ["CollectorRefusedError", "CollectorSession", "describe_exception", "exception_chain"]

_MAX_REASON = 200


class CollectorRefusedError(Exception):
    """Nothing accepts connections at the collector's address."""


class CollectorSession(requests.Session):
    """A ``requests.Session`` that records each request's outcome per thread and may fail fast on refusal."""

    def __init__(self, *, fail_fast_on_refused: bool) -> None:
        super().__init__()
        self.fail_fast_on_refused = fail_fast_on_refused
        self._outcome = threading.local()

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception as error:
            self._outcome.text = describe_exception(error)
            if self.fail_fast_on_refused and any(isinstance(e, ConnectionRefusedError) for e in exception_chain(error)):
                raise CollectorRefusedError("Connection refused") from error
            raise
        self._outcome.text = f"HTTP {response.status_code} {response.reason or ''}".strip()
        return response

    def take_outcome(self) -> str | None:
        """The outcome of this thread's last request (e.g. ``HTTP 503 Service Unavailable``), then forget it."""
        text: str | None = getattr(self._outcome, "text", None)
        self._outcome.text = None
        return text


def exception_chain(error: BaseException, limit: int = 8) -> Iterator[BaseException]:
    """``error`` and the errors it wraps (urllib3's ``reason``, a wrapped first argument, ``__cause__``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        yield current
        following = None
        for candidate in (getattr(current, "reason", None), *current.args[:1], current.__cause__,
                          current.__context__):
            if isinstance(candidate, BaseException):
                following = candidate
                break
        current = following


def describe_exception(error: BaseException) -> str:
    """The innermost cause of a transport error: ``Connection refused`` rather than three wrapped messages."""
    *_, innermost = exception_chain(error)
    if isinstance(innermost, OSError) and innermost.strerror:
        return innermost.strerror[:_MAX_REASON]
    return (str(innermost) or type(innermost).__name__)[:_MAX_REASON]
