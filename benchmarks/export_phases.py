"""Cases 9-11: the export pipeline against a local OTLP/HTTP sink and a closed port.

Pipelines are built with ``fluxloop._pipeline.build_processor`` from the configuration in force with only the
collector URL / offline folder changed, i.e. exactly what ``fluxloop.configure(collector_url=...)`` would build,
and put behind FluxLoop's switch with ``RUNTIME.switch.swap`` (internal hooks, bench only). The decorated
function is case 3's ``@fluxloop.agent``.

- 9: time per call on the calling thread with the collector up (local sink) vs down (a closed port: connections
  refused, FluxLoop spools to files), interleaved rounds, each pipeline flushed after its batch (untimed).
- 10: one producer thread calls the agent flat out for 5 s, then ``force_flush``; spans/s delivered, dropped, CPU
  seconds per 1,000 spans of the export worker thread(s) and of the whole process. Plain OpenTelemetry
  (BatchSpanProcessor + OTLPSpanExporter, defaults) runs the same in the same process: FluxLoop's target is 0
  dropped and at least twice plain OTel's delivered spans/s.
- 11: RSS over 200,000 calls with the collector down, after a warm-up that fills the queue.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import fluxloop
from benchmarks import harness
from benchmarks.cases_fluxloop import FluxLoopBench, noop_processor, swap_pipeline
from benchmarks.cases_real import fluxloop_pipeline
from benchmarks.harness import Case, Target
from benchmarks.sink import HangingCollector, LocalSink, closed_port_url
from benchmarks.workload import QUERY, RawOtel, sync_loop

THROUGHPUT_FACTOR = 2.0  # FluxLoop's delivered spans/s over plain OTel's, same run
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MIB = 1024 * 1024


def run(args: argparse.Namespace, fl: FluxLoopBench, tmp: Path, report: harness.Report,
        progress: Callable[[str], None]) -> None:
    """The phases of cases 9-11 that ``args.phases`` asks for, into ``report``."""
    fl.restore()
    with LocalSink() as sink:
        closed = closed_port_url()
        if "collector" in args.phases:
            collector_phase(args, fl, sink, closed, tmp, report, progress)
        if "throughput" in args.phases:
            throughput_phase(args, fl, sink, tmp, report, progress)
        if "memory" in args.phases:
            memory_phase(args, fl, closed, tmp, report, progress)
    if sink.requests is not None:
        report.sections.append(f"(the local sink answered {sink.requests} OTLP/HTTP requests in all)")
    old = swap_pipeline(noop_processor())
    if old is not None:
        old.shutdown(2000)


# -- case 9 -------------------------------------------------------------------------------------------------------
def collector_phase(args: argparse.Namespace, fl: FluxLoopBench, sink: LocalSink, closed: str, tmp: Path,
                    report: harness.Report, progress: Callable[[str], None]) -> None:
    up = fluxloop_pipeline(use_collector=True, collector_url=sink.url, offline_dir=str(tmp / "9-up"))
    down = fluxloop_pipeline(use_collector=True, collector_url=closed, offline_dir=str(tmp / "9-down"))
    noop = noop_processor()

    def use(pipeline: fluxloop.FluxLoopSpanProcessor) -> Callable[[], None]:
        def prepare() -> None:
            swap_pipeline(pipeline)  # the previous one stays alive: each is shut down at the end
        return prepare

    def flush(pipeline: fluxloop.FluxLoopSpanProcessor) -> Callable[[], None]:
        def finish() -> None:
            pipeline.force_flush(10_000)
        return finish

    call = sync_loop(fl.agent, QUERY)
    cases = [
        Case("9noop", "9 no-op exporter (as cases 3-8)", call, prepare=use(noop), ref="9up",
             target=Target("—")),
        Case("9up", "9 collector up (local OTLP/HTTP sink)", call, prepare=use(up), finish=flush(up),
             target=Target("reference")),
        Case("9down", "9 collector down (closed port, spooling)", call, prepare=use(down), finish=flush(down),
             ref="9up", target=Target("≤ 1.05× up", max_ratio=1.05)),
    ]
    rounds = 2 if args.smoke else 21
    progress(f"collector: 3 cases × {rounds} interleaved rounds")
    try:
        results = harness.measure(cases, rounds, (1.0 if args.smoke else 100.0) / 1000)
    finally:
        swap_pipeline(noop_processor())
        stats = {name: _pipeline_counts(p) for name, p in (("up", up), ("down", down))}
        for p in (up, down, noop):
            p.shutdown(5000)
    note = (f"Spans: up {_fmt_counts(stats['up'])}; down {_fmt_counts(stats['down'])}. Each pipeline is flushed "
            "after its batch, untimed; the time is the calling thread's wall time per call.")
    report.sections.append("\n".join([
        f"## Case 9: collector down vs up, time per call on the calling thread ({rounds} rounds)", "",
        harness.table(results, ratio_header="ratio vs collector up", main_ref="9up"), "", note]))
    report.add_results(results)


def _pipeline_counts(pipeline: fluxloop.FluxLoopSpanProcessor) -> dict[str, int]:
    """Processor counters (queued, dropped, failed) plus the exporter's (exported, spooled, failed), as
    ``fluxloop.get_stats()`` adds them up."""
    counts = dict(pipeline.stats())
    counters = getattr(pipeline.exporter, "counters", None)
    if counters is not None:
        snapshot = counters.snapshot()
        counts["exported"] = snapshot["exported"]
        counts["spooled"] = snapshot["spooled"]
        counts["failed"] = counts.get("failed", 0) + snapshot["failed"]
    return counts


def _fmt_counts(counts: dict[str, int]) -> str:
    keys = ("exported", "spooled", "dropped", "failed")
    return ", ".join(f"{k} {counts.get(k, 0):,}" for k in keys)


# -- case 10 ------------------------------------------------------------------------------------------------------
class CountingExporter(SpanExporter):
    """Counts the spans its wrapped exporter accepted (for plain OpenTelemetry, which keeps no counters)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _thread_cpu(native_ids: set[int]) -> float:
    """CPU seconds (user + system) used so far by these threads of this process."""
    total = 0
    for tid in native_ids:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return total / _CLK_TCK


def _thread_ids() -> set[int]:
    return {t.native_id for t in threading.enumerate() if t.native_id is not None}


@dataclasses.dataclass
class Throughput:
    label: str
    produced: int
    produce_s: float
    wall_s: float
    exported: int
    dropped: int
    other: str
    worker_cpu_s: float
    process_cpu_s: float
    flushed: bool
    target: bool
    reference_rate: float | None = None  # plain OTel's delivered spans/s in the same run

    @property
    def rate(self) -> float:
        return self.exported / self.wall_s if self.wall_s else 0.0

    def verdict(self) -> str:
        if not self.target or self.reference_rate is None:
            return "info"
        fast = self.rate >= THROUGHPUT_FACTOR * self.reference_rate
        return "PASS" if fast and self.dropped == 0 and self.flushed else "FAIL"

    def row(self) -> str:
        worker = 1000 * self.worker_cpu_s / self.exported if self.exported else float("nan")
        process = 1000 * self.process_cpu_s / self.produced if self.produced else float("nan")
        verdict = self.verdict()
        pct = 100 * self.dropped / self.produced if self.produced else 0.0
        capacity = f"{1000 / worker:,.0f}" if worker > 0 else "—"
        factor = f" ({self.rate / self.reference_rate:.2f}× plain OTel)" if self.reference_rate else ""
        return (f"| {self.label} | {self.produced / self.produce_s:,.0f} | {self.rate:,.0f}{factor} | "
                f"{self.exported:,} | {self.dropped:,} ({pct:.0f} %) | {self.other} | {worker:.3f} | {capacity} | "
                f"{process:.3f} | {'0 dropped, ≥ 2× plain OTel' if self.target else '—'} | {verdict} |")


def _produce(fn: Callable[[str], Any], seconds: float) -> tuple[int, float]:
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            fn(QUERY)
        calls += 100
    return calls, time.perf_counter() - start


def _measure_throughput(label: str, fn: Callable[[str], Any], seconds: float, flush: Callable[[], bool],
                        counts: Callable[[], tuple[int, int, str]], threads_before: set[int],
                        target: bool, spans_per_call: int = 1) -> Throughput:
    cpu0 = time.process_time()
    worker0 = _thread_cpu(_thread_ids() - threads_before)
    start = time.perf_counter()
    calls, produce_s = _produce(fn, seconds)
    flushed = flush()
    wall = time.perf_counter() - start
    process_cpu = time.process_time() - cpu0
    worker_cpu = _thread_cpu(_thread_ids() - threads_before) - worker0
    exported, dropped, other = counts()
    return Throughput(label, calls * spans_per_call, produce_s, wall, exported, dropped, other, worker_cpu,
                      process_cpu, flushed, target)


def throughput_phase(args: argparse.Namespace, fl: FluxLoopBench, sink: LocalSink, tmp: Path,
                     report: harness.Report, progress: Callable[[str], None]) -> None:
    seconds = args.seconds or (0.2 if args.smoke else 5.0)
    flush_ms = 30_000
    rows = []

    def fluxloop_run(label: str, target: bool, **changes: Any) -> Throughput:
        before = _thread_ids()
        pipeline = fluxloop_pipeline(**changes)
        old = swap_pipeline(pipeline)
        try:
            fl.agent(QUERY)  # start the worker thread before the clock starts
            pipeline.force_flush(flush_ms)
            base = _pipeline_counts(pipeline)

            def counts() -> tuple[int, int, str]:
                c = _pipeline_counts(pipeline)
                other = f"spooled {c.get('spooled', 0) - base.get('spooled', 0):,}, " \
                        f"failed {c.get('failed', 0) - base.get('failed', 0):,}"
                return (c.get("exported", 0) - base.get("exported", 0),
                        c.get("dropped", 0) - base.get("dropped", 0), other)
            return _measure_throughput(label, fl.agent, seconds, lambda: pipeline.force_flush(flush_ms), counts,
                                       before, target)
        finally:
            swap_pipeline(old)
            pipeline.shutdown(5000)

    progress(f"throughput: FluxLoop → OTLP/HTTP sink, {seconds:g} s")
    rows.append(fluxloop_run("10 FluxLoop → OTLP/HTTP (local sink)", True, use_collector=True,
                             collector_url=sink.url, offline_dir=str(tmp / "10-otlp")))
    progress(f"throughput: FluxLoop → offline files, {seconds:g} s")
    rows.append(fluxloop_run("10 FluxLoop → offline files (use_collector=False)", False, use_collector=False,
                             offline_enabled=True, offline_dir=str(tmp / "10-files")))

    progress(f"throughput: plain OTel BatchSpanProcessor → OTLP/HTTP sink, {seconds:g} s")
    before = _thread_ids()
    exporter = CountingExporter(OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces"))
    bsp = BatchSpanProcessor(exporter)
    raw = RawOtel(processor=bsp)
    raw.agent(QUERY)
    bsp.force_flush(flush_ms)
    base = exporter.exported

    def raw_counts() -> tuple[int, int, str]:
        return exporter.exported - base, 0, "—"

    result = _measure_throughput("10 plain OTel: BatchSpanProcessor + OTLPSpanExporter (defaults)", raw.agent,
                                 seconds, lambda: bsp.force_flush(flush_ms), raw_counts, before, False)
    result.dropped = max(0, result.produced - result.exported)
    raw.provider.shutdown()
    rows.append(result)
    for r in rows:
        if r.target:
            r.reference_rate = result.rate
    header = ["| pipeline | offered spans/s | delivered spans/s | exported | dropped | other | "
              "worker CPU s / 1k spans | worker-bound spans/s | process CPU s / 1k spans | target | result |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
    notes = (f"One producer thread calls case 3's agent flat out for {seconds:g} s, then `force_flush`; "
             "delivered spans/s = exported / (producing + flushing time); the target is 0 dropped and at least "
             "twice plain OTel's delivered spans/s, plain OTel running the same right after. Worker CPU = CPU time of the pipeline's "
             "own threads (queue, encoding, HTTP or file writes); worker-bound spans/s = 1 / worker CPU per span, "
             "what the export side could take with a core to itself; process CPU includes the producer. "
             "Offered spans/s is the producer's rate: when it is low, the call path, not the "
             "exporter, is the limit. The sink runs in a separate process.")
    report.sections.append("\n".join(["## Case 10: export throughput, producer running flat out", "", *header,
                                       *(r.row() for r in rows), "", notes]))
    for r in rows:
        if r.target:
            measured = (f"{r.rate:,.0f}/s = {r.rate / result.rate if result.rate else float('nan'):.2f}× plain OTel "
                        f"({result.rate:,.0f}/s), {r.dropped:,} dropped")
            target = "0 dropped; ≥ 2× plain OTel's delivered spans/s"
            report.verdicts.append((r.label, target, measured, r.verdict()))
            report.headline["flatout"] = (measured, r.verdict())


# -- case 11 ------------------------------------------------------------------------------------------------------
def _rss() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):  # pragma: no cover - not Linux: peak, not current
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclasses.dataclass
class MemoryRun:
    label: str
    calls: int
    seconds: float
    base: int
    peak: int
    mid: int
    final: int
    max_queued: int
    counts: dict[str, int]


def _memory_run(label: str, fl: FluxLoopBench, pipeline: fluxloop.FluxLoopSpanProcessor, calls: int,
                warmup: int) -> MemoryRun:
    step = max(1, calls // 40)
    agent = fl.agent
    old = swap_pipeline(pipeline)
    try:
        for _ in range(warmup):
            agent(QUERY)
        gc.collect()
        base = _rss()
        samples, max_queued, done = [base], 0, 0
        start = time.perf_counter()
        while done < calls:
            todo = min(step, calls - done)
            for _ in range(todo):
                agent(QUERY)
            done += todo
            samples.append(_rss())
            max_queued = max(max_queued, pipeline.stats()["queued"])
        elapsed = time.perf_counter() - start
        return MemoryRun(label, calls, elapsed, base, max(samples), samples[len(samples) // 2], samples[-1],
                         max_queued, _pipeline_counts(pipeline))
    finally:
        swap_pipeline(old)


def memory_phase(args: argparse.Namespace, fl: FluxLoopBench, closed: str, tmp: Path, report: harness.Report,
                 progress: Callable[[str], None]) -> None:
    calls = args.calls or (2_000 if args.smoke else 200_000)
    warmup = min(10_000, max(1, calls // 10))
    config = fluxloop.get_config()
    queue_size = config.max_queue_size
    bound = max(16 * MIB, queue_size * 8 * 1024)
    runs = []
    progress(f"memory: {calls:,} calls with the collector down (closed port)")
    down = fluxloop_pipeline(use_collector=True, collector_url=closed, offline_dir=str(tmp / "11-down"))
    runs.append(_memory_run("collector down (closed port; spooled to files)", fl, down, calls, warmup))
    down.shutdown(5000)
    progress(f"memory: {calls:,} calls with the collector hanging (accepts, never answers)")
    hanging = HangingCollector()
    slow = fluxloop_pipeline(use_collector=True, collector_url=hanging.url, offline_dir=str(tmp / "11-hang"))
    # Spans in memory: the batcher's queue, plus the batches the sender holds (waiting or in flight), as
    # BatchSpanProcessor holds the batch it exports beside its queue. get_stats()["queued"] counts both.
    held = queue_size + slow.exporter.sender.max_pending * config.batch_size  # type: ignore[attr-defined]
    try:
        runs.append(_memory_run("collector hanging (exports wait for the timeout; queue full)", fl, slow, calls,
                                warmup))
    finally:
        hanging.close()  # resets the pending connection: the blocked export ends now
        slow.shutdown(5000)
    lines = ["| collector | calls | RSS after warm-up | peak growth | growth, 2nd half | max queued | "
             "spooled / dropped / failed | bound | result |", "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in runs:
        ok = r.peak - r.base <= bound and r.max_queued <= held
        c = r.counts
        report.verdicts.append((f"11 memory, {r.label}", f"bounded: ≤ {bound / MIB:.0f} MiB, ≤ {held:,} queued",
                                f"{(r.peak - r.base) / MIB:+.1f} MiB, {r.max_queued:,} queued",
                                "PASS" if ok else "FAIL"))
        lines.append(f"| {r.label} | {r.calls:,} in {r.seconds:.1f} s | {r.base / MIB:.1f} MiB | "
                     f"{(r.peak - r.base) / MIB:+.1f} MiB | {(r.final - r.mid) / MIB:+.1f} MiB | {r.max_queued:,} | "
                     f"{c.get('spooled', 0):,} / {c.get('dropped', 0):,} / {c.get('failed', 0):,} | "
                     f"{bound / MIB:.0f} MiB | {'PASS' if ok else 'FAIL'} |")
    note = (f"After {warmup:,} warm-up calls, RSS (/proc/self/statm) is sampled every {max(1, calls // 40):,} calls. "
            f"Pass: peak growth ≤ max(16 MiB, max_queue_size {queue_size:,} × 8 KiB) and never more than "
            f"{held:,} spans held (`get_stats()['queued']`: max_queue_size {queue_size:,} in the queue plus the "
            f"sender's {held - queue_size:,}, its {slow.exporter.sender.max_pending} batches waiting or in flight, "  # type: ignore[attr-defined]
            "as BatchSpanProcessor holds the batch it exports beside its queue); what the queue cannot hold is "
            "spooled to files or dropped and counted.")
    report.sections.append("\n".join([f"## Case 11: memory over {calls:,} calls with the collector down", "",
                                       *lines, "", note]))
