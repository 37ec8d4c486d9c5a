"""The benchmark harness in smoke mode: it runs, checks its own set-up and reports every case.

Timings are never asserted: the machine is shared and smoke runs are far too short to mean anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS_PYTHON = ROOT / ".cache" / "bench-peers" / "venv" / "bin" / "python"

CORE_ROWS = [
    "1 plain call (no tracing)",
    "2 raw OTel span, sync",
    "2a raw OTel span, async",
    "2b raw OTel nested (4 spans)",
    "2c raw OTel generator (10 items)",
    "2d raw OTel, drop-all sampler",
    "3 @fluxloop.agent sync",
    "4 @fluxloop.agent async",
    "5 nested agent → prompt + 2 tools (4 spans)",
    "6 @fluxloop.prompt generator (10 items)",
    "7 @fluxloop.agent, sample_rate=0",
    "8 @fluxloop.agent, enabled=False",
]
REAL_ROWS = [
    "R1 @fluxloop.agent sync, REAL offline-file pipeline, flush timed",
    "R2 @fluxloop.agent sync, REAL OTLP/HTTP pipeline (local sink), flush timed",
    "R3 nested agent → prompt + 2 tools, REAL offline-file pipeline, flush timed",
    "R4 nested agent → prompt + 2 tools, REAL OTLP/HTTP pipeline, flush timed",
]
HEADLINE_ROWS = [
    "`@agent` sync call, input+output, REAL offline-file pipeline, flush timed (R1)",
    "the same through the REAL OTLP/HTTP pipeline to a local sink (R2)",
    "nested agent → prompt → 2 tools, REAL offline-file pipeline (R3)",
    "nested agent → prompt → 2 tools, REAL OTLP/HTTP pipeline (R4)",
    "producer flat out 5 s, OTLP/HTTP to a local sink (10)",
    "`fluxloop upload` of 100,000 spooled spans to a local sink (U)",
    "`sample_rate=0` (7)",
    "`enabled=False` (8)",
]
EXPORT_ROWS = [
    "9 no-op exporter (as cases 3-8)",
    "9 collector up (local OTLP/HTTP sink)",
    "9 collector down (closed port, spooling)",
    "10 FluxLoop → OTLP/HTTP (local sink)",
    "10 FluxLoop → offline files (use_collector=False)",
    "10 plain OTel: BatchSpanProcessor + OTLPSpanExporter (defaults)",
    "collector down (closed port; spooled to files)",
    "collector hanging (exports wait for the timeout; queue full)",
    "U `fluxloop upload` (child process, start to exit)",
    "U breakdown: read + convert, direct writer (in process, nothing sent)",
    "U breakdown: read + convert, `json_format.ParseDict` (before)",
]
PEER_ROWS = [f"{case} {peer} {kind}" for peer in ("OpenLLMetry", "Langfuse", "Logfire")
             for case, kind in (("3", "sync"), ("4", "async"), ("5", "nested (4 spans)"), ("7", "sample_rate=0"))]
PEER_ROWS += ["8 OpenLLMetry disabled", "8 Langfuse disabled"]


def _run(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([python, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def _rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by their first cell."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def test_smoke_run_reports_every_case() -> None:
    proc = _run(sys.executable, "benchmarks", "--smoke")
    assert proc.returncode == 0, proc.stderr[-5000:]
    rows = _rows(proc.stdout)
    for label in CORE_ROWS + REAL_ROWS + EXPORT_ROWS + HEADLINE_ROWS:
        assert label in rows, f"case {label!r} missing from the report:\n{proc.stdout}"
    for label in CORE_ROWS + REAL_ROWS:
        assert rows[label][-1] in ("PASS", "FAIL", "info"), rows[label]
    for label in HEADLINE_ROWS:  # every headline target measured, with met / not met
        assert rows[label][-1] in ("met", "**not met**"), rows[label]
    for section in ("## Headline: DESIGN §5 targets with the real pipelines running", "## Summary against DESIGN §5",
                    "## Case 9", "## Case 10", "## Case 11", "## Case U", "## Import cost",
                    "## Machine and command", "- CPU:", "- command:"):
        assert section in proc.stdout
    assert "set-up check passed" in proc.stderr
    # The upload case delivered every spooled span (the sink decoded and counted them).
    assert "INCOMPLETE" not in rows["`fluxloop upload` of 100,000 spooled spans to a local sink (U)"][2]


def test_phases_can_be_chosen() -> None:
    proc = _run(sys.executable, "benchmarks", "--smoke", "--phases", "micro")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "3 @fluxloop.agent sync" in proc.stdout
    assert "## Case 9" not in proc.stdout
    assert "not measured (phase `upload` not run)" in proc.stdout


def test_unknown_phase_is_refused() -> None:
    proc = _run(sys.executable, "benchmarks", "--phases", "micro,bogus")
    assert proc.returncode == 2
    assert "bogus" in proc.stderr


def test_profile_helper_runs() -> None:
    proc = _run(sys.executable, "benchmarks.profile_call", "--smoke")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "by own time (tottime)" in proc.stdout
    assert "fluxloop/" in proc.stdout


@pytest.mark.skipif(os.environ.get("FLUXLOOP_E2E") == "0", reason="FLUXLOOP_E2E=0: quick run without the "
                    "venvs of real backends and peers")
def test_peers_smoke_run_reports_every_peer_case() -> None:
    assert PEERS_PYTHON.exists(), f"{PEERS_PYTHON} missing: `make test` builds it (or run `make bench-peers`)"
    proc = _run(str(PEERS_PYTHON), "benchmarks", "--smoke", "--peers", "--phases", "micro")
    assert proc.returncode == 0, proc.stderr[-5000:]
    rows = _rows(proc.stdout)
    for label in CORE_ROWS + PEER_ROWS:
        assert label in rows, f"case {label!r} missing from the report:\n{proc.stdout}"
    assert "FluxLoop fastest?" in proc.stdout
    assert "FluxLoop vs every peer" in proc.stdout
