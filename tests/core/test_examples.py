"""The examples run as documented, with no network and no API key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_existing_pipeline_example_spools_without_a_collector(tmp_path: Path) -> None:
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = run_example("existing_otel_pipeline.py", tmp_path, f"http://127.0.0.1:{port}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exported=0 spooled=2 failed=0"
    assert list((tmp_path / "fluxloop_artifacts").glob("*.jsonl"))


def test_quickstart_writes_one_trace_of_eight_spans(tmp_path: Path) -> None:
    proc = run_example("quickstart.py", tmp_path, FLUXLOOP_USE_COLLECTOR="false")
    assert proc.returncode == 0, proc.stderr
    assert "Here is what I found" in proc.stdout
    assert "8 span(s) exported" in proc.stderr
