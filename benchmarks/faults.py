"""Case 13: a collector that hangs, trickles its answer or resets connections, against a healthy one.

Per fault, two measurements with the real pipeline (as ``configure(collector_url=...)`` builds it, offline storage
on, ``timeout`` 2 s so the rounds stay short):

- loss: one producer at 2,000 spans/s (DESIGN §5's rate) for a few seconds, then ``force_flush``; spans produced,
  delivered, spooled, dropped, failed. The target: 0 lost (dropped + failed) while offline storage is on.
- caller time: interleaved rounds of case 3's ``@fluxloop.agent`` flat out behind each pipeline (a queue that
  holds a round, so the drop policy does not enter), median time per call on the calling thread, as a ratio to
  the healthy collector's. The target: ≤ 1.05×.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import fluxloop
from benchmarks import harness
from benchmarks.cases_fluxloop import FluxLoopBench, noop_processor, swap_pipeline
from benchmarks.export_phases import _pipeline_counts, fluxloop_pipeline
from benchmarks.harness import Case, Target
from benchmarks.sink import HangingCollector, LocalSink
from benchmarks.workload import QUERY, sync_loop

RATE = 2_000.0
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class MisbehavingCollector:
    """Reads each request, then trickles the answer (a byte every 0.5 s) or resets the connection (RST)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            data = b""
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(1 << 16)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk
                head, sep, rest = data.partition(b"\r\n\r\n")
                length = next((int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                               if k.strip().lower() == b"content-length"), 0)
                if not sep or len(rest) < length:
                    continue
                data = rest[length:]
                if self.mode == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                for byte in _ANSWER:
                    if self._stop.wait(0.5):
                        return
                    with contextlib.suppress(OSError):
                        conn.sendall(bytes([byte]))

    def close(self) -> None:
        self._stop.set()
        self._server.close()


def _paced(fn: Callable[[], object], seconds: float) -> int:
    count, start = 0, time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        fn()
        count += 1
        ahead = start + count / RATE - now
        if ahead > 0:
            time.sleep(ahead)
    return count


def run(args: argparse.Namespace, fl: FluxLoopBench, tmp: Path, report: harness.Report,
        progress: Callable[[str], None]) -> None:
    """Case 13 into ``report``."""
    fl.restore()
    with LocalSink() as sink:
        _fault_phase(args, fl, sink, tmp, report, progress)


def _fault_phase(args: argparse.Namespace, fl: FluxLoopBench, sink: LocalSink, tmp: Path, report: harness.Report,
                 progress: Callable[[str], None]) -> None:
    hang, trickle, reset = HangingCollector(), MisbehavingCollector("trickle"), MisbehavingCollector("reset")
    urls = {"healthy": sink.url, "hung": hang.url, "trickling": trickle.url, "resetting": reset.url}
    seconds = 0.5 if args.smoke else 4.0
    rows, loss = [], {}
    try:
        # Loss at DESIGN §5's rate, one fault at a time.
        for name, url in urls.items():
            pipeline = fluxloop_pipeline(use_collector=True, collector_url=url, offline_dir=str(tmp / f"13-{name}"),
                                         timeout=2.0, probe_interval=1.0, forward_spool=False)
            swap_pipeline(pipeline)
            progress(f"faults: {name} collector, {RATE:,.0f} spans/s for {seconds:g} s")
            produced = _paced(lambda: fl.agent(QUERY), seconds)
            swap_pipeline(noop_processor())
            pipeline.force_flush(30_000)
            pipeline.shutdown(5_000)
            counts = _pipeline_counts(pipeline)
            loss[name] = (produced, counts)

        # Caller time, interleaved rounds.
        pipelines = {name: fluxloop_pipeline(use_collector=True, collector_url=url, offline_dir=str(tmp / f"13t-{name}"),
                                             timeout=2.0, probe_interval=1.0, forward_spool=False,
                                             max_queue_size=1_000_000)
                     for name, url in urls.items()}

        def use(pipeline: fluxloop.FluxLoopSpanProcessor) -> Callable[[], None]:
            return lambda: swap_pipeline(pipeline) and None

        def flush(pipeline: fluxloop.FluxLoopSpanProcessor) -> Callable[[], None]:
            return lambda: pipeline.force_flush(30_000) and None

        call = sync_loop(fl.agent, QUERY)
        cases = [Case(f"13{name}", f"13 collector {name}", call, prepare=use(p), finish=flush(p),
                      ref=None if name == "healthy" else "13healthy",
                      target=Target("reference") if name == "healthy" else Target("≤ 1.05× healthy", 1.05))
                 for name, p in pipelines.items()]
        rounds = 2 if args.smoke else 11
        progress(f"faults: caller time, {len(cases)} cases × {rounds} interleaved rounds")
        try:
            results = harness.measure(cases, rounds, (1.0 if args.smoke else 50.0) / 1000)
        finally:
            swap_pipeline(noop_processor())
            for p in pipelines.values():
                p.shutdown(5_000)
    finally:
        hang.close()
        trickle.close()
        reset.close()

    ratios = {r.case.key[2:]: r.ratio for r in results}
    for name, (produced, counts) in loss.items():
        lost = counts.get("dropped", 0) + counts.get("failed", 0)
        ratio = ratios.get(name)
        ratio_text = "—" if name == "healthy" or ratio is None else f"{ratio:.2f}×"
        met = "—" if name == "healthy" else ("met" if lost == 0 and ratio is not None and ratio <= 1.05
                                             else "not met")
        rows.append(f"| {name} | {produced:,} | {counts.get('exported', 0):,} | {counts.get('spooled', 0):,} | "
                    f"{counts.get('dropped', 0):,} | {counts.get('failed', 0):,} | {ratio_text} | {met} |")
        if name != "healthy":
            report.verdicts.append((f"13 collector {name}: 0 lost, caller time", "0 lost; ≤ 1.05× healthy",
                                    f"{lost:,} lost; {ratio_text}", "PASS" if met == "met" else "FAIL"))
    report.sections.append("\n".join([
        "## Case 13: misbehaving collectors (offline storage on, `timeout` 2 s)", "",
        f"Loss: one producer at {RATE:,.0f} spans/s for {seconds:g} s, then a flush. Caller time: {rounds} "
        "interleaved rounds of case 3's agent flat out, median per call, as a ratio to the healthy collector.", "",
        "| collector | produced | delivered | spooled | dropped | failed | caller time vs healthy | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|", *rows, "",
        harness.table(results, ratio_header="ratio vs healthy", main_ref="13healthy")]))
