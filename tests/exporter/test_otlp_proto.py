"""FluxLoop's OTLP protobuf encoder: byte for byte what the stock ``encode_spans(...).SerializeToString()`` gives."""

from __future__ import annotations

import gzip
import logging
import math
import random

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from fluxloop_otel_exporter import _otlp_proto as otlp_proto
from fluxloop_otel_exporter._otlp_proto import encode_spans_protobuf

from .test_otlp_json import rich_spans

LOCAL = SpanContext(0x1, 0x2, is_remote=False, trace_flags=TraceFlags(1))
REMOTE = SpanContext(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, is_remote=True,
                     trace_flags=TraceFlags(1), trace_state=TraceState([("a", "1"), ("b", "two")]))


def stock(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def span(name: str = "s", **fields) -> ReadableSpan:
    """A ReadableSpan built directly, for shapes a tracer does not produce (no scope, no times, odd values)."""
    fields.setdefault("context", SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, is_remote=False))
    fields.setdefault("resource", Resource({"service.name": "direct"}))
    fields.setdefault("start_time", 1_700_000_000_000_000_000)
    fields.setdefault("end_time", 1_700_000_000_123_456_789)
    return ReadableSpan(name=name, **fields)


def test_rich_spans_are_byte_equal() -> None:
    spans = rich_spans()
    assert encode_spans_protobuf(spans) == stock(spans)


def test_spans_from_a_tracer_with_limits_and_many_events_are_byte_equal() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "limits"}, "https://schema/1"),
                              span_limits=SpanLimits(max_span_attributes=3, max_events=2, max_links=1,
                                                     max_event_attributes=1, max_link_attributes=1))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("limited", "2.0", schema_url="https://schema/scope")
    links = [Link(LOCAL, {"x": 1, "y": 2}), Link(REMOTE)]
    with tracer.start_as_current_span("many", links=links, attributes={f"k{i}": i for i in range(6)}) as s:
        for i in range(4):
            s.add_event(f"e{i}", {"a": i, "b": "dropped"}, timestamp=1000 + i)
    provider.shutdown()
    [finished] = memory.get_finished_spans()
    assert finished.dropped_attributes and finished.dropped_events and finished.dropped_links
    assert encode_spans_protobuf([finished]) == stock([finished])


@pytest.mark.parametrize("value", [
    "", "plain", "x" * 64, "x" * 65, "é✓日本" * 50, True, False,
    0, 1, -1, 127, 128, 16383, 16384, 2**63 - 1, -(2**63),
    0.0, -0.0, 1.5, -2.25e300, math.inf, -math.inf, math.nan, b"", b"\x00\xff", None,
    (), ("a", "b"), (1, 2, 3), (True, None, 1.5, "m"), {"k": "v", "n": (1, {"deep": None})}, {},
], ids=repr)
def test_every_attribute_value_type_is_byte_equal(value) -> None:
    spans = [span(attributes={"key": value, "other": 1})]
    assert encode_spans_protobuf(spans) == stock(spans)


def test_a_large_batch_is_byte_equal() -> None:
    payload = "y" * 20_000  # lengths over two varint bytes
    spans = [span(f"s{i}", attributes={"i": i, "payload": payload, "same": "v", "flag": i % 2 == 0})
             for i in range(300)]
    assert encode_spans_protobuf(spans) == stock(spans)


def test_every_field_shape_is_byte_equal() -> None:
    resource = Resource({"service.name": "r", "nested": "x"}, schema_url="https://r/1")
    scope = InstrumentationScope("scope", None, None, {"scope.attr": ("a",)})
    spans = [
        span("no-scope-no-times", instrumentation_scope=None, start_time=None, end_time=None),
        span("", resource=resource, instrumentation_scope=scope),  # empty name
        span("remote-parent", parent=REMOTE, kind=SpanKind.CONSUMER, instrumentation_scope=scope,
             context=SpanContext(7, 8, is_remote=False, trace_state=TraceState([("v", "1")]))),
        span("local-parent", parent=LOCAL, kind=SpanKind.SERVER,
             context=SpanContext(7, 9, is_remote=False, trace_state=TraceState())),
        span("error", status=Status(StatusCode.ERROR, "it broke ✗"), kind=SpanKind.CLIENT),
        span("error-no-text", status=Status(StatusCode.ERROR)),
        span("ok", status=Status(StatusCode.OK), kind=SpanKind.PRODUCER),
        span("events", events=[Event("e1", {"a": 1}, timestamp=5), Event("e2", timestamp=6)]),
        span("links", links=[Link(LOCAL, {"l": "x"}), Link(REMOTE)]),
        span("zero-ids", context=SpanContext(0, 0, is_remote=False)),
    ]
    assert encode_spans_protobuf(spans) == stock(spans)


def test_grouping_by_resource_and_scope_keeps_the_stock_order() -> None:
    # Equal resources and scopes as distinct objects, interleaved: one group each, spans in batch order.
    r1, r1_again, r2 = Resource({"service.name": "a"}), Resource({"service.name": "a"}), Resource({"service.name": "b"})
    s1, s1_again, s2 = (InstrumentationScope("x", "1"), InstrumentationScope("x", "1"), InstrumentationScope("y"))
    spans = [span("1", resource=r1, instrumentation_scope=s1), span("2", resource=r2, instrumentation_scope=s2),
             span("3", resource=r1_again, instrumentation_scope=s2),
             span("4", resource=r1, instrumentation_scope=s1_again),
             span("5", resource=r2, instrumentation_scope=None), span("6", resource=r1_again, instrumentation_scope=s1)]
    encoded = encode_spans_protobuf(spans)
    assert encoded == stock(spans)
    request = ExportTraceServiceRequest.FromString(encoded)
    assert [[[s.name for s in ss.spans] for ss in rs.scope_spans] for rs in request.resource_spans] == \
        [[["1", "4", "6"], ["3"]], [["2"], ["5"]]]


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_spans_protobuf([]) == stock([]) == b""


def test_cached_attribute_encodings_never_mix_keys_values_or_fields() -> None:
    scope = InstrumentationScope("s", "1", None, {"k": "v"})
    spans = [span(attributes={"k": "v", "t": True}, instrumentation_scope=scope),
             span(attributes={"k": "w", "t": 1}, instrumentation_scope=scope),
             span(attributes={"k": "v", "t": False}, events=[Event("e", {"k": "v"}, timestamp=1)],
                  resource=Resource({"k": "v"}))]
    for _ in range(2):  # the second pass hits the caches
        assert encode_spans_protobuf(spans) == stock(spans)


def test_an_integer_outside_int64_is_left_out_like_the_stock_encoder(caplog) -> None:
    spans = [span(attributes={"huge": 2**64, "kept": 1})]
    with caplog.at_level(logging.WARNING, logger="fluxloop.exporter"):
        encoded = encode_spans_protobuf(spans)
    with caplog.at_level(logging.CRITICAL):  # the stock encoder logs the failure with a traceback
        assert encoded == stock(spans)
    [attribute] = ExportTraceServiceRequest.FromString(encoded).resource_spans[0].scope_spans[0].spans[0].attributes
    assert attribute.key == "kept"
    assert "huge" in caplog.text


def test_strings_that_are_not_utf8_are_replaced_not_fatal() -> None:
    spans = [span("bad \ud800 name", attributes={"text": "lone \udfff surrogate"})]
    with pytest.raises(Exception):  # the stock encoder cannot encode the span name: the whole batch fails
        stock(spans)
    request = ExportTraceServiceRequest.FromString(encode_spans_protobuf(spans))
    [encoded] = request.resource_spans[0].scope_spans[0].spans
    assert encoded.name == "bad ? name"
    assert encoded.attributes[0].value.string_value == "lone ? surrogate"


@pytest.mark.parametrize("kind", list(SpanKind), ids=lambda k: k.name)
def test_every_span_kind_is_byte_equal(kind: SpanKind) -> None:
    spans = [span(f"kind {kind.name}", kind=kind)]
    assert encode_spans_protobuf(spans) == stock(spans)


@pytest.mark.parametrize("value", [
    ["a", "", "é✓"], [True, False, True], [0, -1, 2**63 - 1, -(2**63)], [0.0, -0.5, 1e300, math.inf],
    [], ("only",), [False], [0], [0.0],
], ids=repr)
def test_homogeneous_sequences_of_each_type_are_byte_equal(value) -> None:
    spans = [span(attributes={"seq": value}, events=[Event("e", {"seq": value}, timestamp=3)],
                  links=[Link(LOCAL, {"seq": value})])]
    assert encode_spans_protobuf(spans) == stock(spans)


def test_non_ascii_text_everywhere_is_byte_equal() -> None:
    resource = Resource({"service.name": "サービス", "ключ": "значение"}, schema_url="https://ü/1")
    scope = InstrumentationScope("область ✓", "1.0-β", "https://ß/2", {"é": "日本"})
    spans = [span("invoke_agent 助手 🤖", resource=resource, instrumentation_scope=scope,
                  attributes={"input.value": '{"q": "¿qué tal? 😀"}', "ünïcode.key": "ok"},
                  events=[Event("événement", {"message": "ошибка"}, timestamp=7)],
                  status=Status(StatusCode.ERROR, "échec: 失败"),
                  context=SpanContext(5, 6, is_remote=False, trace_state=TraceState([("k", "v")])))]
    assert encode_spans_protobuf(spans) == stock(spans)


def test_many_resources_and_scopes_from_real_tracers_are_byte_equal() -> None:
    memory = InMemorySpanExporter()
    providers = [TracerProvider(resource=Resource.create({"service.name": f"svc-{i}"})) for i in range(3)]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(memory))
    tracers = [p.get_tracer(f"scope-{j}", f"{j}.0", attributes={"j": j}) for p in providers for j in range(3)]
    for round_ in range(3):  # interleaved, so groups are not contiguous in the batch
        for i, tracer in enumerate(tracers):
            with tracer.start_as_current_span(f"s{round_}-{i}", attributes={"round": round_}):
                pass
    for provider in providers:
        provider.shutdown()
    spans = list(memory.get_finished_spans())
    encoded = encode_spans_protobuf(spans)
    assert encoded == stock(spans)
    request = ExportTraceServiceRequest.FromString(encoded)
    assert [len(rs.scope_spans) for rs in request.resource_spans] == [3, 3, 3]


def test_third_party_instrumentation_spans_are_byte_equal() -> None:
    # What an HTTP server instrumentation hands FluxLoop's pipeline: a remote parent from traceparent, its own
    # scope and semantic-convention attributes, an exception event.
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "web"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.flask", "0.66b2",
                                 schema_url="https://opentelemetry.io/schemas/1.11.0")
    parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with tracer.start_as_current_span("GET /items/{id}", context=parent, kind=SpanKind.SERVER) as server:
        server.set_attributes({"http.request.method": "GET", "http.response.status_code": 500,
                               "url.path": "/items/7", "server.port": 8080, "http.route": "/items/{id}"})
        server.record_exception(RuntimeError("database is down"))
        server.set_status(Status(StatusCode.ERROR))
    provider.shutdown()
    spans = list(memory.get_finished_spans())
    assert encode_spans_protobuf(spans) == stock(spans)


def test_random_spans_are_byte_equal() -> None:
    rng = random.Random(13)
    values = [lambda: rng.choice(["", "x", "é" * rng.randint(1, 90), "y" * rng.randint(60, 70)]),
              lambda: rng.random() < 0.5, lambda: rng.randint(-(2**63), 2**63 - 1), lambda: rng.uniform(-1e9, 1e9),
              lambda: [rng.randint(-5, 5) for _ in range(rng.randint(0, 4))],
              lambda: [str(rng.random()) for _ in range(rng.randint(0, 4))]]
    resources = [Resource({"service.name": name}) for name in ("a", "b")]
    scopes = [None, InstrumentationScope("s1"), InstrumentationScope("s2", "2", "https://x")]
    spans = []
    for i in range(300):
        attributes = {f"k{rng.randint(0, 20)}": rng.choice(values)() for _ in range(rng.randint(0, 8))}
        context = SpanContext(rng.getrandbits(128), rng.getrandbits(64), is_remote=False)
        parent = rng.choice([None, LOCAL, REMOTE])
        spans.append(span(
            f"span-{i}", context=context, parent=parent, attributes=attributes, kind=rng.choice(list(SpanKind)),
            resource=rng.choice(resources), instrumentation_scope=rng.choice(scopes),
            events=[Event(f"e{j}", {"j": j}, timestamp=rng.getrandbits(63)) for j in range(rng.randint(0, 2))],
            links=[Link(rng.choice([LOCAL, REMOTE]), {"l": i})] if rng.random() < 0.2 else [],
            status=rng.choice([Status(StatusCode.UNSET), Status(StatusCode.OK), Status(StatusCode.ERROR, "bad")]),
            start_time=rng.getrandbits(63), end_time=rng.getrandbits(63)))
    assert encode_spans_protobuf(spans) == stock(spans)


def test_a_span_this_encoder_cannot_handle_goes_to_the_stock_encoder(monkeypatch, caplog) -> None:
    spans = rich_spans()

    def broken(_span: ReadableSpan) -> bytes:
        raise AttributeError("a span shape this encoder does not know")

    monkeypatch.setattr(otlp_proto, "_span", broken)
    monkeypatch.setattr(otlp_proto, "_fell_back", False)
    with caplog.at_level(logging.WARNING, logger="fluxloop.exporter"):
        assert encode_spans_protobuf(spans) == stock(spans)
        assert encode_spans_protobuf(spans) == stock(spans)
    assert caplog.text.count("stock OTLP encoder") == 1  # reported once


def test_the_exporter_posts_the_stock_bytes_for_fluxloop_and_third_party_spans(sink, make_exporter) -> None:
    # At the point of contact: the body a collector receives from FluxLoopSpanExporter, decompressed, is what the
    # stock encoder gives for the same batch (FluxLoop-like spans, other instrumentations' scopes, remote parents).
    spans = rich_spans()
    exporter = make_exporter(sink.url, timeout=5.0)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush(10_000)
    [attempt] = sink.delivered()
    assert attempt.request.SerializeToString() == stock(spans)
    assert gzip.decompress(attempt.body) == stock(spans)


def test_the_exporter_encodes_with_fluxloops_encoder(sink, make_exporter) -> None:
    # A span name the stock encoder cannot encode (a lone surrogate fails its whole batch) reaches the collector
    # with the bad code point replaced, beside a normal span: the export stage uses FluxLoop's encoder.
    spans = [span("bad \ud800 name", attributes={"k": "v"}), span("fine")]
    with pytest.raises(Exception):
        stock(spans)
    exporter = make_exporter(sink.url, timeout=5.0)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush(10_000)
    assert sorted(sink.delivered_span_names()) == ["bad ? name", "fine"]
