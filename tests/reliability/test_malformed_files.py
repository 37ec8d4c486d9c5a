"""Hostile input 9: malformed offline artifacts and recordings (a truncated last line, garbage, empty files). The CLI
reports file and line, and carries on with the rest."""

from __future__ import annotations

import functools

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runner import Run, run_cli

import fluxloop

from ._harness import OtlpSink, assert_each_once, delivered_spans, offline_spans

pytestmark = pytest.mark.reliability


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``cli("traces", "--json")``: run the command line in this process; its exit code, stdout and stderr."""
    return functools.partial(run_cli, capsys)


@fluxloop.trace(name="job")
def job(i: int) -> int:
    return i


@dataclass
class Folder:
    path: Path
    good_span_ids: set[str]
    good_trace_ids: set[str]
    bad: list[tuple[str, int]]  # (file name, line) of every unreadable line


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    """Artifacts written by the real pipeline, then damaged: garbage between good lines, a truncated last line,
    binary noise, a JSON line that is no request, an empty file and a file of blank lines."""
    source = tmp_path / "source"
    fluxloop.configure(use_collector=False, offline_dir=str(source), batch_size=2)
    for i in range(12):
        job(i)
    assert fluxloop.flush(timeout=10)
    fluxloop.reset_config()
    [artifact] = source.glob("*.jsonl")
    lines = artifact.read_bytes().splitlines(keepends=True)
    assert len(lines) == 6  # six requests of two spans

    damaged = tmp_path / "artifacts"
    damaged.mkdir()
    (damaged / "a-good.jsonl").write_bytes(lines[0] + lines[1])
    (damaged / "b-garbage.jsonl").write_bytes(lines[2] + b"this is not json\n" + b"\x00\xff\xfe\x01 binary\n"
                                              + b'{"resourceSpans": "nope"}\n' + b"[1, 2, 3]\n" + lines[3])
    (damaged / "c-truncated.jsonl").write_bytes(lines[4] + lines[5][: len(lines[5]) // 2])
    (damaged / "d-empty.jsonl").write_bytes(b"")
    (damaged / "e-blank.jsonl").write_bytes(b"\n\n   \n")
    good_lines = [lines[0], lines[1], lines[2], lines[3], lines[4]]
    good = [span for line in good_lines for rs in json.loads(line)["resourceSpans"]
            for ss in rs["scopeSpans"] for span in ss["spans"]]
    return Folder(damaged, {s["spanId"] for s in good}, {s["traceId"] for s in good},
                  [("b-garbage.jsonl", 2), ("b-garbage.jsonl", 3), ("b-garbage.jsonl", 4), ("b-garbage.jsonl", 5),
                   ("c-truncated.jsonl", 2)])


def _reports(err: str, folder: Folder) -> None:
    for name, line in folder.bad:
        assert re.search(rf"{re.escape(name)}:{line}\b", err), f"{name}:{line} not reported in:\n{err}"


def test_traces_reports_each_bad_line_and_lists_every_good_trace(cli: Callable[..., Run], folder: Folder) -> None:
    run = cli("traces", "--dir", str(folder.path), "--json", "--limit", "0")
    assert run.code == 0
    listed = {json.loads(line)["trace_id"] for line in run.out.splitlines()}
    assert listed == folder.good_trace_ids  # lines after a garbage line were read too
    _reports(run.err, folder)
    # A trace whose line comes after the garbage is shown whole.
    after_garbage = sorted(folder.good_trace_ids)[0]
    show = cli("traces", "--dir", str(folder.path), "show", after_garbage, "--json")
    assert show.code == 0 and json.loads(show.out)["trace_id"] == after_garbage


def test_upload_reports_each_bad_line_and_delivers_every_good_span_once(cli: Callable[..., Run], folder: Folder,
                                                                        sink: OtlpSink) -> None:
    run = cli("upload", "--dir", str(folder.path), "--collector-url", sink.url)
    assert run.code == 1  # the run carried on, and says that some lines could not be sent
    _reports(run.err, folder)
    delivered = assert_each_once(delivered_spans(sink))
    assert set(delivered) == folder.good_span_ids
    again = cli("upload", "--dir", str(folder.path), "--collector-url", sink.url)
    assert again.code == 0
    assert len(delivered_spans(sink)) == len(delivered)  # nothing twice


def test_offline_reader_reports_and_continues(folder: Folder) -> None:
    # The library reader the CLI builds on: (line, None, why) for a bad line, never an exception.
    from fluxloop_otel_exporter import read_requests

    results = list(read_requests(folder.path / "b-garbage.jsonl"))
    assert [(n, r is None) for n, r, _ in results] == [(1, False), (2, True), (3, True), (4, True), (5, True),
                                                      (6, False)]
    assert list(read_requests(folder.path / "d-empty.jsonl")) == []
    assert {s.span_id for s in offline_spans(folder.path / "missing")} == set()


# --- recordings ---------------------------------------------------------------------------------------------------


@fluxloop.agent(name="Replayed")
def replayed(text: str) -> str:
    return text.upper()


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """A recording of three calls by the real recorder, then damaged: garbage in the middle, a truncated last line."""
    path = tmp_path / "calls.jsonl"
    fluxloop.configure(record_args=True, recording_file=str(path))
    for text in ("one", "two", "three"):
        replayed(text)
    fluxloop.reset_config()
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    path.write_bytes(lines[0] + b"garbage, not a record\n" + lines[1] + lines[2] + lines[2][:40])
    return path


def test_replay_names_the_file_and_line_of_a_malformed_record(cli: Callable[..., Run], recording: Path) -> None:
    run = cli("replay", str(recording), "--all")
    assert run.code == 1
    assert f"{recording}:2: malformed record" in run.err


def test_replay_of_an_empty_recording_says_so(cli: Callable[..., Run], tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    run = cli("replay", str(empty), "--all")
    assert run.code == 1 and f"no records in {empty}" in run.err


def test_replay_reports_malformed_lines_and_replays_the_rest(cli: Callable[..., Run], recording: Path) -> None:
    run = cli("replay", str(recording), "--all", "--json")
    assert f"{recording}:2:" in run.err and f"{recording}:5:" in run.err
    results = [json.loads(line) for line in run.out.splitlines()]
    assert [r["status"] for r in results] == ["ok", "ok", "ok"]
    assert [r["output"] for r in results] == ["ONE", "TWO", "THREE"]
