"""Offline artifacts read back as traces: a streaming index of trace summaries, and one trace loaded in full.

Files are read one OTLP/JSON request (line) at a time with the spool format's typed reader
(:mod:`fluxloop_otel_exporter._spool_format`). Listing
keeps one small :class:`TraceSummary` per trace, never the spans, so a folder of any size is listed with memory
proportional to the number of traces. Showing a trace reads again only the files that hold its spans.

Example::

    index = index_traces(Path("fluxloop_artifacts"), on_problem=print)
    newest = index.newest_first()[0]
    trace = load_trace(index, newest)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxloop import _attributes as attr
from fluxloop_otel_exporter._spool_format import (
    STATUS_ERROR,
    SpoolSpan,
    any_value,
    iter_spool_files,
    key_values,
    parse_span,
    read_lines,
    request_spans,
    span_summary,
)

__all__ = [
    "STATUS_ERROR",
    "AmbiguousTraceId",
    "Problem",
    "SpanRecord",
    "Trace",
    "TraceIndex",
    "TraceSummary",
    "any_value",
    "index_traces",
    "key_values",
    "load_trace",
    "resolve_trace_id",
]

_KIND_NAMES = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Problem:
    """A line (or file, ``line == 0``) that could not be read; reported, then skipped."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


ProblemHandler = Callable[[Problem], None]


@dataclass(slots=True)
class TraceSummary:
    """What the trace list shows about one trace; kept for every trace while a folder is indexed."""

    trace_id: str
    root_name: str
    has_root: bool
    start_ns: int
    end_ns: int
    span_count: int
    error_count: int
    service: str | None
    first_file: int  # index in TraceIndex.files of the first and last file holding one of its spans
    last_file: int

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)


@dataclass
class TraceIndex:
    """The traces of a folder of offline artifacts."""

    directory: Path
    files: list[Path]
    traces: dict[str, TraceSummary] = field(default_factory=dict)
    span_count: int = 0
    problem_count: int = 0

    def newest_first(self) -> list[TraceSummary]:
        """Every trace, the latest start first (ties broken by trace id, so the order is stable)."""
        return sorted(self.traces.values(), key=lambda t: (-t.start_ns, t.trace_id))


class AmbiguousTraceId(LookupError):
    """A trace id prefix that matches more than one trace."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(prefix, matches)
        self.prefix = prefix
        self.matches = matches


@dataclass
class SpanRecord:
    """One span of a loaded trace, with OTLP values decoded to plain Python values."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    parent_is_remote: bool
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    resource: dict[str, Any]
    scope: dict[str, Any]
    source: str  # "<file>:<line>"
    depth: int = 0
    is_last: bool = True  # the last child of its parent (for tree glyphs)
    ancestors_last: tuple[bool, ...] = ()  # is_last of each ancestor below the root (for tree glyphs)

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)

    @property
    def is_error(self) -> bool:
        return self.status_code == STATUS_ERROR

    @property
    def observation_type(self) -> str:
        """FluxLoop's observation type; for other instrumentations' spans the type their OpenInference kind or
        GenAI operation says; else the OTel span kind (``internal``, ``server``, ...)."""
        a = self.attributes
        value = a.get(attr.OBSERVATION_TYPE)
        if isinstance(value, str) and value:
            return value
        kind = a.get(attr.SPAN_KIND)
        if isinstance(kind, str) and kind.upper() in _OPENINFERENCE_TYPES:
            return _OPENINFERENCE_TYPES[kind.upper()]
        operation = a.get(attr.GEN_AI_OPERATION_NAME)
        if isinstance(operation, str) and operation in _OPERATION_TYPES:
            return _OPERATION_TYPES[operation]
        return _KIND_NAMES.get(self.kind, "span")

    @property
    def kind_name(self) -> str:
        return _KIND_NAMES.get(self.kind, str(self.kind))


#: Third-party spans: OpenInference span kinds and GenAI operation names as FluxLoop observation types.
_OPENINFERENCE_TYPES = {"AGENT": attr.TYPE_AGENT, "LLM": attr.TYPE_GENERATION, "TOOL": attr.TYPE_TOOL,
                        "CHAIN": attr.TYPE_SPAN, "RETRIEVER": "retriever", "EMBEDDING": "embedding",
                        "RERANKER": "reranker", "GUARDRAIL": "guardrail", "EVALUATOR": "evaluator"}
_OPERATION_TYPES = {attr.OP_CHAT: attr.TYPE_GENERATION, "text_completion": attr.TYPE_GENERATION,
                    "generate_content": attr.TYPE_GENERATION, attr.OP_INVOKE_AGENT: attr.TYPE_AGENT,
                    "create_agent": attr.TYPE_AGENT, attr.OP_EXECUTE_TOOL: attr.TYPE_TOOL,
                    "embeddings": "embedding"}


@dataclass
class Trace:
    """A whole trace: its spans in tree order (depth first, siblings by start time)."""

    summary: TraceSummary
    spans: list[SpanRecord]

    @property
    def start_ns(self) -> int:
        return min((s.start_ns for s in self.spans), default=self.summary.start_ns)

    @property
    def end_ns(self) -> int:
        return max((s.end_ns for s in self.spans), default=self.summary.end_ns)


# --- listing -------------------------------------------------------------------------------------------------


def index_traces(directory: Path, on_problem: ProblemHandler) -> TraceIndex:
    """Summarize every trace in the ``.jsonl`` files of ``directory``, one request (line) in memory at a time."""
    index = TraceIndex(directory, iter_spool_files(directory))
    for file_number, path in enumerate(index.files):
        for line in read_lines(path):
            if line.request is None:
                index.problem_count += 1
                on_problem(Problem(path, line.number, line.error or "unreadable line"))
                continue
            number = line.number
            last_resource: Any = None
            service: str | None = None
            for resource_spans, _scope_spans, span in request_spans(line.request):
                if resource_spans is not last_resource:  # one resource holds many spans: look its name up once
                    last_resource, service = resource_spans, _service_name(resource_spans)
                try:
                    summary = span_summary(span)
                    basics = (summary.trace_id, summary.start_ns, summary.end_ns, summary.is_error,
                              summary.is_root, summary.name)
                except (TypeError, ValueError, AttributeError, KeyError) as problem:
                    index.problem_count += 1
                    on_problem(Problem(path, number, f"span skipped: {problem}"))
                    continue
                _add_span(index, basics, service, file_number)
    return index


def _add_span(index: TraceIndex, basics: tuple[str, int, int, bool, bool, str], service: str | None,
              file_number: int) -> None:
    trace_id, start, end, error, root, name = basics
    index.span_count += 1
    summary = index.traces.get(trace_id)
    if summary is None:
        index.traces[trace_id] = TraceSummary(trace_id, name, root, start, end, 1, int(error), service,
                                              file_number, file_number)
        return
    summary.span_count += 1
    summary.error_count += error
    summary.last_file = file_number
    # The root's name and service (the earliest root if several); without a root in the files, the earliest
    # span's name stands in.
    if (root and not summary.has_root) or (root == summary.has_root and start < summary.start_ns):
        summary.root_name, summary.has_root = name, root
        if service is not None:
            summary.service = service
    elif summary.service is None:
        summary.service = service
    if start < summary.start_ns:
        summary.start_ns = start
    if end > summary.end_ns:
        summary.end_ns = end


def resolve_trace_id(index: TraceIndex, prefix: str | None) -> TraceSummary | None:
    """The trace whose id starts with ``prefix`` (any case), the newest one when ``prefix`` is None.

    Returns None when nothing matches; raises :class:`AmbiguousTraceId` when several traces match.
    """
    if prefix is None:
        newest = index.newest_first()
        return newest[0] if newest else None
    prefix = prefix.lower()
    exact = index.traces.get(prefix)
    if exact is not None:
        return exact
    matches = sorted(trace_id for trace_id in index.traces if trace_id.startswith(prefix))
    if len(matches) > 1:
        raise AmbiguousTraceId(prefix, matches)
    return index.traces[matches[0]] if matches else None


_SERVICE_CACHE: dict[str, str] = {}


def _service_name(resource_spans: dict[str, Any]) -> str | None:
    resource = resource_spans.get("resource")
    items = resource.get("attributes") if isinstance(resource, dict) else None
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("key") == attr.SERVICE_NAME:
            value = any_value(item.get("value"))
            if isinstance(value, str):
                return _SERVICE_CACHE.setdefault(value, value)  # one string object per service name
    return None


# --- one trace -----------------------------------------------------------------------------------------------


def load_trace(index: TraceIndex, summary: TraceSummary) -> Trace:
    """Read every span of ``summary``'s trace from the files that hold it, arranged as a tree.

    Unreadable lines were reported by :func:`index_traces`; they are skipped silently here.
    """
    wanted = summary.trace_id
    by_id: dict[str, SpanRecord] = {}
    for path in index.files[summary.first_file:summary.last_file + 1]:
        for line in read_lines(path):
            if line.request is None:
                continue
            for record in _spans_of(line.request, wanted, f"{path}:{line.number}"):
                by_id.setdefault(record.span_id, record)  # a span written twice is shown once
    return Trace(summary, _tree_order(list(by_id.values())))


def _spans_of(request: Mapping[str, Any], trace_id: str, source: str) -> Iterator[SpanRecord]:
    for resource_spans, scope_spans, span in request_spans(request):
        if not isinstance(span, dict) or str(span.get("traceId", "")).lower() != trace_id:
            continue
        try:
            yield _span_record(parse_span(span, resource_spans, scope_spans), source)
        except ValueError:
            continue  # reported by the index pass


def _span_record(span: SpoolSpan, source: str) -> SpanRecord:
    return SpanRecord(
        trace_id=span.trace_id, span_id=span.span_id, parent_span_id=span.parent_span_id,
        parent_is_remote=span.parent_is_remote, name=span.name, kind=span.kind, start_ns=span.start_ns,
        end_ns=span.end_ns, status_code=span.status_code, status_message=span.status_message,
        attributes=span.attributes, events=list(span.events), links=list(span.links), resource=span.resource,
        scope=span.scope, source=source,
    )


def _tree_order(spans: list[SpanRecord]) -> list[SpanRecord]:
    """Depth-first order from the roots, siblings by start time; spans in a parent cycle are appended as roots."""
    spans.sort(key=lambda s: (s.start_ns, s.span_id))
    present = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for span in spans:
        if span.parent_span_id and span.parent_span_id in present and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    ordered: list[SpanRecord] = []
    seen: set[str] = set()
    for root in roots + spans:  # spans left unseen after the roots have parents forming a cycle: roots too
        if root.span_id in seen:
            continue
        # Iterative depth-first walk: a chain of nested spans can be deeper than Python's recursion limit.
        stack: list[tuple[SpanRecord, int, bool, tuple[bool, ...]]] = [(root, 0, True, ())]
        while stack:
            span, depth, is_last, ancestors_last = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            span.depth, span.is_last, span.ancestors_last = depth, is_last, ancestors_last
            ordered.append(span)
            below = [c for c in children.get(span.span_id, ()) if c.span_id not in seen]
            inherited = (*ancestors_last, is_last) if depth else ()
            for position in range(len(below) - 1, -1, -1):
                stack.append((below[position], depth + 1, position == len(below) - 1, inherited))
    # Roots are siblings too: only the last one closes the tree.
    top = [s for s in ordered if s.depth == 0]
    for position, span in enumerate(top):
        span.is_last = position == len(top) - 1
    return ordered
