"""The spool / offline file format, version 1, and its one typed reader (used by the CLI, upload and the tests).

Version 1: ``.jsonl`` files; each line is one complete OTLP/JSON ``ExportTraceServiceRequest`` (the protobuf JSON
mapping: ``resourceSpans`` -> ``scopeSpans`` -> ``spans``, hex ids, nanosecond times as decimal strings), as the
OpenTelemetry Collector's file exporter writes it, so the Collector's ``otlpjsonfile`` receiver reads it too. A line
is written whole with one ``write``; an unterminated last line is a writer mid-write (or killed mid-line).

A line's identity is its content (:attr:`SpoolLine.key`, a hash), never its number: delivery state survives lines
removed or files rewritten by hand.

Example::

    for path in iter_spool_files("./fluxloop_artifacts"):
        for line in read_lines(path):
            for span in line.spans():
                print(span.name, span.attributes.get("fluxloop.name"))
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

__all__ = [
    "FILE_SUFFIX", "NOT_A_REQUEST", "SPOOL_FORMAT_VERSION", "STATUS_ERROR", "SpanSummary", "SpoolLine", "SpoolSpan",
    "any_value", "iter_spool_files", "key_values", "line_key", "parse_request", "parse_span", "raw_lines",
    "read_lines", "request_spans", "span_summary",
]

SPOOL_FORMAT_VERSION = 1
FILE_SUFFIX = ".jsonl"
TRUNCATED = "truncated last line (the writer stopped mid-line)"
NOT_A_REQUEST = "not an OTLP ExportTraceServiceRequest (expected an object with resourceSpans)"

# OTLP Status.code; the protobuf JSON mapping also allows the enum names.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
_STATUS_NAMES = {"STATUS_CODE_UNSET": STATUS_UNSET, "STATUS_CODE_OK": STATUS_OK, "STATUS_CODE_ERROR": STATUS_ERROR}
# SpanFlags bit 9: the parent span is remote (its process wrote it elsewhere): the span is this service's root.
FLAG_PARENT_IS_REMOTE = 0x200

JsonObject = dict[str, Any]


def line_key(raw: bytes) -> str:
    """The identity of a line: a hash of its content (surrounding whitespace ignored)."""
    return hashlib.blake2b(raw.strip(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class SpoolSpan:
    """One span of a spool line, decoded."""

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
    attributes: dict[str, Any] = field(hash=False, compare=False)
    events: tuple[dict[str, Any], ...] = field(default=(), hash=False, compare=False)
    links: tuple[dict[str, Any], ...] = field(default=(), hash=False, compare=False)
    resource: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    scope: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class SpoolLine:
    """One line of a spool file: the request, or why it cannot be read (``error``)."""

    path: Path
    number: int  # 1-based; 0 when the file itself could not be opened
    raw: bytes
    request: JsonObject | None
    error: str | None = None
    complete: bool = True  # False for an unterminated last line

    @property
    def key(self) -> str:
        return line_key(self.raw)

    @property
    def span_count(self) -> int:
        return sum(1 for _ in request_spans(self.request)) if self.request is not None else 0

    def spans(self) -> Iterator[SpoolSpan]:
        """The line's spans, decoded; a malformed span raises ValueError."""
        if self.request is None:
            return
        for resource_spans, scope_spans, span in request_spans(self.request):
            yield parse_span(span, resource_spans, scope_spans)


def iter_spool_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``.jsonl`` files in ``directory``, sorted by name (oldest first); [] when it does not exist."""
    folder = Path(directory)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return sorted((p for p in entries if p.name.endswith(FILE_SUFFIX) and p.is_file()), key=lambda p: p.name)


def read_lines(path: str | os.PathLike[str]) -> Iterator[SpoolLine]:
    """Every non-blank line of ``path``, one at a time (never the whole file); bad lines carry ``error``."""
    path = Path(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the with below, also when the caller stops early)
    except OSError as error:
        yield SpoolLine(path, 0, b"", None, f"cannot open {path}: {error.strerror or error}")
        return
    with handle:
        for number, line, complete in raw_lines(handle):
            try:
                request = parse_request(line)
            except orjson.JSONDecodeError as error:
                yield SpoolLine(path, number, line, None, TRUNCATED if not complete else f"invalid JSON: {error}",
                                complete)
                continue
            except ValueError as error:
                yield SpoolLine(path, number, line, None, str(error), complete)
                continue
            yield SpoolLine(path, number, line, request, None, complete)


def parse_request(line: bytes) -> JsonObject:
    """The OTLP/JSON request a line holds. Raises ``orjson.JSONDecodeError`` for invalid JSON, ``ValueError``
    (:data:`NOT_A_REQUEST`) for JSON that is not a request object."""
    request = orjson.loads(line)
    if not isinstance(request, dict) or not isinstance(request.get("resourceSpans", []), list):
        raise ValueError(NOT_A_REQUEST)
    return request


def raw_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes, bool]]:
    """``(number, line, complete)`` per non-blank line of an open file: the line without its surrounding
    whitespace, ``complete`` when it ended with a newline (an unterminated last line may be mid-write)."""
    for number, raw in enumerate(handle, 1):
        line = raw.strip()
        if line:
            yield number, line, raw.endswith(b"\n")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def request_spans(request: Mapping[str, Any]) -> Iterator[tuple[JsonObject, JsonObject, Any]]:
    """(resourceSpans, scopeSpans, span) for each span of an OTLP/JSON request; malformed containers are skipped."""
    for resource_spans in _list(request.get("resourceSpans")):
        if isinstance(resource_spans, dict):
            for scope_spans in _list(resource_spans.get("scopeSpans")):
                if isinstance(scope_spans, dict):
                    for span in _list(scope_spans.get("spans")):
                        yield resource_spans, scope_spans, span


@dataclass(frozen=True)
class SpanSummary:
    """What a listing needs of a span, read without decoding its attributes."""

    trace_id: str
    start_ns: int
    end_ns: int
    is_error: bool
    is_root: bool
    name: str


def span_summary(span: Any) -> SpanSummary:
    """The few fields a listing needs; raises ValueError (or TypeError) on a malformed span."""
    if not isinstance(span, dict):
        raise ValueError(f"expected a span object, got {type(span).__name__}")
    trace_id = span.get("traceId")
    if not isinstance(trace_id, str) or len(trace_id) != 32:
        raise ValueError(f"bad traceId {trace_id!r}")
    start = int(span.get("startTimeUnixNano") or 0)
    end = int(span.get("endTimeUnixNano") or start)
    status = span.get("status") or {}
    code = status.get("code", STATUS_UNSET)
    error = _STATUS_NAMES.get(code, code) == STATUS_ERROR
    root = not span.get("parentSpanId") or bool(int(span.get("flags") or 0) & FLAG_PARENT_IS_REMOTE)
    name = span.get("name")
    return SpanSummary(trace_id.lower(), start, end, error, root, sys.intern(name) if isinstance(name, str) else "")


def parse_span(span: Any, resource_spans: Mapping[str, Any] | None = None,
               scope_spans: Mapping[str, Any] | None = None) -> SpoolSpan:
    """Decode one OTLP/JSON span (with its resource and scope); raises ValueError on a malformed span."""
    try:
        summary = span_summary(span)
        status = span.get("status") or {}
        code = status.get("code", STATUS_UNSET)
        parent = span.get("parentSpanId") or None
        resource = (resource_spans or {}).get("resource")
        return SpoolSpan(
            trace_id=summary.trace_id,
            span_id=str(span.get("spanId") or "").lower(),
            parent_span_id=str(parent).lower() if parent else None,
            parent_is_remote=bool(int(span.get("flags") or 0) & FLAG_PARENT_IS_REMOTE),
            name=summary.name,
            kind=int(span.get("kind") or 0),
            start_ns=summary.start_ns,
            end_ns=summary.end_ns,
            status_code=int(_STATUS_NAMES.get(code, code)),
            status_message=str(status.get("message") or ""),
            attributes=key_values(span.get("attributes")),
            events=tuple(_event(e) for e in _list(span.get("events")) if isinstance(e, dict)),
            links=tuple(_link(link) for link in _list(span.get("links")) if isinstance(link, dict)),
            resource=key_values(resource.get("attributes")) if isinstance(resource, dict) else {},
            scope=_scope((scope_spans or {}).get("scope")),
        )
    except (TypeError, AttributeError, KeyError) as error:
        raise ValueError(f"malformed span: {error}") from error


def _scope(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {k: value[k] for k in ("name", "version") if isinstance(value.get(k), str)}
    if value.get("attributes"):
        out["attributes"] = key_values(value.get("attributes"))
    return out


def _event(event: JsonObject) -> dict[str, Any]:
    return {"name": str(event.get("name") or ""), "time_unix_nano": int(event.get("timeUnixNano") or 0),
            "attributes": key_values(event.get("attributes"))}


def _link(link: JsonObject) -> dict[str, Any]:
    return {"trace_id": str(link.get("traceId") or "").lower(), "span_id": str(link.get("spanId") or "").lower(),
            "attributes": key_values(link.get("attributes"))}


def key_values(items: Any) -> dict[str, Any]:
    """OTLP/JSON ``KeyValue`` list -> ``{key: plain value}``."""
    out: dict[str, Any] = {}
    for item in _list(items):
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = any_value(item.get("value"))
    return out


def any_value(value: Any) -> Any:
    """An OTLP/JSON ``AnyValue`` as a plain value (bytes stay base64 text, non-finite doubles become strings)."""
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if "doubleValue" in value:
        number = value["doubleValue"]
        return float(number) if isinstance(number, (int, float)) else str(number)
    if "arrayValue" in value:
        return [any_value(v) for v in _list((value["arrayValue"] or {}).get("values"))]
    if "kvlistValue" in value:
        return key_values((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return value["bytesValue"]  # base64 text, as in the file
    return None
