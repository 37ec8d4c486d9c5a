"""FluxLoop cases 3-8: the decorators as a user writes them, through FluxLoop's own pipeline into a no-op exporter.

Cases 3-5 are the calling thread's share only (a breakdown line: the headline is the real pipelines' cases R1-R4
in ``cases_real.py``); cases 7 and 8 are headline figures.

Set-up, and why it is fair: ``fluxloop.configure(...)`` is called as an application would (files only, so nothing
touches the network), FluxLoop builds its provider, sampler, ``PipelineSwitch`` and ``FluxLoopSpanProcessor``
itself; then the bench swaps the processor behind the switch for a ``FluxLoopSpanProcessor`` of the same
queue/batch settings whose exporter does nothing (``RUNTIME.switch.swap``, an internal hook). So every call pays
exactly what FluxLoop's calling thread pays in production (decorator, sampler, span, attributes, processor
``on_end``), while the background worker's export costs nothing, like raw OTel's in-memory exporter.

Cases 7 and 8 switch the configuration with ``fluxloop.configure(sample_rate=0)`` / ``configure(enabled=False)``
before their batch (untimed); re-enabling rebuilds the pipeline, which the bench swaps for a no-op one again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fluxloop
from benchmarks.harness import Case, Target
from benchmarks.workload import (
    QUERY,
    RAW_ASYNC,
    RAW_GEN,
    RAW_NESTED,
    RAW_SYNC,
    RAW_UNSAMPLED,
    answer,
    answer_async,
    async_loop,
    gen_loop,
    generate_body,
    nested_agent_body,
    rank_body,
    search_body,
    stream,
    sync_loop,
)
from fluxloop import _runtime

SAMPLED, UNSAMPLED, DISABLED = "sampled", "sample_rate=0", "disabled"
BREAKDOWN = Target("breakdown (no-op exporter): info")


class NoOpSpanExporter(SpanExporter):
    """Accepts every batch and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def base_config(files_dir: Path) -> dict[str, Any]:
    """What every FluxLoop case configures: no network, files under the bench's temporary folder."""
    return {"service_name": "benchmarks", "use_collector": False, "offline_enabled": True,
            "offline_dir": str(files_dir), "sample_rate": 1.0, "enabled": True}


def noop_processor() -> fluxloop.FluxLoopSpanProcessor:
    config = fluxloop.get_config()
    return fluxloop.FluxLoopSpanProcessor(NoOpSpanExporter(), max_queue_size=config.max_queue_size,
                                          batch_size=config.batch_size, flush_interval=config.flush_interval)


def swap_pipeline(processor: fluxloop.FluxLoopSpanProcessor | None) -> fluxloop.FluxLoopSpanProcessor | None:
    """Put ``processor`` behind FluxLoop's switch; return the previous one (internal hook, bench only)."""
    return _runtime.RUNTIME.switch.swap(processor)


class FluxLoopBench:
    """FluxLoop configured once, decorated functions, and the mode switch cases 3-8 use."""

    def __init__(self, files_dir: Path) -> None:
        fluxloop.configure(**base_config(files_dir))
        self.agent = fluxloop.agent(name="answer")(answer)
        self.agent_async = fluxloop.agent(name="answer")(answer_async)
        self.stream = fluxloop.prompt(name="stream", model="gpt-4o-mini")(stream)
        generate = fluxloop.prompt(name="generate", model="gpt-4o-mini")(generate_body)
        search = fluxloop.tool(name="search", description="Search the corpus")(search_body)
        rank = fluxloop.tool(name="rank", description="Rank documents")(rank_body)

        def researcher(query: str) -> dict[str, Any]:
            return nested_agent_body(query, generate, search, rank)

        self.nested = fluxloop.agent(name="researcher")(researcher)
        self.mode = ""
        self.agent(QUERY)  # FluxLoop starts lazily: provider, switch and its own pipeline are built now
        self.set_mode(SAMPLED)

    def install_noop(self) -> None:
        pipeline = _runtime.RUNTIME.switch.pipeline
        if pipeline is not None and isinstance(pipeline.exporter, NoOpSpanExporter):
            return
        old = swap_pipeline(noop_processor())
        if old is not None:
            old.shutdown(2000)

    def set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        if mode == DISABLED:
            fluxloop.configure(enabled=False)
        else:
            fluxloop.configure(enabled=True, sample_rate=1.0 if mode == SAMPLED else 0.0)
            self.install_noop()
            self.agent(QUERY)  # a new pipeline starts its worker thread on its first span: not in the timing
        self.mode = mode

    def mode_setter(self, mode: str) -> Any:
        return lambda: self.set_mode(mode)

    def cases(self) -> list[Case]:
        sampled = self.mode_setter(SAMPLED)
        return [
            Case("3", "3 @fluxloop.agent sync", sync_loop(self.agent, QUERY), ref=RAW_SYNC, target=BREAKDOWN,
                 prepare=sampled),
            Case("4", "4 @fluxloop.agent async", async_loop(self.agent_async, QUERY), ref=RAW_ASYNC,
                 target=BREAKDOWN, prepare=sampled),
            Case("5", "5 nested agent → prompt + 2 tools (4 spans)", sync_loop(self.nested, QUERY),
                 ref=RAW_NESTED, target=BREAKDOWN, prepare=sampled),
            Case("6", "6 @fluxloop.prompt generator (10 items)", gen_loop(self.stream, QUERY), ref=RAW_GEN,
                 target=Target("no target (info)"), prepare=sampled),
            Case("7", "7 @fluxloop.agent, sample_rate=0", sync_loop(self.agent, QUERY), ref=RAW_UNSAMPLED,
                 target=Target("≤ 1 µs", max_us=1.0), prepare=self.mode_setter(UNSAMPLED), headline="unsampled"),
            Case("8", "8 @fluxloop.agent, enabled=False", sync_loop(self.agent, QUERY), ref=RAW_SYNC,
                 target=Target("≤ 0.25 µs", max_us=0.25), prepare=self.mode_setter(DISABLED), headline="disabled"),
        ]

    def check(self) -> list[str]:
        """Problems with the set-up: sampled calls must reach FluxLoop's pipeline (1 + 4 spans), others not."""
        problems = []
        for mode, want in ((SAMPLED, 5), (UNSAMPLED, 0), (DISABLED, 0), (SAMPLED, 5)):
            self.set_mode(mode)
            capture = InMemorySpanExporter()
            processor = fluxloop.FluxLoopSpanProcessor(capture)
            previous = swap_pipeline(processor)
            try:
                self.agent(QUERY)
                self.nested(QUERY)
                processor.force_flush(5000)
            finally:
                swap_pipeline(previous)
                processor.shutdown(1000)
            got = len(capture.get_finished_spans())
            if got != want:
                problems.append(f"FluxLoop {mode}: {got} spans reached the pipeline, expected {want}")
        return problems

    def restore(self) -> None:
        """Back to sampled with a no-op pipeline (what the other phases start from)."""
        self.set_mode(SAMPLED)
