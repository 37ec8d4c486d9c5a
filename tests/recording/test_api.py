"""The recording API of the seed README: enable/disable, options, record_call_args, configure() and env vars."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from pathlib import Path

import pytest

import fluxloop
from fluxloop import _runtime, recording
from fluxloop.recording import enable_recording, record_call_args

from ._helpers import read_records

KEYS = ["_version", "iteration", "target", "kwargs", "timestamp"]  # the seed's line; ids only inside a span


def test_seed_unit_test(tmp_path: Path) -> None:
    output_file = tmp_path / "test.jsonl"
    enable_recording(str(output_file))
    record_call_args(target="test:function", arg1="value", arg2=123)
    assert output_file.exists()
    [rec] = read_records(output_file)
    assert rec["kwargs"] == {"arg1": "value", "arg2": 123}


def test_importable_from_fluxloop_and_fluxloop_recording() -> None:
    for name in ("enable_recording", "disable_recording", "set_recording_options", "record_call_args"):
        assert getattr(fluxloop, name) is getattr(recording, name)


def test_enable_returns_absolute_path_and_creates_file_and_directory(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = enable_recording(Path("sub") / "dir" / "r.jsonl")
    assert path == str(tmp_path / "sub" / "dir" / "r.jsonl")
    assert Path(path).exists()  # before any record
    assert recording.is_recording() and fluxloop.get_config().record_args
    assert fluxloop.get_config().recording_file == path
    assert recording.recording_path() == path
    assert os.stat(path).st_mode & 0o077 == 0  # call arguments: owner-only


def test_default_path_is_timestamped_under_tmp() -> None:
    path = enable_recording()
    try:
        assert re.fullmatch(r"/tmp/fluxloop_args_\d{8}_\d{6}\.jsonl", path), path
        assert Path(path).exists()
    finally:
        fluxloop.disable_recording()
        os.unlink(path)


def test_line_format(rec_file: Path) -> None:
    enable_recording(rec_file)
    record_call_args(target="pkg.mod:Handler.method", payload={"text": "hi"}, n=1)
    [rec] = read_records(rec_file)
    assert list(rec) == KEYS
    assert rec["_version"] == "1"
    assert rec["iteration"] == 0
    assert rec["target"] == "pkg.mod:Handler.method"
    assert rec["kwargs"] == {"payload": {"text": "hi"}, "n": 1}
    stamp = dt.datetime.fromisoformat(rec["timestamp"])
    assert stamp.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 60


def test_explicit_record_inside_a_span_carries_its_ids(rec_file: Path) -> None:
    enable_recording(rec_file)
    with fluxloop.instrument("job") as ctx:
        record_call_args(target="m:f", x=1)
    [rec] = read_records(rec_file)
    assert (rec["trace_id"], rec["span_id"]) == (ctx.trace_id, ctx.span_id)


def test_seed_recording_api_block(rec_file: Path) -> None:
    fluxloop.configure(record_args=True, recording_file=str(rec_file))
    fluxloop.enable_recording(str(rec_file))
    fluxloop.record_call_args(target="module:Handler.method", payload={"text": "hi"})
    fluxloop.set_recording_options(iteration_auto_increment=False)
    fluxloop.record_call_args(target="module:Handler.method", iteration=42, payload={"text": "bye"})
    fluxloop.disable_recording()
    records = read_records(rec_file)
    assert [(r["iteration"], r["kwargs"]) for r in records] == [(0, {"payload": {"text": "hi"}}),
                                                               (42, {"payload": {"text": "bye"}})]
    assert not recording.is_recording()


# -- iterations ---------------------------------------------------------------------------------------------------
def test_iterations_count_per_target_from_zero(rec_file: Path) -> None:
    enable_recording(rec_file)
    for target in ["a:f", "b:g", "a:f", "a:f", "b:g"]:
        record_call_args(target=target)
    got = [(r["target"], r["iteration"]) for r in read_records(rec_file)]
    assert got == [("a:f", 0), ("b:g", 0), ("a:f", 1), ("a:f", 2), ("b:g", 1)]


def test_explicit_iteration_sets_the_base(rec_file: Path) -> None:
    enable_recording(rec_file)
    record_call_args(target="a:f", iteration=5)
    record_call_args(target="a:f")
    record_call_args(target="a:f", iteration=2)
    record_call_args(target="a:f")
    assert [r["iteration"] for r in read_records(rec_file)] == [5, 6, 2, 3]


def test_auto_increment_off_gives_explicit_value_or_zero(rec_file: Path) -> None:
    enable_recording(rec_file)
    record_call_args(target="a:f")
    fluxloop.set_recording_options(iteration_auto_increment=False)
    record_call_args(target="a:f")
    record_call_args(target="a:f", iteration=7)
    record_call_args(target="a:f")
    fluxloop.set_recording_options()  # None leaves the option as it is
    record_call_args(target="a:f")
    fluxloop.set_recording_options(iteration_auto_increment=True)
    record_call_args(target="a:f")  # counting resumes where auto-increment left it
    assert [r["iteration"] for r in read_records(rec_file)] == [0, 0, 7, 0, 0, 1]


def test_reset_config_resets_counters_and_options(rec_file: Path, tmp_path: Path) -> None:
    enable_recording(rec_file)
    record_call_args(target="a:f")
    record_call_args(target="a:f")
    fluxloop.set_recording_options(iteration_auto_increment=False)
    fluxloop.reset_config()
    assert not recording.is_recording()
    second = tmp_path / "second.jsonl"
    enable_recording(second)
    record_call_args(target="a:f")
    record_call_args(target="a:f")
    assert [r["iteration"] for r in read_records(second)] == [0, 1]


def test_counters_survive_disable_and_enable(rec_file: Path) -> None:
    enable_recording(rec_file)
    record_call_args(target="a:f")
    fluxloop.disable_recording()
    record_call_args(target="a:f")  # not recorded, not counted
    enable_recording(rec_file)
    record_call_args(target="a:f")
    assert [r["iteration"] for r in read_records(rec_file)] == [0, 1]


# -- on / off -----------------------------------------------------------------------------------------------------
def test_nothing_is_written_when_recording_is_off(tmp_path: Path) -> None:
    record_call_args(target="a:f", x=1)
    assert not recording.is_recording() and recording.recording_path() is None
    assert _runtime.RUNTIME.recorder.stats()["written"] == 0
    assert not list(tmp_path.rglob("*.jsonl"))


def test_disable_writes_pending_and_stops(rec_file: Path) -> None:
    enable_recording(rec_file)
    for i in range(100):
        record_call_args(target="a:f", i=i)
    fluxloop.disable_recording()
    assert len(rec_file.read_text().splitlines()) == 100  # on disk without a flush
    record_call_args(target="a:f", i=100)
    assert len(read_records(rec_file)) == 100
    fluxloop.disable_recording()  # idempotent


def test_enable_again_switches_files(tmp_path: Path) -> None:
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    enable_recording(first)
    record_call_args(target="a:f", n=1)
    enable_recording(second)
    record_call_args(target="a:f", n=2)
    assert [r["kwargs"]["n"] for r in read_records(first)] == [1]
    assert [r["kwargs"]["n"] for r in read_records(second)] == [2]


def test_enabling_an_existing_file_appends(rec_file: Path) -> None:
    rec_file.write_text('{"_version":"1","iteration":0,"target":"old:f","kwargs":{},"timestamp":"x"}\n')
    enable_recording(rec_file)
    record_call_args(target="a:f")
    assert [r["target"] for r in read_records(rec_file)] == ["old:f", "a:f"]


def test_enable_with_an_impossible_path_raises_oserror_and_changes_nothing(rec_file: Path,
                                                                          tmp_path: Path) -> None:
    enable_recording(rec_file)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        enable_recording(blocker / "sub.jsonl")
    record_call_args(target="a:f")
    assert len(read_records(rec_file)) == 1


def test_configure_enables_and_disables(rec_file: Path) -> None:
    fluxloop.configure(record_args=True, recording_file=str(rec_file))
    assert recording.is_recording() and rec_file.exists()
    record_call_args(target="a:f")
    fluxloop.configure(record_args=False)
    assert not recording.is_recording()
    record_call_args(target="a:f")
    assert len(read_records(rec_file)) == 1


def test_configure_without_file_uses_one_default_file() -> None:
    fluxloop.configure(record_args=True)
    path = recording.recording_path()
    try:
        assert path is not None and re.fullmatch(r"/tmp/fluxloop_args_\d{8}_\d{6}\.jsonl", path)
        fluxloop.configure(record_args=True)  # same default file, not a new one each call
        assert recording.recording_path() == path
    finally:
        fluxloop.reset_config()
        os.unlink(path)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, rec_file: Path) -> None:
    monkeypatch.setenv("FLUXLOOP_RECORD_ARGS", "true")
    monkeypatch.setenv("FLUXLOOP_RECORDING_FILE", str(rec_file))
    fluxloop.reset_config()
    assert recording.recording_path() == str(rec_file)
    record_call_args(target="a:f")
    assert len(read_records(rec_file)) == 1


def test_configure_with_unwritable_file_logs_and_does_not_raise(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        fluxloop.configure(record_args=True, recording_file=str(blocker / "r.jsonl"))
    assert not recording.is_recording()
    assert any("cannot open recording file" in r.getMessage() for r in caplog.records)
    record_call_args(target="a:f")  # still harmless


def test_flush_and_shutdown(rec_file: Path) -> None:
    enable_recording(rec_file)
    record_call_args(target="a:f")
    assert fluxloop.flush(timeout=5) is True
    assert _runtime.RUNTIME.recorder.stats()["written"] == 1
    fluxloop.shutdown(timeout=5)
    assert not recording.is_recording()
    assert len(rec_file.read_text().splitlines()) == 1
    fluxloop.shutdown(timeout=5)  # idempotent


# -- serialization (the shared serializer's rules, as they land in a record) --------------------------------------
def test_markers_masking_and_truncation(rec_file: Path) -> None:
    class Send:
        def __init__(self) -> None:
            self.messages: list = []

        def __call__(self, m: object) -> None: ...

    class Err:
        def __init__(self) -> None:
            self.errors: list = []

        def __call__(self, e: object) -> None: ...

    def builtin() -> None: ...
    builtin.__fluxloop_builtin__ = "llm.complete"  # type: ignore[attr-defined]

    def custom_fn() -> None: ...

    class Opaque:
        def __repr__(self) -> str:
            return "O" * 500

    enable_recording(rec_file)
    record_call_args(
        target="m:f", send=Send(), err=Err(), llm=builtin, cb=custom_fn, obj=Opaque(),
        auth_token="t", API_KEY="k", nested={"deep": [{"Password": "p", "ok": 1}], "credentials": {"a": 1}},
        text="hello",
    )
    [rec] = read_records(rec_file)
    kw = rec["kwargs"]
    assert kw["send"] == "<builtin:collector.send>"
    assert kw["err"] == "<builtin:collector.error>"
    assert kw["llm"] == "<builtin:llm.complete>"
    assert kw["cb"].startswith("<callable:") and kw["cb"].endswith("custom_fn>")
    assert kw["obj"] == "<repr:" + "O" * 100 + ">"  # the original's form
    assert kw["auth_token"] == "***" and kw["API_KEY"] == "***"
    assert kw["nested"] == {"deep": [{"Password": "***", "ok": 1}], "credentials": "***"}
    assert kw["text"] == "hello"
    assert "\"t\"" not in rec_file.read_text()


def test_configured_mask_patterns_apply(rec_file: Path) -> None:
    fluxloop.configure(record_args=True, recording_file=str(rec_file), mask_patterns=["ssn"])
    record_call_args(target="m:f", user={"ssn": "123-45-6789", "name": "a"})
    [rec] = read_records(rec_file)
    assert rec["kwargs"]["user"] == {"ssn": "***", "name": "a"}


def test_arguments_are_captured_at_call_time(rec_file: Path) -> None:
    enable_recording(rec_file)
    data = {"items": [1]}
    record_call_args(target="m:f", data=data)
    data["items"].append(2)
    data["new"] = True
    [rec] = read_records(rec_file)
    assert rec["kwargs"]["data"] == {"items": [1]}


def test_hostile_values_never_raise(rec_file: Path) -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    class BadMapping(dict):
        def items(self):  # type: ignore[override]
            raise RuntimeError("no items")

    cyclic: list = []
    cyclic.append(cyclic)
    enable_recording(rec_file)
    record_call_args(target="m:f", bad=BadRepr(), mapping=BadMapping(a=1), cyclic=cyclic, big=10**40,
                     nan=float("nan"), raw=b"\x00\xff", key_obj={(1, 2): "tuple key"})
    record_call_args(target=None, iteration="three", x=1)  # type: ignore[arg-type]
    record_call_args(target="m:f", iteration=-1)
    records = read_records(rec_file)
    assert len(records) == 3
    assert records[0]["kwargs"]["bad"].startswith("<unrepresentable")
    assert records[1]["target"] == "None" and records[1]["iteration"] == 0
    assert records[2]["iteration"] == 1


def test_mask_function_that_raises_still_masks(rec_file: Path) -> None:
    def broken(key: str, value: object) -> object:
        raise ValueError("boom")

    fluxloop.configure(record_args=True, recording_file=str(rec_file), mask_function=broken)
    record_call_args(target="m:f", password="hunter2")
    [rec] = read_records(rec_file)
    assert rec["kwargs"]["password"] == "***"


def test_mask_patterns_configured_later_apply_to_a_running_recording(rec_file: Path) -> None:
    enable_recording(rec_file)
    fluxloop.configure(mask_patterns=["ssn"])
    record_call_args(target="m:f", ssn="123-45-6789")
    [rec] = read_records(rec_file)
    assert rec["kwargs"]["ssn"] == "***"
