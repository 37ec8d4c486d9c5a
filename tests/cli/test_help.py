"""Every subcommand answers --help; usage mistakes exit 2, the command list names every subcommand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import run_module, subprocess_env

SUBCOMMANDS = [["config"], ["traces"], ["traces", "show"], ["upload"], ["replay"]]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_help_for_every_subcommand(cli, argv: list[str]) -> None:
    result = cli(*argv, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: fluxloop {' '.join(argv)}")
    assert result.err == ""


def test_top_level_help_lists_the_commands_in_order(cli) -> None:
    out = cli("--help").out
    positions = [out.index(f"    {name} ") for name in ("config", "traces", "upload", "replay")]
    assert positions == sorted(positions)


def test_traces_help_mentions_show(cli) -> None:
    assert "show" in cli("traces", "--help").out


@pytest.mark.parametrize("argv", [
    ["traces", "--limit", "-1"],
    ["traces", "--limit", "many"],
    ["traces", "--bogus"],
    ["traces", "show", "not-hex"],
    ["traces", "show", "a" * 33],
    ["upload", "--batch-size", "0"],
    ["upload", "--collector-url", "ftp://x"],
    ["upload", "--timeout", "0"],
    ["config", "extra"],
], ids=" ".join)
def test_usage_errors_exit_2(cli, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 2
    assert result.out == ""
    assert "error:" in result.err


def test_python_dash_m_runs_the_same_command_line() -> None:
    result = run_module("traces", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: fluxloop traces")


_SIDE_EFFECTS = """
import sys, threading
from fluxloop.cli import main
code = main(sys.argv[1:])
import fluxloop._runtime
print(code, threading.active_count(), "RUNTIME" in vars(fluxloop._runtime))
"""


@pytest.mark.parametrize("argv", [["--version"], ["config"], ["config", "--json"], ["--help"]])
def test_version_and_config_create_no_file_and_start_no_thread(argv: list[str], tmp_path) -> None:
    recording = tmp_path / "rec.jsonl"
    env = subprocess_env(FLUXLOOP_RECORD_ARGS="true", FLUXLOOP_RECORDING_FILE=str(recording))
    proc = subprocess.run([sys.executable, "-c", _SIDE_EFFECTS, *argv], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "0 1 False"  # exit 0, only the main thread, no runtime built
    assert list(tmp_path.iterdir()) == []  # no recording file, no fluxloop_artifacts/
