"""What the original fluxloop 0.1.8's recording tests check, against this package: each file is read right after
the call returns (no flush, as those tests do), through configure()/reset_config() as they drive it."""

from __future__ import annotations

import json
import types
from pathlib import Path

import fluxloop
from fluxloop import _runtime


def start(path: Path | None, record_args: bool = True) -> None:
    fluxloop.reset_config()
    fluxloop.set_recording_options(iteration_auto_increment=True)
    options: dict = {"record_args": record_args}
    if path is not None:
        options["recording_file"] = str(path)
    fluxloop.configure(debug=False, **options)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_plain_values_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)
    fluxloop.record_call_args(target="tests.sample:handler", connection_id="abc123", attempt=1)
    [record] = lines(path)
    assert record["target"] == "tests.sample:handler"
    assert record["kwargs"] == {"connection_id": "abc123", "attempt": 1}


def test_a_callable_with_messages_becomes_the_send_marker(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)

    def send_message(_: str) -> None: ...

    send_message.messages = []  # type: ignore[attr-defined]
    fluxloop.record_call_args(target="tests.sample:handler", send_message_callback=send_message)
    assert lines(path)[0]["kwargs"]["send_message_callback"] == "<builtin:collector.send>"


def test_sensitive_keys_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)
    fluxloop.record_call_args(target="tests.sample:handler", auth_token="secret-token", password="p@ssw0rd")
    assert lines(path)[0]["kwargs"] == {"auth_token": "***", "password": "***"}
    assert "secret-token" not in path.read_text()


def test_a_mapping_subclass_is_a_dict_with_nested_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)

    class CustomMapping(dict):
        pass

    fluxloop.record_call_args(target="tests.sample:handler", user_connection=CustomMapping(
        user_id="user-123", project_id="project-456", nested={"token": "secret", "count": 2}))
    assert lines(path)[0]["kwargs"]["user_connection"] == {
        "user_id": "user-123", "project_id": "project-456", "nested": {"token": "***", "count": 2}}


def test_iterations_count_per_target(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)
    fluxloop.record_call_args(target="tests.sample:handler")
    fluxloop.record_call_args(target="tests.sample:handler")
    fluxloop.record_call_args(target="tests.other:handler")
    assert [r["iteration"] for r in lines(path)] == [0, 1, 0]


def test_an_explicit_iteration_sets_where_counting_continues(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)
    fluxloop.record_call_args(target="tests.sample:handler", iteration=5)
    fluxloop.record_call_args(target="tests.sample:handler")
    assert [r["iteration"] for r in lines(path)] == [5, 6]


def test_configure_record_args_false_stops_writing(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)
    fluxloop.record_call_args(target="tests.sample:handler", value="first")
    start(None, record_args=False)
    fluxloop.record_call_args(target="tests.sample:handler", value="second")
    assert [r["kwargs"]["value"] for r in lines(path)] == ["first"]


def test_a_plain_object_is_a_repr_marker(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    start(path)

    class Connection:
        def __repr__(self) -> str:
            return "Connection(" + "c" * 200 + ")"

    fluxloop.record_call_args(target="tests.sample:handler", conn=Connection(), when=b"\x00")
    kwargs = lines(path)[0]["kwargs"]
    assert kwargs["conn"] == "<repr:" + ("Connection(" + "c" * 200)[:100] + ">"
    assert kwargs["when"] == "<repr:b'\\x00'>"


def test_max_tokens_is_a_count_not_a_secret_and_round_trips(tmp_path: Path) -> None:
    """Counts are not secrets (DESIGN §4). The masking rule itself belongs to the LLM-clients work (_masking.py)."""
    path = tmp_path / "args.jsonl"
    start(path)
    fluxloop.record_call_args(target="tests.sample:handler", max_tokens=256, prompt_tokens=12, api_token="t")
    kwargs = lines(path)[0]["kwargs"]
    assert kwargs["api_token"] == "***"
    assert kwargs["max_tokens"] == 256 and kwargs["prompt_tokens"] == 12


def test_get_config_tells_the_truth_about_recording(tmp_path: Path) -> None:
    path = tmp_path / "args.jsonl"
    assert fluxloop.enable_recording(path) == str(path)
    config = fluxloop.get_config()
    assert config.record_args is True and config.recording_file == str(path)
    fluxloop.disable_recording()
    assert fluxloop.get_config().record_args is False
    assert not fluxloop.recording.is_recording()
    fluxloop.reset_config()
    fluxloop.configure(record_args=True)  # no file: the timestamped default, kept by later configure() calls
    default = fluxloop.get_config().recording_file
    try:
        assert default is not None and default.startswith("/tmp/fluxloop_args_") and default.endswith(".jsonl")
        assert fluxloop.recording.recording_path() == default and Path(default).exists()
        fluxloop.configure(service_name="other")
        assert fluxloop.get_config().recording_file == default
    finally:
        fluxloop.reset_config()
        Path(default or "/nonexistent").unlink(missing_ok=True)


def test_recording_state_lives_in_the_runtime() -> None:
    recorder = _runtime.RUNTIME.recorder
    fluxloop.configure(record_args=False)
    assert recorder.active is False
    public = {name for name, value in vars(fluxloop.recording).items()
              if not name.startswith(("_", "@")) and not isinstance(value, types.ModuleType)}
    assert public - {"annotations", "Any"} == set(fluxloop.recording.__all__)
    for hook in ("ACTIVE", "on_agent_start", "on_agent_end", "apply_config", "set_masker", "reset", "flush",
                 "shutdown", "suppressed", "stats"):
        assert not hasattr(fluxloop.recording, hook), hook
