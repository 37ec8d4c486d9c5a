"""OTLP/JSON encoding: the collector file-exporter shape, and JSON -> protobuf equal to the stock protobuf encoder."""

from __future__ import annotations

import math
import re

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from fluxloop_otel_exporter import encode_spans_json, request_to_protobuf

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def rich_spans() -> list[ReadableSpan]:
    """Spans from two resources and three scopes, every span kind, events, links, remote parents, all value types."""
    memory = InMemorySpanExporter()
    app = TracerProvider(resource=Resource.create({"service.name": "app", "k8s.pod.uid": "p1"}, schema_url="https://s/1"))
    other = TracerProvider(resource=Resource.create({"service.name": "other"}))
    for provider in (app, other):
        provider.add_span_processor(SimpleSpanProcessor(memory))
    agent = app.get_tracer("fluxloop", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.26.0")
    tools = app.get_tracer("tools", attributes={"scope.attr": "x"})
    plain = other.get_tracer("plain")

    remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "v1")]))
    with agent.start_as_current_span("invoke_agent planner", context=trace.set_span_in_context(
            trace.NonRecordingSpan(remote)), kind=SpanKind.SERVER) as root:
        root.set_attributes({
            "input.value": '{"q": "hi"}', "empty": "", "flag": True, "off": False, "n": -42, "big": 2**62,
            "ratio": 0.25, "tags": ["a", "b"], "ints": [1, 2, 3], "floats": [1.5, -2.0], "bools": [True, False],
            "raw": b"\x00\xffbytes", "unicode": "héllo ✓ 日本",
        })
        root.add_event("started", {"step": 1})
        root.add_event("bare")
        for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
            with tools.start_as_current_span(f"execute_tool {kind.name}", kind=kind,
                                             links=[Link(root.get_span_context(), {"why": "caller"})]) as child:
                child.set_attribute("gen_ai.tool.name", kind.name)
        with plain.start_as_current_span("other-service") as o:
            o.set_status(Status(StatusCode.ERROR, "boom"))
            o.record_exception(ValueError("bad"))
        with agent.start_as_current_span("ok") as ok:
            ok.set_status(Status(StatusCode.OK))
    spans = list(memory.get_finished_spans())
    app.shutdown()
    other.shutdown()
    return spans


def test_json_to_protobuf_equals_stock_encoder() -> None:
    spans = rich_spans()
    line = encode_spans_json(spans)
    ours = ExportTraceServiceRequest.FromString(request_to_protobuf(orjson.loads(line)))
    stock = encode_spans(spans)
    # The one deliberate difference: we keep a link's trace_state, which the stock encoder leaves out.
    links = [link for rs in ours.resource_spans for ss in rs.scope_spans for s in ss.spans for link in s.links]
    assert links and all(link.trace_state == "vendor=v1" for link in links)
    for link in links:
        link.ClearField("trace_state")
    assert ours == stock
    assert len(stock.resource_spans) == 2
    assert sum(len(ss.spans) for rs in ours.resource_spans for ss in rs.scope_spans) == len(spans)


def test_json_has_the_collector_file_exporter_shape() -> None:
    spans = rich_spans()
    line = encode_spans_json(spans)
    assert b"\n" not in line and line.startswith(b'{"resourceSpans":[')
    request = orjson.loads(line)
    app = request["resourceSpans"][0]
    assert app["schemaUrl"] == "https://s/1"
    assert {"key": "service.name", "value": {"stringValue": "app"}} in app["resource"]["attributes"]
    scopes = {ss["scope"].get("name"): ss for ss in app["scopeSpans"]}
    assert scopes["fluxloop"]["scope"] == {"name": "fluxloop", "version": "0.1.0"}
    assert scopes["fluxloop"]["schemaUrl"] == "https://opentelemetry.io/schemas/1.26.0"
    assert scopes["tools"]["scope"]["attributes"] == [{"key": "scope.attr", "value": {"stringValue": "x"}}]

    by_name = {s["name"]: s for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]}
    root = by_name["invoke_agent planner"]
    source = next(s for s in spans if s.name == "invoke_agent planner")
    assert root["traceId"] == "0af7651916cd43dd8448eb211c80319c" and HEX32.match(root["traceId"])
    assert root["parentSpanId"] == "b7ad6b7169203331"
    assert HEX16.match(root["spanId"]) and root["spanId"] == format(source.context.span_id, "016x")
    assert root["traceState"] == "vendor=v1"
    assert root["flags"] == 0x300  # parent known to be remote
    assert root["kind"] == 2  # SPAN_KIND_SERVER
    assert root["startTimeUnixNano"] == str(source.start_time)
    assert root["endTimeUnixNano"] == str(source.end_time)
    assert root["status"] == {}
    values = {kv["key"]: kv["value"] for kv in root["attributes"]}
    assert values["input.value"] == {"stringValue": '{"q": "hi"}'}
    assert values["empty"] == {"stringValue": ""}
    assert values["flag"] == {"boolValue": True} and values["off"] == {"boolValue": False}
    assert values["n"] == {"intValue": "-42"} and values["big"] == {"intValue": str(2**62)}
    assert values["ratio"] == {"doubleValue": 0.25}
    assert values["tags"] == {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}
    assert values["ints"]["arrayValue"]["values"][0] == {"intValue": "1"}
    assert values["raw"] == {"bytesValue": "AP9ieXRlcw=="}
    assert values["unicode"] == {"stringValue": "héllo ✓ 日本"}
    assert root["events"][0] == {"timeUnixNano": str(source.events[0].timestamp), "name": "started",
                                 "attributes": [{"key": "step", "value": {"intValue": "1"}}]}
    assert root["events"][1]["name"] == "bare" and "attributes" not in root["events"][1]

    client = by_name["execute_tool CLIENT"]
    assert client["kind"] == 3 and client["flags"] == 0x100 and client["parentSpanId"] == root["spanId"]
    assert client["links"] == [{"traceId": root["traceId"], "spanId": root["spanId"], "traceState": "vendor=v1",
                                "attributes": [{"key": "why", "value": {"stringValue": "caller"}}], "flags": 0x100}]
    assert [by_name[f"execute_tool {k}"]["kind"] for k in ("PRODUCER", "CONSUMER", "INTERNAL")] == [4, 5, 1]
    assert by_name["other-service"]["status"] == {"code": 2, "message": "boom"}
    assert by_name["other-service"]["events"][0]["name"] == "exception"
    assert by_name["ok"]["status"] == {"code": 1}


def test_special_values_stay_valid_json(make_spans) -> None:
    spans = make_spans(1, nan=math.nan, inf=math.inf, ninf=-math.inf, huge=2**70, bad="x\ud800y", nested=[[]])
    request = orjson.loads(encode_spans_json(spans))
    values = {kv["key"]: kv["value"] for kv in request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]}
    assert values["nan"] == {"doubleValue": "NaN"}
    assert values["inf"] == {"doubleValue": "Infinity"} and values["ninf"] == {"doubleValue": "-Infinity"}
    assert values["huge"] == {"stringValue": str(2**70)}  # beyond int64: the digits are kept
    assert values["bad"]["stringValue"].startswith("x") and values["bad"]["stringValue"].endswith("y")
    message = ExportTraceServiceRequest.FromString(request_to_protobuf(request))
    double = {kv.key: kv.value for kv in message.resource_spans[0].scope_spans[0].spans[0].attributes}["inf"]
    assert double.double_value == math.inf


def test_empty_batch() -> None:
    assert encode_spans_json([]) == b'{"resourceSpans":[]}'
    assert request_to_protobuf({"resourceSpans": []}) == b""


def test_request_to_protobuf_reads_a_collector_written_line() -> None:
    line = (b'{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},'
            b'"scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",'
            b'"spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"GET","kind":2,'
            b'"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",'
            b'"attributes":[{"key":"n","value":{"intValue":"7"}}],"status":{"code":2}}]}]}]}')
    request = orjson.loads(line)
    message = ExportTraceServiceRequest.FromString(request_to_protobuf(request))
    span = message.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174" and span.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert span.kind == 2 and span.start_time_unix_nano == 1544712660000000000
    assert span.attributes[0].value.int_value == 7 and span.status.code == 2
    assert request == orjson.loads(line)  # the input is not modified


@pytest.mark.parametrize("bad", [
    [1, 2],
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-hex"}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]},
    {"resourceSpans": "nope"},
])
def test_request_to_protobuf_rejects_malformed_requests(bad) -> None:
    with pytest.raises(ValueError):
        request_to_protobuf(bad)
