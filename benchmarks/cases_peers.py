"""Peer SDKs on the same workload (cases 3, 4, 5, 7, 8): OpenLLMetry (traceloop-sdk), Langfuse and Logfire.

Each peer runs with its own decorators and its own span processor, exporting to an ``InMemorySpanExporter``
(cleared before each batch, untimed), with no network:

- OpenLLMetry: ``Traceloop.init(exporter=InMemorySpanExporter(), disable_batch=True, instruments=set())``
  (SimpleSpanProcessor, no library instrumentation); ``@agent`` for the agent, ``@task`` for the prompt (it has
  no LLM decorator), ``@tool`` for tools. Traceloop adds its processor to the *global* provider when one is set,
  which here is FluxLoop's; the bench makes it build a private provider instead (``init_tracer_provider`` is
  replaced for the process), so neither SDK's spans run through the other's processors.
- Langfuse: ``Langfuse(public_key/secret_key=dummy, base_url=<closed local port>, tracer_provider=<private>,
  span_exporter=InMemorySpanExporter())``: its own BatchSpanProcessor and span transformation, exporting in
  memory; ``@observe(as_type=agent/generation/tool)``. Disabled = ``LANGFUSE_TRACING_ENABLED=false``, which
  Langfuse reads each time ``@observe`` builds its client.
- Logfire: ``logfire.configure(local=True, send_to_logfire=False, console=False, metrics=False,
  additional_span_processors=[SimpleSpanProcessor(InMemorySpanExporter())])`` and ``@instrument(record_return=True)``
  so the output is captured like the others. Logfire has no switch that turns its decorators off at run time:
  case 8 is not run for it.

``sample_rate=0`` (case 7) is each peer's head sampler dropping every new trace: all three take an OTel
``Sampler``; the bench gives each a parent-based sampler it switches between always-on and always-off before a
batch (untimed), so one process holds both modes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, SamplingResult

from benchmarks.harness import Case, Result, Target, fmt_us
from benchmarks.workload import (
    QUERY,
    RAW_ASYNC,
    RAW_NESTED,
    RAW_SYNC,
    RAW_UNSAMPLED,
    answer,
    answer_async,
    async_loop,
    generate_body,
    nested_agent_body,
    rank_body,
    search_body,
    sync_loop,
)

PEER_DISTS = ("traceloop-sdk", "langfuse", "logfire")
PEER_NAMES = {"tl": "OpenLLMetry", "lf": "Langfuse", "lg": "Logfire"}
DESIGN_RATIO = {"tl": "≈ 2.5×", "lf": "≈ 8×", "lg": "≈ 3.7×"}
KINDS = {"3": "sync", "4": "async", "5": "nested (4 spans)", "7": "sample_rate=0", "8": "disabled"}


class SwitchSampler(Sampler):
    """Parent-based; for a new trace records everything while ``on``, nothing otherwise."""

    def __init__(self) -> None:
        self.on = True
        self._on = ParentBased(ALWAYS_ON)
        self._off = ParentBased(ALWAYS_OFF)

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str, kind: Any = None,
                      attributes: Any = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
        return (self._on if self.on else self._off).should_sample(parent_context, trace_id, name, kind, attributes,
                                                                  links, trace_state)

    def get_description(self) -> str:
        return f"SwitchSampler{{on={self.on}}}"


class Peer:
    """One peer's decorated functions plus how to put it in each mode."""

    key = ""

    def __init__(self) -> None:
        self.sampler = SwitchSampler()
        self.exporter = InMemorySpanExporter()
        self.agent: Callable[..., Any]
        self.agent_async: Callable[..., Any]
        self.nested: Callable[..., Any]

    def set_enabled(self, enabled: bool) -> None:
        raise NotImplementedError

    def mode(self, sampled: bool = True, enabled: bool = True) -> Callable[[], None]:
        def prepare() -> None:
            self.exporter.clear()
            self.sampler.on = sampled
            self.set_enabled(enabled)
        return prepare

    def can_disable(self) -> bool:
        return True

    def flush(self) -> None:
        return None

    def check(self) -> list[str]:
        """Problems with the set-up: spans must reach the exporter when sampled and only then."""
        problems = []
        modes = [(True, True, 1), (False, True, 0)] + ([(True, False, 0)] if self.can_disable() else [])
        for sampled, enabled, want in modes:
            self.mode(sampled, enabled)()
            self.agent(QUERY)
            self.nested(QUERY)
            self.flush()
            got = len(self.exporter.get_finished_spans())
            if (got >= 5) != bool(want):
                problems.append(f"{PEER_NAMES[self.key]} sampled={sampled} enabled={enabled}: {got} spans")
        self.mode()()
        return problems

    def close(self) -> None:
        return None

    def cases(self) -> list[Case]:
        name, key = PEER_NAMES[self.key], self.key
        info = Target("peer")
        out = [
            Case(f"{key}3", f"3 {name} sync", sync_loop(self.agent, QUERY), ref=RAW_SYNC,
                 target=Target(f"peer (DESIGN {DESIGN_RATIO[key]})"), prepare=self.mode()),
            Case(f"{key}4", f"4 {name} async", async_loop(self.agent_async, QUERY), ref=RAW_ASYNC, target=info,
                 prepare=self.mode()),
            Case(f"{key}5", f"5 {name} nested (4 spans)", sync_loop(self.nested, QUERY), ref=RAW_NESTED,
                 target=info, prepare=self.mode()),
            Case(f"{key}7", f"7 {name} sample_rate=0", sync_loop(self.agent, QUERY), ref=RAW_UNSAMPLED,
                 target=info, prepare=self.mode(sampled=False)),
        ]
        if self.can_disable():
            out.append(Case(f"{key}8", f"8 {name} disabled", sync_loop(self.agent, QUERY), ref=RAW_SYNC,
                            target=info, prepare=self.mode(enabled=False)))
        return out


def _nested(agent: Callable[[Callable[..., Any]], Any], generate: Callable[..., Any], search: Callable[..., Any],
            rank: Callable[..., Any]) -> Callable[..., Any]:
    def researcher(query: str) -> dict[str, Any]:
        return nested_agent_body(query, generate, search, rank)
    return agent(researcher)


class OpenLLMetry(Peer):
    key = "tl"

    def __init__(self) -> None:
        super().__init__()
        os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
        os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")
        os.environ.setdefault("TRACELOOP_LOGGING_ENABLED", "false")
        from traceloop.sdk import Traceloop
        from traceloop.sdk.decorators import agent, task, tool
        from traceloop.sdk.tracing import tracing
        from traceloop.sdk.tracing.tracing import TracerWrapper

        def private_provider(resource: Resource, sampler: Sampler | None = None) -> TracerProvider:
            return TracerProvider(resource=resource, sampler=sampler)

        tracing.init_tracer_provider = private_provider  # bench only: stay off FluxLoop's global provider
        with contextlib.redirect_stdout(io.StringIO()):  # Traceloop prints its set-up to stdout
            Traceloop.init(app_name="benchmarks", exporter=self.exporter, disable_batch=True,
                           telemetry_enabled=False, sampler=self.sampler, instruments=set())
        self._wrapper = TracerWrapper
        self.agent = agent(name="answer")(answer)
        self.agent_async = agent(name="answer")(answer_async)
        self.nested = _nested(agent(name="researcher"), task(name="generate")(generate_body),
                              tool(name="search")(search_body), tool(name="rank")(rank_body))

    def set_enabled(self, enabled: bool) -> None:
        self._wrapper.set_disabled(not enabled)


class LangfusePeer(Peer):
    key = "lf"

    def __init__(self, closed_url: str) -> None:
        super().__init__()
        from langfuse import Langfuse, observe

        self.provider = TracerProvider(resource=Resource.create({"service.name": "benchmarks"}),
                                       sampler=self.sampler)
        self.client = Langfuse(public_key="pk-lf-benchmarks", secret_key="sk-lf-benchmarks", base_url=closed_url,
                               tracer_provider=self.provider, span_exporter=self.exporter)
        self.agent = observe(name="answer", as_type="agent")(answer)
        self.agent_async = observe(name="answer", as_type="agent")(answer_async)
        self.nested = _nested(observe(name="researcher", as_type="agent"),
                              observe(name="generate", as_type="generation")(generate_body),
                              observe(name="search", as_type="tool")(search_body),
                              observe(name="rank", as_type="tool")(rank_body))

    def flush(self) -> None:
        self.provider.force_flush()

    def set_enabled(self, enabled: bool) -> None:
        if enabled:
            os.environ.pop("LANGFUSE_TRACING_ENABLED", None)
        else:
            os.environ["LANGFUSE_TRACING_ENABLED"] = "false"

    def close(self) -> None:
        self.set_enabled(True)
        self.client.shutdown()


class LogfirePeer(Peer):
    key = "lg"

    def __init__(self) -> None:
        super().__init__()
        import logfire
        from logfire.sampling import SamplingOptions

        self.logfire = logfire.configure(local=True, send_to_logfire=False, console=False, metrics=False,
                                         service_name="benchmarks", inspect_arguments=False,
                                         additional_span_processors=[SimpleSpanProcessor(self.exporter)],
                                         sampling=SamplingOptions(head=self.sampler))
        instrument = self.logfire.instrument
        self.agent = instrument("answer", record_return=True)(answer)
        self.agent_async = instrument("answer", record_return=True)(answer_async)
        self.nested = _nested(instrument("researcher", record_return=True),
                              instrument("generate", record_return=True)(generate_body),
                              instrument("search", record_return=True)(search_body),
                              instrument("rank", record_return=True)(rank_body))

    def can_disable(self) -> bool:
        return False

    def set_enabled(self, enabled: bool) -> None:
        return None

    def close(self) -> None:
        self.logfire.shutdown(timeout_millis=2000)


_PEERS: list[Peer] = []


def peer_cases(closed_url: str) -> tuple[list[Case], list[str]]:
    """Set up the three peers (after FluxLoop, which owns the global provider): their cases, set-up problems."""
    logging.getLogger("langfuse").setLevel(logging.ERROR)
    _PEERS[:] = [OpenLLMetry(), LangfusePeer(closed_url), LogfirePeer()]
    problems = [p for peer in _PEERS for p in peer.check()]
    return [case for peer in _PEERS for case in peer.cases()], problems


def close_peers() -> None:
    for peer in _PEERS:
        try:
            peer.close()
        except Exception as exc:  # pragma: no cover - report and go on
            logging.getLogger("benchmarks").warning("closing %s failed: %r", type(peer).__name__, exc)
    _PEERS.clear()


def peer_summary(results: Sequence[Result]) -> tuple[str, list[tuple[str, str, str, str]]]:
    """FluxLoop next to each peer, case by case, with who is fastest; and a verdict per case for the summary.

    "Faster" is judged like every ratio here: on the median of per-round ratios, not on the two medians.
    """
    by_key = {r.case.key: r for r in results}
    verdicts = []
    lines = ["| case | FluxLoop µs | " + " | ".join(f"{n} µs (× FluxLoop)" for n in PEER_NAMES.values())
             + " | FluxLoop fastest? |", "|---|---:|" + "---:|" * len(PEER_NAMES) + "---|"]
    for kind, text in KINDS.items():
        mine = by_key.get(kind)
        if mine is None:
            continue
        cells, faster, slowest_ratio = [], True, float("inf")
        for key in PEER_NAMES:
            peer = by_key.get(f"{key}{kind}")
            if peer is None:
                cells.append("n/a")
                continue
            pairs = [a / b for a, b in zip(peer.samples_us, mine.samples_us, strict=False) if b > 0]
            ratio = statistics.median(pairs) if pairs else float("nan")
            faster = faster and ratio > 1.0
            slowest_ratio = min(slowest_ratio, ratio)
            cells.append(f"{fmt_us(peer.median_us)} ({ratio:.1f}×)")
        lines.append(f"| {kind} {text} | {fmt_us(mine.median_us)} | " + " | ".join(cells)
                     + f" | {'yes' if faster else 'NO'} |")
        verdicts.append((f"{kind} {text}: FluxLoop vs every peer", "faster than each peer (issue 6)",
                         f"closest peer {slowest_ratio:.2f}× FluxLoop", "PASS" if faster else "FAIL"))
    return "\n".join(lines), verdicts
