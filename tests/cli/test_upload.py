"""``fluxloop upload`` against a real OTLP/HTTP endpoint on 127.0.0.1: each span delivered once, resumable."""

from __future__ import annotations

import collections
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from exporter._otlp_sink import DROP, OtlpSink, wait_for

import fluxloop
from fluxloop.cli._upload import LOCK_NAME, STATE_SUFFIX

from ._agents import run_job
from .conftest import Artifacts, run_on_terminal, subprocess_env, write_jobs

API_KEY = "sk-upload-test-0123456789abcdef"
SUMMARY_KEYS = {"endpoint", "files", "files_already_delivered", "requests", "lines", "spans", "malformed_lines",
                "unreadable_files", "rejected_spans", "quarantined_lines", "quarantined_spans", "pending_lines",
                "error", "ok"}


def _acked_span_ids(sink: OtlpSink) -> list[str]:
    """Span ids (hex) of every request the sink answered with 200, duplicates kept."""
    return [span.span_id.hex() for attempt in sink.delivered() for rs in attempt.request.resource_spans
            for ss in rs.scope_spans for span in ss.spans]


def _spans_per_request(sink: OtlpSink) -> list[int]:
    return [sum(len(ss.spans) for rs in a.request.resource_spans for ss in rs.scope_spans) for a in sink.attempts]


def _upload(cli, directory: Path, sink: OtlpSink, *extra: str):  # type: ignore[no-untyped-def]
    return cli("upload", "--dir", str(directory), "--collector-url", sink.url, *extra)


@pytest.fixture
def many_lines(tmp_path: Path) -> Artifacts:
    """Ten traces written one span per line (40 lines)."""
    directory = tmp_path / "many"
    return Artifacts(directory, write_jobs(directory, ["weather in paris"] * 10, batch_size=1))


def test_delivers_every_span_once_with_the_configured_auth(cli, artifacts: Artifacts, sink: OtlpSink,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXLOOP_API_KEY", API_KEY)  # the command reads the environment, as in its own process
    monkeypatch.setenv("FLUXLOOP_HEADERS", "x-team=blue")
    monkeypatch.setenv("FLUXLOOP_BATCH_SIZE", "3")  # as the artifacts were written: one request per line

    result = _upload(cli, artifacts.directory, sink)

    assert result.code == 0, result.err
    assert result.out.strip() == f"delivered 13 spans (5 lines, 5 requests) to {sink.url}/v1/traces"
    assert result.err == ""
    ids = _acked_span_ids(sink)
    assert sorted(ids) == sorted(artifacts.span_ids()) and len(ids) == 13
    for attempt in sink.attempts:
        assert attempt.path == "/v1/traces"
        assert attempt.headers["authorization"] == f"Bearer {API_KEY}"
        assert attempt.headers["x-team"] == "blue"
        assert attempt.headers["content-type"] == "application/x-protobuf"
        assert attempt.headers["content-encoding"] == "gzip"
    assert API_KEY not in result.out + result.err
    # The spans arrive as they were recorded: names, parents and attributes intact.
    names = collections.Counter(sink.delivered_span_names())
    assert names == {"job": 3, "invoke_agent Planner": 3, "chat gpt-test": 3, "execute_tool weather": 4}


def test_a_second_run_sends_nothing(cli, artifacts: Artifacts, sink: OtlpSink) -> None:
    assert _upload(cli, artifacts.directory, sink).code == 0
    sent = len(sink.attempts)

    again = _upload(cli, artifacts.directory, sink, "--json")

    assert again.code == 0
    assert len(sink.attempts) == sent
    summary = json.loads(again.out)
    assert set(summary) == SUMMARY_KEYS
    assert summary == {**summary, "files": 1, "files_already_delivered": 1, "requests": 0, "spans": 0, "ok": True}
    text = _upload(cli, artifacts.directory, sink)
    assert text.out.strip() == f"nothing new to upload: 1 of 1 files already delivered to {sink.url}/v1/traces"


def test_batch_size_merges_lines_up_to_n_spans(cli, artifacts: Artifacts, sink: OtlpSink) -> None:
    # The artifact holds lines of 3, 3, 3, 3 and 1 spans (FluxLoop's batch_size=3).
    assert _upload(cli, artifacts.directory, sink, "--batch-size", "6").code == 0
    assert _spans_per_request(sink) == [6, 6, 1]

    other = OtlpSink()
    try:
        assert _upload(cli, artifacts.directory, other, "--batch-size", "1").code == 0
        assert _spans_per_request(other) == [3, 3, 3, 3, 1]  # a line is never split
    finally:
        other.close()


def test_batch_size_defaults_to_the_configured_one(cli, artifacts: Artifacts, sink: OtlpSink,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXLOOP_BATCH_SIZE", "9")
    assert _upload(cli, artifacts.directory, sink).code == 0
    assert _spans_per_request(sink) == [9, 4]


def test_collector_url_defaults_to_the_configured_one(cli, artifacts: Artifacts, sink: OtlpSink,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{sink.url}/custom/v1/traces")
    fluxloop.reset_config()
    result = cli("upload", "--dir", str(artifacts.directory))
    assert result.code == 0
    assert {a.path for a in sink.attempts} == {"/custom/v1/traces"}


def test_a_growing_file_is_sent_line_by_line(cli, artifacts: Artifacts, sink: OtlpSink) -> None:
    assert _upload(cli, artifacts.directory, sink).code == 0
    first = set(_acked_span_ids(sink))

    run_job("weather in rome")  # the same process appends to the same artifact file
    assert fluxloop.flush(timeout=10)
    [artifact] = artifacts.files

    result = _upload(cli, artifacts.directory, sink)

    assert result.code == 0 and "delivered 4 spans" in result.out
    ids = _acked_span_ids(sink)
    assert len(ids) == len(set(ids)) == 17
    assert set(ids) - first == artifacts.span_ids() - first
    journal = [json.loads(line) for line in artifact.with_name(artifact.name + STATE_SUFFIX).read_text().splitlines()]
    assert sum(entry.get("spans", 0) for entry in journal) == 17


def test_an_incomplete_last_line_waits_for_its_end(cli, artifacts: Artifacts, sink: OtlpSink, tmp_path: Path) -> None:
    lines = artifacts.files[0].read_bytes().splitlines(keepends=True)
    live = tmp_path / "live"
    live.mkdir()
    artifact = live / "spans-live.jsonl"
    artifact.write_bytes(lines[0] + lines[1][:50])  # a writer is in the middle of line 2

    first = _upload(cli, live, sink, "--json")

    assert first.code == 0
    assert json.loads(first.out)["spans"] == 3 and json.loads(first.out)["pending_lines"] == 1
    assert f"{artifact}:2: incomplete last line" in first.err
    assert _spans_per_request(sink) == [3]

    with open(artifact, "ab") as handle:  # the writer finishes the line
        handle.write(lines[1][50:])
    second = _upload(cli, live, sink, "--json")

    assert second.code == 0 and second.err == ""
    assert json.loads(second.out)["spans"] == 3
    assert _spans_per_request(sink) == [3, 3]
    assert len(set(_acked_span_ids(sink))) == 6


def test_a_failed_batch_stops_the_run_and_the_next_run_resumes(cli, many_lines: Artifacts, sink: OtlpSink) -> None:
    sink.script.extend([200, 200, 200])
    sink.default = 500  # may pass later: the run stops at the fourth batch

    failed = _upload(cli, many_lines.directory, sink, "--batch-size", "4", "--json")

    assert failed.code == 1
    summary = json.loads(failed.out)
    assert (summary["spans"], summary["requests"], summary["ok"]) == (12, 3, False)
    assert summary["error"].startswith("HTTP 500")
    assert "stopped at" in failed.err and ":13: it and the lines after it stay for the next run" in failed.err
    assert len(sink.attempts) == 4

    sink.default = 200
    resumed = _upload(cli, many_lines.directory, sink, "--batch-size", "4", "--json")

    assert resumed.code == 0 and json.loads(resumed.out)["spans"] == 28
    ids = _acked_span_ids(sink)
    assert len(ids) == len(set(ids)) == 40
    assert set(ids) == many_lines.span_ids()


@pytest.mark.parametrize("batch_size", ["1", "4", "100"])
def test_a_line_refused_for_good_is_set_aside_and_the_rest_delivered(cli, many_lines: Artifacts, sink: OtlpSink,
                                                                      batch_size: str) -> None:
    # Found: a 413 / permanent 4xx for one spooled line stopped every run at that line, with any --batch-size:
    # nothing after it was ever delivered (0 of 220 after 3 runs).
    [artifact] = many_lines.files
    lines = artifact.read_bytes().splitlines(keepends=True)
    poison = lines[12]
    poisoned_ids = {span["spanId"] for rs in json.loads(poison)["resourceSpans"] for ss in rs["scopeSpans"]
                    for span in ss["spans"]}
    sink.reject = lambda request: any(span.span_id.hex() in poisoned_ids for rs in request.resource_spans
                                      for ss in rs.scope_spans for span in ss.spans)
    body = '{"error": "span rejected", "api_key": "sk-live-abcdef0123456789"}'
    sink.reject_answer = (400, body)

    for _ in range(3):
        result = _upload(cli, many_lines.directory, sink, "--batch-size", batch_size, "--json")
        summary = json.loads(result.out)
        if summary["quarantined_lines"]:
            first = (result, summary)
    result, summary = first
    assert result.code == 1 and summary["quarantined_lines"] == 1 and summary["quarantined_spans"] == 1
    assert "set aside" in result.err and "span rejected" in result.err and "HTTP 400" in result.err
    assert "sk-live" not in result.err + result.out  # the collector's body is shown masked
    ids = _acked_span_ids(sink)
    assert len(ids) == len(set(ids)) == 39 and set(ids) == many_lines.span_ids() - poisoned_ids
    quarantine = many_lines.directory / "quarantine"
    assert (quarantine / artifact.name).read_bytes() == poison
    [reason] = (quarantine / f"{artifact.name}.reasons").read_text().splitlines()
    assert json.loads(reason)["line"] == 13 and "HTTP 400" in json.loads(reason)["reason"]
    last = json.loads(_upload(cli, many_lines.directory, sink, "--json").out)
    assert (last["spans"], last["quarantined_lines"]) == (0, 0)  # set aside once, never retried


def test_delivery_state_is_keyed_by_content_not_line_number(cli, many_lines: Artifacts, sink: OtlpSink) -> None:
    # Found: removing an already delivered line by hand made the next run skip an undelivered one.
    [artifact] = many_lines.files
    every_span = many_lines.span_ids()
    lines = artifact.read_bytes().splitlines(keepends=True)
    artifact.write_bytes(b"".join(lines[:20]))
    assert _upload(cli, many_lines.directory, sink).code == 0
    artifact.write_bytes(b"".join(lines[1:]))  # the first (delivered) line removed, the rest appended
    assert _upload(cli, many_lines.directory, sink).code == 0
    ids = _acked_span_ids(sink)
    assert len(ids) == len(set(ids)) == 40 and set(ids) == every_span


def test_retryable_answers_are_retried(cli, artifacts: Artifacts, sink: OtlpSink) -> None:
    sink.script.extend([(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})])
    result = _upload(cli, artifacts.directory, sink, "--batch-size", "100")
    assert result.code == 0
    assert [a.action for a in sink.attempts] == [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"}), 200]
    assert len(_acked_span_ids(sink)) == 13


def test_collector_down_marks_nothing(cli, artifacts: Artifacts, sink: OtlpSink, refused_url: str) -> None:
    down = cli("upload", "--dir", str(artifacts.directory), "--collector-url", refused_url, "--timeout", "0.3")
    assert down.code == 1
    assert "Connection refused" in down.err and "stay for the next run" in down.err
    assert down.out == ""

    assert _upload(cli, artifacts.directory, sink).code == 0
    assert sorted(_acked_span_ids(sink)) == sorted(artifacts.span_ids())


def test_each_collector_gets_everything_once(cli, artifacts: Artifacts, sink: OtlpSink) -> None:
    other = OtlpSink()
    try:
        for target in (sink, other, sink, other):
            assert _upload(cli, artifacts.directory, target).code == 0
        assert sorted(_acked_span_ids(sink)) == sorted(_acked_span_ids(other)) == sorted(artifacts.span_ids())
    finally:
        other.close()


def test_malformed_lines_are_reported_once_and_skipped(cli, artifacts: Artifacts, sink: OtlpSink,
                                                       tmp_path: Path) -> None:
    lines = artifacts.files[0].read_bytes().splitlines(keepends=True)
    folder = tmp_path / "mixed"
    folder.mkdir()
    artifact = folder / "spans-mixed.jsonl"
    artifact.write_bytes(lines[0] + b"garbage\n" + b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":7}]}]}]}\n'
                         + lines[1])
    (folder / "spans-empty.jsonl").write_bytes(b"")

    first = _upload(cli, folder, sink, "--json")

    assert first.code == 1
    summary = json.loads(first.out)
    assert (summary["spans"], summary["malformed_lines"], summary["error"]) == (6, 2, None)
    assert f"{artifact}:2: invalid JSON" in first.err
    assert f"{artifact}:3: not a valid OTLP ExportTraceServiceRequest" in first.err

    second = _upload(cli, folder, sink, "--json")
    assert second.code == 0 and second.err == ""
    assert json.loads(second.out)["spans"] == 0
    assert len(_acked_span_ids(sink)) == 6


def test_an_unreadable_state_file_keeps_its_artifact_from_being_resent(cli, artifacts: Artifacts,
                                                                       sink: OtlpSink) -> None:
    [artifact] = artifacts.files
    state = artifact.with_name(artifact.name + STATE_SUFFIX)
    state.write_text("{not json")
    result = _upload(cli, artifacts.directory, sink)
    assert result.code == 1
    assert f"{state} is not a valid upload state" in result.err and "delete it to send" in result.err
    assert sink.attempts == []


def test_one_upload_at_a_time_per_folder(cli, artifacts: Artifacts, sink: OtlpSink) -> None:
    fd = os.open(artifacts.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = _upload(cli, artifacts.directory, sink)
    finally:
        os.close(fd)
    assert result.code == 1 and "another `fluxloop upload` is running" in result.err
    assert sink.attempts == []


def test_nothing_to_upload(cli, tmp_path: Path, sink: OtlpSink) -> None:
    result = _upload(cli, tmp_path / "none", sink)
    assert (result.code, result.out) == (0, "")
    assert "nothing to upload: no offline artifacts" in result.err


# --- interruptions -------------------------------------------------------------------------------------------


def _start_upload(directory: Path, sink: OtlpSink) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fluxloop", "upload", "--dir", str(directory), "--collector-url", sink.url,
         "--batch-size", "1", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_an_interrupted_upload_resumes_without_resending(cli, many_lines: Artifacts, sink: OtlpSink,
                                                         how: str) -> None:
    sink.script.extend([200] * 10)
    sink.default = DROP  # the 11th request gets no answer: the uploader is stuck retrying it when it is stopped
    process = _start_upload(many_lines.directory, sink)
    try:
        wait_for(lambda: len(sink.attempts) >= 11, timeout=30)
        process.send_signal(getattr(signal, how))
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    if how == "SIGINT":
        assert process.returncode == 130
        assert "interrupted after delivering 10 spans (recorded)" in err
    else:
        assert process.returncode == -signal.SIGKILL

    sink.default = 200
    resumed = _upload(cli, many_lines.directory, sink, "--json")

    assert resumed.code == 0 and json.loads(resumed.out)["spans"] == 30
    ids = _acked_span_ids(sink)
    assert len(ids) == len(set(ids)) == 40  # acknowledged exactly once each
    assert set(ids) == many_lines.span_ids()
    assert json.loads(_upload(cli, many_lines.directory, sink, "--json").out)["spans"] == 0


# --- terminal ------------------------------------------------------------------------------------------------


def test_progress_bar_only_on_a_terminal(many_lines: Artifacts, sink: OtlpSink) -> None:
    argv = ["upload", "--dir", str(many_lines.directory), "--collector-url", sink.url, "--batch-size", "1"]
    code, terminal, stdout = run_on_terminal(*argv, env=subprocess_env(), stream="stderr")
    assert code == 0, terminal
    assert "uploading [" in terminal and "spans sent" in terminal
    assert terminal.endswith("\r\x1b[K")  # the bar is erased at the end
    assert stdout.startswith("delivered 40 spans")

    sink2 = OtlpSink()
    try:
        piped = subprocess.run([sys.executable, "-m", "fluxloop", *argv[:-4], "--collector-url", sink2.url],
                               capture_output=True, text=True, env=subprocess_env(), timeout=60, check=False)
    finally:
        sink2.close()
    assert piped.returncode == 0
    assert piped.stderr == "" and "\r" not in piped.stdout


def test_a_state_of_the_previous_format_is_honoured(cli, many_lines: Artifacts, sink: OtlpSink) -> None:
    # An artifact delivered by an earlier version (line numbers in <artifact>.delivered.json) is not sent again.
    [artifact] = many_lines.files
    lines = artifact.read_bytes().splitlines()
    sent_before = {span["spanId"] for line in lines[:25] for rs in json.loads(line)["resourceSpans"]
                   for ss in rs["scopeSpans"] for span in ss["spans"]}
    legacy = {"version": 1, "artifact": artifact.name,
              "destinations": {f"{sink.url}/v1/traces": {"line": 25, "spans": 25, "complete": None}}}
    artifact.with_name(artifact.name + ".delivered.json").write_text(json.dumps(legacy))
    result = _upload(cli, many_lines.directory, sink, "--json")
    assert result.code == 0 and json.loads(result.out)["spans"] == 15
    assert set(_acked_span_ids(sink)) == many_lines.span_ids() - sent_before
    assert json.loads(_upload(cli, many_lines.directory, sink, "--json").out)["spans"] == 0
