"""Running replays: sync/async/generator targets, failures as results, argument fit, tracing, no re-recording."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import fluxloop
from fluxloop import recording
from fluxloop.replay import Record, ReplayError, replay_file, replay_record
from fluxloop.testing import capture_spans

from . import sample_agents
from ._helpers import M, rec, write


def one(target: str, kwargs: dict | None = None, **options):
    return replay_record(Record(target, 0, kwargs or {}, 1), **options)


def test_sync_function() -> None:
    result = one(f"{M}:greet", {"name": "ann", "punctuation": "?"})
    assert result.ok and result.error is None
    assert result.output == "hello ann?"
    assert result.duration > 0


def test_async_function() -> None:
    assert one(f"{M}:agreet", {"name": "bo"}).output == "hi bo"


def test_methods_sync_and_async_send_through_collectors() -> None:
    result = one(f"{M}:Handler.handle", {"text": "a", "send": "<builtin:collector.send>"})
    assert result.ok and result.messages == [">a"] and result.output == "a"
    result = one(f"{M}:Handler.ahandle", {"text": "b", "send": "<builtin:collector.send>"})
    assert result.ok and result.messages == [">b"]


def test_factory_builds_the_instance() -> None:
    assert one(f"{M}:NeedsArgs.handle", {"text": "x"}, factory=sample_agents.make_needs_args).output == "factory:x"


def test_generators_are_drained() -> None:
    assert one(f"{M}:count", {"n": 3}).output == [0, 1, 2]
    assert one(f"{M}:acount", {"n": 2}).output == [0, 1]
    assert len(one(f"{M}:count", {"n": 1000}).output) == 100


def test_positional_only_and_var_positional_arguments() -> None:
    result = one(f"{M}:positional", {"a": 1, "b": 2, "rest": [3, 4], "flag": True})
    assert result.output == {"a": 1, "b": 2, "rest": [3, 4], "extra": {"flag": True}}


def test_callbacks_messages_errors_and_stubs_are_reported() -> None:
    result = one(f"{M}:uses_callbacks", {"text": "t", "notify": "<callable:notify>",
                                        "send": "<builtin:collector.send>", "error": "<builtin:collector.error>"})
    assert result.ok
    assert (result.messages, result.errors) == (["t"], ["oops"])
    assert result.stub_calls == {"notify": [{"args": ["t"], "kwargs": {"level": "info"}}]}


def test_the_targets_exception_is_a_failed_result() -> None:
    result = one(f"{M}:fails", {"x": 3})
    assert not result.ok
    assert result.error == "ValueError: bad x 3"
    assert isinstance(result.exception, ValueError)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "missing a required argument: 'a'"),
    ({"a": 1, "b": 2, "c": 3}, "got an unexpected keyword argument 'c'"),
])
def test_arguments_that_no_longer_fit(kwargs: dict, message: str) -> None:
    result = one(f"{M}:plain", kwargs)
    assert not result.ok and result.exception is None
    assert result.error is not None
    assert result.error.startswith(f"the recorded arguments no longer fit {M}:plain(a, b): ")
    assert message in result.error


def test_unknown_target_is_a_failed_result() -> None:
    result = one(f"{M}:gone", {})
    assert not result.ok and "has no attribute 'gone'" in (result.error or "")


def test_masked_values_and_overrides() -> None:
    result = one(f"{M}:with_secret", {"api_key": "***", "user": "u"})
    assert result.ok and result.masked == ["api_key"] and result.output == "u:***"
    result = one(f"{M}:with_secret", {"api_key": "***", "user": "u"}, overrides={"api_key": "test-key"})
    assert result.masked == [] and result.output == "u:test-key"


def test_each_replay_is_its_own_trace_tagged_as_a_replay(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:greet", {"name": "a"}, 4, trace_id="ab" * 16),
                 rec(f"{M}:greet", {"name": "b"}, 5))
    with capture_spans() as spans, fluxloop.instrument("outer"):
        results = replay_file(path, all_records=True)
    roots = [s for s in spans if s.name == f"replay {M}:greet"]
    assert len(roots) == 2
    assert all(r.ok for r in results)
    for root, result, iteration in zip(roots, results, (4, 5)):
        assert root.parent is None  # a new trace even inside another span
        assert f"{root.context.trace_id:032x}" == result.trace_id
        attrs = dict(root.attributes)
        assert attrs["fluxloop.replay"] is True
        assert attrs["fluxloop.replay.source"] == str(path)
        assert attrs["fluxloop.replay.iteration"] == iteration
        [agent] = [s for s in spans.children_of(root)]
        assert agent.name == "invoke_agent greet"
    assert roots[0].context.trace_id != roots[1].context.trace_id
    assert dict(roots[0].attributes)["fluxloop.metadata.replay.original_trace_id"] == "ab" * 16
    assert results[0].to_dict()["original_trace_id"] == "ab" * 16


def test_a_failed_replay_marks_its_trace_as_error() -> None:
    with capture_spans() as spans:
        one(f"{M}:fails", {"x": 1})
    root = spans.by_name(f"replay {M}:fails")
    assert root.status.status_code.name == "ERROR"


def test_replays_are_not_recorded_again(tmp_path: Path) -> None:
    rec_file = tmp_path / "rec.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(rec_file))
    sample_agents.greet("live")
    path = write(tmp_path / "r.jsonl", rec(f"{M}:greet", {"name": "replayed"}))
    assert replay_file(path)[0].ok
    assert recording.is_recording()
    sample_agents.greet("live again")
    assert fluxloop.flush(5)
    assert [line.count("live") for line in rec_file.read_text().splitlines()] == [1, 1]


def test_replay_file_raises_for_file_problems_before_running(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="not found"):
        replay_file(tmp_path / "missing.jsonl")
    path = write(tmp_path / "r.jsonl", rec(f"{M}:greet", {"name": "a"}))
    with pytest.raises(ReplayError, match="must look like 'module:callable'"):
        replay_file(path, factory="nocolon")


def test_replay_file_accepts_a_factory_spec(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:NeedsArgs.handle", {"text": "y"}))
    [result] = replay_file(path, factory=f"{M}:make_needs_args")
    assert result.output == "factory:y"


async def test_replay_from_async_code_runs_async_targets_on_a_helper_loop() -> None:
    result = one(f"{M}:agreet", {"name": "inside a loop"})
    assert result.ok and result.output == "hi inside a loop"
    await asyncio.sleep(0)


def test_to_dict_is_json_ready() -> None:
    result = one(f"{M}:uses_callbacks", {"text": "t", "notify": "<callable:notify>",
                                        "send": "<builtin:collector.send>", "error": "<builtin:collector.error>"})
    data = result.to_dict()
    assert data["status"] == "ok" and data["messages"] == ["t"] and data["errors"] == ["oops"]
    assert data["target"] == f"{M}:uses_callbacks" and data["line"] == 1 and data["output"] == "done"
