"""The offline files' OTLP/JSON against the official encoder (opentelemetry-exporter-otlp-json-common), the oracle.

FluxLoop's lines must be what OpenTelemetry's own OTLP/JSON encoder gives for the same spans (so the Collector's
file format readers take them), field for field, except one deliberate addition: a link's ``traceState``, which
the official encoder (like the stock protobuf one) leaves out.
"""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as official_encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceState

from fluxloop_otel_exporter import encode_spans_json

from .test_otlp_json import rich_spans
from .test_otlp_json_proto import odd_spans


def official(spans: list[ReadableSpan]) -> dict[str, Any]:
    encoded: dict[str, Any] = official_encode_spans(spans).to_dict()
    return encoded


def ours(spans: list[ReadableSpan]) -> dict[str, Any]:
    """FluxLoop's line, parsed, without the links' traceState (the one field the official encoder leaves out)."""
    request: dict[str, Any] = orjson.loads(encode_spans_json(spans))
    for resource_spans in request["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for link in span.get("links", ()):
                    link.pop("traceState", None)
    return request


def test_rich_spans_match_the_official_encoder() -> None:
    spans = rich_spans()
    assert ours(spans) == official(spans)


def test_odd_shapes_match_the_official_encoder() -> None:
    spans = [span for span in odd_spans() if span.name]  # (NaN is compared apart: it never equals itself)
    spans += [ReadableSpan(name="", context=SpanContext(9, 9, is_remote=False), resource=Resource({}),
                           events=[Event("", {"k": "v"}, timestamp=3)], start_time=1, end_time=2)]
    mine, theirs = ours(spans), official(spans)
    assert orjson.dumps(mine, option=orjson.OPT_SORT_KEYS).replace(b'"NaN"', b"nan") == \
        orjson.dumps(theirs, option=orjson.OPT_SORT_KEYS).replace(b'"NaN"', b"nan")
    assert math.isnan(float(theirs["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][3]["value"]
                             ["arrayValue"]["values"][4]["doubleValue"]))


def test_random_spans_match_the_official_encoder() -> None:
    rng = random.Random(7)
    values = [lambda: rng.choice(["", "x", "é✓" * rng.randint(1, 50)]), lambda: rng.random() < 0.5,
              lambda: rng.randint(-(2**63), 2**63 - 1), lambda: rng.uniform(-1e6, 1e6),
              lambda: [rng.randint(-5, 5) for _ in range(rng.randint(0, 3))], lambda: b"\x01" * rng.randint(0, 3)]
    resources = [Resource({"service.name": n}, schema_url=rng.choice(["", "https://s"])) for n in ("a", "b")]
    scopes = [None, InstrumentationScope("s1", "1"), InstrumentationScope("s2", None, "https://x", {"a": 1})]
    contexts = [SpanContext(3, 4, is_remote=False), SpanContext(5, 6, is_remote=True)]
    spans = [ReadableSpan(
        f"span-{i}", context=SpanContext(rng.getrandbits(128), rng.getrandbits(64), is_remote=False,
                                         trace_state=rng.choice([TraceState(), TraceState([("k", "v")])])),
        parent=rng.choice([None, *contexts]), kind=rng.choice(list(SpanKind)), resource=rng.choice(resources),
        instrumentation_scope=rng.choice(scopes),
        attributes={f"k{rng.randint(0, 12)}": rng.choice(values)() for _ in range(rng.randint(0, 6))},
        events=[Event(f"e{j}", {"j": j}, timestamp=rng.getrandbits(63)) for j in range(rng.randint(0, 2))],
        links=[Link(rng.choice(contexts), {"l": i})] if rng.random() < 0.2 else [],
        status=rng.choice([Status(StatusCode.UNSET), Status(StatusCode.OK), Status(StatusCode.ERROR, "bad")]),
        start_time=rng.getrandbits(63), end_time=rng.getrandbits(63)) for i in range(300)]
    assert ours(spans) == official(spans)
