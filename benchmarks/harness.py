"""The measuring engine: interleaved rounds of every case in one process, medians, per-round ratios, the table.

Each :class:`Case` runs ``n`` calls in a tight loop and returns the elapsed seconds, timed inside the loop so
that set-up (``prepare``) and clean-up (``finish``) stay out of the measurement. Every round runs every case once,
in an order rotated by one position per round, so slow drifts of a noisy machine hit all cases alike. A case's
ratio is the median over rounds of (its time / its reference's time in the same round), which cancels most of
that drift; its µs/call is the median over rounds, with the inter-quartile range as spread.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata

import fluxloop


@dataclass(frozen=True)
class Target:
    """What DESIGN §5 asks of a case: a ratio to its reference, an absolute time, or just a figure to show."""

    text: str
    max_ratio: float | None = None
    max_us: float | None = None

    def verdict(self, us: float, ratio: float | None) -> str:
        if self.max_ratio is not None and ratio is not None:
            return "PASS" if ratio <= self.max_ratio else "FAIL"
        if self.max_us is not None:
            return "PASS" if us <= self.max_us else "FAIL"
        return "info"


@dataclass
class Case:
    """One measured call path. ``run(n)`` makes ``n`` calls and returns the seconds they took.

    ``headline``: the key in :data:`HEADLINE` whose row this case's figure fills, if any. ``min_calls``: the
    fewest calls of a batch, whatever the calibration says (a batch ending in a flush must span several export
    batches, as in production, or the flush's fixed latency would be the figure).
    """

    key: str
    label: str
    run: Callable[[int], float]
    ref: str | None = None
    target: Target | None = None
    prepare: Callable[[], None] | None = None
    finish: Callable[[], None] | None = None
    headline: str | None = None
    min_calls: int = 1


@dataclass
class Result:
    case: Case
    samples_us: list[float]
    ratios: list[float] = field(default_factory=list)
    calls_per_batch: int = 0

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_us)

    @property
    def spread_pct(self) -> float:
        """Inter-quartile range as a percentage of the median."""
        if len(self.samples_us) < 4:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples_us, n=4)
        return 100.0 * (q3 - q1) / self.median_us if self.median_us else 0.0

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


def _batch(case: Case, n: int) -> float:
    if case.prepare is not None:
        case.prepare()
    try:
        return case.run(n)
    finally:
        if case.finish is not None:
            case.finish()


def calibrate(case: Case, batch_seconds: float, max_calls: int = 1 << 22) -> int:
    """How many calls make one batch of about ``batch_seconds`` (the first runs double as warm-up).

    The batch grows until it lasts a quarter of the target; then the fastest of three runs of that size sets the
    rate, so one descheduling or a one-off start-up cost (a worker thread starting) cannot shrink the batches.
    """
    n = 1
    while True:
        elapsed = _batch(case, n)
        if elapsed >= batch_seconds / 4 or n >= max_calls:
            break
        n = min(max_calls, n * 4 if elapsed < batch_seconds / 64 else n * 2)
    elapsed = min(elapsed, *(_batch(case, n) for _ in range(2)))
    return max(1, min(max_calls, round(n * batch_seconds / max(elapsed, 1e-9))))


def measure(cases: Sequence[Case], rounds: int, batch_seconds: float,
            progress: Callable[[str], None] | None = None) -> list[Result]:
    """Run every case ``rounds`` times, interleaved (rotated order each round); one Result per case."""
    sizes = {c.key: max(c.min_calls, calibrate(c, batch_seconds)) for c in cases}
    gc.collect()
    gc.freeze()  # everything set up so far is long-lived: keep it out of the collections the cases trigger
    try:
        samples: dict[str, list[float]] = {c.key: [] for c in cases}
        for r in range(rounds):
            shift = r % len(cases)
            for case in [*cases[shift:], *cases[:shift]]:
                n = sizes[case.key]
                samples[case.key].append(_batch(case, n) / n * 1e6)
            if progress is not None and (r + 1) % max(1, rounds // 4) == 0:
                progress(f"round {r + 1}/{rounds}")
    finally:
        gc.unfreeze()
    results = [Result(c, samples[c.key], calls_per_batch=sizes[c.key]) for c in cases]
    by_key = {res.case.key: res for res in results}
    for res in results:
        ref = by_key.get(res.case.ref) if res.case.ref else None
        if ref is not None:
            res.ratios = [a / b for a, b in zip(res.samples_us, ref.samples_us, strict=False) if b > 0]
    return results


# -- output ---------------------------------------------------------------------------------------------------
#: The headline: every target of DESIGN §5 / issue 13 measured with the REAL pipelines, in the order printed.
#: key -> (case, target, the phase that measures it).
HEADLINE: dict[str, tuple[str, str, str]] = {
    "files": ("`@agent` sync call, input+output, REAL offline-file pipeline, flush timed (R1)",
              "≤ 1.0× raw OTel span", "micro"),
    "otlp": ("the same through the REAL OTLP/HTTP pipeline to a local sink (R2)", "≤ 1.0× raw OTel span", "micro"),
    "nested-files": ("nested agent → prompt → 2 tools, REAL offline-file pipeline (R3)",
                     "≤ 1.0× raw OTel nesting", "micro"),
    "nested-otlp": ("nested agent → prompt → 2 tools, REAL OTLP/HTTP pipeline (R4)", "≤ 1.0× raw OTel nesting",
                    "micro"),
    "flatout": ("producer flat out 5 s, OTLP/HTTP to a local sink (10)",
                "0 dropped; delivered ≥ 2× plain OTel BatchSpanProcessor + OTLPSpanExporter", "throughput"),
    "upload": ("`fluxloop upload` of 100,000 spooled spans to a local sink (U)", "≥ 50,000 spans/s", "upload"),
    "unsampled": ("`sample_rate=0` (7)", "≤ 1 µs", "micro"),
    "disabled": ("`enabled=False` (8)", "≤ 0.25 µs", "micro"),
}


@dataclass
class Report:
    """What a run prints: sections in order, every verdict against DESIGN §5 for the summary on top, and the
    headline figures (``HEADLINE`` key -> (measured, verdict))."""

    sections: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, str, str, str]] = field(default_factory=list)
    headline: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add_results(self, results: Sequence[Result]) -> None:
        """Verdicts of the results whose target is a ratio or a time (not the informative ones)."""
        for res in results:
            target = res.case.target
            if target is None or (target.max_ratio is None and target.max_us is None):
                continue
            ratio = res.ratio
            measured = f"{ratio:.2f}×" if target.max_ratio is not None and ratio is not None \
                else f"{fmt_us(res.median_us)} µs"
            if target.max_ratio is not None:
                measured += f" ({fmt_us(res.median_us)} µs/call)"
            verdict = target.verdict(res.median_us, ratio)
            self.verdicts.append((res.case.label, target.text, measured, verdict))
            if res.case.headline is not None:
                self.headline[res.case.headline] = (measured, verdict)

    def headline_table(self) -> str:
        """Every headline target with its figure and met / not met (or the phase that was not run)."""
        lines = ["| case | target | measured | met? |", "|---|---|---:|---|"]
        for key, (case, target, phase) in HEADLINE.items():
            measured, verdict = self.headline.get(key, (f"not measured (phase `{phase}` not run)", ""))
            met = {"PASS": "met", "FAIL": "**not met**"}.get(verdict, "—")
            lines.append(f"| {case} | {target} | {measured} | {met} |")
        return "\n".join(lines)

    def summary(self) -> str:
        lines = ["| case | target | measured | result |", "|---|---|---:|---|"]
        lines += [f"| {case} | {target} | {measured} | {verdict} |" for case, target, measured, verdict
                  in self.verdicts]
        return "\n".join(lines)



def fmt_us(us: float) -> str:
    if us < 1:
        return f"{us:.3f}"
    if us < 100:
        return f"{us:.2f}"
    return f"{us:.1f}"


def table(results: Sequence[Result], ratio_header: str = "ratio vs raw OTel", main_ref: str = "2") -> str:
    """The markdown table: case, µs/call, spread, ratio to its reference, target, result.

    A ratio to another reference than ``main_ref`` names it, e.g. ``1.02× (vs 2b)``.
    """
    lines = [f"| case | µs/call (median) | spread (±½ IQR) | {ratio_header} | target | result |",
             "|---|---:|---:|---:|---|---|"]
    for res in results:
        c = res.case
        ratio = res.ratio
        if ratio is None:
            ratio_text = "—"
        else:
            ratio_text = f"{ratio:.2f}×" + ("" if c.ref == main_ref else f" (vs {c.ref})")
        target = c.target or Target("—")
        lines.append(f"| {c.label} | {fmt_us(res.median_us)} | ±{res.spread_pct / 2:.0f} % | {ratio_text} | "
                     f"{target.text} | {target.verdict(res.median_us, ratio)} |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(extra_dists: Sequence[str] = ()) -> list[str]:
    """Lines describing where and how the numbers were taken."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    dists = ["opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "orjson", *extra_dists]
    versions = ", ".join(f"{d} {_version(d) or 'not installed'}" for d in dists)
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores ({usable} usable); load average at start {load}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}",
        f"- fluxloop {fluxloop.__version__} from {os.path.dirname(fluxloop.__file__)}",
        f"- {versions}",
        f"- command: `{' '.join([os.path.basename(sys.executable), '-m', 'benchmarks', *sys.argv[1:]])}`"
        + (f" (via `{os.environ['BENCH_MAKE_TARGET']}`)" if os.environ.get("BENCH_MAKE_TARGET") else ""),
        f"- time: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]
