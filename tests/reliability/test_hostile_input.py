"""Hostile input 7: arguments and return values that are recursive, 10 MB long, 1,000 levels deep, non-string-keyed,
bytes, NaN/infinity, huge integers, objects whose ``__repr__`` or ``__iter__`` raise, generators. The decorated call
returns its normal result, span attributes are valid JSON and truncated with a marker, recording lines are valid
JSON; and a hypothesis fuzz of the serializer (never raises, always valid JSON, masked values never leak)."""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fluxloop
from fluxloop._serialize import dumps, dumps_attribute, to_jsonable

from ._harness import Span, offline_spans, strict_json

pytestmark = pytest.mark.reliability

MAX_ATTR = 32_768  # FluxLoop's default max_attribute_length


# --- hostile values -----------------------------------------------------------------------------------------------


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class NonStrRepr:
    def __repr__(self) -> Any:
        return 42


class RaisingIter(list):
    """A list whose iteration raises (orjson reads list subclasses natively; the walk iterates)."""

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("iter exploded")


class RaisingMapping(Mapping):
    def __getitem__(self, key: Any) -> Any:
        raise RuntimeError("getitem exploded")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("iter exploded")

    def __len__(self) -> int:
        return 3


class RaisingGetattr:
    """Every attribute lookup raises something other than AttributeError; also callable."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"getattr {name} exploded")

    def __call__(self) -> None:
        return None


class BadModel(pydantic.BaseModel):
    name: str = "m"

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        raise RuntimeError("model_dump exploded")


@dataclasses.dataclass
class Node:
    label: str
    next: Any = None


def _recursive_list() -> list:
    value: list = [1]
    value.append(value)
    return value


def _recursive_dict() -> dict:
    value: dict = {"a": 1}
    value["self"] = value
    return value


def _recursive_dataclass() -> Node:
    first = Node("a")
    first.next = Node("b", first)
    return first


def _deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _deep_dict(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"k": value}
    return value


HOSTILE: dict[str, Callable[[], Any]] = {
    "recursive_list": _recursive_list,
    "recursive_dict": _recursive_dict,
    "recursive_dataclass": _recursive_dataclass,
    "10MB_str": lambda: "x" * 10_000_000,
    "10MB_bytes": lambda: b"\xff" * 10_000_000,
    "10MB_of_quotes": lambda: '"' * 10_000_000,
    "quote_heavy_items": lambda: {f"k{i}": '"' * 200 for i in range(256)},  # cut as JSON, then escaped again
    "lone_surrogates": lambda: {"text": "half a pair: \ud800", "list": ["\udfff", "ok"]},
    "1000_deep_list": lambda: _deep_list(1_000),
    "1000_deep_dict": lambda: _deep_dict(1_000),
    "100000_deep_list": lambda: _deep_list(100_000),
    "non_string_keys": lambda: {1: "int", None: "none", (1, 2): "tuple", frozenset({3}): "frozenset", 1.5: "float",
                                b"k": "bytes", uuid.UUID(int=7): "uuid", RaisingRepr(): "raising key"},
    "bytes": lambda: b"\x00\xff\xfebinary",
    "nan_and_infinities": lambda: [math.nan, math.inf, -math.inf, {"nan": math.nan}],
    "huge_integers": lambda: [10**100, -(10**100), 2**64, -(2**63) - 1, decimal.Decimal("1e1000")],
    "raising_repr": RaisingRepr,
    "non_str_repr": NonStrRepr,
    "raising_iter": lambda: RaisingIter([1, 2, 3]),
    "raising_mapping": RaisingMapping,
    "raising_getattr": RaisingGetattr,
    "model_dump_raises": BadModel,
    "100k_items": lambda: list(range(100_000)),
    "100k_keys": lambda: {f"k{i}": i for i in range(100_000)},
    "mixed": lambda: {"set": {1, 2}, "tuple": (RaisingRepr(), math.nan), "fn": len, "cls": RaisingRepr,
                      "deep": _deep_dict(200)},
}


@fluxloop.agent(name="Echo")
def echo(value: Any) -> Any:
    return value


def _check_attribute(text: str) -> Any:
    """A span attribute holding JSON: valid (no NaN/Infinity), within the configured length."""
    assert isinstance(text, str)
    assert len(text) <= MAX_ATTR, f"attribute of {len(text):,} chars exceeds max_attribute_length {MAX_ATTR:,}"
    return strict_json(text)


def _check_output(attributes: Any) -> Any:
    """The output attribute: text (``text/plain``) within the configured length, else checked JSON."""
    if attributes["output.mime_type"] == "text/plain":
        text = attributes["output.value"]
        assert isinstance(text, str) and len(text) <= MAX_ATTR, f"attribute of {len(text):,} chars"
        return text
    return _check_attribute(attributes["output.value"])


def _spans_and_records(offline_dir: Path, recording: Path) -> tuple[list[Span], list[dict]]:
    assert fluxloop.flush(timeout=30)
    spans = offline_spans(offline_dir)  # every line a whole OTLP request
    records = [strict_json(line) for line in recording.read_bytes().splitlines()]
    return spans, records


@pytest.fixture
def pipeline(tmp_path: Path, offline_dir: Path) -> Path:
    """FluxLoop writing spans to offline files and recording every agent call; returns the recording path."""
    recording = tmp_path / "recording.jsonl"
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir), record_args=True,
                       recording_file=str(recording))
    return recording


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_argument_and_result(kind: str, pipeline: Path, offline_dir: Path) -> None:
    value = HOSTILE[kind]()
    assert echo(value) is value  # the call returns its normal result, untouched
    spans, records = _spans_and_records(offline_dir, pipeline)
    [span] = spans
    assert span.name == "invoke_agent Echo" and span.status_code != 2
    given_input = _check_attribute(span.attributes["input.value"])
    _check_output(span.attributes)
    [record] = records
    assert record["target"].endswith(":echo") and set(record["kwargs"]) == {"value"}
    if isinstance(given_input, str):  # the last resort: the JSON text itself, cut and marked, as a JSON string
        assert given_input.endswith("chars]") and "truncated" in given_input
    else:
        assert set(given_input) == {"value"}
    if kind in ("10MB_str", "10MB_of_quotes", "100k_items", "100k_keys", "quote_heavy_items"):  # cut, marked
        assert "truncated" in span.attributes["input.value"] or "more items" in span.attributes["input.value"]
    if kind.startswith("recursive"):
        assert "<cycle>" in json.dumps(given_input) + json.dumps(record["kwargs"])
    if "deep" in kind:
        assert "<max depth>" in json.dumps(given_input) + json.dumps(record["kwargs"])


def test_generators_passed_in_are_not_consumed_and_generators_returned_keep_working(pipeline: Path,
                                                                                   offline_dir: Path) -> None:
    generator = (i for i in range(5))
    iterator = iter([1, 2, 3])
    # a returned generator comes back as a proxy that keeps the span open until it is read (DESIGN §2)
    returned = echo(generator)
    assert echo(iterator) is iterator
    assert list(returned) == [0, 1, 2, 3, 4] and list(iterator) == [1, 2, 3]  # nothing was read by FluxLoop

    @fluxloop.tool
    def stream() -> Iterator[Any]:
        for kind in ("recursive_list", "nan_and_infinities", "raising_repr", "huge_integers", "10MB_str"):
            yield HOSTILE[kind]()

    items = list(stream())
    assert len(items) == 5
    spans, _ = _spans_and_records(offline_dir, pipeline)
    tool = next(s for s in spans if s.name == "execute_tool stream")
    output = _check_output(tool.attributes)
    assert isinstance(output, list | str)


@fluxloop.agent(name="Several")
def several(a: int, b: Any, c: str) -> int:
    return a


def test_one_hostile_argument_does_not_hide_the_others(pipeline: Path, offline_dir: Path) -> None:
    assert several(1, RaisingGetattr(), "kept") == 1
    [span], [record] = _spans_and_records(offline_dir, pipeline)
    for kwargs in (_check_attribute(span.attributes["input.value"]), record["kwargs"]):
        assert kwargs["a"] == 1 and kwargs["c"] == "kept" and isinstance(kwargs["b"], str)


def test_recording_of_a_string_with_a_lone_surrogate_is_written(pipeline: Path, offline_dir: Path) -> None:
    value = "half a pair: \ud800"
    assert echo(value) is value
    spans, records = _spans_and_records(offline_dir, pipeline)
    _check_attribute(spans[0].attributes["input.value"])
    assert len(records) == 1 and records[0]["kwargs"]["value"].startswith("half a pair: ")


def test_recording_of_a_mapping_with_a_lone_surrogate_key_is_written(pipeline: Path, offline_dir: Path) -> None:
    value = {"half a pair: \ud800": 1}
    assert echo(value) is value
    spans, records = _spans_and_records(offline_dir, pipeline)
    _check_attribute(spans[0].attributes["input.value"])  # the span attribute copes
    assert len(records) == 1  # the recording does not


# --- fuzzing the one serializer -------------------------------------------------------------------------------------

LEAK = "LEAKED"  # every value under a sensitive key carries this; it must never reach the output


@dataclasses.dataclass
class Box:
    payload: Any
    api_key: str


class Credentials(pydantic.BaseModel):
    user: str
    password: str
    extra: Any = None


_text = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates included
_key_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # surrogate keys: their own test above
_secret = st.integers(0, 10**9).map(lambda n: f"s-{n}-{LEAK}")
_sensitive_key = st.sampled_from(["token", "api_key", "Password", "x-Auth-header", "client_secret", "CREDENTIAL",
                                  "KEY", "refresh_token"])
_key = _key_text | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False) | st.tuples(st.integers())
_leaf = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**200)
         | st.floats() | _text | st.binary(max_size=30) | st.datetimes() | st.uuids() | st.decimals()
         | st.builds(RaisingRepr) | st.builds(NonStrRepr) | st.builds(RaisingGetattr) | st.just(len))


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (st.lists(children, max_size=6) | st.tuples(children, children) | st.dictionaries(_key, children, max_size=6)
            | st.dictionaries(_sensitive_key, _secret | st.lists(_secret, max_size=3) | children, min_size=1,
                              max_size=3)
            | st.builds(Box, children, _secret) | st.builds(Credentials, user=_text, password=_secret, extra=children)
            | st.lists(children, max_size=3).map(RaisingIter))


values = st.recursive(_leaf | st.dictionaries(_sensitive_key, _secret, min_size=1), _containers, max_leaves=40)
# 300 examples each in CI (about 2 s); FLUXLOOP_FUZZ_EXAMPLES=20000 for a longer hunt.
_fuzz = settings(max_examples=int(os.environ.get("FLUXLOOP_FUZZ_EXAMPLES", "300")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow], database=None)


def _no_leak(text: str, masked: list[str]) -> None:
    assert LEAK not in text
    assert all(LEAK not in path for path in masked)


@_fuzz
@given(value=values, max_length=st.integers(64, 4_096))
def test_fuzz_dumps_attribute_never_raises_is_valid_json_and_never_leaks(value: Any, max_length: int) -> None:
    text, masked = dumps_attribute(value, max_length)
    strict_json(text)
    _no_leak(text, masked)
    assert len(text) <= max_length


@_fuzz
@given(value=values)
def test_fuzz_dumps_and_to_jsonable_never_raise_are_valid_json_and_never_leak(value: Any) -> None:
    raw, masked = dumps(value)
    strict_json(raw)
    _no_leak(raw.decode(), masked)
    data, masked = to_jsonable(value)
    text = json.dumps(data, allow_nan=False)  # plain JSON data: str keys, finite numbers
    _no_leak(text, masked)


_SHAPED = st.sampled_from(["sk-live-{}", "Bearer {}", "ghp_{}", "postgres://app:{}@db/x", "?api_key={}&x=1",
                           "password: {}", "Config(token='{}')"])


@_fuzz
@given(shape=_SHAPED, before=st.integers(0, 5_000), max_length=st.integers(64, 4_096), as_repr=st.booleans())
def test_fuzz_a_secret_anywhere_near_the_cut_never_leaks(shape: str, before: int, max_length: int,
                                                         as_repr: bool) -> None:
    secret = "Q" * 12 + "0123456789abcdefQQ"  # long enough for every shape; 12 Qs never appear elsewhere
    text = "w " * (before // 2) + shape.format(secret) + " end" * 50

    class Holder:
        def __repr__(self) -> str:
            return text

    out, _ = dumps_attribute({"note": Holder() if as_repr else text}, max_length)
    strict_json(out)
    assert "QQQQQQQQQQQQ0123" not in out and "0123456789abcdef" not in out
