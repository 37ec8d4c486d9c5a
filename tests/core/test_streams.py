"""Returned generators and async generators: real generator objects, bounded memory, what the span exports."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import json
import time
import tracemalloc
import types
import weakref
from pathlib import Path
from typing import Any

import pytest
from fluxloop_otel_exporter import iter_offline_files, read_requests
from reliability._harness import Span, offline_spans

import fluxloop


@pytest.fixture
def exported(tmp_path: Path) -> Any:
    def read() -> list[Span]:
        assert fluxloop.flush(timeout=30)
        return offline_spans(tmp_path / "artifacts")
    return read


def _one(spans: list[Span], name: str) -> Span:
    [span] = [s for s in spans if s.name == name]
    return span


def start_ns(directory: Path, name: str) -> int:
    """``startTimeUnixNano`` of the exported span ``name``."""
    for path in iter_offline_files(directory):
        for _, request, _ in read_requests(path):
            for rs in (request or {}).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        if s["name"] == name:
                            return int(s["startTimeUnixNano"])
    raise AssertionError(f"no span {name!r}")


# -- real generator objects -----------------------------------------------------------------------------------
def test_a_decorated_generator_returns_a_real_generator(exported: Any) -> None:
    @fluxloop.trace
    def numbers(n: int):
        received = []
        for i in range(n):
            received.append((yield i))
        return received

    gen = numbers(3)
    assert inspect.isgenerator(gen) and isinstance(gen, types.GeneratorType)

    def outer():
        return (yield from gen)  # delegation: send and the return value pass through

    driver = outer()
    assert next(driver) == 0 and driver.send("a") == 1 and driver.send("b") == 2
    with pytest.raises(StopIteration) as stop:
        driver.send("c")
    assert stop.value.value == ["a", "b", "c"]
    span = _one(exported(), "numbers")
    assert json.loads(span.attributes["output.value"]) == [0, 1, 2] and span.status_code == 0


async def test_a_decorated_async_generator_returns_a_real_async_generator(exported: Any) -> None:
    @fluxloop.prompt(name="words")
    async def words():
        try:
            received = yield "Open"
            yield received
            yield "never"
        finally:
            closed.append(True)

    closed: list[bool] = []
    agen = words()
    assert inspect.isasyncgen(agen) and isinstance(agen, types.AsyncGeneratorType)
    assert await agen.asend(None) == "Open" and await agen.asend("Telemetry") == "Telemetry"
    await agen.aclose()  # forwarded: the original's finally runs, the span ends
    assert closed == [True]
    assert _one(exported(), "chat words").attributes["output.value"] == "OpenTelemetry"


def test_throw_reaches_the_original_and_an_unhandled_one_ends_the_span_with_error(exported: Any) -> None:
    @fluxloop.tool
    def worker():
        while True:
            try:
                yield "ready"
            except KeyError:
                yield "recovered"

    gen = worker()
    assert next(gen) == "ready" and gen.throw(KeyError("k")) == "recovered"
    with pytest.raises(ValueError, match="stop"):
        gen.throw(ValueError("stop"))
    span = _one(exported(), "execute_tool worker")
    assert span.status_code == 2 and span.status_message == "stop"


def test_a_generator_dropped_unread_ends_its_span_in_the_calls_trace(exported: Any) -> None:
    @fluxloop.trace
    def never_read():
        yield 1

    with fluxloop.instrument("job") as ctx:
        gen = never_read()
    del gen
    gc.collect()
    span = _one(exported(), "never_read")
    assert span.parent_id == ctx.span_id and span.status_code == 0


def test_with_on_a_returned_generator_fails_as_without_fluxloop(exported: Any) -> None:
    def plain():
        yield 1

    @fluxloop.trace
    def items():
        yield 1

    # TypeError from Python 3.11 on, AttributeError('__enter__') on 3.10: the same as a plain generator's.
    with pytest.raises((TypeError, AttributeError)) as without, plain():  # type: ignore[attr-defined]
        pass
    with pytest.raises(without.type), items():  # type: ignore[attr-defined]
        pass
    gc.collect()
    assert _one(exported(), "items").status_code == 0  # the user's TypeError is not the stream's


# -- what the README documents for generator functions ---------------------------------------------------------
def test_the_decorated_generator_function_is_not_a_generator_function_for_inspect(exported: Any) -> None:
    @fluxloop.trace
    def open_session():
        yield "session"

    @fluxloop.trace
    async def open_async_session():
        yield "session"

    # The span starts at the call, so the wrapper is a plain function: frameworks that look for a generator
    # function (pytest yield fixtures, FastAPI Depends with yield) would not treat it as one.
    assert not inspect.isgeneratorfunction(open_session)
    assert not inspect.isasyncgenfunction(open_async_session)

    # What the README recommends: leave the fixture/dependency undecorated and decorate what it calls.
    def session_dependency():
        yield from open_session()

    assert inspect.isgeneratorfunction(session_dependency)
    deps = session_dependency()
    assert next(deps) == "session"
    deps.close()
    # A context manager built on the decorated function works too: it only calls it and iterates the result.
    with contextlib.contextmanager(open_session)() as value:
        assert value == "session"
    assert [s.name for s in exported()] == ["open_session", "open_session"]


# -- bounded memory ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Frame:
    index: int
    api_key: str
    pixels: bytes


def test_yielded_items_are_not_kept_while_the_stream_is_open(exported: Any) -> None:
    alive: list[weakref.ref[Frame]] = []

    @fluxloop.trace
    def frames(n: int):
        for i in range(n):
            frame = Frame(i, "sk-live-1234567890abcdefghij", bytes(10_000))
            alive.append(weakref.ref(frame))
            yield frame

    gen = frames(50)
    for _ in range(10):
        next(gen)
    gc.collect()
    # The consumer dropped every item; only the one the generator's own frame still holds may live.
    assert [ref() for ref in alive[:-1]] == [None] * 9
    gen.close()
    a = _one(exported(), "frames").attributes
    out = json.loads(a["output.value"])
    assert [item["index"] for item in out] == list(range(10))  # serialized when they arrived, masked
    assert all(item["api_key"] == "***" for item in out)
    assert "sk-live" not in a["output.value"]
    assert a["fluxloop.masked_paths"][:2] == ["output.[0].api_key", "output.[1].api_key"]


def test_memory_held_by_a_stream_of_large_items_is_bounded(exported: Any) -> None:
    @fluxloop.trace
    def frames(n: int):
        for i in range(n):
            yield {"frame": i, "pixels": bytearray(1_000_000)}  # 1 MB each; the consumer keeps none

    gen = frames(100)
    tracemalloc.start()
    try:
        for _ in gen:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # about one item at a time, not 100 MB
    value = _one(exported(), "frames").attributes["output.value"]
    assert len(value) <= 32 * 1024 and json.loads(value)[0]["frame"] == 0


# -- time to first chunk ----------------------------------------------------------------------------------------
def test_time_to_first_chunk_counts_from_the_span_start(tmp_path: Path, exported: Any) -> None:
    @fluxloop.prompt(name="words")
    def words():
        yield "first"

    gen = words()
    before = time.time_ns()
    assert next(gen) == "first"
    after = time.time_ns()
    list(gen)
    a = _one(exported(), "chat words").attributes
    first_chunk = start_ns(tmp_path / "artifacts", "chat words") + round(a["fluxloop.stream.time_to_first_chunk"] * 1e9)
    assert before - 1_000 <= first_chunk <= after + 1_000  # the moment the first item came, on the span's clock
