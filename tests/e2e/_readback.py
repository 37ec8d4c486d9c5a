"""Backend handles for the e2e tests: send OTLP/HTTP to a running backend and read a trace back, normalized.

Both backends' answers become the same :class:`Trace` of :class:`StoredSpan` (hex ids, plain Python attribute
values, status code ``UNSET``/``OK``/``ERROR``), so a test asserts once for every backend.

What the backends return (arize-phoenix 20.26.1, mlflow 3.17.2):

- Phoenix ``GET /v1/projects/<project>/spans?trace_id=<hex>``: ``{"data": [span], "next_cursor"}``, each span
  ``{"name", "context": {"trace_id", "span_id"} (hex), "parent_id" (hex or null), "span_kind" (inferred:
  AGENT/LLM/TOOL/UNKNOWN), "status_code" ("UNSET"/"OK"/"ERROR"), "status_message", "attributes" (flat dict of
  plain values), "events": [{"name", "timestamp", "attributes"}]}``. The project is the resource attribute
  ``openinference.project.name``, else ``default``; an unknown project answers 404. Resource attributes are not
  returned. Ingestion is asynchronous: poll.
- MLflow ``GET /api/3.0/mlflow/traces/get?trace_id=tr-<hex>``: ``{"trace": {"trace_info": {"trace_id", "state",
  "tags": {... resource attributes such as service.name ...}}, "spans": [span]}}``, each span in the OTLP JSON
  shape with snake_case keys and base64 ids: ``{"trace_id", "span_id", "parent_span_id" (absent on the root),
  "name", "attributes": [{"key", "value": {"string_value"|"int_value"|...}}], "events", "status": {} or
  {"code": "STATUS_CODE_ERROR", "message"}}``. MLflow decodes string attribute values that hold a JSON object,
  array or string (``'{"q": 1}'`` comes back as a ``kvlist_value``), so compare JSON attributes with
  :func:`json_value`. The OTLP endpoint needs the header ``x-mlflow-experiment-id`` (422 without it). An
  unknown trace answers 404.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_READ_TIMEOUT = 30.0
_POLL_INTERVAL = 0.2
_HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class StoredEvent:
    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class StoredSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    status_code: str
    status_message: str
    attributes: dict[str, Any]
    events: tuple[StoredEvent, ...]
    kind_label: str | None = None  # the backend's own classification (Phoenix span_kind, mlflow.spanType)


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[StoredSpan, ...]
    resource: dict[str, Any] = field(default_factory=dict)  # what the backend kept of the resource

    def named(self, name: str) -> list[StoredSpan]:
        return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> StoredSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {len(found)} in {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return sorted(span.name for span in self.spans)


def json_value(value: Any) -> Any:
    """A JSON attribute as Python: parse a string (MLflow may already have decoded it); plain text stays text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class Backend:
    """A running backend: where to send OTLP and how to read a trace back."""

    name = "backend"

    def __init__(self, base_url: str, log_tail: Callable[[], str]) -> None:
        self.base_url = base_url
        self._log_tail = log_tail

    @property
    def otlp_headers(self) -> dict[str, str]:
        """Headers an OTLP/HTTP exporter must send to this backend."""
        return {}

    @property
    def traces_endpoint(self) -> str:
        return self.base_url + "/v1/traces"

    def post_otlp(self, body: bytes, *, content_type: str = "application/x-protobuf") -> int:
        """POST one OTLP/HTTP request body to ``/v1/traces``; the HTTP status (errors included)."""
        request = urllib.request.Request(
            self.traces_endpoint, data=body, method="POST",
            headers={"Content-Type": content_type, **self.otlp_headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def read_trace(self, trace_id: str, *, min_spans: int, timeout: float = DEFAULT_READ_TIMEOUT) -> Trace:
        """Poll until the backend holds at least ``min_spans`` spans of ``trace_id`` (32 hex digits)."""
        deadline = time.monotonic() + timeout
        seen: Trace | None = None
        while True:
            seen = self._fetch(trace_id)
            if seen is not None and len(seen.spans) >= min_spans:
                return seen
            if time.monotonic() >= deadline:
                got = seen.names() if seen else "nothing"
                raise AssertionError(
                    f"{self.name}: trace {trace_id} has {got}, expected at least {min_spans} spans within "
                    f"{timeout:.0f} s; server log tail:\n{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)  # poll interval; the loop is bounded by the deadline above

    def _fetch(self, trace_id: str) -> Trace | None:
        raise NotImplementedError

    def _get_json(self, path: str, params: Mapping[str, str | int]) -> Any | None:
        """GET ``path`` and parse JSON; None on 404 (not there yet)."""
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise AssertionError(f"{self.name}: GET {url} -> {error.code}: {error.read()[:500]!r}") from error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class PhoenixBackend(Backend):
    name = "phoenix"

    def __init__(self, base_url: str, log_tail: Callable[[], str], project: str = "default") -> None:
        super().__init__(base_url, log_tail)
        self.project = project

    def in_project(self, project: str) -> PhoenixBackend:
        """The same server, reading spans from ``project`` (resource ``openinference.project.name``)."""
        return PhoenixBackend(self.base_url, self._log_tail, project)

    def _fetch(self, trace_id: str) -> Trace | None:
        path = f"/v1/projects/{urllib.parse.quote(self.project, safe='')}/spans"
        body = self._get_json(path, {"trace_id": trace_id, "limit": 1000})
        if body is None:
            return None
        spans = tuple(_phoenix_span(raw) for raw in body["data"])
        return Trace(trace_id=trace_id, spans=spans)


def _phoenix_span(raw: Mapping[str, Any]) -> StoredSpan:
    return StoredSpan(
        name=raw["name"],
        trace_id=raw["context"]["trace_id"],
        span_id=raw["context"]["span_id"],
        parent_id=raw.get("parent_id"),
        status_code=raw.get("status_code") or "UNSET",
        status_message=raw.get("status_message") or "",
        attributes=dict(raw.get("attributes") or {}),
        events=tuple(StoredEvent(e["name"], dict(e.get("attributes") or {})) for e in raw.get("events") or ()),
        kind_label=raw.get("span_kind"),
    )


class MLflowBackend(Backend):
    name = "mlflow"

    def __init__(self, base_url: str, log_tail: Callable[[], str], experiment_id: str = "0") -> None:
        super().__init__(base_url, log_tail)
        self.experiment_id = experiment_id

    @property
    def otlp_headers(self) -> dict[str, str]:
        return {"x-mlflow-experiment-id": self.experiment_id}

    def _fetch(self, trace_id: str) -> Trace | None:
        body = self._get_json("/api/3.0/mlflow/traces/get", {"trace_id": f"tr-{trace_id}"})
        if body is None:
            return None
        trace = body["trace"]
        spans = tuple(_mlflow_span(raw) for raw in trace.get("spans") or ())
        return Trace(trace_id=trace_id, spans=spans, resource=dict(trace["trace_info"].get("tags") or {}))


_MLFLOW_STATUS = {"STATUS_CODE_ERROR": "ERROR", "STATUS_CODE_OK": "OK", "STATUS_CODE_UNSET": "UNSET"}


def _mlflow_span(raw: Mapping[str, Any]) -> StoredSpan:
    attributes = _key_values(raw.get("attributes"))
    status = raw.get("status") or {}
    parent = raw.get("parent_span_id")
    return StoredSpan(
        name=raw["name"],
        trace_id=_b64_hex(raw["trace_id"]),
        span_id=_b64_hex(raw["span_id"]),
        parent_id=_b64_hex(parent) if parent else None,
        status_code=_MLFLOW_STATUS.get(status.get("code", ""), "UNSET"),
        status_message=status.get("message") or "",
        attributes=attributes,
        events=tuple(StoredEvent(e["name"], _key_values(e.get("attributes"))) for e in raw.get("events") or ()),
        kind_label=attributes.get("mlflow.spanType"),
    )


def _b64_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _key_values(items: Any) -> dict[str, Any]:
    return {item["key"]: _any_value(item.get("value") or {}) for item in items or ()}


def _any_value(value: Mapping[str, Any]) -> Any:
    """An OTLP ``AnyValue`` in the snake_case JSON mapping as a Python value."""
    if "string_value" in value:
        return value["string_value"]
    if "bool_value" in value:
        return value["bool_value"]
    if "int_value" in value:
        return int(value["int_value"])
    if "double_value" in value:
        return float(value["double_value"])
    if "array_value" in value:
        return [_any_value(v) for v in (value["array_value"] or {}).get("values") or ()]
    if "kvlist_value" in value:
        return _key_values((value["kvlist_value"] or {}).get("values"))
    if "bytes_value" in value:
        return base64.b64decode(value["bytes_value"])
    return None
