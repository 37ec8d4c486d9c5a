"""``fluxloop replay``: summaries on stdout, diagnostics on stderr, exit codes 0/1/2, no traceback for mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fluxloop.cli import COMMANDS, _replay, build_parser, main

from ._helpers import M, rec, write

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write(tmp_path / "good.jsonl",
                 rec(f"{M}:greet", {"name": "a"}, 0),
                 rec(f"{M}:Handler.handle", {"text": "x", "send": "<builtin:collector.send>"}, 0),
                 rec(f"{M}:greet", {"name": "b"}, 1))


def test_replays_the_last_record_of_each_target_by_default(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = run(capsys, "replay", str(good))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"ok     {M}:Handler.handle  iteration 0  (line 2)")
    assert "1 message, 0 errors sent" in lines[0]
    assert any(line.startswith(f"ok     {M}:greet  iteration 1  (line 3)") for line in lines)
    assert lines[-1] == "2 replayed: 2 ok, 0 failed"
    assert err == ""


def test_all_target_and_iteration(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    assert run(capsys, "replay", str(good), "--all")[1].splitlines()[-1] == "3 replayed: 3 ok, 0 failed"
    out = run(capsys, "replay", str(good), "--target", f"{M}:greet", "--iteration", "0")[1]
    assert "(line 1)" in out and out.splitlines()[-1] == "1 replayed: 1 ok, 0 failed"


def test_a_failing_replay_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:fails", {"x": 2}), rec(f"{M}:greet", {"name": "ok"}))
    code, out, err = run(capsys, "replay", str(path))
    assert code == 1
    assert f"error  {M}:fails" in out and "ValueError: bad x 2" in out
    assert out.splitlines()[-1] == "2 replayed: 1 ok, 1 failed"
    assert "Traceback" not in out + err


def test_verbose_shows_messages_and_the_targets_traceback(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:fails", {"x": 2}),
                 rec(f"{M}:uses_callbacks", {"text": "t", "notify": "<callable:notify>",
                                             "send": "<builtin:collector.send>", "error": "<builtin:collector.error>"}))
    code, out, err = run(capsys, "replay", str(path), "-v")
    assert code == 1
    assert 'message: "t"' in out and 'error: "oops"' in out and "stub notify called 1 time" in out
    assert "Traceback" in err and "ValueError: bad x 2" in err


@pytest.mark.parametrize(("content", "expected"), [
    (None, "recording file not found"),
    ("\n", "no records in"),
])
def test_input_problems_exit_1_with_a_message_and_no_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                               content: str | None, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "replay", str(path))
    assert code == 1
    assert out == ""
    assert err.startswith("fluxloop replay: error: ") and expected in err
    assert "Traceback" not in err


def test_malformed_lines_are_reported_skipped_and_make_the_exit_code_1(capsys: pytest.CaptureFixture[str],
                                                                      tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:fails", {"x": 1}))
    with path.open("a") as f:
        f.write('{not json}\n{"target": "tr')  # garbage, then the truncated line a killed writer leaves
    code, out, err = run(capsys, "replay", str(path))
    assert code == 1
    assert f"{path}:2: malformed record: not valid JSON" in err and f"{path}:3:" in err
    assert "1 replayed" in out and "2 malformed lines skipped" in out
    assert "Traceback" not in err


def test_unknown_target_filter_lists_the_targets(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = run(capsys, "replay", str(good), "--target", "app:nope")
    assert code == 1 and f"targets recorded: {M}:Handler.handle, {M}:greet" in err


@pytest.mark.parametrize(("record", "expected"), [
    (rec("nosuch_module_q:f"), "no module named 'nosuch_module_q'"),
    (rec(f"{M}:renamed"), "has no attribute 'renamed'"),
    (rec(f"{M}:plain", {"a": 1, "old_arg": 2}), "no longer fit"),
])
def test_target_problems_fail_that_record_clearly(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  record: dict, expected: str) -> None:
    code, out, err = run(capsys, "replay", str(write(tmp_path / "r.jsonl", record)))
    assert code == 1 and expected in out and "Traceback" not in out + err


def test_factory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:NeedsArgs.handle", {"text": "z"}))
    assert run(capsys, "replay", str(path))[0] == 1  # NeedsArgs() needs an argument
    code, out, _ = run(capsys, "replay", str(path), "--factory", f"{M}:make_needs_args")
    assert code == 0
    code, out, err = run(capsys, "replay", str(path), "--factory", f"{M}:nothing_here")
    assert code == 1 and "has no attribute 'nothing_here'" in err


def test_json_output_keeps_stdout_pure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:prints", {"x": 5}),
                 rec(f"{M}:Handler.handle", {"text": "x", "send": "<builtin:collector.send>"}),
                 rec(f"{M}:with_secret", {"api_key": "***", "user": "u"}))
    code, out, err = run(capsys, "replay", str(path), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert rows[0]["output"] == 5 and rows[1]["messages"] == [">x"] and rows[2]["masked"] == ["api_key"]
    assert "target says 5" in err and "3 replayed: 3 ok, 0 failed" in err


@pytest.mark.parametrize("argv", [
    ["replay"],
    ["replay", "f.jsonl", "--all", "--iteration", "1"],
    ["replay", "f.jsonl", "--iteration", "-1"],
    ["replay", "f.jsonl", "--iteration", "one"],
    ["replay", "f.jsonl", "--factory", "nocolon"],
    ["nosuchcommand"],
    [],
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == "" and "usage:" in err and "Traceback" not in err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "replay" in out
    code, out, _ = run(capsys, "replay", "--help")
    assert code == 0 and "--factory" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("fluxloop ")


def test_command_registry() -> None:
    names = [c.NAME for c in COMMANDS]
    assert "replay" in names and len(set(names)) == len(names)
    for command in COMMANDS:
        assert command.HELP and callable(command.add_arguments) and callable(command.run)
    assert build_parser().parse_args(["replay", "f"]).run is _replay.run


def test_python_m_fluxloop_in_a_real_process(tmp_path: Path) -> None:
    """The module entry point, in a fresh process, importing the target from the working directory."""
    (tmp_path / "shop_agent.py").write_text(textwrap.dedent("""
        async def handle(order_id, send):
            await send({"order": order_id, "status": "ok"})
    """))
    path = write(tmp_path / "r.jsonl", rec("shop_agent:handle", {"order_id": 7, "send": "<builtin:collector.send>"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO), FLUXLOOP_USE_COLLECTOR="false", FLUXLOOP_OFFLINE_DIR=str(tmp_path / "traces"))
    proc = subprocess.run([sys.executable, "-m", "fluxloop", "replay", str(path), "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [row] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert row["messages"] == [{"order": 7, "status": "ok"}]
    assert row["trace_id"] and len(row["trace_id"]) == 32
    spans = "".join(p.read_text() for p in (tmp_path / "traces").glob("*.jsonl"))
    assert row["trace_id"] in spans and '"fluxloop.replay"' in spans

    missing = subprocess.run([sys.executable, "-m", "fluxloop", "replay", str(tmp_path / "none.jsonl")], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "recording file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
