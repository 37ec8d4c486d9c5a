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


# --- the masking rules (README "Masking") --------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["api_key", "apiKey", "X-API-Key", "APIKey", "auth_token", "accessToken",
                                 "refresh_token", "password", "dbPassword", "client_secret", "credentials",
                                 "Authorization", "set-cookie", "private_key", "token", "key", "oauth_token",
                                 "id_token", "token_type"])
def test_secret_keys_by_their_words(key: str) -> None:
    assert Masker().is_sensitive_key(key)


@pytest.mark.parametrize("key", ["author", "authored_by", "keyboard", "monkey", "tokenizer", "max_tokens",
                                 "prompt_tokens", "completion_tokens", "input_tokens", "cached_tokens",
                                 "completion_tokens_details", "token_count", "max_token", "total_token_usage",
                                 "gen_ai.usage.output_tokens", "llm.token_count.prompt", "keys", "monkeys"])
def test_names_that_only_contain_a_secret_word_are_not_secret(key: str) -> None:
    assert not Masker().is_sensitive_key(key)


@pytest.mark.parametrize(("text", "masked"), [
    ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer ***"),
    ("use sk-proj-abcdefghijklmnopqrstuvwx now", "use sk-*** now"),
    ("id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz", "id eyJ***"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIA***"),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_***"),
    ("redis://:s3cr3t@cache:6379/0", "redis://:***@cache:6379/0"),
    ("https://bob:hunter2@example.com/x", "https://bob:***@example.com/x"),
    ("GET /v1/items?api_key=abc123&limit=10", "GET /v1/items?api_key=***&limit=10"),
    ("login failed: password: hunter2 (user bob)", "login failed: password: *** (user bob)"),
    ("Config(api_key='abc', retries=3)", "Config(api_key='***', retries=3)"),
    ('{"client_secret": "abc", "max_tokens": 5}', '{"client_secret": "***", "max_tokens": 5}'),
    ("max_tokens=256 temperature: 0.2", "max_tokens=256 temperature: 0.2"),
    ("see https://example.com/a:b at 12:30", "see https://example.com/a:b at 12:30"),
    ("task-abcdefghijklmnopqrstuvwxyz", "task-abcdefghijklmnopqrstuvwxyz"),
])
def test_secret_shapes_in_text(text: str, masked: str) -> None:
    assert Masker().mask_text(text) == masked


def test_a_secret_straddling_the_cut_is_masked_before_the_cut() -> None:
    from fluxloop._masking import SCAN_MARGIN

    secret = "sk-live-" + "Z" * 40
    for offset in range(0, 60, 3):
        text = "x" * (1000 - offset) + " " + secret + " tail" * 100
        cut, _ = Masker().mask_bounded(text, 1000)
        assert "ZZZZ" not in cut and len(cut) <= 1000
    big = "y" * 10_000
    assert Masker().mask_bounded(big, 100) == ("y" * 100, 9_900)
    assert SCAN_MARGIN >= 64


def test_both_serializer_paths_mask_pairs_namedtuples_and_secret_keys() -> None:
    from typing import NamedTuple

    class Creds(NamedTuple):
        user: str
        password: str

    value = {"creds": Creds("bob", "pw1"), "headers": [("X-Api-Key", "k1")], "sk-abcdefghijklmnopqrstuv": 1}
    for text in (dumps_attribute(value, 10_000)[0], dumps(value)[0].decode()):
        assert json.loads(text) == {"creds": {"user": "bob", "password": "***"}, "headers": [["X-Api-Key", "***"]],
                                    "sk-***": 1}
