"""Fault 5: concurrency. 16 threads x 1,000 nested calls and 1,000 asyncio tasks in one gather: every trace tree
correct, no span lost, no exception, each thread's spans in the order they ended. Recordings written by 8 threads
and 4 processes at once: every line whole."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

import fluxloop

from ._harness import Child, Span, StatsSince, assert_each_once, offline_spans, strict_json

pytestmark = pytest.mark.reliability

THREADS = 16
CALLS = 1_000


@fluxloop.prompt(model="m")
def ask(who: int, i: int) -> str:
    return f"{who}/{i}"


@fluxloop.tool
def search(who: int, i: int) -> str:
    return ask(who, i)


@fluxloop.agent(name="Nested")
def nested(who: int, i: int) -> str:
    return search(who, i)


@fluxloop.prompt(model="m")
async def ask_async(task: int) -> int:
    await asyncio.sleep(0)
    return task


@fluxloop.tool
async def search_async(task: int) -> int:
    await asyncio.sleep(0)
    return await ask_async(task)


@fluxloop.agent(name="Async")
async def nested_async(task: int) -> int:
    async with fluxloop.instrument(f"job-{task}") as ctx:
        ctx.add_metadata("task", task)
        await asyncio.sleep(0)
        first = await search_async(task)
        await asyncio.sleep(0)
        second = await search_async(task)
        return first + second


def _traces(spans: list[Span]) -> dict[str, list[Span]]:
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    return by_trace


def _input(span: Span) -> dict:
    return strict_json(span.attributes["input.value"])


def test_16_threads_of_1000_nested_calls_build_correct_trees(offline_dir: Path, stats: StatsSince,
                                                              figure) -> None:
    # The queue is made big enough for the burst: this test is about correctness under concurrency; what happens
    # beyond max_queue_size is test_overload's subject.
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir), max_queue_size=100_000,
                       batch_size=2_048)
    errors: list[BaseException] = []
    results: dict[int, list[str]] = {}
    start = threading.Barrier(THREADS)

    def run(who: int) -> None:
        try:
            start.wait(10)
            results[who] = [nested(who, i) for i in range(CALLS)]
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(who,)) for who in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.perf_counter() - started
    assert not errors and not any(t.is_alive() for t in threads)
    assert results == {who: [f"{who}/{i}" for i in range(CALLS)] for who in range(THREADS)}
    assert fluxloop.flush(timeout=30)
    counts = stats()
    assert counts["dropped"] == counts["failed"] == 0
    assert counts["exported"] == 3 * THREADS * CALLS

    spans = offline_spans(offline_dir)
    assert_each_once(spans)
    traces = _traces(spans)
    assert len(traces) == THREADS * CALLS  # one trace per top-level call
    seen = Counter()
    for members in traces.values():
        by_name = {s.name: s for s in members}
        assert sorted(by_name) == ["chat m", "execute_tool search", "invoke_agent Nested"], members
        agent, tool, prompt = by_name["invoke_agent Nested"], by_name["execute_tool search"], by_name["chat m"]
        assert agent.parent_id is None
        assert tool.parent_id == agent.span_id and prompt.parent_id == tool.span_id
        assert _input(agent) == _input(tool) == _input(prompt)  # never a span of another thread's call
        seen[tuple(_input(agent).values())] += 1
    assert seen == Counter((who, i) for who in range(THREADS) for i in range(CALLS))
    order: dict[int, list[int]] = defaultdict(list)  # within one thread, spans are written in the order they ended
    for span in spans:
        if span.name == "invoke_agent Nested":
            who, i = _input(span).values()
            order[who].append(i)
    assert order == {who: list(range(CALLS)) for who in range(THREADS)}
    figure("spans", len(spans))
    figure("calls_per_s", round(THREADS * CALLS / elapsed))


async def test_1000_asyncio_tasks_in_one_gather_build_correct_trees(offline_dir: Path, stats: StatsSince) -> None:
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir), max_queue_size=100_000)
    results = await asyncio.gather(*(nested_async(task) for task in range(CALLS)))
    assert results == [2 * task for task in range(CALLS)]
    assert fluxloop.flush(timeout=30)
    counts = stats()
    assert counts["dropped"] == counts["failed"] == 0

    spans = offline_spans(offline_dir)
    assert_each_once(spans)
    traces = _traces(spans)
    assert len(traces) == CALLS
    tasks = set()
    for members in traces.values():
        agent = next(s for s in members if s.name == "invoke_agent Async")
        task = _input(agent)["task"]
        assert Counter(s.name for s in members) == {"invoke_agent Async": 1, f"job-{task}": 1,
                                                    "execute_tool search_async": 2, "chat m": 2}
        tasks.add(task)
        job = next(s for s in members if s.name.startswith("job-"))
        assert job.name == f"job-{task}" and job.parent_id == agent.span_id
        tools = [s for s in members if s.name == "execute_tool search_async"]
        prompts = [s for s in members if s.name == "chat m"]
        assert {t.parent_id for t in tools} == {job.span_id}
        assert sorted(p.parent_id for p in prompts) == sorted(t.span_id for t in tools)
        for span in [*tools, *prompts]:
            assert _input(span) == {"task": task}
            assert span.attributes["fluxloop.metadata.task"] == task  # the task's own context, never another's
    assert tasks == set(range(CALLS))


# --- recordings from 8 threads and 4 processes --------------------------------------------------------------------

WRITER_CALLS = 150


def pad_size(i: int) -> int:
    """Mostly small records, some far beyond PIPE_BUF (4 KiB), one near the 256 KiB per-value bound."""
    if i == 75:
        return 250_000
    if i % 20 == 0:
        return 70_000
    return 10 + i % 40


@fluxloop.agent(name="Recorded")
def recorded(who: str, i: int, pad: str) -> int:
    return i


def write_records(who: str) -> None:
    for i in range(WRITER_CALLS):
        recorded(who, i, "x" * pad_size(i))


RECORDING_CHILD = """
import sys
import fluxloop
from reliability.test_concurrency import write_records

fluxloop.configure(use_collector=False, offline_dir=sys.argv[2], record_args=True, recording_file=sys.argv[1])
assert sys.stdin.readline() == "go\\n"
write_records("p" + sys.argv[3])
"""  # exit: the exit hook writes what is pending


def test_recordings_from_8_threads_and_4_processes_keep_every_line_whole(spawn: Callable[..., Child],
                                                                        tmp_path: Path, offline_dir: Path) -> None:
    path = tmp_path / "recording.jsonl"
    children = [spawn(RECORDING_CHILD, str(path), str(tmp_path / f"child{n}"), str(n)) for n in range(4)]
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir), record_args=True,
                       recording_file=str(path))
    start = threading.Barrier(8 + 1)

    def run(who: str) -> None:
        start.wait(30)
        write_records(who)

    threads = [threading.Thread(target=run, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for child in children:
        child.send("go")
    start.wait(30)
    for thread in threads:
        thread.join(120)
    assert fluxloop.flush(timeout=30)
    for child in children:
        assert child.wait(60) == 0, child.stderr()

    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    records = [strict_json(line) for line in raw.splitlines()]  # every line is one whole JSON object
    writers = [f"t{n}" for n in range(8)] + [f"p{n}" for n in range(4)]
    assert len(records) == len(writers) * WRITER_CALLS
    seen = Counter()
    for record in records:
        kwargs = record["kwargs"]
        assert kwargs["pad"] == "x" * pad_size(kwargs["i"])  # nothing interleaved inside a line
        assert record["target"].endswith(":recorded")
        seen[(kwargs["who"], kwargs["i"])] += 1
    assert seen == Counter((w, i) for w in writers for i in range(WRITER_CALLS))
