"""Large artifact folders are indexed one request at a time: memory follows the number of traces, not the bytes."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

from fluxloop.cli._artifacts import index_traces

from .conftest import write_jobs


def _peak_while_indexing(directory: Path) -> tuple[int, int, int]:
    """(peak bytes allocated while indexing, bytes still held by the index, traces found)."""
    tracemalloc.start()
    try:
        index = index_traces(directory, on_problem=lambda problem: None)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, current, len(index.traces)


def test_indexing_streams_requests(tmp_path: Path) -> None:
    one = tmp_path / "one"
    write_jobs(one, ["weather in paris and rome " + "x" * 2000] * 300, batch_size=100)  # 1,500 spans
    [artifact] = list(one.glob("*.jsonl"))
    eight = tmp_path / "eight"
    eight.mkdir()
    for copy in range(8):  # eight times the bytes and spans, the same traces
        shutil.copy(artifact, eight / f"spans-{copy}.jsonl")

    peak_one, held_one, traces = _peak_while_indexing(one)
    peak_eight, held_eight, traces_eight = _peak_while_indexing(eight)

    assert traces == traces_eight == 300
    size = artifact.stat().st_size
    assert size > 2_000_000
    assert peak_eight < 1.5 * peak_one  # eight times the data, about the same peak: one request at a time
    assert peak_eight < 8 * size / 4
    assert held_eight < 1.5 * held_one and held_one / traces < 1500  # a small summary per trace
