"""The ``import`` phase: CPU time of ``import fluxloop`` vs ``import opentelemetry.sdk.trace`` (DESIGN §5: <= 1.5x).

Each import runs in a fresh interpreter (the module cache would hide it otherwise), alternating the two, and the
CPU time of the import statement alone is measured (``time.process_time``, so interpreter start-up and a loaded
machine's waiting do not count). Medians of the rounds; the ratio is of the medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Callable

from benchmarks import harness

TARGET_RATIO = 1.5
REFERENCE = "opentelemetry.sdk.trace"
_PROBE = "import time; t = time.process_time(); import {module}; print(time.process_time() - t)"


def import_seconds(module: str) -> float:
    """CPU seconds ``import module`` takes in a fresh interpreter with no FLUXLOOP_/OTEL_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return float(proc.stdout.strip())


def run(rounds: int, report: harness.Report, progress: Callable[[str], None]) -> None:
    """Measure both imports ``rounds`` times, alternating; add a section and a verdict to ``report``."""
    progress(f"import: {rounds} rounds of `import fluxloop` and `import {REFERENCE}`, each in a fresh process")
    samples: dict[str, list[float]] = {"fluxloop": [], REFERENCE: []}
    for r in range(rounds):
        for module in (("fluxloop", REFERENCE) if r % 2 == 0 else (REFERENCE, "fluxloop")):
            samples[module].append(import_seconds(module))
    fluxloop_ms = statistics.median(samples["fluxloop"]) * 1000
    reference_ms = statistics.median(samples[REFERENCE]) * 1000
    ratio = fluxloop_ms / reference_ms if reference_ms > 0 else float("inf")
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    report.verdicts.append(("`import fluxloop`", f"≤ {TARGET_RATIO}× `import {REFERENCE}`", f"{ratio:.2f}×",
                            verdict))
    report.sections.append("\n".join([
        f"## Import cost: CPU ms in a fresh interpreter, median of {rounds}", "",
        "| import | CPU ms | ratio | target |", "|---|---:|---:|---|",
        f"| import {REFERENCE} (reference) | {reference_ms:.1f} | 1.00× | |",
        f"| import fluxloop | {fluxloop_ms:.1f} | {ratio:.2f}× | ≤ {TARGET_RATIO}× — {verdict} |",
    ]))
