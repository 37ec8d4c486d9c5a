"""Every subcommand answers --help; usage mistakes exit 2, the command list names every subcommand."""

from __future__ import annotations

import pytest

from .conftest import run_module

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
