"""Every marker the original fluxloop wrote is understood; superseded and torn records are handled."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from cli_runner import run_cli

import fluxloop
from fluxloop.replay import ReplayError, load_records, rebuild_kwargs, replay_record, select_records

from . import sample_agents
from ._helpers import M, rec, write

S1, S2 = "a" * 16, "b" * 16
T = "c" * 32


def test_async_collector_markers_are_coroutine_functions_that_collect() -> None:
    call = rebuild_kwargs({"send_message_callback": "<builtin:collector.send:async>",
                           "send_error_callback": "<builtin:collector.error:async>"})
    send, error = call.kwargs["send_message_callback"], call.kwargs["send_error_callback"]
    assert inspect.iscoroutinefunction(send) and inspect.iscoroutinefunction(error)

    async def handler() -> None:
        await send("conn-1", {"text": "hello"})
        await error({"error": "x"})

    asyncio.run(handler())
    assert call.messages.messages == [{"args": ["conn-1", {"text": "hello"}], "kwargs": {}}]
    assert call.errors.errors == [{"error": "x"}]
    assert send.messages is call.messages.messages and error.errors is call.errors.errors
    assert call.stubs == {}


def test_async_collectors_record_again_as_the_same_markers(tmp_path: Path) -> None:
    call = rebuild_kwargs({"send": "<builtin:collector.send:async>", "err": "<builtin:collector.error:async>"})
    path = tmp_path / "again.jsonl"
    fluxloop.enable_recording(path)
    fluxloop.record_call_args(target="m:f", **call.kwargs)
    [record] = load_records(path)
    assert record.kwargs == {"send": "<builtin:collector.send:async>", "err": "<builtin:collector.error:async>"}


def test_replayed_async_markers_collect_what_the_target_sends(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl",
                 rec(f"{M}:broadcast", {"names": ["a", "b"], "send": "<builtin:collector.send:async>"}),
                 rec(f"{M}:MessageHandler.handle_message", {
                     "connection_id": "ws-1", "data": {"content": ""}, "user_connection": {},
                     "send_message_callback": "<builtin:collector.send:async>",
                     "send_error_callback": "<builtin:collector.error:async>"}))
    first, second = (replay_record(r) for r in load_records(path))
    assert first.ok and first.output == 2 and first.messages == [{"to": "a"}, {"to": "b"}]
    assert second.ok and second.errors == [{"connection_id": "ws-1", "error": "empty message"}]
    sample_agents.RECEIVED.clear()


def test_repr_and_cut_values_are_reported_as_not_rebuildable(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    call = rebuild_kwargs({"conn": "<repr:<Connection 0x1>>", "text": "zzz...[truncated 10 chars]",
                           "items": [1, "...[3 more items]"], "ok": "<repr-less text>", "send": "<callable:f>"})
    assert call.unrebuildable == ["conn", "text", "items"]
    assert call.kwargs["conn"] == "<repr:<Connection 0x1>>"  # passed as recorded
    path = write(tmp_path / "r.jsonl", rec(f"{M}:plain", {"a": "<repr:<A>>", "b": 2}))
    result = run_cli(capsys, "replay", str(path))
    assert "not rebuildable from the recording (<repr:...> or cut), replayed as recorded: a" in result.out


def test_an_explicit_record_supersedes_its_calls_automatic_record_only(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl",
                 rec("app.auto:Handler.handle", {"auto": 1}, 0, trace_id=T, span_id=S1),
                 rec("examples.h:Handler.handle", {"own": 1}, 0, trace_id=T, span_id=S1),
                 # A batch agent whose body records a handler twice: both kept, the batch's own record too.
                 rec("app:run_batch", {"batch": True}, 0, trace_id=T, span_id=S2),
                 rec("app:handle", {"m": 1}, 0, trace_id=T, span_id=S2),
                 rec("app:handle", {"m": 2}, 1, trace_id=T, span_id=S2),
                 rec("app:plain", {"no": "span"}, 0))
    chosen = select_records(load_records(path), all_records=True)
    assert [r.line for r in chosen] == [2, 3, 4, 5, 6]


def test_a_record_glued_to_a_torn_line_is_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"_version":"1","iteration":0,"target":"app:f","kwargs":{"pad":"xx'
                     b'{"_version":"1","iteration":1,"target":"app:f","kwargs":{"n":{"_version":"1"}},'
                     b'"timestamp":"t"}\n')
    problems: list[ReplayError] = []
    [record] = load_records(path, on_malformed=problems.append)
    assert record.iteration == 1 and record.kwargs == {"n": {"_version": "1"}}
    assert len(problems) == 1 and "r.jsonl:1: malformed record" in str(problems[0])


def test_the_public_module_publishes_public_names_only() -> None:
    import fluxloop.replay as replay

    defined_here = {name for name, value in vars(replay).items()
                    if not name.startswith("_") and getattr(value, "__module__", "").startswith("fluxloop")}
    assert defined_here == set(replay.__all__)
    assert replay.__all__ == sorted(replay.__all__)


def test_records_in_the_original_fluxloops_own_format_load_and_salvage(tmp_path: Path) -> None:
    original = ('{"_version": "1", "iteration": 3, "target": "pkg.mod:Handler.handle", "kwargs": {"conn": '
                '"<repr:<Conn>>", "send": "<builtin:collector.send:async>"}, "timestamp": "2025-09-30T14:30:00"}')
    path = tmp_path / "r.jsonl"
    path.write_text('{"_version": "1", "iteration": 2, "target": "pkg.mod:Handler.handle", "kwargs": {"x": "'
                    + original + "\n" + original + "\n")
    problems: list[ReplayError] = []
    records = load_records(path, on_malformed=problems.append)
    assert [(r.line, r.iteration) for r in records] == [(1, 3), (2, 3)] and len(problems) == 1
    call = rebuild_kwargs(records[0].kwargs)
    assert call.unrebuildable == ["conn"] and inspect.iscoroutinefunction(call.kwargs["send"])
