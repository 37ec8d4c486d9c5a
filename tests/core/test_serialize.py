"""The one serializer: rules shared by span attributes and recordings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid

import pydantic
import pytest

from fluxloop._masking import Masker
from fluxloop._serialize import callable_marker, dumps, dumps_attribute, to_jsonable


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    token: str


class Model(pydantic.BaseModel):
    name: str
    password: str


def test_values_convert() -> None:
    value = {
        "s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "list": [1, (2, 3)], "set": {4},
        "dt": dt.datetime(2025, 9, 30, 14, 30), "date": dt.date(2025, 1, 2), "enum": Color.RED,
        "uuid": uuid.UUID(int=1), "dc": Point(1, "t"), "model": Model(name="n", password="p"),
        "bytes": b"\x00\x01", 1: "int key", None: "none key",
    }
    data, masked = to_jsonable(value)
    assert data["dt"] == "2025-09-30T14:30:00" and data["date"] == "2025-01-02"
    assert data["enum"] == "red" and data["uuid"] == str(uuid.UUID(int=1))
    assert data["dc"] == {"x": 1, "token": "***"}
    assert data["model"] == {"name": "n", "password": "***"}
    assert data["bytes"] == "<repr:" + repr(b"\x00\x01") + ">"
    assert data["1"] == "int key" and data["null"] == "none key"
    assert data["list"] == [1, [2, 3]] and data["set"] == [4]
    assert sorted(masked) == ["dc.token", "model.password"]


def test_fast_and_slow_paths_agree() -> None:
    value = {"a": [1, 2.5, "x", None, True], 3: {"d": dt.datetime(2024, 5, 6, 7, 8, 9)}, "c": Color.RED}
    fast, masked = dumps_attribute(value, 10_000)
    slow, _ = dumps(value)
    assert masked == [] and json.loads(fast) == json.loads(slow)


@pytest.mark.parametrize("key", ["token", "auth_token", "PASSWORD", "client_secret", "api_key", "Authorization",
                                 "aws_credentials", "x-api-KEY"])
def test_sensitive_keys_are_masked_at_any_depth(key: str) -> None:
    value = {"outer": [{"inner": {key: "s3cr3t-value"}}]}
    text, masked = dumps_attribute(value, 10_000)
    assert "s3cr3t-value" not in text
    assert json.loads(text)["outer"][0]["inner"][key] == "***"
    assert masked == [f"outer[0].inner.{key}"]


def test_token_like_text_is_masked() -> None:
    text, _ = dumps_attribute({"note": "call with Bearer abcdefghijklmnop and sk-proj-ABCDEFGHIJKLMNOPQRST12"}, 10_000)
    assert "abcdefghijklmnop" not in text and "ABCDEFGHIJKLMNOPQRST12" not in text
    assert "Bearer ***" in text and "sk-***" in text


def test_user_patterns_and_mask_function() -> None:
    masker = Masker(["^ssn$"], mask_function=lambda key, value: f"<{key} hidden>")
    text, masked = dumps_attribute({"ssn": "123-45-6789", "ssn_hint": "ok", "password": "p"}, 10_000, masker)
    assert json.loads(text) == {"ssn": "<ssn hidden>", "ssn_hint": "ok", "password": "<password hidden>"}
    assert sorted(masked) == ["password", "ssn"]


def test_callable_markers() -> None:
    class Collector:
        def __init__(self) -> None:
            self.messages: list = []

        def __call__(self, m: object) -> None:
            self.messages.append(m)

    class Errors:
        def __init__(self) -> None:
            self.errors: list = []

        def __call__(self, e: object) -> None:
            self.errors.append(e)

    def builtin() -> None: ...
    builtin.__fluxloop_builtin__ = "ws.send"  # type: ignore[attr-defined]

    def custom_fn() -> None: ...

    assert callable_marker(Collector()) == "<builtin:collector.send>"
    assert callable_marker(Errors()) == "<builtin:collector.error>"
    assert callable_marker(builtin) == "<builtin:ws.send>"
    assert callable_marker(custom_fn).startswith("<callable:") and "custom_fn" in callable_marker(custom_fn)
    assert to_jsonable({"cb": custom_fn})[0]["cb"] == callable_marker(custom_fn)


def test_hostile_values_never_raise() -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    class BadIter(list):
        def __iter__(self):
            raise RuntimeError("no iter")

    deep: list = []
    cur = deep
    for _ in range(1000):
        cur.append([])
        cur = cur[0]
    cyc: dict = {}
    cyc["self"] = cyc
    value = {"bad": BadRepr(), "iter": BadIter([1]), "deep": deep, "cyc": cyc, "big": 10**40, "nan": math.nan,
             "inf": -math.inf, "gen": (i for i in range(3)), (1, 2): "tuple key"}
    text, _ = dumps_attribute(value, 100_000)
    data = json.loads(text)
    assert data["bad"] == "<unrepresentable BadRepr>"
    assert data["cyc"] == {"self": "<cycle>"}
    assert data["big"] == str(10**40) and data["nan"] is None and data["inf"] is None
    assert data["gen"].startswith("<repr:<generator object")
    assert "(1, 2)" in data
    assert "<max depth>" in text
    line, _ = dumps(value)
    json.loads(line)


def test_repr_of_unknown_objects_is_cut_to_100_characters() -> None:
    class Long:
        def __repr__(self) -> str:
            return "L" * 500

    data, _ = to_jsonable({"v": Long()})
    assert data["v"] == "<repr:" + "L" * 100 + ">"


def test_truncation_keeps_valid_json_with_a_marker() -> None:
    text, _ = dumps_attribute({"a": "x" * 50_000, "b": list(range(10_000))}, 2_000)
    assert len(text) <= 2_100
    data = json.loads(text)
    assert "truncated" in json.dumps(data)


def test_bound_methods_of_one_collector_object_get_send_and_error_markers() -> None:
    class Connection:
        def __init__(self) -> None:
            self.messages: list = []
            self.errors: list = []

        def send(self, m: object) -> None: ...

        def send_error(self, e: object) -> None: ...

    conn = Connection()
    assert callable_marker(conn.send) == "<builtin:collector.send>"
    assert callable_marker(conn.send_error) == "<builtin:collector.error>"
