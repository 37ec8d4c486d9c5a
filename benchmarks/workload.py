"""The agent-shaped workload every case runs, undecorated (case 1) and under raw OpenTelemetry (the reference).

The functions do almost nothing on purpose: what is measured is what tracing adds around a call. The same
arguments and results are used by every SDK so each serializes the same input and output.

Raw OTel is the reference of DESIGN §5: an SDK ``TracerProvider`` (not installed globally) with a
``SimpleSpanProcessor`` into an ``InMemorySpanExporter``, ``tracer.start_as_current_span`` around the function,
input and output set as orjson strings with ``span.set_attribute``. The exporter is cleared before each batch
(untimed) so memory does not grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from benchmarks.harness import Case, Target

QUERY = "What is the capital of France?"
TOP_K = 3
SOURCES = ("wiki/France", "wiki/Paris", "atlas/europe")
STREAM_ITEMS = 10

INPUT_KEY = "input"
OUTPUT_KEY = "output"


# -- the undecorated functions ------------------------------------------------------------------------------------
ANSWER = {"answer": "Paris is the capital of France.", "top_k": TOP_K, "sources": SOURCES}


def answer(query: str, top_k: int = TOP_K) -> dict[str, Any]:
    """The agent entry point of cases 1-4 and 7-11 (returns a ready result: the call itself costs ~nothing)."""
    return ANSWER


async def answer_async(query: str, top_k: int = TOP_K) -> dict[str, Any]:
    return ANSWER


def stream(query: str, count: int = STREAM_ITEMS) -> Iterator[str]:
    """Case 6: a generator of ``count`` items."""
    for i in range(count):
        yield f"token-{i}"


# Nested (case 5): an agent calling a prompt and two tools; each SDK decorates these four bodies itself.
def generate_body(query: str) -> str:
    return f"draft answer to {query[:12]}"


def search_body(query: str) -> list[str]:
    return list(SOURCES)


def rank_body(docs: list[str]) -> list[str]:
    return docs[:2]


def nested_agent_body(query: str, generate: Callable[[str], str], search: Callable[[str], list[str]],
                      rank: Callable[[list[str]], list[str]]) -> dict[str, Any]:
    draft = generate(query)
    return {"answer": draft, "sources": rank(search(query))}


# -- loops: the timed part of every case ---------------------------------------------------------------------------
def sync_loop(fn: Callable[..., Any], *args: Any) -> Callable[[int], float]:
    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            fn(*args)
        return perf_counter() - start
    return run


def gen_loop(fn: Callable[..., Iterator[Any]], *args: Any) -> Callable[[int], float]:
    def run(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            for _item in fn(*args):
                pass
        return perf_counter() - start
    return run


_LOOP: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The one event loop every async case is awaited in."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def async_loop(fn: Callable[..., Any], *args: Any) -> Callable[[int], float]:
    async def batch(n: int) -> float:
        start = perf_counter()
        for _ in range(n):
            await fn(*args)
        return perf_counter() - start

    def run(n: int) -> float:
        return event_loop().run_until_complete(batch(n))
    return run


# -- raw OpenTelemetry: the reference ------------------------------------------------------------------------------
def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class RawOtel:
    """Raw OTel call paths on a private provider: sampled, or with a drop-everything sampler.

    ``processor`` replaces the SimpleSpanProcessor + InMemorySpanExporter (case 10's BatchSpanProcessor).
    """

    def __init__(self, sampled: bool = True, processor: SpanProcessor | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        sampler = None if sampled else ParentBased(ALWAYS_OFF)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "bench-raw-otel"}),
                                       sampler=sampler)
        self.provider.add_span_processor(processor or SimpleSpanProcessor(self.exporter))
        tracer = self.provider.get_tracer("benchmarks.raw_otel")
        span_of = tracer.start_as_current_span

        def agent(query: str, top_k: int = TOP_K) -> dict[str, Any]:
            with span_of("invoke_agent answer") as span:
                span.set_attribute(INPUT_KEY, dumps({"query": query, "top_k": top_k}))
                result = answer(query, top_k)
                span.set_attribute(OUTPUT_KEY, dumps(result))
                return result

        def agent_contract(query: str, top_k: int = TOP_K) -> dict[str, Any]:
            # The same span with the attributes FluxLoop's span contract requires (DESIGN §2).
            with span_of("invoke_agent answer") as span:
                span.set_attributes(CONTRACT_ATTRIBUTES)
                span.set_attribute(INPUT_KEY, dumps({"query": query, "top_k": top_k}))
                result = answer(query, top_k)
                span.set_attribute(OUTPUT_KEY, dumps(result))
                return result

        async def agent_async(query: str, top_k: int = TOP_K) -> dict[str, Any]:
            with span_of("invoke_agent answer") as span:
                span.set_attribute(INPUT_KEY, dumps({"query": query, "top_k": top_k}))
                result = await answer_async(query, top_k)
                span.set_attribute(OUTPUT_KEY, dumps(result))
                return result

        def traced(name: str, body: Callable[..., Any], arg_name: str) -> Callable[..., Any]:
            def call(arg: Any) -> Any:
                with span_of(name) as span:
                    span.set_attribute(INPUT_KEY, dumps({arg_name: arg}))
                    result = body(arg)
                    span.set_attribute(OUTPUT_KEY, dumps(result))
                    return result
            return call

        generate = traced("chat gpt-4o-mini", generate_body, "query")
        search = traced("execute_tool search", search_body, "query")
        rank = traced("execute_tool rank", rank_body, "docs")

        def nested(query: str) -> dict[str, Any]:
            with span_of("invoke_agent researcher") as span:
                span.set_attribute(INPUT_KEY, dumps({"query": query}))
                result = nested_agent_body(query, generate, search, rank)
                span.set_attribute(OUTPUT_KEY, dumps(result))
                return result

        def gen(query: str, count: int = STREAM_ITEMS) -> Iterator[str]:
            with span_of("stream") as span:
                span.set_attribute(INPUT_KEY, dumps({"query": query, "count": count}))
                items = []
                for item in stream(query, count):
                    items.append(item)
                    yield item
                span.set_attribute(OUTPUT_KEY, dumps(items))

        self.agent, self.agent_async, self.nested, self.gen = agent, agent_async, nested, gen
        self.agent_contract = agent_contract

    def clear(self) -> None:
        self.exporter.clear()

    def check(self, want: int) -> list[str]:
        self.clear()
        self.agent(QUERY)
        self.nested(QUERY)
        got = len(self.exporter.get_finished_spans())
        self.clear()
        return [] if got == want else [f"raw OTel: {got} spans exported, expected {want}"]


RAW_SYNC, RAW_ASYNC, RAW_NESTED, RAW_GEN, RAW_UNSAMPLED = "2", "2a", "2b", "2c", "2d"
RAW_CONTRACT = "2e"
#: What a FluxLoop agent span carries besides input/output; case 2e shows what the contract itself costs.
CONTRACT_ATTRIBUTES = {"fluxloop.observation.type": "agent", "fluxloop.name": "answer",
                       "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "answer"}


def core_reference_cases(raw: RawOtel, raw_off: RawOtel) -> list[Case]:
    """Case 1 (plain call) and the raw OTel references of cases 3-7."""
    return [
        Case("1", "1 plain call (no tracing)", sync_loop(answer, QUERY), ref=RAW_SYNC,
             target=Target("≈ 0.05 µs (floor)")),
        Case(RAW_SYNC, "2 raw OTel span, sync", sync_loop(raw.agent, QUERY), prepare=raw.clear,
             target=Target("≈ 20 µs (reference)")),
        Case(RAW_ASYNC, "2a raw OTel span, async", async_loop(raw.agent_async, QUERY), prepare=raw.clear,
             target=Target("reference of 4")),
        Case(RAW_NESTED, "2b raw OTel nested (4 spans)", sync_loop(raw.nested, QUERY), prepare=raw.clear,
             target=Target("reference of 5")),
        Case(RAW_GEN, "2c raw OTel generator (10 items)", gen_loop(raw.gen, QUERY), prepare=raw.clear,
             target=Target("reference of 6")),
        Case(RAW_UNSAMPLED, "2d raw OTel, drop-all sampler", sync_loop(raw_off.agent, QUERY), ref=RAW_SYNC,
             prepare=raw_off.clear, target=Target("≈ 6 µs")),
        Case(RAW_CONTRACT, "2e raw OTel span with FluxLoop's attribute set", sync_loop(raw.agent_contract, QUERY),
             ref=RAW_SYNC, prepare=raw.clear, target=Target("info: the span contract's own cost")),
    ]
