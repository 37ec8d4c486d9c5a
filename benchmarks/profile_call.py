"""Where a decorated call's time goes: profiles the calling thread of case 3 (or another case) and prints it.

Usage (from the repository root, with ``PYTHONPATH=.``; or ``make bench-profile``)::

    .venv/bin/python -m benchmarks.profile_call                      # case 3, cProfile, 20,000 calls
    .venv/bin/python -m benchmarks.profile_call --case nested --top 40
    .venv/bin/python -m benchmarks.profile_call --case raw           # the raw OTel reference, same view
    .venv/bin/python -m benchmarks.profile_call --case export-otlp   # the export worker's job (case 10)
    .cache/bench-peers/venv/bin/python -m benchmarks.profile_call --tool pyinstrument [--all-frames]

The set-up is the harness's: FluxLoop configured normally, its pipeline swapped for a no-op exporter, so only
what the calling thread pays shows. cProfile's own overhead inflates functions that are called often; the
"µs per call" columns are therefore relative weights (compare with ``--case raw``, profiled the same way).
pyinstrument samples instead (less distortion) and is installed only in the bench-peers venv.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CASES = ("sync", "async", "nested", "generator", "unsampled", "disabled", "raw", "raw-nested", "export-otlp",
         "export-files")
EXPORT_BATCH = 512


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_call", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=CASES, default="sync", help="which call path (default: case 3, sync)")
    parser.add_argument("--calls", type=int, default=None,
                        help="calls to profile (default 20,000; 200 batches for the export cases)")
    parser.add_argument("--tool", choices=("cprofile", "pyinstrument"), default="cprofile")
    parser.add_argument("--top", type=int, default=25, help="rows of each cProfile table")
    parser.add_argument("--all-frames", action="store_true", help="pyinstrument: show library frames too")
    parser.add_argument("--smoke", action="store_true", help="a few calls, just to check it runs")
    return parser.parse_args(argv)


def _export_target(fl: Any, otlp: bool, files_dir: Path, cleanup: list[Callable[[], Any]]) -> Callable[[], Any]:
    """One call = the export worker's job for a batch of 512 case-3 spans, as ``configure()`` builds it: the export
    stage's redaction (when the pipeline has one), then the exporter (encoding, file write or HTTP request)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import fluxloop
    from benchmarks.cases_fluxloop import swap_pipeline
    from benchmarks.cases_real import fluxloop_pipeline
    from benchmarks.sink import LocalSink
    from benchmarks.workload import QUERY

    capture = InMemorySpanExporter()
    processor = fluxloop.FluxLoopSpanProcessor(capture)
    previous = swap_pipeline(processor)
    for _ in range(EXPORT_BATCH):
        fl.agent(QUERY)
    processor.force_flush(10_000)
    swap_pipeline(previous)
    batch = list(capture.get_finished_spans())
    if otlp:
        sink = LocalSink()
        cleanup.append(sink.close)
        pipeline = fluxloop_pipeline(use_collector=True, collector_url=sink.url, offline_dir=str(files_dir / "s"))
    else:
        pipeline = fluxloop_pipeline(use_collector=False, offline_enabled=True, offline_dir=str(files_dir / "f"))
    cleanup.append(lambda: pipeline.shutdown(2000))
    exporter = pipeline.exporter
    redactor = getattr(pipeline, "redactor", None)
    if redactor is not None:
        redact = redactor.redact_batch
        return lambda: exporter.export(redact(batch))
    return lambda: exporter.export(batch)


def _target(case: str, files_dir: Path, cleanup: list[Callable[[], Any]]) -> Callable[[], Any]:
    from benchmarks.cases_fluxloop import DISABLED, SAMPLED, UNSAMPLED, FluxLoopBench
    from benchmarks.workload import QUERY, RawOtel, event_loop

    if case.startswith("raw"):
        raw = RawOtel()
        fn = raw.nested if case == "raw-nested" else raw.agent

        count = [0]

        def call_raw() -> Any:
            count[0] += 1
            if count[0] % 10_000 == 0:  # keep memory flat; the clear itself is rare and cheap
                raw.clear()
            return fn(QUERY)
        return call_raw
    fl = FluxLoopBench(files_dir)
    if case.startswith("export"):
        return _export_target(fl, case == "export-otlp", files_dir, cleanup)
    fl.set_mode({"unsampled": UNSAMPLED, "disabled": DISABLED}.get(case, SAMPLED))
    if case == "async":
        loop = event_loop()
        return lambda: loop.run_until_complete(fl.agent_async(QUERY))
    if case == "nested":
        return lambda: fl.nested(QUERY)
    if case == "generator":
        return lambda: list(fl.stream(QUERY))
    return lambda: fl.agent(QUERY)


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", os.getcwd() + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _cprofile(call: Callable[[], Any], calls: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tottime, cumtime, ncalls, f"{_short(file)}:{line}({func})"))
    total = sum(r[0] for r in rows)
    print(f"cProfile, {calls:,} calls: {total / calls * 1e6:.2f} µs per call under the profiler\n")
    for title, key in (("own time (tottime)", 0), ("cumulative time (cumtime)", 1)):
        print(f"### top {top} by {title}, per profiled call\n")
        print("| own µs | cum µs | calls per call | function |\n|---:|---:|---:|---|")
        for tottime, cumtime, ncalls, where in sorted(rows, key=lambda r: r[key], reverse=True)[:top]:
            print(f"| {tottime / calls * 1e6:.3f} | {cumtime / calls * 1e6:.3f} | {ncalls / calls:.2f} | "
                  f"`{where}` |")
        print()


def _pyinstrument(call: Callable[[], Any], calls: int, all_frames: bool) -> None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("pyinstrument is not installed here: use the bench-peers venv "
                         "(make bench-peers creates it) or --tool cprofile") from None
    profiler = Profiler(interval=0.0001, async_mode="disabled")
    profiler.start()
    for _ in range(calls):
        call()
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=all_frames))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    export = args.case.startswith("export")
    calls = (5 if export else 200) if args.smoke else (args.calls or (200 if export else 20_000))
    cleanup: list[Callable[[], Any]] = []
    with tempfile.TemporaryDirectory(prefix="fluxloop-profile-") as tmp:
        try:
            call = _target(args.case, Path(tmp), cleanup)
            for _ in range(min(2_000, calls)):  # warm-up: worker thread, caches, connections
                call()
            start = time.perf_counter()
            for _ in range(calls):
                call()
            plain = (time.perf_counter() - start) / calls * 1e6
            unit = f"call (one call = a batch of {EXPORT_BATCH} spans)" if export else "call"
            print(f"## Profile of case `{args.case}` ({sys.executable})\n")
            print(f"Without the profiler: {plain:.2f} µs per {unit}, {calls:,} calls"
                  + (f"; {plain / EXPORT_BATCH:.2f} µs per span" if export else "") + ".\n")
            if args.tool == "pyinstrument":
                _pyinstrument(call, calls, args.all_frames)
            else:
                _cprofile(call, calls, args.top)
        finally:
            from benchmarks.cases_fluxloop import swap_pipeline

            old = swap_pipeline(None)
            if old is not None:
                old.shutdown(2000)
            for step in reversed(cleanup):
                step()
    asyncio.set_event_loop(None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
