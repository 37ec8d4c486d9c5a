"""OTLP/JSON request (a parsed offline line) to protobuf bytes, written directly: what ``fluxloop upload`` sends.

``request_to_protobuf(request)`` returns the bytes ``json_format.ParseDict`` + ``SerializeToString`` give for the
same request (the reference, ``_otlp_json.request_to_protobuf``; ``tests/exporter/test_otlp_json_proto.py``
checks both agree), about six times faster: no protobuf objects are built, each message is written in field-number
order straight from the dict. Hex trace and span ids become bytes, 64-bit integers given as strings become
fixed64/int64, enums given as integers or names become varints, and every ``AnyValue`` kind is written (bytes
from base64), nested arrays and key-value lists included.

Anything this writer does not expect (a key it does not know, such as a snake_case field name or a field added
by a newer OTLP version, a value of an unusual type or out of range) sends the whole request down the reference
path, which decides as before: the same bytes, or ``ValueError`` for a request that is not valid.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from typing import Any

from fluxloop_otel_exporter._otlp_json import request_to_protobuf as request_to_protobuf_reference
from fluxloop_otel_exporter._otlp_proto import _varint  # the one varint writer of both encoders

__all__ = ["request_to_protobuf"]

_LEN_TAGS = {field: bytes(((field << 3) | 2,)) for field in range(1, 16)}
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
_UINT64_MAX = 2**64 - 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT32_MAX = 2**32 - 1

_KINDS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
          "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}
_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# Encodings of keys and of short (key, string) attributes, bounded; each operation is atomic under the GIL.
_CACHE_MAX = 4096
_CACHED_TEXT_MAX_LEN = 64
_KEY_CACHE: dict[str, bytes] = {}
_PAIR_CACHE: dict[tuple[str, str], bytes] = {}
_NAME_CACHE: dict[str, bytes] = {}
_KIND_BYTES = [b""] + [bytes((6 << 3, n)) for n in range(1, 6)]  # field 6, varint 0-5 (0 is left out)
_FLAGS = {n: b"\x85\x01" + struct.pack("<I", n) for n in (0x100, 0x300)}  # field 16, fixed32

# The keys each message may have in the OTLP/JSON form this writer handles (lowerCamelCase, as written).
_REQUEST_KEYS = frozenset({"resourceSpans"})
_RESOURCE_SPANS_KEYS = frozenset({"resource", "scopeSpans", "schemaUrl"})
_RESOURCE_KEYS = frozenset({"attributes", "droppedAttributesCount"})
_SCOPE_SPANS_KEYS = frozenset({"scope", "spans", "schemaUrl"})
_SCOPE_KEYS = frozenset({"name", "version", "attributes", "droppedAttributesCount"})
_SPAN_KEYS = frozenset({"traceId", "spanId", "traceState", "parentSpanId", "flags", "name", "kind",
                        "startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount", "events",
                        "droppedEventsCount", "links", "droppedLinksCount", "status"})
# A span of the usual shape has no dropped counts, events or links.
_COMMON_SPAN_KEYS = frozenset({"traceId", "spanId", "traceState", "parentSpanId", "flags", "name", "kind",
                               "startTimeUnixNano", "endTimeUnixNano", "attributes", "status"})
_EVENT_KEYS = frozenset({"timeUnixNano", "name", "attributes", "droppedAttributesCount"})
_LINK_KEYS = frozenset({"traceId", "spanId", "traceState", "attributes", "droppedAttributesCount", "flags"})
_STATUS_KEYS = frozenset({"message", "code"})
_KEY_VALUE_KEYS = frozenset({"key", "value"})
_VALUES_KEYS = frozenset({"values"})


class _Unusual(Exception):
    """Something this writer leaves to the reference path."""


def request_to_protobuf(request: Mapping[str, Any]) -> bytes:
    """Serialize an OTLP/JSON request (a parsed line) to protobuf ``ExportTraceServiceRequest`` bytes.

    Raises ``ValueError`` when the request is not a valid ``ExportTraceServiceRequest``; ``request`` is not
    modified.

    Example::

        body = request_to_protobuf(orjson.loads(line))  # POST body for <collector>/v1/traces
    """
    try:
        return _request(request)
    except (_Unusual, ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error):
        return request_to_protobuf_reference(request)


# --- messages, each written in field-number order -------------------------------------------------------------


def _check(message: Any, keys: frozenset[str]) -> None:
    if type(message) is not dict or not message.keys() <= keys:
        raise _Unusual


def _request(request: Any) -> bytes:
    _check(request, _REQUEST_KEYS)
    tag = _LEN_TAGS[1]
    return b"".join([_field(tag, _resource_spans(item)) for item in _list(request.get("resourceSpans"))])


def _resource_spans(item: Any) -> bytes:
    _check(item, _RESOURCE_SPANS_KEYS)
    out = b""
    resource = item.get("resource")
    if resource is not None:
        _check(resource, _RESOURCE_KEYS)
        body = _attributes(1, resource.get("attributes")) + _uint32(2, resource.get("droppedAttributesCount"))
        out += _field(_LEN_TAGS[1], body)
    tag = _LEN_TAGS[2]
    out += b"".join([_field(tag, _scope_spans(scope_spans)) for scope_spans in _list(item.get("scopeSpans"))])
    return out + _string(3, item.get("schemaUrl"))


def _scope_spans(item: Any) -> bytes:
    _check(item, _SCOPE_SPANS_KEYS)
    out = b""
    scope = item.get("scope")
    if scope is not None:
        _check(scope, _SCOPE_KEYS)
        body = (_string(1, scope.get("name")) + _string(2, scope.get("version"))
                + _attributes(3, scope.get("attributes")) + _uint32(4, scope.get("droppedAttributesCount")))
        out += _field(_LEN_TAGS[1], body)
    tag = _LEN_TAGS[2]
    out += b"".join([_field(tag, _span(span)) for span in _list(item.get("spans"))])
    return out + _string(3, item.get("schemaUrl"))


def _span(span: Any) -> bytes:
    # The common shapes (what FluxLoop's offline files hold) are written inline; the helpers take the rest.
    _check(span, _SPAN_KEYS)
    get = span.get
    trace_id = get("traceId")
    out = b"\x0a\x10" + bytes.fromhex(trace_id) if type(trace_id) is str and len(trace_id) == 32 \
        else _id(1, trace_id)
    span_id = get("spanId")
    out += b"\x12\x08" + bytes.fromhex(span_id) if type(span_id) is str and len(span_id) == 16 else _id(2, span_id)
    trace_state = get("traceState")
    if trace_state is not None:
        out += _string(3, trace_state)
    parent = get("parentSpanId")
    if parent is not None:
        out += b"\x22\x08" + bytes.fromhex(parent) if type(parent) is str and len(parent) == 16 else _id(4, parent)
    name = get("name")
    encoded = _NAME_CACHE.get(name) if type(name) is str else None
    if encoded is None:
        encoded = _string(5, name)
        if type(name) is str:
            if len(_NAME_CACHE) >= _CACHE_MAX:
                _NAME_CACHE.clear()
            _NAME_CACHE[name] = encoded
    kind = get("kind")
    out += encoded + (_KIND_BYTES[kind] if type(kind) is int and 0 <= kind <= 5 else _enum(6, kind, _KINDS))
    out += _time(b"\x39", get("startTimeUnixNano")) + _time(b"\x41", get("endTimeUnixNano"))
    attributes = get("attributes")
    if attributes:
        out += _attributes(9, attributes)
    elif attributes is not None and type(attributes) is not list:
        raise _Unusual
    if not span.keys() <= _COMMON_SPAN_KEYS:  # dropped counts, events or links present
        out += _uint32(10, get("droppedAttributesCount"))
        events = get("events")
        if events:
            tag = _LEN_TAGS[11]
            out += b"".join([_field(tag, _event(event)) for event in _list(events)])
        out += _uint32(12, get("droppedEventsCount"))
        links = get("links")
        if links:
            tag = _LEN_TAGS[13]
            out += b"".join([_field(tag, _link(link)) for link in _list(links)])
        out += _uint32(14, get("droppedLinksCount"))
    status = get("status")
    if status is not None:
        if type(status) is dict and not status:
            out += b"\x7a\x00"
        else:
            _check(status, _STATUS_KEYS)
            out += _field(_LEN_TAGS[15], _string(2, status.get("message")) + _enum(3, status.get("code"), _CODES))
    flags = get("flags")
    if flags:
        encoded = _FLAGS.get(flags) if type(flags) is int else None
        out += encoded if encoded is not None else b"\x85\x01" + _FIXED32.pack(_number(flags, 0, _UINT32_MAX))
    return out


def _time(tag: bytes, value: Any) -> bytes:
    """A fixed64 time in nanoseconds, given as a decimal string (or a JSON number)."""
    if type(value) is str and value.isdigit() and value.isascii():
        n = int(value)
        if n <= _UINT64_MAX:
            return tag + _FIXED64.pack(n) if n else b""
    return _fixed64(tag, value)


def _event(event: Any) -> bytes:
    _check(event, _EVENT_KEYS)
    return (_fixed64(b"\x09", event.get("timeUnixNano")) + _string(2, event.get("name"))
            + _attributes(3, event.get("attributes")) + _uint32(4, event.get("droppedAttributesCount")))


def _link(link: Any) -> bytes:
    _check(link, _LINK_KEYS)
    out = (_id(1, link.get("traceId")) + _id(2, link.get("spanId")) + _string(3, link.get("traceState"))
           + _attributes(4, link.get("attributes")) + _uint32(5, link.get("droppedAttributesCount")))
    flags = link.get("flags")
    if flags:
        out += b"\x35" + _FIXED32.pack(_number(flags, 0, _UINT32_MAX))
    return out


def _attributes(field: int, attributes: Any) -> bytes:
    if not attributes:
        if attributes is None or type(attributes) is list:
            return b""
        raise _Unusual
    if type(attributes) is not list:
        raise _Unusual
    cache = _PAIR_CACHE
    parts = []
    for pair in attributes:
        # The common case first, by subscription (cheaper than .get): {"key": k, "value": {"stringValue": s}},
        # short pairs cached whole. Anything else (another value kind, extra keys, wrong types): the general path.
        try:
            value = pair["value"]
            text = value["stringValue"]
            key = pair["key"]
        except (KeyError, TypeError, IndexError):
            parts.append(_pair_entry_of(pair))
            continue
        if type(text) is not str or type(key) is not str or len(value) != 1 or len(pair) != 2:
            parts.append(_pair_entry_of(pair))
        elif len(text) <= _CACHED_TEXT_MAX_LEN:
            entry = cache.get((key, text))
            if entry is None:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                entry = cache[(key, text)] = _pair_entry(key, _text_value(text))
            parts.append(entry)
        else:
            parts.append(_pair_entry(key, _text_value(text)))
    tag = _LEN_TAGS[field]
    return tag + tag.join(parts)


def _pair_entry(key: str, encoded_value: bytes) -> bytes:
    """``varint(len) + KeyValue`` of a key and an encoded ``AnyValue`` (the caller adds the field tag)."""
    encoded_key = _KEY_CACHE.get(key)
    if encoded_key is None:
        if len(_KEY_CACHE) >= _CACHE_MAX:
            _KEY_CACHE.clear()
        encoded_key = _KEY_CACHE[key] = _string(1, key)
    body = encoded_key + b"\x12" + _varint(len(encoded_value)) + encoded_value
    return _varint(len(body)) + body


def _text_value(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"\x0a" + _varint(len(data)) + data


def _pair_entry_of(pair: Any) -> bytes:
    return _field(b"", _key_value(pair))


def _key_value(pair: Any) -> bytes:
    _check(pair, _KEY_VALUE_KEYS)
    out = _string(1, pair.get("key"))
    value = pair.get("value")
    if value is not None:
        out += _field(b"\x12", _any_value(value))
    return out


def _any_value(value: Any) -> bytes:
    """An ``AnyValue``: one of its members, written even at its default value."""
    if type(value) is not dict or len(value) > 1:
        raise _Unusual
    if not value:
        return b""
    [(kind, item)] = value.items()
    if kind == "stringValue":
        if type(item) is not str:
            raise _Unusual
        data = item.encode("utf-8")
        return b"\x0a" + _varint(len(data)) + data
    if kind == "intValue":
        n = _number(item, _INT64_MIN, _INT64_MAX)
        return b"\x18" + _varint(n + 2**64 if n < 0 else n)
    if kind == "boolValue":
        if type(item) is not bool:
            raise _Unusual
        return b"\x10\x01" if item else b"\x10\x00"
    if kind == "doubleValue":
        if type(item) is float or type(item) is int:
            return b"\x21" + _DOUBLE.pack(item)
        special = _SPECIAL_DOUBLES.get(item) if type(item) is str else None
        if special is None:
            raise _Unusual
        return b"\x21" + _DOUBLE.pack(special)
    if kind == "arrayValue" or kind == "kvlistValue":
        _check(item, _VALUES_KEYS)
        values = _list(item.get("values"))
        write = _any_value if kind == "arrayValue" else _key_value
        body = b"".join([_field(b"\x0a", write(entry)) for entry in values])
        return _field(b"\x2a" if kind == "arrayValue" else b"\x32", body)
    if kind == "bytesValue" and type(item) is str:
        try:
            data = base64.b64decode(item, validate=True)
        except binascii.Error:
            raise _Unusual from None  # unpadded or URL-safe base64: the reference path decides
        return b"\x3a" + _varint(len(data)) + data
    raise _Unusual  # a member of a newer OTLP version: the reference path


# --- scalars and the wire format ------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise _Unusual
    return value


def _field(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _string(field: int, text: Any) -> bytes:
    if not text:
        if text is None or text == "":
            return b""
        raise _Unusual
    if type(text) is not str:
        raise _Unusual
    data = text.encode("utf-8")
    return _LEN_TAGS[field] + _varint(len(data)) + data


def _id(field: int, text: Any) -> bytes:
    """A trace or span id, lowercase or uppercase hex in the JSON, raw bytes on the wire."""
    if not text:
        if text is None or text == "":
            return b""
        raise _Unusual
    if type(text) is not str:
        raise _Unusual
    data = bytes.fromhex(text)  # ValueError: the reference path reports it
    return _LEN_TAGS[field] + _varint(len(data)) + data


def _number(value: Any, low: int, high: int) -> int:
    """An integer given as a JSON number or a decimal string, within [low, high]."""
    if type(value) is int:
        n = value
    elif type(value) is str and value.isascii() and (value.isdigit() or (value[:1] == "-" and value[1:].isdigit())):
        n = int(value)
    else:
        raise _Unusual
    if not low <= n <= high:
        raise _Unusual
    return n


def _fixed64(tag: bytes, value: Any) -> bytes:
    if value is None:
        return b""
    n = _number(value, 0, _UINT64_MAX)
    return tag + _FIXED64.pack(n) if n else b""


def _uint32(field: int, value: Any) -> bytes:
    if value is None:
        return b""
    n = _number(value, 0, _UINT32_MAX)
    return bytes((field << 3,)) + _varint(n) if n else b""


def _enum(field: int, value: Any, names: Mapping[str, int]) -> bytes:
    if value is None:
        return b""
    if type(value) is str:
        n = names.get(value)
        if n is None:
            raise _Unusual
    else:
        n = _number(value, 0, 2**31 - 1)
    return bytes((field << 3,)) + _varint(n) if n else b""
