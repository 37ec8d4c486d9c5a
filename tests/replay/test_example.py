"""examples/recording_replay.py runs offline, as a script and as a module, and its recording replays elsewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from xml.etree import ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    return env


def test_example_as_a_script(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "examples/recording_replay.py"], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("same as recorded") == 3
    assert "compared after the change: 3 compared: 1 same, 2 changed" in proc.stdout
    assert "tok-not-for-recordings" not in proc.stdout


def test_example_as_a_module_then_replayed_by_the_cli_in_another_process(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "examples.recording_replay"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recording = re.search(r"fluxloop replay (\S+) --all", proc.stdout)
    assert recording, proc.stdout
    env.update(FLUXLOOP_USE_COLLECTOR="false", FLUXLOOP_OFFLINE_DIR=str(tmp_path / "traces"))
    replay = subprocess.run([sys.executable, "-m", "fluxloop", "replay", recording.group(1), "--all", "--json"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    rows = [json.loads(line) for line in replay.stdout.splitlines()]
    assert [(len(r["messages"]), len(r["errors"])) for r in rows] == [(1, 0), (1, 0), (0, 1)]
    assert {r["target"] for r in rows} == {"examples.recording_replay:MessageHandler.handle_message"}
    # The same regression loop from the shell: save the baseline, compare, read the JUnit report.
    cli = [sys.executable, "-m", "fluxloop", "replay", recording.group(1)]
    save = subprocess.run([*cli, "--save-outcomes"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert save.returncode == 0, save.stderr
    junit = tmp_path / "report.xml"
    compare = subprocess.run([*cli, "--compare", "--junit", str(junit)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=120)
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert compare.stdout.splitlines()[-1] == "3 compared: 3 same"
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "0"
