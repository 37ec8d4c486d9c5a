"""OfflineSpanExporter and the offline-file reader: line format, rotation, concurrency (threads, real processes)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from fluxloop_otel_exporter import OfflineSpanExporter, encode_spans_json, iter_offline_files, read_requests

FILE_NAME = re.compile(r"^spans-\d{8}T\d{6}-(\d+)-(\d{6})\.jsonl$")


def all_lines(directory: Path) -> list[bytes]:
    return [line for path in iter_offline_files(directory) for line in path.read_bytes().splitlines()]


def open_fds_under(directory: Path) -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            targets.append(target)
    return targets


def test_one_line_per_export_in_the_design_format(tmp_path: Path, make_spans) -> None:
    folder = tmp_path / "offline"
    exporter = OfflineSpanExporter(folder)
    assert not folder.exists()  # created lazily
    spans = make_spans(3, name="tool", **{"fluxloop.observation.type": "tool", "tokens": 12, "score": 0.5})
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
    exporter.shutdown()

    [path] = iter_offline_files(folder)
    assert FILE_NAME.match(path.name) and FILE_NAME.match(path.name).group(1) == str(os.getpid())
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 2
    request = orjson.loads(data.splitlines()[0])
    assert list(request) == ["resourceSpans"]
    [resource_spans] = request["resourceSpans"]
    assert set(resource_spans) == {"resource", "scopeSpans"}
    service = {"key": "service.name", "value": {"stringValue": "exporter-tests"}}
    assert service in resource_spans["resource"]["attributes"]
    [scope_spans] = resource_spans["scopeSpans"]
    assert scope_spans["scope"] == {"name": "tests.exporter", "version": "1.0"}
    span, source = scope_spans["spans"][0], spans[0]
    assert set(span) == {"traceId", "spanId", "flags", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
                         "attributes", "status"}
    assert span["traceId"] == format(source.context.trace_id, "032x")
    assert span["spanId"] == format(source.context.span_id, "016x")
    assert span["startTimeUnixNano"] == str(source.start_time) and span["endTimeUnixNano"] == str(source.end_time)
    assert span["name"] == "tool-0" and span["kind"] == 1
    values = {kv["key"]: kv["value"] for kv in span["attributes"]}
    assert values == {"fluxloop.observation.type": {"stringValue": "tool"}, "tokens": {"intValue": "12"},
                      "score": {"doubleValue": 0.5}, "index": {"intValue": "0"}}


def test_rotates_by_size_and_keeps_export_order(tmp_path: Path, make_spans) -> None:
    batches = [make_spans(2, name=f"batch{i}") for i in range(10)]
    line_size = len(encode_spans_json(batches[0])) + 1
    exporter = OfflineSpanExporter(tmp_path, max_file_bytes=3 * line_size + 10)
    for batch in batches:
        assert exporter.export(batch) is SpanExportResult.SUCCESS
    exporter.shutdown()
    files = iter_offline_files(tmp_path)
    assert len(files) == 4  # 3 + 3 + 3 + 1 lines
    assert all(p.stat().st_size <= 3 * line_size + 10 for p in files)
    requests = [orjson.loads(line) for line in all_lines(tmp_path)]
    names = [r["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] for r in requests]
    assert names == [f"batch{i}-0" for i in range(10)]


def test_a_request_larger_than_the_limit_gets_a_file_of_its_own(tmp_path: Path, make_spans) -> None:
    exporter = OfflineSpanExporter(tmp_path, max_file_bytes=100)
    for _ in range(3):
        assert exporter.export(make_spans(2)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    files = iter_offline_files(tmp_path)
    assert len(files) == 3 and all(p.read_bytes().count(b"\n") == 1 for p in files)


def _write_from_child(exporter: OfflineSpanExporter, batches: list[list[ReadableSpan]]) -> None:
    # Runs in a forked child: the inherited exporter must open files of its own.
    ok = all(exporter.export(batch) is SpanExportResult.SUCCESS for batch in batches)
    exporter.shutdown()
    os._exit(0 if ok else 3)


def test_threads_and_processes_share_a_folder_without_losing_or_mixing_lines(tmp_path: Path, make_spans) -> None:
    per_writer = 40
    exporter = OfflineSpanExporter(tmp_path, max_file_bytes=16 * 1024)
    batches = {f"w{w}-{i}": make_spans(3, name=f"w{w}-{i}", payload="x" * 200)
               for w in range(12) for i in range(per_writer)}
    assert exporter.export(batches["w0-0"]) is SpanExportResult.SUCCESS  # the parent has a file open at fork

    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_write_from_child,
                                args=(exporter, [batches[f"w{w}-{i}"] for i in range(per_writer)]))
                for w in range(8, 12)]
    for child in children:
        child.start()

    def write(w: int) -> None:
        for i in range(1 if w == 0 else 0, per_writer):
            assert exporter.export(batches[f"w{w}-{i}"]) is SpanExportResult.SUCCESS

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    exporter.shutdown()

    seen: list[str] = []
    for line in all_lines(tmp_path):
        request = orjson.loads(line)  # every line is complete, valid JSON
        spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
        prefixes = {s["name"].rsplit("-", 1)[0] for s in spans}
        assert len(spans) == 3 and len(prefixes) == 1  # never two batches mixed in one line
        seen.append(prefixes.pop())
    assert sorted(seen) == sorted(batches)  # none lost, none duplicated
    pids = {FILE_NAME.match(p.name).group(1) for p in iter_offline_files(tmp_path)}
    assert pids == {str(os.getpid())} | {str(child.pid) for child in children}


def test_shutdown_closes_files_is_idempotent_and_later_exports_fail(tmp_path: Path, make_spans) -> None:
    exporter = OfflineSpanExporter(tmp_path, max_file_bytes=300)
    for _ in range(3):
        exporter.export(make_spans(1))
    assert len(open_fds_under(tmp_path)) == 1  # rotated files were closed, the current one is open
    exporter.shutdown()
    exporter.shutdown()
    assert open_fds_under(tmp_path) == [] and exporter.current_file is None
    assert exporter.export(make_spans(1)) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True


def test_write_errors_fail_the_export_without_raising(tmp_path: Path, make_spans, caplog) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    exporter = OfflineSpanExporter(blocker / "spool")
    with caplog.at_level(logging.ERROR, logger="fluxloop.exporter"):
        assert exporter.export(make_spans(1)) is SpanExportResult.FAILURE
        assert exporter.export(make_spans(1)) is SpanExportResult.FAILURE
        assert exporter.export([object()]) is SpanExportResult.FAILURE  # not a span: encoding fails
    assert len([r for r in caplog.records if r.name == "fluxloop.exporter"]) == 1  # rate-limited
    exporter.shutdown()


@pytest.mark.parametrize("options", [{"max_file_bytes": 0}, {"max_file_bytes": -1}, {"file_prefix": ""},
                                     {"file_prefix": "a/b"}])
def test_rejects_bad_options(tmp_path: Path, options) -> None:
    with pytest.raises(ValueError):
        OfflineSpanExporter(tmp_path, **options)


def test_reader_survives_garbage_truncation_and_empty_files(tmp_path: Path, make_spans) -> None:
    good = encode_spans_json(make_spans(2))
    path = tmp_path / "spans-1.jsonl"
    path.write_bytes(good + b"\n" + good + b"\n" + b"\x00garbage{\n" + b"[1, 2]\n" + b"\n" + good[:-7])
    results = list(read_requests(path))
    assert [(n, r is not None, e is None) for n, r, e in results] == [
        (1, True, True), (2, True, True), (3, False, False), (4, False, False), (6, False, False)]
    assert results[0][1] == orjson.loads(good)
    assert "invalid JSON" in results[2][2]
    assert "not an OTLP" in results[3][2]
    assert "truncated" in results[4][2]

    empty = tmp_path / "spans-0.jsonl"
    empty.write_bytes(b"")
    assert list(read_requests(empty)) == []
    [(number, request, error)] = list(read_requests(tmp_path / "missing.jsonl"))
    assert number == 0 and request is None and "cannot open" in error


def test_reader_is_lazy(tmp_path: Path, make_spans) -> None:
    good = encode_spans_json(make_spans(1))
    path = tmp_path / "big.jsonl"
    with path.open("wb") as handle:
        for _ in range(2000):
            handle.write(good + b"\n")
    reader = read_requests(path)
    number, request, error = next(reader)
    assert (number, error) == (1, None) and request is not None
    reader.close()  # stopping early closes the file
    assert open_fds_under(tmp_path) == []


def test_iter_offline_files_lists_jsonl_files_sorted(tmp_path: Path) -> None:
    assert iter_offline_files(tmp_path / "nowhere") == []
    for name in ("spans-20250102T000000-1-000001.jsonl", "spans-20250101T000000-9-000002.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub.jsonl").mkdir()
    assert [p.name for p in iter_offline_files(tmp_path)] == [
        "spans-20250101T000000-9-000002.jsonl", "spans-20250102T000000-1-000001.jsonl"]
