"""OTLP/JSON encoding of SDK spans (one ``ExportTraceServiceRequest`` per line) and its conversion to protobuf.

The JSON is the OTLP/JSON form the OpenTelemetry Collector's file exporter writes: the protobuf JSON mapping with
lowerCamelCase keys, trace and span ids as lowercase hex, 64-bit integers as decimal strings and enums as
integers; fields at their default value are left out. Spans are grouped by resource, then by instrumentation
scope, in first-seen order, exactly as the stock OTLP protobuf encoder groups them. Converted to protobuf, a
request equals what the stock encoder builds from the same spans, except that a link's ``traceState`` is kept
(the stock encoder leaves it out).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

__all__ = ["encode_spans_json", "request_to_protobuf"]

# OTLP's Span.SpanKind enum is OpenTelemetry's SpanKind shifted by one (0 is SPAN_KIND_UNSPECIFIED).
_KIND = {kind: kind.value + 1 for kind in SpanKind}
_KIND_JSON = {kind: b',"kind":%d' % value for kind, value in _KIND.items()}
# INTERNAL and CLIENT (FluxLoop's spans) by identity: hashing an enum member is a Python-level call.
_INTERNAL, _CLIENT = SpanKind.INTERNAL, SpanKind.CLIENT
_KIND_INTERNAL, _KIND_CLIENT = _KIND_JSON[_INTERNAL], _KIND_JSON[_CLIENT]
_UNSET = StatusCode.UNSET
# SpanFlags bits 8 and 9: "is_remote of the parent is known" and "the parent is remote".
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200
_FLAGS_NO_PARENT = b',"flags":%d' % _FLAG_HAS_IS_REMOTE
_FLAGS_LOCAL = b',"flags":%d' % _FLAG_HAS_IS_REMOTE
_FLAGS_REMOTE = b',"flags":%d' % (_FLAG_HAS_IS_REMOTE | _FLAG_IS_REMOTE)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

JsonObject = dict[str, Any]


def encode_spans_json(spans: Sequence[ReadableSpan]) -> bytes:
    """Encode ``spans`` as one compact OTLP/JSON ``ExportTraceServiceRequest`` (one line, no trailing newline).

    Example::

        line = encode_spans_json(spans)  # b'{"resourceSpans":[{"resource":{...},"scopeSpans":[...]}]}'
    """
    return b'{"resourceSpans":[' + b",".join(_resource_spans(spans)) + b"]}"


def request_to_protobuf(request: Mapping[str, Any]) -> bytes:
    """Serialize an OTLP/JSON request (a parsed line) to protobuf ``ExportTraceServiceRequest`` bytes.

    Hex trace/span ids become the base64 the protobuf JSON mapping expects; ``request`` is not modified.
    Raises ``ValueError`` when the request is not a valid ``ExportTraceServiceRequest``.

    Example::

        body = request_to_protobuf(orjson.loads(line))  # POST body for <collector>/v1/traces
    """
    if not isinstance(request, Mapping):
        raise ValueError(f"an OTLP request must be a JSON object, not {type(request).__name__}")
    try:
        converted = {**request, "resourceSpans": [_rs_hex_to_b64(rs) for rs in request.get("resourceSpans") or ()]}
        message = json_format.ParseDict(converted, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, binascii.Error) as error:
        raise ValueError(f"not a valid OTLP ExportTraceServiceRequest: {error}") from error
    serialized: bytes = message.SerializeToString()
    return serialized


# --- spans -> JSON -------------------------------------------------------------------------------------------
#
# Spans are written straight to JSON bytes (orjson escapes each string) instead of being built as nested dicts
# and dumped: bytes are not tracked by the garbage collector, and a dict per attribute made the collector's
# passes, not the encoding, the main cost of a batch in a process with many live objects.

_TRUE = b'{"boolValue":true}'
_FALSE = b'{"boolValue":false}'
_KEY_CACHE: dict[str, bytes] = {}
_KEY_CACHE_MAX = 4096
_PAIR_CACHE: dict[tuple[str, Any, type], bytes] = {}
_NAME_CACHE: dict[str, bytes] = {}
_CACHED_VALUE_MAX_LEN = 64


def _resource_spans(spans: Sequence[ReadableSpan]) -> list[bytes]:
    # Group by object identity first (cheap), then merge groups whose resource / scope are equal by value.
    groups: dict[tuple[int, int], tuple[Any, Any, list[bytes]]] = {}
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope
        key = (id(resource), id(scope))
        group = groups.get(key)
        if group is None:
            group = groups[key] = (resource, scope, [])
        group[2].append(_span(span))

    by_resource: list[tuple[Any, list[tuple[Any, list[bytes]]]]] = []
    for resource, scope, encoded in groups.values():
        scopes = next((s for r, s in by_resource if r is resource or r == resource), None)
        if scopes is None:
            scopes = []
            by_resource.append((resource, scopes))
        target = next((spans_ for s, spans_ in scopes if s is scope or s == scope), None)
        if target is None:
            scopes.append((scope, encoded))
        else:
            target.extend(encoded)

    out = []
    for resource, scopes in by_resource:
        item = b'{"resource":' + _dumps(_resource(resource)) + b',"scopeSpans":['
        item += b",".join([_scope_spans(scope, encoded) for scope, encoded in scopes]) + b"]"
        schema_url = getattr(resource, "schema_url", "")
        if schema_url:
            item += b',"schemaUrl":' + _dumps(schema_url)
        out.append(item + b"}")
    return out


def _resource(resource: Any) -> JsonObject:
    attributes = getattr(resource, "attributes", None)
    return {"attributes": [_key_value(k, v) for k, v in attributes.items()]} if attributes else {}


def _scope_spans(scope: Any, spans: list[bytes]) -> bytes:
    encoded_scope: JsonObject = {}
    if scope is not None:
        if scope.name:
            encoded_scope["name"] = scope.name
        if scope.version:
            encoded_scope["version"] = scope.version
        attributes = getattr(scope, "attributes", None)
        if attributes:
            encoded_scope["attributes"] = [_key_value(k, v) for k, v in attributes.items()]
    item = b'{"scope":' + _dumps(encoded_scope) + b',"spans":[' + b",".join(spans) + b"]"
    schema_url = getattr(scope, "schema_url", None)
    if schema_url:
        item += b',"schemaUrl":' + _dumps(schema_url)
    return item + b"}"


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    parent = span.parent
    out = b'{"traceId":"%032x","spanId":"%016x"' % (context.trace_id, context.span_id)
    trace_state = context.trace_state
    if trace_state:
        out += b',"traceState":' + _dumps(trace_state.to_header())
    if parent is None:
        out += _FLAGS_NO_PARENT
    else:
        out += b',"parentSpanId":"%016x"' % parent.span_id + (_FLAGS_REMOTE if parent.is_remote else _FLAGS_LOCAL)
    name = span.name
    encoded_name = _NAME_CACHE.get(name)
    if encoded_name is None:
        if len(_NAME_CACHE) >= _KEY_CACHE_MAX:
            _NAME_CACHE.clear()
        encoded_name = _NAME_CACHE[name] = b',"name":' + _dumps(name) if name else b""  # default: left out
    kind = span.kind
    out += encoded_name + (_KIND_INTERNAL if kind is _INTERNAL else _KIND_CLIENT if kind is _CLIENT else
                           _KIND_JSON[kind])
    start = span.start_time
    if start is not None:
        out += b',"startTimeUnixNano":"%d"' % start
    end = span.end_time
    if end is not None:
        out += b',"endTimeUnixNano":"%d"' % end
    attributes = span.attributes
    if attributes:
        out += b',"attributes":[' + _attributes(attributes) + b"]"
    dropped = span.dropped_attributes
    if dropped:
        out += b',"droppedAttributesCount":%d' % dropped
    events = span.events
    if events:
        out += b',"events":[' + b",".join([_event(event) for event in events]) + b"]"
    dropped = span.dropped_events
    if dropped:
        out += b',"droppedEventsCount":%d' % dropped
    links = span.links
    if links:
        out += b',"links":[' + b",".join([_link(link) for link in links]) + b"]"
    dropped = span.dropped_links
    if dropped:
        out += b',"droppedLinksCount":%d' % dropped
    status = span.status
    if status is None or (status.status_code is _UNSET and not status.description):
        return out + b',"status":{}}'
    encoded_status: JsonObject = {}
    if status.status_code is not _UNSET:
        encoded_status["code"] = status.status_code.value
    if status.description:
        encoded_status["message"] = status.description
    return out + b',"status":' + _dumps(encoded_status) + b"}"


def _event(event: Any) -> bytes:
    out = b'{"timeUnixNano":"%d"' % event.timestamp
    if event.name:
        out += b',"name":' + _dumps(event.name)
    if event.attributes:
        out += b',"attributes":[' + _attributes(event.attributes) + b"]"
    dropped = getattr(event, "dropped_attributes", 0)
    if dropped:
        out += b',"droppedAttributesCount":%d' % dropped
    return out + b"}"


def _link(link: Any) -> bytes:
    context = link.context
    out = b'{"traceId":"%032x","spanId":"%016x"' % (context.trace_id, context.span_id)
    if context.trace_state:
        out += b',"traceState":' + _dumps(context.trace_state.to_header())
    if link.attributes:
        out += b',"attributes":[' + _attributes(link.attributes) + b"]"
    dropped = getattr(link, "dropped_attributes", 0)
    if dropped:
        out += b',"droppedAttributesCount":%d' % dropped
    flags = (_FLAG_HAS_IS_REMOTE | _FLAG_IS_REMOTE) if context.is_remote else _FLAG_HAS_IS_REMOTE
    return out + b',"flags":%d}' % flags


def _attributes(attributes: Mapping[str, Any]) -> bytes:
    """The comma-separated KeyValue objects of ``attributes`` (without the surrounding brackets).

    Short strings and booleans, most of a span's attributes (kinds, names, operation), are encoded once per
    (key, value) and cached; keys are iterated and indexed, cheaper than ``.items()`` on the SDK's mappings.
    """
    cache = _PAIR_CACHE
    parts = []
    for key in attributes:
        value = attributes[key]
        kind = type(value)
        if (kind is str and len(value) <= _CACHED_VALUE_MAX_LEN) or kind is bool:
            entry = cache.get((key, value, kind))
            if entry is None:
                if len(cache) >= _KEY_CACHE_MAX:
                    cache.clear()
                entry = cache[(key, value, kind)] = b'{"key":%b,"value":%b}' % (_key(key), _value(value))
            parts.append(entry)
        else:
            parts.append(b'{"key":%b,"value":%b}' % (_key(key), _value(value)))
    return b",".join(parts)


def _key(key: str) -> bytes:
    encoded = _KEY_CACHE.get(key)
    if encoded is None:
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        encoded = _KEY_CACHE[key] = _dumps(str(key))
    return encoded


def _value(value: Any) -> bytes:
    """An OTLP ``AnyValue`` as JSON bytes; the common scalar types take the first, exact-type branches."""
    kind = type(value)
    if kind is str:
        return b'{"stringValue":%b}' % _dumps(value)
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return b'{"intValue":"%d"}' % value
    if kind is float and value - value == 0.0:
        return b'{"doubleValue":%b}' % orjson.dumps(value)
    return _dumps(_any_value(value))


def _key_value(key: str, value: Any) -> JsonObject:
    return {"key": str(key), "value": _any_value(value)}


def _any_value(value: Any) -> JsonObject:
    """An OTLP ``AnyValue`` as a dict (any supported type)."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": bool(value)}
    if isinstance(value, str):
        return {"stringValue": str(value)}
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(int(value))}
        return {"stringValue": str(int(value))}  # out of int64 range: keep the digits rather than drop the value
    if isinstance(value, float):
        value = float(value)
        if value - value == 0.0:
            return {"doubleValue": value}
        return {"doubleValue": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        pairs = [_key_value(key, item) for key, item in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    if isinstance(value, Sequence):
        values = [_any_value(item) for item in value]
        return {"arrayValue": {"values": values} if values else {}}
    return {"stringValue": str(value)}


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # A string that is not valid UTF-8 (lone surrogates): replace the bad code points and try once more.
        return orjson.dumps(_clean_strings(value))


def _clean_strings(node: Any) -> Any:
    if isinstance(node, str):
        return node.encode("utf-8", "replace").decode("utf-8")
    if isinstance(node, dict):
        return {_clean_strings(key): _clean_strings(item) for key, item in node.items()}
    if isinstance(node, list):
        return [_clean_strings(item) for item in node]
    return node


# --- JSON -> protobuf -----------------------------------------------------------------------------------------


def _hex_to_b64(value: Any) -> Any:
    if isinstance(value, str) and value:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return value


def _rs_hex_to_b64(resource_spans: Mapping[str, Any]) -> JsonObject:
    return {
        **resource_spans,
        "scopeSpans": [
            {**scope_spans, "spans": [_span_hex_to_b64(span) for span in scope_spans.get("spans") or ()]}
            for scope_spans in resource_spans.get("scopeSpans") or ()
        ],
    }


def _span_hex_to_b64(span: Mapping[str, Any]) -> JsonObject:
    out = dict(span)
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in out:
            out[key] = _hex_to_b64(out[key])
    links = out.get("links")
    if links:
        out["links"] = [
            {**link, **{k: _hex_to_b64(link[k]) for k in ("traceId", "spanId") if k in link}} for link in links
        ]
    return out
