"""Headline cases R1-R4: the decorated calls through the REAL pipelines ``configure()`` builds, flush inside the timing.

Each batch of calls ends with the pipeline's ``force_flush``, inside the timed section, so the export worker's
work (encoding, file writes or HTTP requests to the local sink) for those spans is paid in the batch, whichever
thread does it: on two shared cores the worker takes its share of the GIL from the caller. A batch holds at
least 2,048 spans (four export batches of the default size), so the latency of the last request is spread as it
is in a running application, where nobody waits for a flush after every few calls. The reference is the
raw OTel span of case 2 / 2b (SimpleSpanProcessor + InMemorySpanExporter: its export runs on the calling thread
at span end, so it has nothing left to flush), measured in the same rounds.

Pipelines are built with ``fluxloop._pipeline.build_processor`` from the configuration in force with only the
destination changed (``offline_dir`` with ``use_collector=False``; or ``collector_url`` = the local sink), i.e.
exactly what ``fluxloop.configure(...)`` builds, and put behind FluxLoop's switch for the batch only
(``RUNTIME.switch.swap``, an internal hook; the no-op pipeline of cases 3-8 is put back after it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

import fluxloop
from benchmarks.cases_fluxloop import SAMPLED, FluxLoopBench, swap_pipeline
from benchmarks.harness import Case, Target
from benchmarks.workload import QUERY, RAW_NESTED, RAW_SYNC
from fluxloop._pipeline import build_processor

FLUSH_MS = 60_000
MIN_SPANS_PER_BATCH = 2048  # four default export batches: a flush's fixed latency is amortized, as in production
REAL_RATIO = Target("≤ 1.0× raw OTel", max_ratio=1.0)

#: Keys of the cases below.
FILES_SYNC, OTLP_SYNC, FILES_NESTED, OTLP_NESTED = "R1", "R2", "R3", "R4"


def fluxloop_pipeline(**changes: Any) -> fluxloop.FluxLoopSpanProcessor:
    """The pipeline ``configure(**changes)`` would build on top of the configuration in force."""
    processor = build_processor(dataclasses.replace(fluxloop.get_config(), **changes))
    assert processor is not None, f"no pipeline for {changes}"
    return processor


def _exported(pipeline: fluxloop.FluxLoopSpanProcessor) -> int:
    counters = getattr(pipeline.exporter, "counters", None)
    return int(counters.snapshot()["exported"]) if counters is not None else 0


class RealPipelines:
    """The offline-file and OTLP/HTTP pipelines of the headline cases, and the cases themselves."""

    def __init__(self, fl: FluxLoopBench, files_dir: Path, sink_url: str) -> None:
        self.fl = fl
        self.files = fluxloop_pipeline(use_collector=False, offline_enabled=True, offline_dir=str(files_dir))
        self.otlp = fluxloop_pipeline(use_collector=True, collector_url=sink_url,
                                      offline_dir=str(files_dir / "spool"))
        self._previous: fluxloop.FluxLoopSpanProcessor | None = None

    def _use(self, pipeline: fluxloop.FluxLoopSpanProcessor) -> Callable[[], None]:
        def prepare() -> None:
            self.fl.set_mode(SAMPLED)
            self._previous = swap_pipeline(pipeline)
        return prepare

    def _restore(self) -> None:
        swap_pipeline(self._previous)
        self._previous = None

    def _flushed_loop(self, fn: Callable[[str], Any], pipeline: fluxloop.FluxLoopSpanProcessor
                      ) -> Callable[[int], float]:
        def run(n: int) -> float:
            start = perf_counter()
            for _ in range(n):
                fn(QUERY)
            flushed = pipeline.force_flush(FLUSH_MS)
            elapsed = perf_counter() - start
            if not flushed:
                raise RuntimeError(f"the pipeline did not flush within {FLUSH_MS} ms: the figure would be wrong")
            return elapsed
        return run

    def cases(self) -> list[Case]:
        fl = self.fl
        return [
            Case(FILES_SYNC, "R1 @fluxloop.agent sync, REAL offline-file pipeline, flush timed",
                 self._flushed_loop(fl.agent, self.files), ref=RAW_SYNC, target=REAL_RATIO,
                 prepare=self._use(self.files), finish=self._restore,
                 headline="files", min_calls=MIN_SPANS_PER_BATCH),
            Case(OTLP_SYNC, "R2 @fluxloop.agent sync, REAL OTLP/HTTP pipeline (local sink), flush timed",
                 self._flushed_loop(fl.agent, self.otlp), ref=RAW_SYNC, target=REAL_RATIO,
                 prepare=self._use(self.otlp), finish=self._restore,
                 headline="otlp", min_calls=MIN_SPANS_PER_BATCH),
            Case(FILES_NESTED, "R3 nested agent → prompt + 2 tools, REAL offline-file pipeline, flush timed",
                 self._flushed_loop(fl.nested, self.files), ref=RAW_NESTED, target=REAL_RATIO,
                 prepare=self._use(self.files), finish=self._restore,
                 headline="nested-files", min_calls=MIN_SPANS_PER_BATCH // 4),
            Case(OTLP_NESTED, "R4 nested agent → prompt + 2 tools, REAL OTLP/HTTP pipeline, flush timed",
                 self._flushed_loop(fl.nested, self.otlp), ref=RAW_NESTED, target=REAL_RATIO,
                 prepare=self._use(self.otlp), finish=self._restore,
                 headline="nested-otlp", min_calls=MIN_SPANS_PER_BATCH // 4),
        ]

    def check(self) -> list[str]:
        """Problems with the set-up: a call through each pipeline must be delivered (file line, sink answer)."""
        problems = []
        for name, pipeline in (("offline files", self.files), ("OTLP/HTTP", self.otlp)):
            self._use(pipeline)()
            try:
                before = _exported(pipeline)
                self.fl.agent(QUERY)
                self.fl.nested(QUERY)
                flushed = pipeline.force_flush(FLUSH_MS)
            finally:
                self._restore()
            got = _exported(pipeline) - before
            if not flushed or got != 5:
                problems.append(f"FluxLoop real {name} pipeline: {got} spans exported (flushed: {flushed}), "
                                "expected 5")
            stats = pipeline.stats()
            if stats.get("dropped") or stats.get("failed"):
                problems.append(f"FluxLoop real {name} pipeline: {stats}")
        return problems

    def counts(self) -> str:
        """What the pipelines did over the run (exported, spooled, dropped, failed)."""
        parts = []
        for name, pipeline in (("files", self.files), ("OTLP", self.otlp)):
            counters = getattr(pipeline.exporter, "counters", None)
            snapshot = counters.snapshot() if counters is not None else {}
            stats = pipeline.stats()
            parts.append(f"{name}: exported {snapshot.get('exported', 0):,}, spooled {snapshot.get('spooled', 0):,}, "
                         f"dropped {stats.get('dropped', 0):,}, failed "
                         f"{stats.get('failed', 0) + snapshot.get('failed', 0):,}")
        return "; ".join(parts)

    def close(self) -> None:
        for pipeline in (self.files, self.otlp):
            pipeline.shutdown(5000)
