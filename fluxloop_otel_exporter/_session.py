"""The HTTP session FluxLoop hands the stock OTLP exporter: fast gzip, the reason a request failed, failing fast.

The stock exporter compresses with ``gzip`` at level 9: for the OTLP protobuf of a batch that costs about four times
the CPU of level 1 for bodies about 4 % smaller, and the export worker shares the GIL with the application. So
FluxLoop gives the stock exporter ``compression=none`` and this session compresses the body itself (``gzip`` or
``deflate``, level 1 by default, once per batch however often it is retried) and sets ``Content-Encoding``: what
goes on the wire is ordinary gzip, which any OTLP/HTTP server decodes.

The stock exporter retries connection errors with backoff until its deadline (about 7 s of a 10 s timeout when
nothing listens on the port). When failed batches are spooled to disk, waiting gains nothing and stalls the
export worker (and process exit) while spans pile up, so with ``fail_fast_on_refused`` a refused connection is
raised as an error the stock exporter does not retry. Resets, timeouts and 429/5xx answers keep the stock
retries. The outcome of the last request on each thread is kept to word the "collector unreachable" warning.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import requests

__all__ = ["CollectorRefusedError", "CollectorSession", "describe_exception", "exception_chain"]

_MAX_REASON = 200
# zlib window bits of each Content-Encoding: a gzip container, or the zlib one (HTTP's "deflate").
_WBITS = {"gzip": 31, "deflate": 15}


class CollectorRefusedError(Exception):
    """Nothing accepts connections at the collector's address."""


class CollectorSession(requests.Session):
    """A ``requests.Session`` that records each request's outcome per thread, may fail fast on refusal, and may
    compress request bodies (``content_encoding`` ``"gzip"`` or ``"deflate"`` at ``compresslevel``).
    """

    def __init__(self, *, fail_fast_on_refused: bool, content_encoding: str | None = None,
                 compresslevel: int = 1) -> None:
        if content_encoding is not None and content_encoding not in _WBITS:
            raise ValueError(f"content_encoding must be one of {', '.join(_WBITS)} or None, got {content_encoding!r}")
        if not 0 <= compresslevel <= 9:
            raise ValueError(f"compresslevel must be 0-9, got {compresslevel!r}")
        super().__init__()
        self.fail_fast_on_refused = fail_fast_on_refused
        self.content_encoding = content_encoding
        self.compresslevel = compresslevel
        self._outcome = threading.local()

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        if self.content_encoding is not None and isinstance(kwargs.get("data"), bytes) and not args:
            kwargs["data"] = self._compressed(kwargs["data"])
            headers: Mapping[str, str] = kwargs.get("headers") or {}
            kwargs["headers"] = {**{k: v for k, v in headers.items() if k.lower() != "content-encoding"},
                                 "Content-Encoding": self.content_encoding}
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
        self._outcome.body = None
        return text

    def _compressed(self, body: bytes) -> bytes:
        # A retry posts the same body object again: compress it once. Kept per thread until the next export.
        last = getattr(self._outcome, "body", None)
        if last is not None and last[0] is body:
            compressed: bytes = last[1]
            return compressed
        # zlib.compress() takes wbits only from Python 3.11: a compressobj does the same on 3.10.
        compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, _WBITS[self.content_encoding or "gzip"])
        compressed = compressor.compress(body) + compressor.flush()
        self._outcome.body = (body, compressed)
        return compressed


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
