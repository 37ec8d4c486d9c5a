"""Automatic recording of ``@fluxloop.agent`` calls, and how it meets explicit ``record_call_args``."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import fluxloop
from fluxloop import recording
from fluxloop.testing import capture_spans

from fluxloop._recorder import suppressed

from ._helpers import read_records, replayable

MODULE = __name__


@pytest.fixture(autouse=True)
def recording_on(rec_file: Path) -> None:
    fluxloop.configure(record_args=True, recording_file=str(rec_file))


@fluxloop.agent(name="planner")
def plan(goal: str, steps: int = 3, *, verbose: bool = False) -> str:
    return goal * steps


class Bot:
    @fluxloop.agent
    def reply(self, text: str) -> str:
        return text.upper()

    @fluxloop.agent
    @classmethod
    def build(cls, name: str) -> str:
        return name


class Collector:
    def __init__(self) -> None:
        self.messages: list = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(message)


class Errors:
    def __init__(self) -> None:
        self.errors: list = []

    async def __call__(self, error: Any) -> None:
        self.errors.append(error)


class MessageHandler:
    """The seed README's handler: it records itself inside an @agent."""

    @fluxloop.agent(name="message_handler")
    async def handle_message(self, connection_id: str, data: Dict[str, Any], user_connection: Dict[str, Any],
                             send_message_callback: Callable, send_error_callback: Callable) -> None:
        fluxloop.record_call_args(
            target="examples.message_handler:MessageHandler.handle_message",
            connection_id=connection_id,
            data=data,
            user_connection=user_connection,
            send_message_callback=send_message_callback,
            send_error_callback=send_error_callback,
        )
        await asyncio.sleep(0)  # a real await between the record and the reply
        await send_message_callback({"echo": data.get("content")})


def test_agent_call_is_recorded_with_bound_arguments_and_its_span(rec_file: Path) -> None:
    with capture_spans() as spans:
        assert plan("ab", verbose=True) == "ababab"
    [rec] = read_records(rec_file)
    assert rec["target"] == f"{MODULE}:plan"
    assert rec["kwargs"] == {"goal": "ab", "steps": 3, "verbose": True}
    span = spans.by_name("invoke_agent planner")
    assert rec["trace_id"] == f"{span.context.trace_id:032x}"
    assert rec["span_id"] == f"{span.context.span_id:016x}"


def test_self_and_cls_are_left_out(rec_file: Path) -> None:
    Bot().reply("hi")
    Bot.build("b")
    records = read_records(rec_file)
    assert [(r["target"], r["kwargs"]) for r in records] == [(f"{MODULE}:Bot.reply", {"text": "hi"}),
                                                            (f"{MODULE}:Bot.build", {"name": "b"})]


def test_a_crashing_call_is_recorded_and_its_exception_untouched(rec_file: Path) -> None:
    error = ValueError("boom")

    @fluxloop.agent
    def crash(x: int) -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        crash(1)
    assert caught.value is error
    [rec] = read_records(rec_file)
    assert rec["kwargs"] == {"x": 1}


async def test_a_cancelled_call_is_recorded(rec_file: Path) -> None:
    started = asyncio.Event()

    @fluxloop.agent
    async def wait_forever(x: int) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever(7))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [r["kwargs"] for r in read_records(rec_file)] == [{"x": 7}]


def test_record_args_false_opts_out_and_can_record_itself(rec_file: Path) -> None:
    @fluxloop.agent(record_args=False)
    def quiet(x: int) -> None:
        pass

    @fluxloop.agent(record_args=False)
    def manual(x: int) -> None:
        fluxloop.record_call_args(target="app:manual", x=x, extra="mine")

    quiet(1)
    manual(2)
    assert [(r["target"], r["kwargs"]) for r in read_records(rec_file)] == [("app:manual", {"x": 2, "extra": "mine"})]


def test_only_agents_are_recorded(rec_file: Path) -> None:
    @fluxloop.prompt(model="m")
    def gen(p: str) -> str:
        return p

    @fluxloop.tool
    def look(q: str) -> str:
        return q

    @fluxloop.trace
    def step(s: str) -> str:
        return s

    gen("p"), look("q"), step("s")
    assert read_records(rec_file) == []


def test_seed_message_handler_yields_exactly_one_record_per_call(rec_file: Path) -> None:
    handler = MessageHandler()
    sent = []
    for i in range(3):
        messages, errors = Collector(), Errors()
        asyncio.run(handler.handle_message(f"ws-{i}", {"content": f"m{i}"}, {"auth_token": "secret"}, messages,
                                           errors))
        sent.append(messages.messages)
    lines = read_records(rec_file)
    assert len(lines) == 6  # each call: its automatic record at span start, then the handler's own
    assert [(lines[i]["span_id"], lines[i]["iteration"]) for i in (0, 2, 4)] == [
        (lines[i + 1]["span_id"], lines[i + 1]["iteration"]) for i in (0, 2, 4)]
    assert [(r.target, r.iteration) for r in replayable(rec_file)] == [
        ("examples.message_handler:MessageHandler.handle_message", i) for i in range(3)]
    records = lines[1::2]
    assert records[0]["kwargs"] == {"connection_id": "ws-0", "data": {"content": "m0"},
                                    "user_connection": {"auth_token": "***"},
                                    "send_message_callback": "<builtin:collector.send>",
                                    "send_error_callback": "<builtin:collector.error>"}
    assert all(r["trace_id"] and r["span_id"] for r in records)
    assert sent == [[{"echo": "m0"}], [{"echo": "m1"}], [{"echo": "m2"}]]


class NestedHandler:
    """Records itself inside a nested span (an instrument() block) of its agent call."""

    @fluxloop.agent(name="nested_handler")
    def handle(self, text: str) -> str:
        with fluxloop.instrument("parse"):
            fluxloop.record_call_args(target=f"{MODULE}:NestedHandler.handle", text=text)
        return text


@fluxloop.agent
def outer(text: str) -> str:
    return inner(text)


@fluxloop.agent
def inner(text: str) -> str:
    fluxloop.record_call_args(target=f"{MODULE}:outer", text=text, own=True)  # made inside inner, for outer
    return text


def pairs(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["trace_id"], r["span_id"], r["iteration"]) for r in lines]


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_seed_message_handler_replays_once_per_call_sampled_or_not(rec_file: Path, rate: float) -> None:
    fluxloop.configure(sample_rate=rate)
    for i in range(3):
        asyncio.run(MessageHandler().handle_message(f"ws-{i}", {"content": i}, {}, Collector(), Errors()))
    lines = read_records(rec_file)
    assert len(lines) == 6 and pairs(lines[0::2]) == pairs(lines[1::2])
    assert len({r["span_id"] for r in lines}) == 3
    assert [(r.iteration, r.kwargs["connection_id"], r.line) for r in replayable(rec_file)] == [
        (0, "ws-0", 2), (1, "ws-1", 4), (2, "ws-2", 6)]  # the handler's own records, automatic ones left out


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_a_record_made_in_a_nested_span_supersedes_its_agent_calls_record(rec_file: Path, rate: float) -> None:
    fluxloop.configure(sample_rate=rate)
    with capture_spans() as spans:
        for text in ("a", "b"):
            NestedHandler().handle(text)
    lines = read_records(rec_file)
    assert len(lines) == 4 and pairs(lines[0::2]) == pairs(lines[1::2])
    assert [(r.line, r.kwargs) for r in replayable(rec_file)] == [(2, {"text": "a"}), (4, {"text": "b"})]
    if rate:  # the agent call's span, not the instrument() block's
        agents = [s for s in spans.spans if s.name == "invoke_agent nested_handler"]
        assert [r["span_id"] for r in lines[1::2]] == [f"{s.context.span_id:016x}" for s in agents]
    else:
        assert not spans.spans


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_a_record_made_in_a_nested_agent_call_supersedes_the_enclosing_call(rec_file: Path, rate: float) -> None:
    fluxloop.configure(sample_rate=rate)
    outer("x")
    auto_outer, auto_inner, own = read_records(rec_file)
    assert (auto_outer["target"], auto_inner["target"]) == (f"{MODULE}:outer", f"{MODULE}:inner")
    assert pairs([own]) == pairs([auto_outer]) != pairs([auto_inner])
    assert [(r.target, r.kwargs) for r in replayable(rec_file)] == [
        (f"{MODULE}:inner", {"text": "x"}), (f"{MODULE}:outer", {"text": "x", "own": True})]


async def test_concurrent_self_recording_calls_each_give_one_record(rec_file: Path) -> None:
    handler = MessageHandler()
    await asyncio.gather(*(handler.handle_message(f"ws-{i}", {"content": i}, {}, Collector(), Errors())
                           for i in range(20)))
    records = replayable(rec_file)
    assert len(records) == 20 and len(read_records(rec_file)) == 40
    assert {r.target for r in records} == {"examples.message_handler:MessageHandler.handle_message"}
    assert sorted(r.kwargs["connection_id"] for r in records) == sorted(f"ws-{i}" for i in range(20))
    assert sorted(r.iteration for r in records) == list(range(20))
    assert len({r.trace_id for r in records}) == 20


def test_an_explicit_record_for_another_function_is_written_too(rec_file: Path) -> None:
    def helper(q: str) -> None:
        fluxloop.record_call_args(target="app:lookup", q=q)

    @fluxloop.agent
    def outer(q: str) -> None:
        helper(q)

    outer("x")
    records = read_records(rec_file)
    assert sorted(r["target"] for r in records) == ["app:lookup", f"{MODULE}:{outer.__qualname__}"]


def test_nested_agents_are_recorded_once_each(rec_file: Path) -> None:
    @fluxloop.agent
    def inner(y: int) -> int:
        fluxloop.record_call_args(target="app:inner", y=y)  # replaces inner's own record
        return y

    @fluxloop.agent
    def outer(x: int) -> int:
        return inner(x + 1) + inner(x + 2)

    outer(1)
    records = replayable(rec_file)
    assert sorted((r.target, str(r.kwargs)) for r in records) == sorted([
        (f"{MODULE}:{outer.__qualname__}", "{'x': 1}"), ("app:inner", "{'y': 2}"), ("app:inner", "{'y': 3}")])


def test_generator_agents_are_recorded_once_even_when_closed_early(rec_file: Path) -> None:
    @fluxloop.agent
    def stream(n: int):
        yield from range(n)

    @fluxloop.agent
    async def astream(n: int):
        for i in range(n):
            yield i

    assert list(stream(3)) == [0, 1, 2]
    gen = stream(10)
    next(gen)
    gen.close()

    async def consume() -> None:
        assert [i async for i in astream(2)] == [0, 1]

    asyncio.run(consume())
    records = read_records(rec_file)
    assert [r["kwargs"]["n"] for r in records] == [3, 10, 2]
    fluxloop.record_call_args(target=f"{MODULE}:stream", n=99)  # no agent scope left open
    assert len(read_records(rec_file)) == 4


def test_arguments_are_captured_when_the_call_starts(rec_file: Path) -> None:
    @fluxloop.agent
    def mutate(data: dict) -> None:
        data["changed"] = True

    mutate({"v": 1})
    [rec] = read_records(rec_file)
    assert rec["kwargs"] == {"data": {"v": 1}}


def test_unsampled_calls_are_still_recorded_with_ids_of_their_own(rec_file: Path) -> None:
    fluxloop.configure(sample_rate=0.0)
    with capture_spans() as spans:
        plan("a", 1)
        plan("b", 1)
    assert not spans.spans
    first, second = read_records(rec_file)
    assert first["kwargs"]["goal"] == "a"
    assert re.fullmatch("[0-9a-f]{32}", first["trace_id"]) and re.fullmatch("[0-9a-f]{16}", first["span_id"])
    assert first["span_id"] != second["span_id"]  # each call is one identity, like a non-recording span's


def test_an_unsampled_call_under_an_unsampled_parent_keeps_the_parents_trace(rec_file: Path) -> None:
    parent = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(parent)):
        plan("a", 1)
    [rec] = read_records(rec_file)
    assert rec["trace_id"] == f"{0xABC:032x}" and rec["span_id"] not in ("", f"{0xDEF:016x}")


def test_no_hook_work_when_recording_is_off(rec_file: Path) -> None:
    fluxloop.disable_recording()
    assert not recording.is_recording()
    plan("a")
    assert read_records(rec_file) == []


def test_a_call_running_when_recording_stops_is_still_written(rec_file: Path) -> None:
    @fluxloop.agent
    def long_call(x: int) -> None:
        fluxloop.disable_recording()

    long_call(5)
    assert [r["kwargs"] for r in read_records(rec_file)] == [{"x": 5}]


def test_nothing_is_recorded_while_suppressed(rec_file: Path) -> None:
    with suppressed():
        plan("a")
        fluxloop.record_call_args(target="m:f")
    plan("b")
    assert [r["kwargs"]["goal"] for r in read_records(rec_file)] == ["b"]


def test_main_module_targets_become_importable_under_python_m(rec_file: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__spec__", types.SimpleNamespace(name="pkg.tool"), raising=False)
    fluxloop.record_call_args(target="__main__:Handler.run", x=1)
    monkeypatch.setattr(main, "__spec__", None, raising=False)
    fluxloop.record_call_args(target="__main__:Handler.run", x=2)
    assert [r["target"] for r in read_records(rec_file)] == ["pkg.tool:Handler.run", "__main__:Handler.run"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_inside_an_agent_call_records_the_call_once(rec_file: Path) -> None:
    @fluxloop.agent
    def forking(x: int) -> int:
        return os.fork()

    pid = forking(1)
    if pid == 0:  # the child leaves the same call: it must not write the parent's record
        os._exit(0 if fluxloop.flush(timeout=10) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [r["kwargs"] for r in read_records(rec_file)] == [{"x": 1}]
