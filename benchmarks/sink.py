"""A local OTLP/HTTP traces sink for the benchmarks: answers 200 to every POST, on 127.0.0.1, in its own process.

It runs in a child process so that receiving spans does not compete with the measured process for its GIL
(the machine has two cores: one for the bench, one for the sink). It reads each request body whole and
answers with an empty ``ExportTraceServiceResponse`` (zero bytes of protobuf), keeping connections alive.
With ``--count-spans`` it also keeps each body and, when it stops, decodes them all and counts their spans
(after the run, so that decoding never competes with the measured process for the CPU).
It stops by itself when its standard input closes (the parent exited) or after ``--max-seconds``.

Run by :class:`LocalSink`; by hand: ``python benchmarks/sink.py`` prints the port, Ctrl-D stops it.
"""

from __future__ import annotations

import argparse
import gzip
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        remaining = int(self.headers.get("Content-Length") or 0)
        server = self.server
        counting = server.count_spans  # type: ignore[attr-defined]
        chunks = []
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
            if counting:
                chunks.append(chunk)
        with server.lock:  # type: ignore[attr-defined]
            server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
        if counting:
            body = (b"".join(chunks), self.headers.get("Content-Encoding") == "gzip")
            with server.lock:  # type: ignore[attr-defined]
                server.bodies.append(body)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        return None


def _count_spans(body: bytes, gzipped: bool) -> int:
    request = ExportTraceServiceRequest.FromString(gzip.decompress(body) if gzipped else body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def serve(max_seconds: float, count_spans: bool = False) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    server.requests = 0  # type: ignore[attr-defined]
    server.bodies = []  # type: ignore[attr-defined]
    server.count_spans = count_spans  # type: ignore[attr-defined]
    print(server.server_address[1], flush=True)

    def stop_on_eof() -> None:
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_on_eof, daemon=True).start()
    deadline = threading.Timer(max_seconds, server.shutdown)
    deadline.daemon = True
    deadline.start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        deadline.cancel()
        server.server_close()
        print(f"requests={server.requests}", flush=True)  # type: ignore[attr-defined]
        if count_spans:
            spans = sum(_count_spans(body, gzipped) for body, gzipped in server.bodies)  # type: ignore[attr-defined]
            print(f"spans={spans}", flush=True)


class LocalSink:
    """Start the sink in a child process; ``url`` is its base URL (``/v1/traces`` is where spans go).

    With ``count_spans``, ``spans`` is the number of spans received, read when the sink is closed.
    """

    def __init__(self, max_seconds: float = 600.0, count_spans: bool = False) -> None:
        command = [sys.executable, __file__, "--max-seconds", str(max_seconds)]
        self._proc = subprocess.Popen(command + (["--count-spans"] if count_spans else []),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"benchmark sink did not start (said {line!r})")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: int | None = None
        self.spans: int | None = None
        self._count_spans = count_spans

    def close(self) -> None:
        """Stop the child and read how many requests it answered."""
        proc = self._proc
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(timeout=120 if self._count_spans else 10)  # counting decodes every body first
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out = proc.stdout.read() if proc.stdout is not None else ""
        if proc.stdout is not None:
            proc.stdout.close()
        for line in out.splitlines():
            if line.startswith("requests="):
                self.requests = int(line.split("=", 1)[1])
            elif line.startswith("spans="):
                self.spans = int(line.split("=", 1)[1])

    def __enter__(self) -> LocalSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class HangingCollector:
    """A port on 127.0.0.1 that accepts connections (the kernel does, from its backlog) and never answers:
    a collector that hangs, so every export waits for its timeout. ``close()`` resets the pending connections."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._sock.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once): the collector is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="OTLP/HTTP sink answering 200 on 127.0.0.1")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--count-spans", action="store_true", help="decode each request and count its spans")
    options = parser.parse_args()
    serve(options.max_seconds, options.count_spans)
