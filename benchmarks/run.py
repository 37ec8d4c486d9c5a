"""Command line of the harness: runs the phases, prints the markdown report (tables + machine) to stdout.

Phases: ``micro`` (cases 1-8 and the real pipelines' cases R1-R4, plus the peers with ``--peers``), ``collector``
(case 9), ``throughput`` (case 10), ``memory`` (case 11), ``upload`` (case U), ``faults`` (case 13: hung, trickling,
resetting collectors), ``import`` (``import fluxloop`` vs ``import opentelemetry.sdk.trace``), ``large`` (case 12, a
4 MB argument). ``--smoke`` makes everything tiny: it checks that every case runs, its numbers mean nothing.
Progress goes to stderr, the report to stdout; the headline table (every DESIGN §5 target measured with the real
pipelines) comes first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import export_phases, faults, harness, import_cost, large_input, span_bytes, upload_phase
from benchmarks.cases_fluxloop import FluxLoopBench, swap_pipeline
from benchmarks.cases_real import RealPipelines
from benchmarks.sink import LocalSink
from benchmarks.workload import RawOtel, core_reference_cases

PHASES = ("micro", "collector", "throughput", "memory", "upload", "import", "large", "faults")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny runs (seconds): checks that every case works")
    parser.add_argument("--peers", action="store_true",
                        help="add OpenLLMetry (traceloop-sdk), Langfuse and Logfire to the micro phase "
                             "(needs the bench-peers venv)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {', '.join(PHASES)} (default: all)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds of the micro phase (default 41, 31 with --peers)")
    parser.add_argument("--batch-ms", type=float, default=None, help="length of one batch, ms (default 25)")
    parser.add_argument("--calls", type=int, default=None, help="calls of the memory phase (default 200000)")
    parser.add_argument("--seconds", type=float, default=None, help="producer time of each throughput run (5)")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    return args


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def micro_phase(args: argparse.Namespace, fl: FluxLoopBench, tmp: Path, report: harness.Report) -> list[str]:
    """Cases 1-8, R1-R4 (and the peers) into ``report``; returns the peers' distribution names."""
    rounds = args.rounds or (2 if args.smoke else (31 if args.peers else 41))
    batch_s = (args.batch_ms or (1.0 if args.smoke else 25.0)) / 1000.0
    raw, raw_off = RawOtel(), RawOtel(sampled=False)
    cases = [*core_reference_cases(raw, raw_off), *fl.cases()]
    problems = [*raw.check(5), *raw_off.check(0), *fl.check()]
    peer_dists: list[str] = []
    close_peers = None
    sink: LocalSink | None = None
    real: RealPipelines | None = None
    if not args.peers:  # the peers' venv measures the calling thread only (cases 3-8)
        sink = LocalSink()
        real = RealPipelines(fl, tmp / "real-pipelines", sink.url)
        cases += real.cases()
        problems += real.check()
    if args.peers:
        # Imported only here: the peers are installed in the bench-peers venv alone.
        from benchmarks import cases_peers
        from benchmarks.sink import closed_port_url

        peer_dists = list(cases_peers.PEER_DISTS)
        more, peer_problems = cases_peers.peer_cases(closed_port_url())
        cases += more
        problems += peer_problems
        close_peers = cases_peers.close_peers
    try:
        if problems:
            raise SystemExit("benchmark set-up is wrong, its numbers would mean nothing:\n  "
                             + "\n  ".join(problems))
        _progress("set-up check passed: sampled cases export their spans, unsampled/disabled ones none")
        _progress(f"micro: {len(cases)} cases × {rounds} interleaved rounds of ~{batch_s * 1000:g} ms")
        results = harness.measure(cases, rounds, batch_s, progress=_progress)
    finally:
        if close_peers is not None:
            close_peers()
        fl.restore()
        counts = real.counts() if real is not None else ""
        if real is not None:
            real.close()
        if sink is not None:
            sink.close()
    lines = [f"## Per-call cost, cases 1-8{', R1-R4' if real else ''}{' and peers' if args.peers else ''}: "
             f"{rounds} interleaved rounds, medians", "", harness.table(results)]
    if real is not None:
        lines += ["", "R1-R4 run the pipelines `configure()` builds (offline files; OTLP/HTTP to a local sink in "
                  "another process), each batch ending with the pipeline's `force_flush` inside the timing, so the "
                  "export worker's work for the batch is paid in it. Cases 3-5 swap in an exporter that does "
                  f"nothing: a breakdown of the calling thread's share, not a headline. Real pipelines: {counts}."]
    report.add_results(results)
    if args.peers:
        text, verdicts = cases_peers.peer_summary(results)
        lines += ["", "FluxLoop vs each peer, same process, same rounds (× = peer time / FluxLoop time, median of "
                  "per-round ratios):", "", text]
        report.verdicts += verdicts
    report.sections.append("\n".join(lines))
    return peer_dists


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    for name in ("OTEL_SDK_DISABLED", "FLUXLOOP_ENABLED", "FLUXLOOP_SAMPLE_RATE"):
        if os.environ.get(name):
            _progress(f"note: {name}={os.environ[name]!r} is set; the bench configures FluxLoop explicitly")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="fluxloop-bench-"))
    report = harness.Report()
    peer_dists: list[str] = []
    try:
        fl = FluxLoopBench(tmp / "micro-files")
        if "micro" in args.phases:
            peer_dists = micro_phase(args, fl, tmp, report)
            report.sections.append(span_bytes.section())  # sizes, not times: one turn is enough
        if any(p in args.phases for p in ("collector", "throughput", "memory")):
            export_phases.run(args, fl, tmp, report, _progress)
        if "upload" in args.phases:
            upload_phase.run(fl, tmp, report, _progress, args.smoke)
        if "faults" in args.phases:
            faults.run(args, fl, tmp, report, _progress)
        if "import" in args.phases:
            import_cost.run(5, report, _progress)
        if "large" in args.phases:
            large_input.run(args, tmp / "large-files", report, _progress)
    finally:
        old = swap_pipeline(None)
        if old is not None:
            old.shutdown(2000)
        shutil.rmtree(tmp, ignore_errors=True)

    title = "FluxLoop benchmarks" + (" with peer SDKs" if args.peers else "")
    if args.smoke:
        title += " (SMOKE RUN: the numbers mean nothing)"
    print(f"# {title}\n")
    print("## Headline: DESIGN §5 targets with the real pipelines running\n")
    print(report.headline_table())
    print()
    print("## Summary against DESIGN §5\n")
    print(report.summary())
    print()
    print("\n\n".join(report.sections))
    print("\n## Machine and command\n")
    print("\n".join(harness.machine_info(peer_dists)))
    print(f"- wall time of this run: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
