"""Test helpers: a real OTLP/HTTP traces endpoint on 127.0.0.1, and polling with a deadline."""

from __future__ import annotations

import collections
import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

DROP = "drop"  # sink action: close the connection without answering
HOLD = "hold"  # sink action: answer 200 only once ``release`` is set (a collector stuck for as long as a test needs)


@dataclass
class Attempt:
    """One POST the sink received."""

    at: float
    path: str
    headers: dict[str, str]
    request: ExportTraceServiceRequest
    action: Any
    body: bytes = b""  # as received (still compressed)


class OtlpSink:
    """A real OTLP/HTTP traces endpoint: decodes each (gzip) protobuf request, records it, answers as scripted.

    ``script`` holds the answers to the next requests (an HTTP status, ``(status, headers)``, ``DROP`` or ``HOLD``);
    when it is empty, ``default`` answers. ``connections`` counts accepted TCP connections.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.connections = 0
        self.script: collections.deque[Any] = collections.deque()
        self.default: Any = 200
        self.reject: Callable[[ExportTraceServiceRequest], bool] | None = None  # answered ``reject_answer``
        self.reject_answer: tuple[int, str] = (400, "")
        self.max_bytes: int | None = None  # a larger (decompressed) body is answered 413, as a size-limited collector
        self.release = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with sink.lock:
                    action = sink.script.popleft() if sink.script else sink.default
                    if sink.max_bytes is not None and len(body) > sink.max_bytes and action in (200, HOLD):
                        action = 413
                    if sink.reject is not None and action == 200 and sink.reject(request):
                        action = sink.reject_answer[0]
                    attempt = Attempt(time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()},
                                      request, action, raw)
                    sink.attempts.append(attempt)
                if action == DROP:
                    self.close_connection = True
                    return
                if action == HOLD:
                    sink.release.wait(120)
                    with sink.lock:
                        action = attempt.action = 200  # delivered once released
                status, headers = action if isinstance(action, tuple) else (action, {})
                payload = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
                if sink.reject is not None and status == sink.reject_answer[0]:
                    payload = sink.reject_answer[1].encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                with sink.lock:
                    sink.connections += 1
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def delivered(self) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if a.action == 200 or a.action == (200, {})]

    def delivered_span_names(self) -> list[str]:
        return [span.name for a in self.delivered() for rs in a.request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
