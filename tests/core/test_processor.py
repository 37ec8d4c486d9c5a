"""FluxLoopSpanProcessor with real threads and a real fork: batching, bounds, flush/shutdown timeouts.

Timers and deadlines run on a fake clock (the processor's clock seam): no assertion depends on the machine's speed.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fake_clock import FakeClock

from fluxloop import FluxLoopSpanProcessor
from fluxloop._processor import DROP_REPORT_INTERVAL


class GatedExporter(SpanExporter):
    """Blocks every export until the gate opens; counts batches."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []
        self.shutdowns = 0

    def export(self, spans):  # type: ignore[override]
        self.entered.set()
        self.gate.wait(30)
        self.batches.append(len(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.gate.set()


def make(exporter: SpanExporter, **kwargs) -> tuple[TracerProvider, FluxLoopSpanProcessor]:
    processor = FluxLoopSpanProcessor(exporter, **kwargs)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider, processor


def emit(provider: TracerProvider, n: int, name: str = "s") -> None:
    tracer = provider.get_tracer("t")
    for _ in range(n):
        tracer.start_span(name).end()


def test_batches_fill_and_export_in_background() -> None:
    exporter = InMemorySpanExporter()
    provider, processor = make(exporter, batch_size=10, flush_interval=3600)
    emit(provider, 25)
    deadline = time.monotonic() + 30
    while len(exporter.get_finished_spans()) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling with a deadline: a full batch is exported without any flush
    assert len(exporter.get_finished_spans()) >= 20
    assert processor.force_flush(10_000)
    assert len(exporter.get_finished_spans()) == 25
    assert processor.stats()["exported"] == 25
    processor.shutdown()


def poll(condition, timeout: float = 30.0) -> None:
    """Wait for ``condition`` with a generous real deadline (synchronisation, not a speed bound)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        threading.Event().wait(0.005)


def test_flush_interval_exports_a_partial_batch() -> None:
    clock = FakeClock()
    exporter = InMemorySpanExporter()
    provider, processor = make(exporter, batch_size=1000, flush_interval=5.0, clock=clock)
    emit(provider, 3)
    poll(lambda: clock.waiting() == 1)  # the worker waits for its timer
    clock.advance(4.5)
    assert exporter.get_finished_spans() == ()  # the timer has not fired: nothing sent before flush_interval
    clock.advance(0.5)
    poll(lambda: len(exporter.get_finished_spans()) == 3)
    processor.shutdown()


def test_full_queue_drops_and_counts_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    exporter = GatedExporter()
    provider, processor = make(exporter, max_queue_size=100, batch_size=10, flush_interval=3600)
    emit(provider, 10)  # first batch goes to the blocked exporter
    assert exporter.entered.wait(10)
    emit(provider, 1000)  # queue holds 100, the rest are dropped; on_end never blocks
    stats = processor.stats()
    assert stats["queued"] == 100
    assert stats["dropped"] == 900
    assert not any("queue full" in r.getMessage() for r in caplog.records)  # the caller never logs
    exporter.gate.set()
    assert processor.force_flush(10_000)  # the worker's round ends: it reports the burst with its true size
    warnings = [r.getMessage() for r in caplog.records if "span queue full" in r.getMessage()]
    assert len(warnings) == 1 and "dropped 900 span(s)" in warnings[0]
    assert processor.stats()["exported"] == 110
    processor.shutdown()


def test_force_flush_honours_its_timeout() -> None:
    clock = FakeClock()
    exporter = GatedExporter()
    provider, processor = make(exporter, batch_size=5, flush_interval=3600, clock=clock)
    emit(provider, 5)
    assert exporter.entered.wait(30)
    emit(provider, 3)
    results: list[bool] = []
    flusher = threading.Thread(target=lambda: results.append(processor.force_flush(250)))
    flusher.start()
    poll(lambda: clock.waiting() == 1)  # the flush waits on the clock; the worker is stuck in export
    clock.advance(0.125)
    assert results == []  # (checked before the deadline passes: an early return would show here)
    clock.advance(0.125)
    flusher.join(30)
    assert results == [False]
    exporter.gate.set()
    assert processor.force_flush(30_000) is True
    processor.shutdown()


def test_shutdown_is_bounded_and_idempotent() -> None:
    clock = FakeClock()
    exporter = GatedExporter()
    provider, processor = make(exporter, batch_size=5, flush_interval=3600, clock=clock)
    emit(provider, 5)
    assert exporter.entered.wait(30)
    stopper = threading.Thread(target=processor.shutdown, args=(250,))
    stopper.start()
    poll(lambda: clock.waiting() == 1)
    clock.advance(0.25)  # the budget is spent while the export is still stuck: shutdown returns anyway
    stopper.join(30)
    assert not stopper.is_alive()
    assert exporter.shutdowns == 1
    processor.shutdown(300)
    assert exporter.shutdowns == 1
    emit(provider, 3)  # after shutdown: ignored, no error
    assert processor.stats()["queued"] == 0


def test_unsampled_spans_are_not_queued() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = InMemorySpanExporter()
    processor = FluxLoopSpanProcessor(exporter)
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    emit(provider, 5)
    assert processor.stats()["queued"] == 0
    processor.shutdown()


def test_exports_run_with_instrumentation_suppressed() -> None:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value

    seen: list[object] = []

    class Probe(SpanExporter):
        def export(self, spans):  # type: ignore[override]
            seen.append(get_value(_SUPPRESS_INSTRUMENTATION_KEY))
            return SpanExportResult.SUCCESS

    provider, processor = make(Probe(), batch_size=2)
    emit(provider, 2)
    assert processor.force_flush(10_000)
    assert seen and all(v is True for v in seen)
    processor.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_exports_its_own_spans_never_the_parents(tmp_path) -> None:
    out = tmp_path / "child.txt"

    class FileExporter(SpanExporter):
        def export(self, spans):  # type: ignore[override]
            with open(out, "a") as f:
                for s in spans:
                    f.write(f"{os.getpid()} {s.name}\n")
            return SpanExportResult.SUCCESS

    provider, processor = make(FileExporter(), batch_size=1000, flush_interval=3600)
    emit(provider, 5, "parent-queued")  # queued in the parent, not exported yet
    pid = os.fork()
    if pid == 0:  # child
        try:
            emit(provider, 3, "child")
            ok = processor.force_flush(10_000)
            os._exit(0 if ok else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lines = out.read_text().splitlines()
    assert lines == [f"{pid} child"] * 3  # the parent's queued spans were not exported by the child
    assert processor.force_flush(10_000)
    assert out.read_text().splitlines().count(f"{os.getpid()} parent-queued") == 5
    processor.shutdown()


def test_a_filled_batch_sends_full_batches_and_the_rest_waits() -> None:
    exporter = GatedExporter()
    exporter.gate.set()
    provider, processor = make(exporter, batch_size=4, flush_interval=3600)
    emit(provider, 10)
    assert processor.force_flush(10_000)
    emit(provider, 3)
    assert processor.force_flush(10_000)
    # 10 spans: two full batches when the batch filled, the 2 left over only at the flush; then the 3.
    assert sum(exporter.batches) == 13
    assert exporter.batches[-1] == 3
    assert all(size == 4 for size in exporter.batches[:-2])
    processor.shutdown()


def test_queue_full_warning_is_repeated_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    exporter = GatedExporter()
    provider, processor = make(exporter, max_queue_size=10, batch_size=10, flush_interval=3600, clock=clock)
    emit(provider, 10)
    assert exporter.entered.wait(30)
    emit(provider, 15)  # 10 queued, 5 dropped
    exporter.gate.set()
    assert processor.force_flush(10_000)  # the round ends: one warning with the burst's true count
    exporter.gate.clear()
    exporter.entered.clear()
    emit(provider, 10)
    processor._wake.set()
    assert exporter.entered.wait(30)
    emit(provider, 13)  # 10 queued, 3 dropped
    clock.advance(DROP_REPORT_INTERVAL - 0.5)
    exporter.gate.set()
    assert processor.force_flush(10_000)  # within the interval: counted, not warned
    warnings = [r.getMessage() for r in caplog.records if "span queue full" in r.getMessage()]
    assert len(warnings) == 1 and "dropped 5 span(s)" in warnings[0]
    processor.shutdown()  # the rest is reported at shutdown, with the summary
    warnings = [r.getMessage() for r in caplog.records if "span queue full" in r.getMessage()]
    assert len(warnings) == 2 and "dropped 3 span(s) (8 in all)" in warnings[1]
    assert processor.stats()["dropped"] == 8
    assert any("8 dropped (queue full)" in r.getMessage() for r in caplog.records)
