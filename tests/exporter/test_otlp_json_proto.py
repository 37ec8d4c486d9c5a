"""OTLP/JSON line -> protobuf written directly: the same bytes as ``json_format.ParseDict`` on real spool lines."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceState

import fluxloop_otel_exporter
from fluxloop_otel_exporter import OfflineSpanExporter, read_requests
from fluxloop_otel_exporter._otlp_json import request_to_protobuf as reference
from fluxloop_otel_exporter._otlp_json_proto import _request as direct
from fluxloop_otel_exporter._otlp_json_proto import request_to_protobuf

from .test_otlp_json import rich_spans


def spool_lines(tmp_path: Path, batches: list[list[ReadableSpan]]) -> list[dict[str, Any]]:
    """The requests an OfflineSpanExporter wrote for ``batches``, read back the way ``fluxloop upload`` reads them."""
    exporter = OfflineSpanExporter(tmp_path / "spool")
    for batch in batches:
        exporter.export(batch)
    exporter.shutdown()
    [path] = sorted((tmp_path / "spool").glob("*.jsonl"))
    requests = [request for _, request, error in read_requests(path) if error is None]
    assert len(requests) == len(batches)
    return requests


def odd_spans() -> list[ReadableSpan]:
    """Shapes a tracer rarely makes: nested kvlists in arrays, dropped counts, huge lengths, remote links."""
    remote = SpanContext(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, is_remote=True,
                         trace_state=TraceState([("a", "1"), ("b", "two")]))
    scope = InstrumentationScope("scope ✓", "1.2", "https://scope/1", {"s": ["x", "y"]})
    common: dict[str, Any] = {"resource": Resource({"service.name": "odd", "n": 3}, schema_url="https://r/1"),
                              "instrumentation_scope": scope}
    return [
        ReadableSpan(name="nested", context=SpanContext(1, 2, is_remote=False), parent=remote,
                     kind=SpanKind.CONSUMER, start_time=1, end_time=2**63 + 5,
                     attributes={"kv": {"a": [1, {"b": None}], "c": {"d": 1.5}}, "arr": [[], [True]], "none": None,
                                 "floats": [0.0, -0.0, math.inf, -math.inf, math.nan], "big": "z" * 20_000,
                                 "ints": [-(2**63), 2**63 - 1, 0]},
                     events=[Event("e", {"k": "v"}, timestamp=9)], links=[Link(remote, {"l": 1})],
                     status=Status(StatusCode.ERROR, "broke ✗"), **common),
        ReadableSpan(name="", context=SpanContext(0, 0, is_remote=False), start_time=None, end_time=None,
                     status=Status(StatusCode.OK), **common),
    ]


def test_real_spool_lines_convert_directly_to_the_reference_bytes(tmp_path: Path) -> None:
    requests = spool_lines(tmp_path, [rich_spans(), odd_spans(), rich_spans() + odd_spans()])
    for request in requests:
        before = copy.deepcopy(request)
        body = direct(request)  # the direct writer itself, no fallback
        assert body == reference(request)
        assert request == before  # the input is not modified
        assert request_to_protobuf(request) == body


def test_the_direct_bytes_equal_the_stock_encoder_of_the_original_spans(tmp_path: Path) -> None:
    spans = odd_spans()
    [request] = spool_lines(tmp_path, [spans])
    ours = ExportTraceServiceRequest.FromString(direct(request))
    # A link keeps its trace_state in OTLP/JSON (the stock encoder leaves it out); NaN never equals itself.
    for span in (s for rs in ours.resource_spans for ss in rs.scope_spans for s in ss.spans):
        for link in span.links:
            link.ClearField("trace_state")
        for attribute in span.attributes:
            if attribute.key == "floats":
                del attribute.value.array_value.values[-1]
    stock = encode_spans(spans)
    for attribute in stock.resource_spans[0].scope_spans[0].spans[0].attributes:
        if attribute.key == "floats":
            del attribute.value.array_value.values[-1]
    assert ours == stock


HEX_T, HEX_S = "5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174"


@pytest.mark.parametrize("span", [
    {"traceId": HEX_T, "spanId": HEX_S, "kind": "SPAN_KIND_CLIENT", "status": {"code": "STATUS_CODE_ERROR"}},
    {"traceId": HEX_T.lower(), "spanId": HEX_S, "startTimeUnixNano": 1544712660000000000,
     "endTimeUnixNano": "18446744073709551615", "droppedAttributesCount": "3", "droppedEventsCount": 2,
     "droppedLinksCount": 1, "flags": 768},
    {"name": "values", "attributes": [
        {"key": "i", "value": {"intValue": -5}}, {"key": "i2", "value": {"intValue": "-9223372036854775808"}},
        {"key": "d", "value": {"doubleValue": 3}}, {"key": "nan", "value": {"doubleValue": "NaN"}},
        {"key": "inf", "value": {"doubleValue": "-Infinity"}}, {"key": "empty", "value": {}}, {"key": "novalue"},
        {"key": "", "value": {"stringValue": ""}}, {"key": "b", "value": {"boolValue": False}},
        {"key": "arr", "value": {"arrayValue": {}}}, {"key": "kv", "value": {"kvlistValue": {"values": [
            {"key": "deep", "value": {"arrayValue": {"values": [{"kvlistValue": {}}, {"stringValue": "ü"}]}}}]}}}]},
    {"events": [{"timeUnixNano": "0", "name": "e", "droppedAttributesCount": 1}, {}],
     "links": [{"traceId": HEX_T, "spanId": HEX_S, "traceState": "a=1", "flags": 256,
                "attributes": [{"key": "k", "value": {"stringValue": "v"}}], "droppedAttributesCount": 4}, {}]},
    {"status": {"message": "only text"}, "kind": 0, "parentSpanId": ""},
], ids=["enum-names", "numbers-as-json-numbers", "any-values", "events-links", "defaults"])
def test_hand_written_requests_convert_directly_to_the_reference_bytes(span: dict[str, Any]) -> None:
    request = {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}],
                      "droppedAttributesCount": 2},
         "scopeSpans": [{"scope": {"name": "lib", "version": "1", "droppedAttributesCount": 1}, "spans": [span],
                         "schemaUrl": "https://s"}, {"spans": []}, {}],
         "schemaUrl": "https://r"},
        {"resource": {}, "scopeSpans": [{"scope": {}, "spans": [span, span]}]},
        {},
    ]}
    assert direct(request) == reference(request)


@pytest.mark.parametrize("request_", [
    {"resource_spans": [{"scope_spans": [{"spans": [{"name": "snake", "trace_id": HEX_T}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "future", "newField": 1}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "b", "value": {"bytesValue": "AP8"}}]}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "f", "value": {"doubleValue": "1.5"}}]}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x", "kind": None, "status": None}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x", "kind": "SPAN_KIND_NOPE"}]}]}]},
], ids=["snake-case", "unknown-field", "unpadded-base64", "double-as-string", "nulls", "unknown-enum-name"])
def test_what_the_direct_writer_does_not_expect_takes_the_reference_path(request_: dict[str, Any]) -> None:
    assert request_to_protobuf(request_) == reference(request_)


@pytest.mark.parametrize("bad", [
    [1, 2],
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-hex"}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "-1"}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "i", "value": {"intValue": 2**64}}]}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "x", "value": {
        "stringValue": "a", "intValue": "1"}}]}]}]}]},
])
def test_invalid_requests_still_raise_value_error(bad: Any) -> None:
    with pytest.raises(ValueError):
        request_to_protobuf(bad)


def test_the_package_and_upload_use_the_direct_writer() -> None:
    assert fluxloop_otel_exporter.request_to_protobuf is request_to_protobuf


def test_a_large_spool_line_round_trips(tmp_path: Path) -> None:
    spans = [ReadableSpan(name=f"s{i}", context=SpanContext(i + 1, i + 1, is_remote=False),
                          attributes={"input.value": orjson.dumps({"i": i, "text": "é" * 100}).decode(), "i": i},
                          resource=Resource({"service.name": "many"}), start_time=i, end_time=i + 1)
             for i in range(600)]
    [request] = spool_lines(tmp_path, [spans])
    body = direct(request)
    assert body == reference(request) == encode_spans(spans).SerializeToString()


def test_random_spans_through_the_offline_files_equal_the_stock_encoder(tmp_path: Path) -> None:
    # Spans -> OTLP/JSON line (the offline files) -> protobuf (upload) == the stock protobuf encoder, for random
    # shapes: both encoders and the reader agree field by field (links: no trace_state in the random set).
    rng = random.Random(12)
    values = [lambda: rng.choice(["", "x", "é" * rng.randint(1, 90), "y" * rng.randint(60, 70)]),
              lambda: rng.random() < 0.5, lambda: rng.randint(-(2**63), 2**63 - 1), lambda: rng.uniform(-1e9, 1e9),
              lambda: [rng.randint(-5, 5) for _ in range(rng.randint(0, 4))],
              lambda: tuple(str(rng.random()) for _ in range(rng.randint(0, 4))), lambda: b"\x00" * rng.randint(0, 3)]
    resources = [Resource({"service.name": name}) for name in ("a", "b")]
    scopes = [None, InstrumentationScope("s1"), InstrumentationScope("s2", "2", "https://x", {"a": 1})]
    links = [SpanContext(3, 4, is_remote=False), SpanContext(5, 6, is_remote=True)]
    spans = []
    for i in range(400):
        parent = rng.choice([None, *links])
        spans.append(ReadableSpan(
            f"span-{i % 7} ✓", context=SpanContext(rng.getrandbits(128), rng.getrandbits(64), is_remote=False,
                                                   trace_state=rng.choice([TraceState(), TraceState([("k", "v")])])),
            parent=parent, kind=rng.choice(list(SpanKind)), resource=rng.choice(resources),
            instrumentation_scope=rng.choice(scopes),
            attributes={f"k{rng.randint(0, 20)}": rng.choice(values)() for _ in range(rng.randint(0, 8))},
            events=[Event(f"e{j}", {"j": j}, timestamp=rng.getrandbits(63)) for j in range(rng.randint(0, 2))],
            links=[Link(rng.choice(links), {"l": i})] if rng.random() < 0.2 else [],
            status=rng.choice([Status(StatusCode.UNSET), Status(StatusCode.OK), Status(StatusCode.ERROR, "bad"),
                               Status(StatusCode.ERROR)]),
            start_time=rng.getrandbits(63), end_time=rng.getrandbits(63)))
    requests = spool_lines(tmp_path, [spans[:150], spans[150:]])
    assert b"".join(direct(request) for request in requests) == \
        encode_spans(spans[:150]).SerializeToString() + encode_spans(spans[150:]).SerializeToString()
