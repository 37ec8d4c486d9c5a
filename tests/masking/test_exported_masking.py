"""Issue 15's masking findings, each read back from the offline artifacts (and recordings) FluxLoop wrote.

Counts are not secrets; the key rule looks at key words; secret shapes are masked in every text FluxLoop writes:
I/O, metadata, tags, user and session ids, span and ``instrument()`` names, exceptions, recordings."""

from __future__ import annotations

import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import fluxloop
from fluxloop import _attributes as attr

from .conftest import Exported, artifact_text, as_json, by_name

SK = "sk-live-" + uuid.uuid4().hex  # an OpenAI-style key, unique to this run
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJzdWIiOiJ1c2VyLTEyMyIsImV4cCI6MTk5OTk5OTk5OX0."
       + uuid.uuid4().hex + "Ab")
PASSWORD = "pw-" + uuid.uuid4().hex
BEARER = "tok" + uuid.uuid4().hex


class Settings(NamedTuple):
    endpoint: str
    api_key: str


def test_token_counts_are_never_masked_in_spans_or_recordings(exported: Callable[[], list[Exported]],
                                                              tmp_path: Path) -> None:
    recording = tmp_path / "args.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(recording))

    @fluxloop.agent(name="Counter")
    def chat(request: dict[str, Any]) -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 12, "completion_tokens": 7, "input_tokens": 12, "output_tokens": 7,
                          "completion_tokens_details": {"reasoning_tokens": 3}, "token_count": 19},
                "auth_token": "t-" + uuid.uuid4().hex}

    chat({"model": "m", "max_tokens": 256, "max_completion_tokens": 100, "api_key": SK})
    [span] = exported()
    arguments = as_json(span.attributes[attr.INPUT_VALUE])["request"]
    assert arguments == {"model": "m", "max_tokens": 256, "max_completion_tokens": 100, "api_key": "***"}
    output = as_json(span.attributes[attr.OUTPUT_VALUE])
    assert output["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "input_tokens": 12, "output_tokens": 7,
                               "completion_tokens_details": {"reasoning_tokens": 3}, "token_count": 19}
    assert output["auth_token"] == "***"
    # masked_paths names exactly what was masked: no count among them.
    assert sorted(span.attributes[attr.MASKED_PATHS]) == ["input.request.api_key", "output.auth_token"]
    [record] = [as_json(line) for line in recording.read_text().splitlines()]
    assert record["kwargs"]["request"] == arguments
    assert SK not in artifact_text(tmp_path)


def test_the_key_rule_reads_words_not_substrings(exported: Callable[[], list[Exported]]) -> None:
    @fluxloop.tool
    def save(record: dict[str, str]) -> None:
        return None

    plain = {"author": "Ann", "keyboard": "qwerty", "monkey": "George", "authored_by": "Bob", "tokenizer": "bpe"}
    secret = {"api_key": "a1", "apiKey": "a2", "auth_token": "a3", "password": "a4", "client_secret": "a5",
              "credentials": "a6", "authorization": "a7", "X-API-Key": "a8", "accessToken": "a9"}
    save({**plain, **secret})
    [span] = exported()
    assert as_json(span.attributes[attr.INPUT_VALUE])["record"] == {**plain, **dict.fromkeys(secret, "***")}
    assert sorted(span.attributes[attr.MASKED_PATHS]) == sorted(f"input.record.{k}" for k in secret)


def test_ids_tags_names_and_metadata_are_masked_in_the_artifacts(exported: Callable[[], list[Exported]],
                                                                offline_dir: Path) -> None:
    @fluxloop.trace(name=f"fetch with {SK}")
    def fetch() -> str:
        return "ok"

    with fluxloop.instrument(f"job for Bearer {BEARER}", session_id=JWT, user_id=SK,
                             tags=[f"Bearer {BEARER}", "nightly"]) as ctx:
        ctx.add_metadata("dsn", f"postgres://app:{PASSWORD}@db.internal:5432/main")
        ctx.add_metadata("callback", f"https://hooks.example.com/x?api_key={PASSWORD}&mode=1")
        fetch()
    spans = exported()
    assert {s.name for s in spans} == {"job for Bearer ***", "fetch with sk-***"}
    for span in spans:
        assert span.attributes[attr.USER_ID] == "sk-***"
        assert span.attributes[attr.SESSION_ID] == "eyJ***"
        assert span.attributes[attr.TAGS] == ["Bearer ***", "nightly"]
        assert span.attributes[attr.METADATA_PREFIX + "dsn"] == "postgres://app:***@db.internal:5432/main"
        assert span.attributes[attr.METADATA_PREFIX + "callback"] == "https://hooks.example.com/x?api_key=***&mode=1"
    text = artifact_text(offline_dir)
    assert all(secret not in text for secret in (SK, JWT, BEARER, PASSWORD))


def test_serializer_leaks_are_closed(exported: Callable[[], list[Exported]], offline_dir: Path) -> None:
    hex_key = uuid.uuid4().hex

    class CutRepr:
        def __repr__(self) -> str:  # the 100-character cut falls inside the key
            return "CutRepr(" + "x" * 74 + f", api_key='sk-live-{hex_key}')"

    @fluxloop.tool
    def connect(settings: Settings, lookup: dict[str, int], headers: list[tuple[str, str]],
                ns: types.SimpleNamespace, cut: CutRepr, url: str) -> str:
        return "connected"

    connect(Settings("https://api", SK), {SK: 1}, [("Authorization", f"Token {BEARER}"), ("X-Api-Key", PASSWORD),
                                                    ("Accept", "application/json")],
            types.SimpleNamespace(api_key=PASSWORD, region="eu"), CutRepr(),
            f"https://svc.example.com/v1?token={BEARER}&q=1")
    [span] = exported()
    arguments = as_json(span.attributes[attr.INPUT_VALUE])
    assert arguments["settings"] == {"endpoint": "https://api", "api_key": "***"}  # an object, not a bare list
    assert arguments["lookup"] == {"sk-***": 1}
    assert arguments["headers"] == [["Authorization", "***"], ["X-Api-Key", "***"], ["Accept", "application/json"]]
    assert "api_key='***'" in arguments["ns"] and "region='eu'" in arguments["ns"]
    assert hex_key[:8] not in arguments["cut"]
    assert arguments["url"] == "https://svc.example.com/v1?token=***&q=1"
    text = artifact_text(offline_dir)
    assert all(secret not in text for secret in (SK, BEARER, PASSWORD, hex_key[:8]))


def test_the_serializer_fallback_masks_its_repr() -> None:
    from fluxloop._serialize import dumps_attribute, to_jsonable

    class Meta(type):
        @property
        def model_fields(cls) -> Any:  # pydantic detection raises: the walk gives up on this value
            raise RuntimeError("hostile class")

    class Hostile(metaclass=Meta):
        def model_dump(self) -> dict[str, Any]:
            return {}

        def __repr__(self) -> str:
            return f"Hostile(api_key={SK})"

    value, _ = to_jsonable(Hostile())
    assert value == "Hostile(api_key=***)"
    text, _ = dumps_attribute(Hostile(), 1000)
    assert SK not in text


def test_exception_messages_and_stack_traces_are_masked(exported: Callable[[], list[Exported]],
                                                        offline_dir: Path) -> None:
    @fluxloop.tool
    def login() -> None:
        try:
            raise ConnectionError(f"cannot reach postgres://svc:{PASSWORD}@db:5432")
        except ConnectionError as exc:
            raise PermissionError(f"login failed; password: {PASSWORD} rejected (key {SK})") from exc

    with pytest.raises(PermissionError):
        login()
    [span] = exported()
    assert span.status_message == "login failed; password: *** rejected (key sk-***)"
    [event] = span.events
    assert event["attributes"]["exception.message"] == span.status_message
    stack = event["attributes"]["exception.stacktrace"]
    assert "postgres://svc:***@db:5432" in stack and "The above exception was the direct cause" in stack
    assert PASSWORD not in artifact_text(offline_dir) and SK not in artifact_text(offline_dir)


def test_a_mask_function_and_patterns_reach_third_party_attributes(exported: Callable[[], list[Exported]]) -> None:
    from opentelemetry import trace

    fluxloop.configure(mask_patterns=[r"^ssn$"], mask_function=lambda key, value: f"<{key} hidden>")
    with fluxloop.instrument("job"):
        with trace.get_tracer("acme.http").start_as_current_span("GET /customer") as span:
            span.set_attribute("ssn", "123-45-6789")
            span.set_attribute("http.request.header.authorization", ["Basic dXNlcjpwYXNz"])
    spans = exported()
    acme = by_name(spans, "GET /customer")
    assert acme.attributes["ssn"] == "<ssn hidden>"
    assert acme.attributes["http.request.header.authorization"] == ["<http.request.header.authorization hidden>"]
