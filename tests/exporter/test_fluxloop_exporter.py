"""FluxLoopSpanExporter against real loopback servers: delivery, retries, deadline, store-and-forward, breaker, logs.

The breaker's probes and the shutdown budget run on a fake clock (the exporter's clock seam). The stock exporter's
own retries and deadline run on real time: where a wall-clock bound is the point, it has LOADED_MARGIN of slack.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from fluxloop_otel_exporter import FluxLoopSpanExporter, iter_offline_files, read_requests, traces_endpoint

from fake_clock import FakeClock

from ._otlp_sink import DROP, OtlpSink

STOCK_LOGGER_PREFIX = "opentelemetry.exporter"
# How late a thread may run on a loaded 2-core machine (two busy loops, other test suites): slack on wall-clock bounds.
LOADED_MARGIN = 2.0


class GatedSession(requests.Session):
    """A scripted transport: each request waits for ``gate``, then is answered ``status`` without any network."""

    def __init__(self, status: int = 400) -> None:
        super().__init__()
        self.status = status
        self.entered = threading.Event()
        self.gate = threading.Event()

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        self.entered.set()
        self.gate.wait(60)
        response = requests.Response()
        response.status_code, response._content, response.url = self.status, b"", url
        return response


def sent(exporter: FluxLoopSpanExporter, spans) -> bool:
    """Export, then wait for the sender (a user's flush, as BatchSpanProcessor.force_flush does)."""
    return exporter.export(spans) is SpanExportResult.SUCCESS and exporter.force_flush(30_000)


def spooled_names(folder: Path) -> list[str]:
    return [span["name"] for path in iter_offline_files(folder) for _, request, _ in read_requests(path)
            for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]


def ours(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "fluxloop.exporter" and r.levelno == level]


def stock_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(STOCK_LOGGER_PREFIX)]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://h:4318", "http://h:4318/v1/traces"),
    ("http://h:4318/", "http://h:4318/v1/traces"),
    ("http://h:4318/v1/traces", "http://h:4318/v1/traces"),
    ("http://h:4318/v1/traces/", "http://h:4318/v1/traces"),
    ("  https://h/otel//  ", "https://h/otel/v1/traces"),
])
def test_traces_endpoint(url: str, expected: str) -> None:
    assert traces_endpoint(url) == expected


@pytest.mark.parametrize("options", [{"timeout": 0}, {"timeout": -1}, {"probe_interval": -1},
                                     {"compression": "zip"}])
def test_rejects_bad_options(tmp_path: Path, options) -> None:
    with pytest.raises(ValueError):
        FluxLoopSpanExporter("http://localhost:4318", offline_dir=tmp_path, **options)
    with pytest.raises(ValueError):
        traces_endpoint("  ")


def test_delivers_with_bearer_and_custom_headers(sink: OtlpSink, make_exporter, make_spans, tmp_path, caplog) -> None:
    exporter = make_exporter(sink.url + "/", api_key="k-123", headers={"X-Team": "agents", "Authorization": "no"})
    spans = make_spans(5, name="deliver")
    with caplog.at_level(logging.INFO):
        assert sent(exporter, spans)
    [attempt] = sink.attempts
    assert attempt.path == "/v1/traces"
    assert attempt.headers["authorization"] == "Bearer k-123"
    assert attempt.headers["x-team"] == "agents"
    assert attempt.headers["content-encoding"] == "gzip"
    assert attempt.headers["content-type"] == "application/x-protobuf"
    assert sorted(sink.delivered_span_names()) == sorted(s.name for s in spans)
    assert exporter.counters.snapshot() == {"exported": 5, "spooled": 0, "failed": 0, "pending": 0}
    assert not (tmp_path / "spool").exists()
    assert "k-123" not in repr(exporter) and "k-123" not in caplog.text


def test_endpoint_already_ending_in_v1_traces_is_used_as_is(sink: OtlpSink, make_exporter, make_spans) -> None:
    exporter = make_exporter(sink.url + "/v1/traces", compression="none")
    assert sent(exporter, make_spans(1))
    assert sink.attempts[0].path == "/v1/traces" and "content-encoding" not in sink.attempts[0].headers


# The gzip header's XFL byte (RFC 1952) as zlib writes it: 4 = fastest (level 1), 2 = best (level 9).
GZIP_FASTEST, GZIP_BEST = 4, 2


def test_gzip_at_level_1_compressed_once_for_all_retries(sink: OtlpSink, make_exporter, make_spans) -> None:
    sink.script.append(503)
    exporter = make_exporter(sink.url, timeout=5.0)
    spans = make_spans(20, name="gz", payload="x" * 200)
    assert sent(exporter, spans)
    first, second = sink.attempts
    assert first.headers["content-encoding"] == second.headers["content-encoding"] == "gzip"
    assert first.body[:2] == b"\x1f\x8b" and first.body[8] == GZIP_FASTEST
    assert first.body is not second.body and first.body == second.body
    assert len(first.body) < first.request.ByteSize() / 4
    assert sorted(sink.delivered_span_names()) == sorted(s.name for s in spans)


def test_deflate_is_compressed_by_our_session_too(sink: OtlpSink, make_exporter, make_spans) -> None:
    exporter = make_exporter(sink.url, compression="deflate")
    assert sent(exporter, make_spans(3, name="df"))
    [attempt] = sink.attempts
    assert attempt.headers["content-encoding"] == "deflate" and attempt.body[:1] == b"\x78"
    assert sink.delivered_span_names() == ["df-0", "df-1", "df-2"]


def test_a_session_of_your_own_is_used_as_the_transport(sink: OtlpSink, make_exporter, make_spans) -> None:
    exporter = make_exporter(sink.url, session=requests.Session())
    assert sent(exporter, make_spans(2, name="own"))
    [attempt] = sink.attempts
    assert attempt.headers["content-encoding"] == "gzip" and attempt.body[8] == GZIP_FASTEST
    assert sink.delivered_span_names() == ["own-0", "own-1"]


def test_refused_collector_spools_and_warns_once(refused_url, make_exporter, make_spans, tmp_path, caplog) -> None:
    exporter = make_exporter(refused_url, timeout=10.0)
    names: list[str] = []
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        for i in range(10):
            batch = make_spans(3, name=f"b{i}")
            names += [s.name for s in batch]
            assert sent(exporter, batch)
    # A refusal is spooled at once: retried until the deadline, one batch alone would take about 7 s.
    assert time.monotonic() - started < 5.0
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 30, "failed": 0, "pending": 0}
    assert sorted(spooled_names(tmp_path / "spool")) == sorted(names)
    [warning] = ours(caplog, logging.WARNING)
    message = warning.getMessage()
    assert traces_endpoint(refused_url) in message and "Connection refused" in message
    assert str((tmp_path / "spool").resolve()) in message and "`fluxloop upload`" in message
    assert "retrying every 60 s" in message
    assert stock_records(caplog) == []  # the stock exporter's per-batch errors and retries are silenced
    assert exporter.collector_available is False


def test_down_collector_gets_no_traffic_until_the_probe(sink: OtlpSink, make_exporter, make_spans,
                                                        tmp_path, caplog) -> None:
    clock = FakeClock()
    sink.default = DROP  # accepts the connection, closes it without an answer
    exporter = make_exporter(sink.url, timeout=0.5, probe_interval=30.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="fluxloop.exporter"):
        assert sent(exporter, make_spans(2, name="first"))
        connections, attempts = sink.connections, len(sink.attempts)
        assert connections >= 1 and attempts >= 1

        clock.advance(29.5)
        sink.default = 200
        assert sent(exporter, make_spans(2, name="second"))
        assert (sink.connections, len(sink.attempts)) == (connections, attempts)  # no network attempt
        assert exporter.collector_available is False

        clock.advance(0.5)  # probe_interval after the failure: one batch goes to the collector
        assert sent(exporter, make_spans(1, name="probe"))
        assert sink.delivered_span_names() == ["probe-0"]
        assert exporter.collector_available is True
        assert sent(exporter, make_spans(1, name="after"))  # straight to the collector
        assert sink.delivered_span_names() == ["probe-0", "after-0"]

    assert exporter.counters.snapshot() == {"exported": 2, "spooled": 4, "failed": 0, "pending": 0}
    assert sorted(spooled_names(tmp_path / "spool")) == ["first-0", "first-1", "second-0", "second-1"]
    assert len(ours(caplog, logging.WARNING)) == 1
    [info] = ours(caplog, logging.INFO)
    assert "reachable again" in info.getMessage() and "fluxloop upload" in info.getMessage()


def test_a_failed_probe_keeps_the_breaker_open_for_another_interval(sink: OtlpSink, make_exporter, make_spans,
                                                                    tmp_path) -> None:
    clock = FakeClock()
    sink.default = 400  # not retried by the stock exporter: each network attempt is one request
    exporter = make_exporter(sink.url, probe_interval=10.0, clock=clock)
    assert sent(exporter, make_spans(1, name="a"))
    assert len(sink.attempts) == 1 and exporter.collector_available is False
    clock.advance(10.0)
    assert sent(exporter, make_spans(1, name="b"))  # the probe, refused again
    assert len(sink.attempts) == 2
    clock.advance(9.5)
    assert sent(exporter, make_spans(1, name="c"))
    assert len(sink.attempts) == 2  # the interval restarted at the failed probe
    clock.advance(0.5)
    sink.default = 200
    assert sent(exporter, make_spans(1, name="d"))
    assert sink.delivered_span_names() == ["d-0"] and exporter.collector_available is True
    assert sorted(spooled_names(tmp_path / "spool")) == ["a-0", "b-0", "c-0"]


def test_shutdown_waits_for_an_export_in_flight_within_its_budget(refused_url, make_exporter, make_spans, poll,
                                                                  tmp_path) -> None:
    clock = FakeClock()
    session = GatedSession()
    exporter = make_exporter(refused_url, session=session, clock=clock)
    exporting = threading.Thread(target=exporter.export, args=(make_spans(2, name="late"),))
    exporting.start()
    assert session.entered.wait(30)
    stopper = threading.Thread(target=exporter.shutdown, kwargs={"timeout_millis": 2000})
    stopper.start()
    poll(lambda: clock.waiting() == 1, timeout=30)
    clock.advance(1.5)
    assert stopper.is_alive()  # within the budget: still waiting for the export
    session.gate.set()  # the export fails now and spools its batch; shutdown returns as soon as it is done
    stopper.join(30)
    exporting.join(30)
    assert not stopper.is_alive() and not exporting.is_alive()
    assert sorted(spooled_names(tmp_path / "spool")) == ["late-0", "late-1"]
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 2, "failed": 0, "pending": 0}


def test_shutdown_stops_waiting_for_a_stuck_export_when_its_budget_is_spent(refused_url, make_exporter, make_spans,
                                                                            poll) -> None:
    clock = FakeClock()
    session = GatedSession()
    exporter = make_exporter(refused_url, session=session, clock=clock)
    exporting = threading.Thread(target=exporter.export, args=(make_spans(2),))
    exporting.start()
    assert session.entered.wait(30)
    stopper = threading.Thread(target=exporter.shutdown, kwargs={"timeout_millis": 2000})
    stopper.start()
    poll(lambda: clock.waiting() == 1, timeout=30)
    clock.advance(2.0)
    stopper.join(30)
    assert not stopper.is_alive()  # shutdown returned; the request is still stuck in the session
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 2, "failed": 0, "pending": 0}  # spooled by shutdown
    session.gate.set()
    exporting.join(30)
    assert exporter.force_flush(30_000)
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 2, "failed": 0, "pending": 0}  # counted once


def test_503_then_200_is_delivered_after_a_retry(sink: OtlpSink, make_exporter, make_spans, caplog) -> None:
    sink.script.append(503)
    exporter = make_exporter(sink.url, timeout=5.0)
    with caplog.at_level(logging.DEBUG):
        assert sent(exporter, make_spans(4, name="retry"))
    assert [a.action for a in sink.attempts] == [503, 200]
    assert sorted(sink.delivered_span_names()) == [f"retry-{i}" for i in range(4)]
    assert exporter.counters.snapshot() == {"exported": 4, "spooled": 0, "failed": 0, "pending": 0}
    assert ours(caplog, logging.WARNING) == [] and stock_records(caplog) == []


def test_dropped_connections_are_retried_then_delivered(sink: OtlpSink, make_exporter, make_spans) -> None:
    sink.script.extend([DROP, DROP])  # the stock client reconnects at once, then backs off ~1 s
    exporter = make_exporter(sink.url, timeout=5.0)
    assert sent(exporter, make_spans(2, name="reset"))
    assert [a.action for a in sink.attempts] == [DROP, DROP, 200]
    assert sink.attempts[2].at - sink.attempts[1].at >= 0.75  # backoff 1 s with 20 % jitter
    assert sorted(sink.delivered_span_names()) == ["reset-0", "reset-1"]


def test_a_collector_answering_503_costs_at_most_the_timeout(sink: OtlpSink, make_exporter, make_spans) -> None:
    sink.default = 503
    exporter = make_exporter(sink.url, timeout=1.5)
    started = time.monotonic()
    assert sent(exporter, make_spans(2))
    assert time.monotonic() - started < 1.5 + LOADED_MARGIN
    assert len(sink.attempts) >= 2 and exporter.counters.spooled == 2


def test_429_retry_after_is_honoured(sink: OtlpSink, make_exporter, make_spans) -> None:
    sink.script.append((429, {"Retry-After": "1"}))
    exporter = make_exporter(sink.url, timeout=5.0)
    assert sent(exporter, make_spans(2))
    first, second = sink.attempts
    assert 0.95 <= second.at - first.at < 1.0 + LOADED_MARGIN
    assert exporter.counters.exported == 2


def test_silent_collector_costs_at_most_the_timeout(silent_url, make_exporter, make_spans, tmp_path) -> None:
    exporter = make_exporter(silent_url, timeout=1.0)
    started = time.monotonic()
    assert sent(exporter, make_spans(3, name="slow"))
    assert time.monotonic() - started < 1.0 + LOADED_MARGIN
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 3, "failed": 0, "pending": 0}
    assert sorted(spooled_names(tmp_path / "spool")) == ["slow-0", "slow-1", "slow-2"]


def test_shutdown_interrupts_a_retry_wait_and_spools_the_batch(sink: OtlpSink, make_exporter, make_spans,
                                                               poll, tmp_path, caplog) -> None:
    sink.default = (503, {"Retry-After": "20"})
    exporter = make_exporter(sink.url, timeout=30.0)
    results: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(make_spans(2, name="late"))))
    with caplog.at_level(logging.INFO):
        worker.start()
        poll(lambda: sink.attempts)
        started = time.monotonic()
        exporter.shutdown()
        worker.join(30)
        assert time.monotonic() - started < 10.0  # the 20 s wait was cut short
    assert results == [SpanExportResult.SUCCESS]
    assert spooled_names(tmp_path / "spool") == ["late-0", "late-1"]
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 2, "failed": 0, "pending": 0}
    assert ours(caplog, logging.WARNING) == []  # stopping is not an outage
    exporter.shutdown()  # idempotent
    assert exporter.export(make_spans(1, name="after")) is SpanExportResult.SUCCESS  # a last drain: still on disk
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 3, "failed": 0, "pending": 0}
    assert exporter.force_flush() is True


def test_use_collector_false_writes_files_only(sink: OtlpSink, make_exporter, make_spans, tmp_path) -> None:
    exporter = make_exporter(sink.url, use_collector=False)
    for i in range(3):
        assert sent(exporter, make_spans(2, name=f"file{i}"))
    assert sink.connections == 0 and sink.attempts == []
    assert exporter.counters.snapshot() == {"exported": 6, "spooled": 0, "failed": 0, "pending": 0}
    assert len(spooled_names(tmp_path / "spool")) == 6


def test_offline_disabled_and_collector_refusing_loses_the_batch(refused_url, make_exporter, make_spans,
                                                                 tmp_path, caplog) -> None:
    exporter = make_exporter(refused_url, offline_enabled=False, timeout=0.5)
    with caplog.at_level(logging.WARNING):
        exporter.export(make_spans(3))  # taken by the sender, lost when the collector refuses
        assert exporter.force_flush(30_000)
        assert exporter.export(make_spans(2)) is SpanExportResult.FAILURE  # the collector is held for down
    assert exporter.counters.snapshot() == {"exported": 0, "spooled": 0, "failed": 5, "pending": 0}
    assert not (tmp_path / "spool").exists()
    [warning] = ours(caplog, logging.WARNING)
    assert "offline storage is off" in warning.getMessage()


def test_application_exporters_keep_their_logs(refused_url, make_exporter, make_spans, caplog) -> None:
    ours_exporter = make_exporter(refused_url, timeout=0.5)
    app_exporter = OTLPSpanExporter(endpoint=traces_endpoint(refused_url), timeout=0.5)
    with caplog.at_level(logging.DEBUG):
        ours_exporter.export(make_spans(1))
        assert stock_records(caplog) == []
        assert app_exporter.export(make_spans(1)) is SpanExportResult.FAILURE
    assert stock_records(caplog)  # the application's own exporter still reports its failure
    app_exporter.shutdown()


def test_export_never_raises(make_exporter, sink: OtlpSink, caplog) -> None:
    exporter = make_exporter(sink.url)
    with caplog.at_level(logging.CRITICAL):
        assert exporter.export([object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert exporter.counters.failed == 1
    assert sent(exporter, [])


def _export_in_child(exporter: FluxLoopSpanExporter, spans) -> None:
    ok = sent(exporter, spans) and exporter.counters.exported == len(spans)
    exporter.shutdown()
    os._exit(0 if ok else 3)


def test_forked_child_exports_on_its_own_connection(sink: OtlpSink, make_exporter, make_spans) -> None:
    exporter = make_exporter(sink.url)
    assert sent(exporter, make_spans(1, name="parent"))
    child = multiprocessing.get_context("fork").Process(target=_export_in_child,
                                                        args=(exporter, make_spans(2, name="child")))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert sent(exporter, make_spans(1, name="parent-again"))
    assert sorted(sink.delivered_span_names()) == ["child-0", "child-1", "parent-0", "parent-again-0"]
    assert exporter.counters.exported == 2  # the child's counts are its own


def test_spooled_files_are_valid_requests(refused_url, make_exporter, make_spans, tmp_path) -> None:
    exporter = make_exporter(refused_url, timeout=0.5)
    assert sent(exporter, make_spans(2))
    [path] = iter_offline_files(tmp_path / "spool")
    [(_, request, error)] = list(read_requests(path))
    assert error is None and request == orjson.loads(path.read_bytes())


@pytest.mark.parametrize("collector", ["up", "refusing"])
def test_in_a_batch_span_processor(collector: str, sink: OtlpSink, refused_url: str, tmp_path: Path) -> None:
    exporter = FluxLoopSpanExporter(sink.url if collector == "up" else refused_url, offline_dir=tmp_path)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for i in range(50):
        with tracer.start_as_current_span(f"app-{i}"):
            pass
    started = time.monotonic()
    provider.shutdown()
    assert time.monotonic() - started < 5.0  # a refused batch is not retried until its 10 s deadline
    expected = sorted(f"app-{i}" for i in range(50))
    if collector == "up":
        assert sorted(sink.delivered_span_names()) == expected and iter_offline_files(tmp_path) == []
    else:
        assert sorted(spooled_names(tmp_path)) == expected and exporter.counters.spooled == 50


# --- oversized data ---------------------------------------------------------------------------------------------


def test_a_413_splits_the_batch_and_delivers_the_halves(sink: OtlpSink, make_exporter, make_spans,
                                                        tmp_path) -> None:
    spans = make_spans(40, name="big", payload="p" * 8_000)
    sink.max_bytes = 100_000  # about a dozen of these spans per request
    exporter = make_exporter(sink.url, timeout=10.0)
    assert sent(exporter, spans)
    assert sorted(sink.delivered_span_names()) == sorted(s.name for s in spans)
    assert any(a.action == 413 for a in sink.attempts)
    assert all(len(a.request.SerializeToString()) <= 100_000 for a in sink.delivered())
    assert exporter.counters.snapshot() == {"exported": 40, "spooled": 0, "failed": 0, "pending": 0}
    assert not (tmp_path / "spool").exists()


def test_a_single_span_too_large_is_sent_with_its_largest_attributes_cut(sink: OtlpSink, make_exporter,
                                                                         make_spans, caplog) -> None:
    huge = make_spans(1, name="huge", message="m" * 3_000_000, small="kept")
    after = make_spans(2, name="after")
    sink.max_bytes = 200_000
    exporter = make_exporter(sink.url, timeout=10.0)
    with caplog.at_level(logging.WARNING, logger="fluxloop.exporter"):
        assert sent(exporter, huge)
        assert sent(exporter, after)  # never blocked by the one before
    [cut_request] = [a.request for a in sink.delivered() if a.request.resource_spans[0].scope_spans[0].spans[0]
                     .name == "huge-0"]
    span = cut_request.resource_spans[0].scope_spans[0].spans[0]
    attributes = {kv.key: kv.value for kv in span.attributes}
    assert attributes["message"].string_value.startswith("m" * 1000)
    assert "cut by fluxloop" in attributes["message"].string_value
    assert attributes["small"].string_value == "kept"
    assert [v.string_value for v in attributes["fluxloop.truncated_attributes"].array_value.values] == ["message"]
    assert sorted(sink.delivered_span_names()) == ["after-0", "after-1", "huge-0"]
    assert exporter.counters.snapshot() == {"exported": 3, "spooled": 0, "failed": 0, "pending": 0}
    assert any("too large" in r.getMessage() for r in caplog.records)


# --- the spool file under a running process ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_spool_file_deleted_or_replaced_is_reopened(refused_url, make_exporter, make_spans, tmp_path,
                                                      how: str) -> None:
    # Found: deleting delivered artifacts while the app ran sent every later span into the unlinked file.
    exporter = make_exporter(refused_url, timeout=0.5)
    assert sent(exporter, make_spans(2, name="first"))
    [path] = iter_offline_files(tmp_path / "spool")
    path.unlink()
    if how == "replaced":
        path.write_bytes(b"")  # another file under the same name (e.g. an editor's save)
    assert sent(exporter, make_spans(3, name="second"))
    names = spooled_names(tmp_path / "spool")
    assert sorted(names) == ["second-0", "second-1", "second-2"]
    assert exporter.counters.spooled == 5
    if how == "replaced":
        assert path.read_bytes() == b""  # not written into the other file
