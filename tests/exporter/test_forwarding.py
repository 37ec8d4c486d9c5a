"""The forwarder against a real loopback collector: spooled spans go out once the collector answers, exactly once
together with ``fluxloop upload``, never while an upload holds the folder, at a bounded rate."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fluxloop.cli import main as cli
from fluxloop_otel_exporter import FluxLoopSpanExporter
from fluxloop_otel_exporter._delivery import FolderLock
from fluxloop_otel_exporter._forwarder import SpoolForwarder

from ._otlp_sink import OtlpSink, wait_for


def _ids(sink: OtlpSink) -> list[str]:
    return [span.span_id.hex() for a in sink.delivered() for rs in a.request.resource_spans
            for ss in rs.scope_spans for span in ss.spans]


def _spool_then_recover(sink: OtlpSink, make_exporter, make_spans, tmp_path: Path, **options: object):  # type: ignore[no-untyped-def]
    """Three batches spooled while the collector answers 500, then one delivered: the collector is back."""
    exporter: FluxLoopSpanExporter = make_exporter(sink.url, forward_spool=True, probe_interval=0.0, **options)
    sink.default = 500
    spooled = []
    for i in range(3):
        batch = make_spans(4, name=f"spooled{i}")
        spooled += batch
        assert exporter.export(batch) and exporter.force_flush(30_000)
    assert exporter.counters.spooled == 12 and not sink.delivered()
    sink.default = 200
    live = make_spans(2, name="live")
    assert exporter.export(live) and exporter.force_flush(30_000)
    return exporter, {f"{s.context.span_id:016x}" for s in spooled}, {f"{s.context.span_id:016x}" for s in live}


def test_spooled_spans_are_forwarded_once_the_collector_answers(sink: OtlpSink, make_exporter, make_spans,
                                                                tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="fluxloop.exporter"):
        exporter, spooled, live = _spool_then_recover(sink, make_exporter, make_spans, tmp_path)
        wait_for(lambda: set(_ids(sink)) == spooled | live, timeout=30)
        assert exporter.forwarder is not None and exporter.forwarder.wait_idle(30)
    ids = _ids(sink)
    assert len(ids) == len(set(ids)) == 14  # each once
    assert any("forwarded 12 spooled spans" in r.getMessage() for r in caplog.records)
    # `fluxloop upload` afterwards finds nothing new: the two share the delivery journal.
    before = len(sink.attempts)
    assert cli(["upload", "--dir", str(tmp_path / "spool"), "--collector-url", sink.url]) == 0
    assert len(sink.attempts) == before


def test_the_forwarder_leaves_a_folder_an_upload_holds(sink: OtlpSink, make_exporter, make_spans,
                                                       tmp_path: Path) -> None:
    lock = FolderLock(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    assert lock.acquire()
    try:
        exporter, spooled, live = _spool_then_recover(sink, make_exporter, make_spans, tmp_path)
        assert exporter.forwarder is not None and exporter.forwarder.wait_idle(30)
        assert set(_ids(sink)) == live  # nothing forwarded while the folder is locked
    finally:
        lock.release()
    assert cli(["upload", "--dir", str(tmp_path / "spool"), "--collector-url", sink.url]) == 0
    exporter.forwarder.kick()  # a later recovery: nothing left to forward
    assert exporter.forwarder.wait_idle(30)
    ids = _ids(sink)
    assert len(ids) == len(set(ids)) == 14 and set(ids) == spooled | live


def test_forwarding_keeps_to_its_rate(sink: OtlpSink, make_exporter, make_spans, tmp_path: Path) -> None:
    exporter, spooled, live = _spool_then_recover(sink, make_exporter, make_spans, tmp_path)
    assert exporter.forwarder is not None and exporter.forwarder.wait_idle(30)
    # Rebuild the forwarder at 40 spans/s over a fresh copy of the spool: 3 lines of 4 spans, merged per 4 spans.
    other = tmp_path / "copy"
    other.mkdir()
    for path in (tmp_path / "spool").glob("*.jsonl"):
        (other / path.name).write_bytes(path.read_bytes())
    forwarder = SpoolForwarder(other, exporter.forwarder._client_factory, timeout=5.0, batch_size=4,
                                         rate=40.0)
    first = len(sink.attempts)
    forwarder.kick()
    assert forwarder.wait_idle(30)
    arrivals = [a.at for a in sink.attempts[first:]]
    assert len(arrivals) == 3
    # After each request of 4 spans the forwarder waits 4 / 40 = 0.1 s: a lower bound, whatever the machine's speed.
    assert all(later - earlier >= 0.09 for earlier, later in zip(arrivals, arrivals[1:]))


def test_forward_spool_off_leaves_the_spool_to_upload(sink: OtlpSink, make_exporter, make_spans,
                                                      tmp_path: Path) -> None:
    exporter = make_exporter(sink.url, forward_spool=False, probe_interval=0.0)
    sink.default = 500
    assert exporter.export(make_spans(4, name="s")) and exporter.force_flush(30_000)
    sink.default = 200
    assert exporter.export(make_spans(1, name="live")) and exporter.force_flush(30_000)
    assert exporter.forwarder is None and sorted(sink.delivered_span_names()) == ["live-0"]


@pytest.mark.parametrize("rate", [0, -1])
def test_rate_must_be_positive(tmp_path: Path, rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        SpoolForwarder(tmp_path, lambda: None, timeout=1.0, rate=rate)  # type: ignore[arg-type,return-value]
