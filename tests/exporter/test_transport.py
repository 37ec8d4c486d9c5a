"""The socket transport against real loopback servers: the deadline bounds the whole request, answers are parsed."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fluxloop_otel_exporter._transport import SocketTransport, TransportError

from ._faulty_servers import faulty_collector
from ._otlp_sink import OtlpSink

# How late a thread may run on a loaded 2-core machine: slack on wall-clock bounds (never a speed assertion).
LOADED_MARGIN = 2.0


def test_a_trickled_answer_cannot_outlast_the_deadline() -> None:
    # 80 bytes at one per 0.5 s would take 40 s; every read gets a byte in time, so only a whole-request
    # deadline can end it.
    transport = SocketTransport()
    with faulty_collector("trickle", pace=0.5) as collector:
        started = time.monotonic()
        with pytest.raises(TransportError) as raised:
            transport.post(collector.url + "/v1/traces", b"x", {}, time.monotonic() + 1.5)
        elapsed = time.monotonic() - started
    assert raised.value.timed_out
    assert 1.0 <= elapsed <= 1.5 + LOADED_MARGIN
    transport.close()


def test_a_reset_connection_fails_the_attempt() -> None:
    transport = SocketTransport()
    with faulty_collector("reset") as collector:
        with pytest.raises(TransportError) as raised:
            transport.post(collector.url + "/v1/traces", b"x", {}, time.monotonic() + 30)
    assert not raised.value.timed_out and collector.requests >= 1
    transport.close()


def test_refused_is_reported_as_refused(refused_url: str) -> None:
    with pytest.raises(TransportError) as raised:
        SocketTransport().post(refused_url + "/v1/traces", b"x", {}, time.monotonic() + 30)
    assert raised.value.refused and "refused" in raised.value.reason.lower()


def test_keeps_the_connection_alive_across_requests(sink: OtlpSink) -> None:
    transport = SocketTransport()
    for _ in range(3):
        response = transport.post(sink.url + "/v1/traces", b"", {"Content-Type": "application/x-protobuf"},
                                  time.monotonic() + 30)
        assert response.status == 200
    assert sink.connections == 1 and len(sink.attempts) == 3
    transport.close()


def test_reads_a_chunked_answer_and_a_close_delimited_one() -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.0 503 Busy\r\nRetry-After: 2\r\n\r\nlater",
    ]
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for answer in answers:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = SocketTransport()
    first = transport.post(f"http://127.0.0.1:{port}/v1/traces", b"x", {}, time.monotonic() + 30)
    assert (first.status, first.reason, first.body) == (400, "Bad Request", b"hello world")
    second = transport.post(f"http://127.0.0.1:{port}/v1/traces", b"x", {}, time.monotonic() + 30)
    assert (second.status, second.headers["retry-after"], second.body) == (503, "2", b"later")
    thread.join(30)
    server.close()


def test_abort_ends_a_request_in_flight_at_once() -> None:
    transport = SocketTransport()
    errors: list[TransportError] = []
    with faulty_collector("trickle", pace=0.5) as collector:
        def post() -> None:
            try:
                transport.post(collector.url + "/v1/traces", b"x", {}, time.monotonic() + 600)
            except TransportError as error:
                errors.append(error)

        poster = threading.Thread(target=post)
        poster.start()
        deadline = time.monotonic() + 30
        while not collector.requests:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        transport.abort()
        poster.join(30)
    assert not poster.is_alive() and errors and not errors[0].timed_out
