"""Case U: ``fluxloop upload`` of 100,000 spooled spans to a local OTLP/HTTP sink, as a user runs it.

The spans are spooled by the real offline-file pipeline (``configure(use_collector=False)``'s, built with
``build_processor``): case 5's nested agent (4 spans per call) is called until 100,000 spans are on disk. Then
``python -m fluxloop upload --dir D --collector-url SINK --json`` runs in a child process, timed from start to exit
(interpreter start and imports included); the sink (another process) decodes every request after answering it and
counts the spans, which must be all of them. Breakdown lines, in this process: the same files read and converted
to protobuf request bodies by the direct writer ``fluxloop upload`` uses, and by ``json_format.ParseDict`` (what it
used before), without sending.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from benchmarks import harness
from benchmarks.cases_fluxloop import SAMPLED, FluxLoopBench, swap_pipeline
from benchmarks.cases_real import fluxloop_pipeline
from benchmarks.sink import LocalSink
from benchmarks.workload import QUERY
from fluxloop_otel_exporter import iter_offline_files, read_requests, request_to_protobuf
from fluxloop_otel_exporter._otlp_json import request_to_protobuf as parse_dict_request

TARGET_SPANS_PER_S = 50_000
ROOT = Path(__file__).resolve().parents[1]


def spool(fl: FluxLoopBench, directory: Path, spans: int) -> int:
    """Write at least ``spans`` spans to ``directory`` through the real offline-file pipeline; how many."""
    fl.set_mode(SAMPLED)
    pipeline = fluxloop_pipeline(use_collector=False, offline_enabled=True, offline_dir=str(directory))
    previous = swap_pipeline(pipeline)
    try:
        for call in range((spans + 3) // 4):
            fl.nested(QUERY)
            if call % 256 == 255:  # 1,024 spans: the queue never fills, whatever the machine's load
                pipeline.force_flush(120_000)
        if not pipeline.force_flush(120_000):
            raise RuntimeError("the offline-file pipeline did not flush the spooled spans")
    finally:
        swap_pipeline(previous)
        pipeline.shutdown(5000)
    written = pipeline.exporter.counters.snapshot()["exported"]  # type: ignore[attr-defined]
    if pipeline.stats()["dropped"]:
        raise RuntimeError(f"spooling dropped spans: {pipeline.stats()}")
    return int(written)


def _convert_all(directory: Path, convert: Callable[[dict[str, object]], bytes]) -> tuple[float, int]:
    start = time.perf_counter()
    size = 0
    for path in iter_offline_files(directory):
        for _, request, _error in read_requests(path):
            if request is not None:
                size += len(convert(request))
    return time.perf_counter() - start, size


def run(fl: FluxLoopBench, tmp: Path, report: harness.Report, progress: Callable[[str], None],
        smoke: bool) -> None:
    wanted = 2_000 if smoke else 100_000
    directory = tmp / "upload-spool"
    progress(f"upload: spooling {wanted:,} spans through the real offline-file pipeline")
    spooled = spool(fl, directory, wanted)
    size_mb = sum(p.stat().st_size for p in iter_offline_files(directory)) / 1e6

    progress("upload: reading + converting the files in this process (direct writer, then ParseDict)")
    direct_s, _ = _convert_all(directory, request_to_protobuf)
    parse_dict_s, _ = _convert_all(directory, parse_dict_request)

    progress(f"upload: `fluxloop upload` of {spooled:,} spans to a local sink (child process)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    with LocalSink(count_spans=True) as sink:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "fluxloop", "upload", "--dir", str(directory),
                               "--collector-url", sink.url, "--json"], env=env, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - start
    try:
        result = orjson.loads(proc.stdout.strip().splitlines()[-1])
    except (orjson.JSONDecodeError, IndexError):
        result = {}
    sent = int(result.get("spans", 0))
    received = sink.spans or 0
    rate = spooled / wall if wall else 0.0
    complete = proc.returncode == 0 and sent == spooled and received == spooled
    verdict = "PASS" if complete and rate >= TARGET_SPANS_PER_S else "FAIL"
    measured = f"{rate:,.0f} spans/s" + ("" if complete else f" (INCOMPLETE: sent {sent:,}, sink got {received:,}, "
                                                            f"exit {proc.returncode})")
    report.verdicts.append(("U `fluxloop upload` of 100,000 spooled spans", "≥ 50,000 spans/s", measured, verdict))
    report.headline["upload"] = (measured, verdict)
    lines = [
        f"## Case U: `fluxloop upload` of {spooled:,} spooled spans ({size_mb:.1f} MB of OTLP/JSON) to a local sink",
        "",
        "| what | seconds | spans/s | target | result |",
        "|---|---:|---:|---|---|",
        f"| U `fluxloop upload` (child process, start to exit) | {wall:.2f} | {rate:,.0f} | ≥ 50,000 spans/s, all "
        f"delivered | {verdict} |",
        f"| U breakdown: read + convert, direct writer (in process, nothing sent) | {direct_s:.2f} | "
        f"{spooled / direct_s:,.0f} | — | info |",
        f"| U breakdown: read + convert, `json_format.ParseDict` (before) | {parse_dict_s:.2f} | "
        f"{spooled / parse_dict_s:,.0f} | — | info |",
        "",
        f"Upload: {result.get('requests', '?')} requests, {sent:,} spans sent, the sink decoded {received:,}; exit "
        f"code {proc.returncode}. The spans are case 5's nested agent spans, spooled by the real offline-file "
        "pipeline.",
    ]
    if proc.returncode != 0:
        lines.append(f"\nstderr of the upload: {proc.stderr[-2000:]}")
    report.sections.append("\n".join(lines))
