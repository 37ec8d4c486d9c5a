"""Round trip: real calls of an @agent handler are recorded, replayed, and behave the same."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import fluxloop
from fluxloop.cli import main
from fluxloop.replay import load_records, replay_file, select_records

from . import sample_agents
from ._helpers import M


class Ready:
    """Returned by the callbacks below: awaitable (like a websocket send) and harmless when not awaited."""

    def __await__(self):
        return iter(())


class Sent:
    """A real send callback (it has a ``messages`` list, so it is recorded as ``<builtin:collector.send>``)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, message: Any) -> Any:
        self.messages.append(message)
        return Ready()


class Failed:
    def __init__(self) -> None:
        self.errors: list[Any] = []

    def __call__(self, error: Any) -> Any:
        self.errors.append(error)
        return Ready()


CALLS = [
    ("ws-1", {"content": "hello there"}, {"user_id": "u1", "plan": "free"}),
    ("ws-2", {"content": "one two three", "meta": {"lang": "en", "tags": ["a", "b"]}}, {"user_id": "u2"}),
    ("ws-3", {"content": ""}, {"user_id": "u3"}),
    ("ws-4", {"content": "secret stuff"}, {"user_id": "u4", "auth_token": "tok-live-123"}),
]


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, list[tuple[Any, ...]], list[tuple[list, list]]]:
    """Record real handler calls; return the file, what the handler received and what it sent."""
    path = tmp_path / "agent_args.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(path))
    sample_agents.RECEIVED.clear()
    handler = sample_agents.MessageHandler()
    sent = []
    for connection_id, data, user in CALLS:
        send, fail = Sent(), Failed()
        asyncio.run(handler.handle_message(connection_id, data, user, send, fail))
        sent.append((send.messages, fail.errors))
    received = list(sample_agents.RECEIVED)
    fluxloop.disable_recording()
    sample_agents.RECEIVED.clear()
    return path, received, sent


def unmask(value: Any, original: Any) -> Any:
    """``value`` with the ``***`` the recording put in place of secrets swapped back to the originals."""
    if value == "***":
        return original
    if isinstance(value, dict):
        return {k: unmask(v, original.get(k)) for k, v in value.items()}
    return value


def test_one_record_per_call_with_the_handlers_own_target(recorded) -> None:
    path, _, _ = recorded
    lines = load_records(path)
    assert len(lines) == 2 * len(CALLS)  # per call: the automatic record at span start, then the handler's own
    records = select_records(lines, all_records=True)
    assert [(r.target, r.iteration, r.line) for r in records] == [
        (f"{M}:MessageHandler.handle_message", i, 2 * i + 2) for i in range(len(CALLS))]
    assert "tok-live-123" not in path.read_text()


def test_replayed_handler_receives_equal_arguments_and_sends_the_same(recorded) -> None:
    path, received, sent = recorded
    results = replay_file(path, all_records=True)
    assert [r.ok for r in results] == [True] * len(CALLS), [r.error for r in results]
    replayed = sample_agents.RECEIVED
    assert len(replayed) == len(received)
    for (cid, data, user), (rcid, rdata, ruser) in zip(received, replayed):
        assert (rcid, rdata) == (cid, data)
        assert unmask(ruser, user) == user
    for result, (messages, errors) in zip(results, sent):
        assert result.messages == messages
        assert result.errors == errors
    assert results[2].errors == [{"connection_id": "ws-3", "error": "empty message"}]
    assert results[3].masked == ["user_connection.auth_token"]
    assert [r.masked for r in results[:3]] == [[], [], []]


def test_round_trip_through_the_command_line(recorded, capsys: pytest.CaptureFixture[str]) -> None:
    path, _, sent = recorded
    assert main(["replay", str(path), "--all", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["messages"], row["errors"]) for row in rows] == [(m, e) for m, e in sent]


def test_round_trip_of_an_automatically_recorded_sync_agent(tmp_path: Path) -> None:
    path = tmp_path / "router.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(path))
    sample_agents.RECEIVED.clear()
    router = sample_agents.Router()
    outputs, sent = [], []
    for text, options in [("hello", {}), ("a1", {"strict": True}), ("x y", {"strict": False, "depth": 2})]:
        reply, fail = Sent(), Failed()
        outputs.append(router.route(text, options, reply, fail))
        sent.append((reply.messages, fail.errors))
    received = list(sample_agents.RECEIVED)
    fluxloop.disable_recording()
    sample_agents.RECEIVED.clear()

    results = replay_file(path, all_records=True)
    assert {r.record.target for r in results} == {f"{M}:Router.route"}
    assert [r.output for r in results] == outputs
    assert [(r.messages, r.errors) for r in results] == sent
    assert sample_agents.RECEIVED == received


def test_round_trip_with_one_connection_object_for_messages_and_errors(tmp_path: Path) -> None:
    class Connection:
        def __init__(self) -> None:
            self.messages: list[Any] = []
            self.errors: list[Any] = []

        def send(self, message: Any) -> Ready:
            self.messages.append(message)
            return Ready()

        def error(self, error: Any) -> Ready:
            self.errors.append(error)
            return Ready()

    path = tmp_path / "conn.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(path))
    conn = Connection()
    asyncio.run(sample_agents.MessageHandler().handle_message("ws-9", {"content": ""}, {}, conn.send, conn.error))
    fluxloop.disable_recording()
    [result] = replay_file(path)
    assert (result.messages, result.errors) == (conn.messages, conn.errors)
