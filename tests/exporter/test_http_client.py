"""FluxLoop's OTLP/HTTP client on a scripted transport and a stepping fake clock: every wait is asserted exactly."""

from __future__ import annotations

import email.utils
import gzip
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from fluxloop_otel_exporter._clock import SYSTEM_CLOCK, Waitable
from fluxloop_otel_exporter._http import (
    RETRYABLE_STATUS,
    Outcome,
    OtlpHttpClient,
    redact_url,
    retry_after_seconds,
    safe_reason,
)
from fluxloop_otel_exporter._transport import HttpResponse, TransportError

URL = "http://collector.test:4318/v1/traces"
WALL = 1_800_000_000.0  # the fake wall clock (Retry-After dates are read against it)


class StepClock:
    """A clock whose waits pass at once: ``wait`` records the duration and moves time on (unless the event is set)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        if waitable.wait(0):
            return True
        assert timeout is not None
        self.waits.append(round(timeout, 6))
        self.now += timeout
        return False


class ScriptedTransport:
    """Answers each post with the next scripted item: a status, ``(status, headers[, body])``, or an exception.

    ``cost`` seconds of the clock pass per attempt; the remaining time each attempt was given is recorded.
    """

    def __init__(self, clock: StepClock, *script: Any, cost: float = 0.0) -> None:
        self.clock = clock
        self.script = list(script)
        self.cost = cost
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.budgets: list[float] = []
        self.on_post: Any = None

    def post(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> HttpResponse:
        self.budgets.append(round(deadline - time.monotonic(), 1))  # the transport's deadline: real monotonic
        self.bodies.append(body)
        self.headers.append(dict(headers))
        self.clock.now += self.cost
        if self.on_post is not None:
            self.on_post()
        item = self.script.pop(0) if self.script else 200
        if isinstance(item, Exception):
            raise item
        if isinstance(item, int):
            return HttpResponse(item)
        status, answer_headers, *body_part = item
        return HttpResponse(status, "", {k.lower(): v for k, v in answer_headers.items()},
                            body_part[0] if body_part else b"")

    def close(self) -> None:
        return None


def client(clock: StepClock, transport: ScriptedTransport, **options: Any) -> OtlpHttpClient:
    return OtlpHttpClient(URL, headers={"Authorization": "Bearer k"}, transport=transport, clock=clock,
                          wall_time=lambda: WALL, jitter=lambda: 0.5, **options)


def test_retryable_codes_are_a_frozen_set_of_the_spec_codes() -> None:
    assert isinstance(RETRYABLE_STATUS, frozenset) and RETRYABLE_STATUS == {429, 502, 503, 504}


def test_backoff_doubles_between_retries_then_delivers() -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, 503, 502, 504, 200)
    result = client(clock, transport).send(b"body", timeout=30.0)
    assert result.outcome is Outcome.DELIVERED and result.attempts == 4
    assert clock.waits == [1.0, 2.0, 4.0]  # jitter 0.5 is the middle of [0.8, 1.2]: exactly the backoff


@pytest.mark.parametrize(("jitter", "first_wait"), [(0.0, 0.8), (1.0, 1.2)])
def test_jitter_spreads_each_wait_by_twenty_percent(jitter: float, first_wait: float) -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, 503, 200)
    http = OtlpHttpClient(URL, transport=transport, clock=clock, jitter=lambda: jitter)
    assert http.send(b"b", timeout=30.0).delivered
    assert clock.waits == [first_wait]


def test_retry_after_in_seconds_replaces_the_backoff() -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, (429, {"Retry-After": "3"}), 200)
    assert client(clock, transport).send(b"b", timeout=30.0).delivered
    assert clock.waits == [3.0]


def test_retry_after_as_an_http_date() -> None:
    clock = StepClock()
    date = email.utils.formatdate(WALL + 7, usegmt=True)
    transport = ScriptedTransport(clock, (503, {"Retry-After": date}), 200)
    assert client(clock, transport).send(b"b", timeout=30.0).delivered
    assert clock.waits == [7.0]


def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, (429, {"Retry-After": "30"}))
    result = client(clock, transport).send(b"b", timeout=10.0)
    assert result.outcome is Outcome.FAILED and result.attempts == 1 and clock.waits == []
    assert "retries exhausted" in result.reason and result.status == 429


def test_one_deadline_covers_attempts_and_waits() -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, 503, 503, 503, 503, cost=2.0)
    result = client(clock, transport).send(b"b", timeout=10.0)
    # 2 s attempt, 1 s wait, 2 s attempt, 2 s wait, 2 s attempt: the next 4 s wait would pass the deadline.
    assert result.outcome is Outcome.FAILED and result.attempts == 3
    assert clock.waits == [1.0, 2.0]
    assert transport.budgets == [10.0, 7.0, 3.0]  # each attempt gets only what remains of the one deadline


@pytest.mark.parametrize(("script", "outcome"), [
    (400, Outcome.REJECTED), (401, Outcome.REJECTED), (413, Outcome.TOO_LARGE), (500, Outcome.FAILED),
])
def test_answers_that_are_not_retried(script: int, outcome: Outcome) -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, script, 200)
    result = client(clock, transport).send(b"b", timeout=30.0)
    assert result.outcome is outcome and result.attempts == 1 and result.status == script and clock.waits == []


def test_a_rejection_reason_never_carries_a_credential() -> None:
    clock = StepClock()
    body = b'{"error": "invalid key", "api_key": "sk-live-0123456789abcdef", "hint": "Bearer abc.def.ghi"}'
    transport = ScriptedTransport(clock, (401, {}, body))
    result = client(clock, transport).send(b"b", timeout=30.0)
    assert result.outcome is Outcome.REJECTED
    assert "invalid key" in result.reason and "HTTP 401" in result.reason
    assert "sk-live" not in result.reason and "abc.def.ghi" not in result.reason


def test_refused_is_not_retried_unless_asked() -> None:
    clock = StepClock()
    refused = TransportError("Connection refused", refused=True)
    result = client(clock, ScriptedTransport(clock, refused)).send(b"b", timeout=30.0)
    assert result.outcome is Outcome.FAILED and result.refused and result.attempts == 1 and clock.waits == []

    clock = StepClock()
    transport = ScriptedTransport(clock, TransportError("Connection refused", refused=True), 200)
    assert client(clock, transport, retry_refused=True).send(b"b", timeout=30.0).delivered
    assert clock.waits == [1.0]


def test_resets_and_timeouts_are_retried() -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, TransportError("Connection reset by peer"),
                                  TransportError("timed out", timed_out=True), 200)
    result = client(clock, transport).send(b"b", timeout=30.0)
    assert result.delivered and result.attempts == 3 and clock.waits == [1.0, 2.0]


def test_interrupt_ends_a_backoff_wait_and_later_sends() -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, 503, 200)
    http = client(clock, transport)
    transport.on_post = http.interrupt  # shutdown arrives while the first attempt runs
    result = http.send(b"b", timeout=30.0)
    assert result.outcome is Outcome.FAILED and "shut down" in result.reason and clock.waits == []
    after = http.send(b"b", timeout=30.0)  # one attempt, no retry waits, from now on
    assert (after.delivered, after.attempts, clock.waits) == (True, 1, [])


def test_interrupt_from_another_thread_wakes_a_real_wait() -> None:
    entered = threading.Event()

    class Once(ScriptedTransport):
        def post(self, *args: Any) -> HttpResponse:
            entered.set()
            return HttpResponse(503, "", {"retry-after": "3600"})

    http = OtlpHttpClient(URL, transport=Once(StepClock()), clock=SYSTEM_CLOCK)
    results: list[Any] = []
    sender = threading.Thread(target=lambda: results.append(http.send(b"b", timeout=7200.0)))
    sender.start()
    assert entered.wait(30)
    http.interrupt()
    sender.join(30)  # an hour's Retry-After cut short
    assert not sender.is_alive() and results[0].outcome is Outcome.FAILED


def test_body_is_gzipped_once_at_level_1_with_headers() -> None:
    clock = StepClock()
    transport = ScriptedTransport(clock, 503, 200)
    body = b"span " * 1000
    assert client(clock, transport).send(body, timeout=30.0).delivered
    first, second = transport.bodies
    assert first is second and gzip.decompress(first) == body and first[8] == 4  # XFL 4: fastest
    assert transport.headers[0]["Content-Encoding"] == "gzip"
    assert transport.headers[0]["Content-Type"] == "application/x-protobuf"
    assert transport.headers[0]["Authorization"] == "Bearer k"


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("12", WALL) == 12.0
    assert retry_after_seconds("-3", WALL) == 0.0
    assert retry_after_seconds("soon", WALL) is None
    assert retry_after_seconds(None, WALL) is None
    assert retry_after_seconds(email.utils.formatdate(WALL - 60, usegmt=True), WALL) == 0.0


def test_urls_and_reasons_are_redacted() -> None:
    assert redact_url("http://user:pw@host:4318/v1/traces") == "http://***@host:4318/v1/traces"
    assert redact_url("http://host:4318") == "http://host:4318"
    assert "pw" not in repr(OtlpHttpClient("http://user:pw@host/v1/traces"))
    assert safe_reason("token=abcdef password: hunter2 ok") == "token=*** password: *** ok"
