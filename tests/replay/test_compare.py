"""Replay as a regression test: record real calls, save their outcomes, change the code, compare."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from cli_runner import run_cli

import fluxloop
from fluxloop.replay import compare_file, outcomes_path, save_outcomes

from . import sample_agents
from ._helpers import M

ORDERS = [("apple", 1), ("pear", 12), ("fig", 0), ("kiwi", 50), ("plum", 3)]
QUOTE = f"{M}:quote"


class Send:
    """A real send callback (it has a ``messages`` list: recorded as ``<builtin:collector.send>``)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, message: Any) -> None:
        self.messages.append(message)


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """Real calls of ``quote`` recorded by @agent (one fails: quantity 0)."""
    path = tmp_path / "quotes.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(path))
    for item, qty in ORDERS:
        try:
            sample_agents.quote(item, qty, Send())
        except ValueError:
            pass
    fluxloop.disable_recording()
    return path


def release_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code change: a bulk discount (pear, kiwi), zero accepted (fig), a quantity cap (kiwi fails now)."""
    monkeypatch.setitem(sample_agents.RULES, "bulk_discount", 0.1)
    monkeypatch.setitem(sample_agents.RULES, "reject_zero", False)
    monkeypatch.setitem(sample_agents.RULES, "max_qty", 40)


def test_compare_reports_exactly_the_calls_whose_outcome_changed(capsys: pytest.CaptureFixture[str],
                                                                  recorded: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    saved = run_cli(capsys, "replay", str(recorded), "--save-outcomes")
    assert saved.code == 0, saved.err
    assert saved.out.splitlines()[-1] == f"saved 5 outcomes to {outcomes_path(recorded)}"
    assert recorded.read_text().count("\n") == 5  # outcomes are beside the recording, never in it

    same = run_cli(capsys, "replay", str(recorded), "--compare", "--ignore", "output.quote_id")
    assert same.code == 0, same.out + same.err
    assert same.out.splitlines()[-1] == "5 compared: 5 same"

    release_2(monkeypatch)
    junit = tmp_path / "report.xml"
    changed = run_cli(capsys, "replay", str(recorded), "--compare", "--ignore", "output.quote_id",
                      "--junit", str(junit))
    assert changed.code == 1
    heads = [line for line in changed.out.splitlines() if not line.startswith(" ")]
    assert heads[:-1] == [f"{'same':<12} {QUOTE}  iteration 0  (line 1)",
                          f"{'changed':<12} {QUOTE}  iteration 1  (line 2)",
                          f"{'now passing':<12} {QUOTE}  iteration 2  (line 3)",
                          f"{'now failing':<12} {QUOTE}  iteration 3  (line 4)",
                          f"{'same':<12} {QUOTE}  iteration 4  (line 5)"]
    assert heads[-1] == "5 compared: 2 same, 1 changed, 1 now failing, 1 now passing"
    pad = " " * 13
    assert f"{pad}  messages[0].price: 30.0 -> 27.0\n{pad}  output.price: 30.0 -> 27.0\n" in changed.out
    assert f'{pad}  exception: null -> {{"type":"ValueError","message":"at most 40 per order"}}' in changed.out
    assert f'{pad}- messages[0]: {{"item":"kiwi","price":125.0}}' in changed.out
    assert f'{pad}  output: null -> {{"item":"fig","qty":0,"price":0.0}}' in changed.out  # ignored id left out
    assert "quote_id" not in changed.out

    root = ElementTree.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "5" and root.get("failures") == "3"
    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("5", "3", "0", "0")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == [QUOTE] * 5
    assert [c.get("name") for c in cases] == [f"iteration {i} (line {i + 1})" for i in range(5)]
    assert all(float(c.get("time") or "x") >= 0 for c in cases)
    failures = {c.get("name"): c.find("failure") for c in cases}
    assert [name for name, f in failures.items() if f is not None] == [
        "iteration 1 (line 2)", "iteration 2 (line 3)", "iteration 3 (line 4)"]
    kiwi = failures["iteration 3 (line 4)"]
    assert kiwi is not None and kiwi.get("type") == "now_failing"
    assert "at most 40 per order" in (kiwi.text or "")


def test_volatile_fields_change_every_run_unless_ignored(recorded: Path) -> None:
    save_outcomes(recorded)
    report = compare_file(recorded)
    assert [c.status for c in report.comparisons] == ["changed", "changed", "same", "changed", "changed"]
    assert all(c.diff == [c.diff[0]] and c.diff[0].startswith("  output.quote_id: ") for c in report.comparisons
               if c.status == "changed")
    assert not compare_file(recorded, ignore=["output.quote_id"]).regressed
    assert not compare_file(recorded, ignore=["**.quote_id"]).regressed
    assert not compare_file(recorded, ignore=["output"]).regressed  # a whole subtree


def test_python_api_gives_the_same_report(recorded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_outcomes(recorded)
    release_2(monkeypatch)
    report = compare_file(recorded, ignore=["output.quote_id"])
    assert report.regressed
    assert [c.status for c in report.comparisons] == ["same", "changed", "now passing", "now failing", "same"]
    fig = report.comparisons[2]
    assert fig.expected is not None and fig.expected["exception"] == {
        "type": "ValueError", "message": "quantity must be positive"}
    assert fig.actual["status"] == "ok" and fig.actual["messages"] == [{"item": "fig", "price": 0.0}]


def test_json_output_one_object_per_record(capsys: pytest.CaptureFixture[str], recorded: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(capsys, "replay", str(recorded), "--save-outcomes").code == 0
    release_2(monkeypatch)
    result = run_cli(capsys, "replay", str(recorded), "--compare", "--json", "--ignore", "output.quote_id")
    assert result.code == 1
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert [r["status"] for r in rows] == ["same", "changed", "now passing", "now failing", "same"]
    assert rows[1]["diff"] == ["  messages[0].price: 30.0 -> 27.0", "  output.price: 30.0 -> 27.0"]
    assert result.err.splitlines()[-1] == "5 compared: 2 same, 1 changed, 1 now failing, 1 now passing"


def test_records_without_a_saved_outcome_are_new_and_do_not_fail(capsys: pytest.CaptureFixture[str],
                                                                 recorded: Path) -> None:
    assert run_cli(capsys, "replay", str(recorded), "--save-outcomes").code == 0
    fluxloop.configure(record_args=True, recording_file=str(recorded))
    sample_agents.quote("lime", 2, Send())
    fluxloop.disable_recording()
    result = run_cli(capsys, "replay", str(recorded), "--compare", "--ignore", "output.quote_id")
    assert result.code == 0, result.out
    assert f"{'new':<12} {QUOTE}  iteration 5  (line 6)" in result.out
    assert result.out.splitlines()[-1] == "6 compared: 5 same, 1 new"


def test_compare_without_saved_outcomes_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                                          recorded: Path) -> None:
    result = run_cli(capsys, "replay", str(recorded), "--compare")
    assert result.code == 1 and result.out == ""
    assert "no saved outcomes" in result.err and "--save-outcomes" in result.err


def test_ignore_and_junit_need_compare(capsys: pytest.CaptureFixture[str], recorded: Path) -> None:
    result = run_cli(capsys, "replay", str(recorded), "--ignore", "output.id")
    assert result.code == 1 and "--compare" in result.err


def test_saving_the_outcomes_of_one_target_keeps_the_others(capsys: pytest.CaptureFixture[str],
                                                            recorded: Path) -> None:
    assert run_cli(capsys, "replay", str(recorded), "--save-outcomes").code == 0
    fluxloop.configure(record_args=True, recording_file=str(recorded))
    sample_agents.greet("ann")
    fluxloop.disable_recording()
    saved = run_cli(capsys, "replay", str(recorded), "--save-outcomes", "--target", f"{M}:greet")
    assert saved.code == 0, saved.err
    result = run_cli(capsys, "replay", str(recorded), "--compare", "--ignore", "output.quote_id")
    assert result.code == 0 and result.out.splitlines()[-1] == "6 compared: 6 same", result.out


class Done:
    """What a websocket-like send returns: awaitable, and harmless when not awaited."""

    def __await__(self) -> Any:
        return iter(())


class AsyncSend(Send):
    def __call__(self, message: Any) -> Done:  # type: ignore[override]
        super().__call__(message)
        return Done()


@pytest.mark.parametrize("rate", [0.0, 1.0])
@pytest.mark.parametrize("kind", ["seed", "nested"])
def test_a_self_recording_handler_is_compared_once_per_call(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                             rate: float, kind: str) -> None:
    path = tmp_path / "handler.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(path), sample_rate=rate)
    for i in range(3):
        if kind == "seed":
            call = sample_agents.MessageHandler().handle_message(f"ws-{i}", {"content": f"hi {i}"}, {},
                                                                  AsyncSend(), AsyncSend())
        else:
            call = sample_agents.NestedHandler().handle_message(f"ws-{i}", {"content": f"hi {i}"}, AsyncSend())
        asyncio.run(call)
    fluxloop.disable_recording()
    assert path.read_text().count("\n") == 6  # each call: its automatic record, then its own
    assert run_cli(capsys, "replay", str(path), "--all", "--save-outcomes").code == 0
    result = run_cli(capsys, "replay", str(path), "--all", "--compare")
    assert result.code == 0, result.out + result.err
    handler = "MessageHandler" if kind == "seed" else "NestedHandler"
    heads = [line for line in result.out.splitlines() if not line.startswith(" ")]
    assert heads == [f"{'same':<12} {M}:{handler}.handle_message  iteration {i}  (line {2 * i + 2})"
                     for i in range(3)] + ["3 compared: 3 same"]
