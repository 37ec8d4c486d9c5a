"""``fluxloop traces`` and ``fluxloop traces show`` on artifacts written by FluxLoop's real offline pipeline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import fluxloop
from fluxloop_otel_exporter import OfflineSpanExporter

from .conftest import Artifacts, run_on_terminal, subprocess_env, write_jobs

ANSI = "\x1b["
LIST_KEYS = {"trace_id", "root_name", "has_root", "service", "start", "start_unix_nano", "end_unix_nano",
             "duration_ms", "span_count", "error_count"}
SPAN_KEYS = {"span_id", "parent_span_id", "name", "observation_type", "kind", "depth", "start", "start_unix_nano",
             "end_unix_nano", "duration_ms", "status", "attributes", "events", "links", "resource", "scope", "source"}


def _table(out: str) -> list[list[str]]:
    lines = out.splitlines()
    assert lines[0].split() == ["TRACE", "ID", "START", "(UTC)", "DURATION", "SPANS", "ERRORS", "SERVICE", "ROOT"]
    return [line.split() for line in lines[1:]]


# --- listing -------------------------------------------------------------------------------------------------


def test_lists_traces_newest_first(cli, artifacts: Artifacts) -> None:
    result = cli("traces", "--dir", str(artifacts.directory))
    assert result.code == 0
    rows = _table(result.out)
    assert [row[0] for row in rows] == artifacts.trace_ids[::-1]
    # id, date, time, duration (value unit), spans, errors, service, root
    assert [(row[5], row[6], row[7], row[8]) for row in rows] == [
        ("4", "0", "cli-tests", "job"), ("5", "1", "cli-tests", "job"), ("4", "0", "cli-tests", "job")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", rows[0][1]) and re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", rows[0][2])
    assert rows[0][4] in ("µs", "ms", "s")
    assert result.err.strip() == f"3 traces (13 spans) in 1 file under {artifacts.directory}"
    assert ANSI not in result.out  # not a terminal


def test_dir_defaults_to_the_configured_offline_dir(cli, artifacts: Artifacts) -> None:
    fluxloop.reset_config()
    fluxloop.configure(offline_dir=str(artifacts.directory))
    assert [row[0] for row in _table(cli("traces").out)] == artifacts.trace_ids[::-1]


def test_limit_and_errors(cli, artifacts: Artifacts) -> None:
    limited = cli("traces", "--dir", str(artifacts.directory), "--limit", "1")
    assert [row[0] for row in _table(limited.out)] == [artifacts.trace_ids[2]]
    assert "showing the 1 newest (--limit 0 shows all)" in limited.err
    assert len(_table(cli("traces", "--dir", str(artifacts.directory), "--limit", "0").out)) == 3

    errors = cli("traces", "--dir", str(artifacts.directory), "--errors")
    assert [row[0] for row in _table(errors.out)] == [artifacts.trace_ids[1]]
    [failed] = [json.loads(line) for line in
                cli("traces", "--dir", str(artifacts.directory), "--errors", "--json").out.splitlines()]
    assert 0 < failed["span_count"] < 13  # the folder holds 13 spans: the note counts the listed trace's only
    assert errors.err.startswith(f"1 trace with errors ({failed['span_count']} spans)")


def test_json_lines(cli, artifacts: Artifacts) -> None:
    result = cli("traces", "--dir", str(artifacts.directory), "--json")
    assert result.code == 0
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert [row["trace_id"] for row in rows] == artifacts.trace_ids[::-1]
    assert all(set(row) == LIST_KEYS for row in rows)
    middle = rows[1]
    assert (middle["root_name"], middle["has_root"], middle["service"]) == ("job", True, "cli-tests")
    assert (middle["span_count"], middle["error_count"]) == (5, 1)
    assert middle["duration_ms"] == pytest.approx((middle["end_unix_nano"] - middle["start_unix_nano"]) / 1e6)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", middle["start"])
    assert rows[0]["start_unix_nano"] > rows[1]["start_unix_nano"] > rows[2]["start_unix_nano"]


def test_no_artifacts_is_not_an_error(cli, tmp_path: Path) -> None:
    for directory in (tmp_path / "missing", tmp_path):
        result = cli("traces", "--dir", str(directory))
        assert (result.code, result.out) == (0, "")
        assert result.err.strip() == f"fluxloop traces: no offline artifacts (*.jsonl) in {directory}"


def test_malformed_artifacts_are_reported_with_file_and_line(cli, artifacts: Artifacts) -> None:
    [good] = artifacts.files
    lines = good.read_bytes().splitlines(keepends=True)
    broken = artifacts.directory / "spans-zz-broken.jsonl"
    broken.write_bytes(lines[0] + b"this is not json\n" + b'{"resourceSpans": "nope"}\n' + b"[1, 2]\n"
                       + b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"short"}, 7]}]}]}\n'
                       + lines[1][:40])  # a writer stopped mid-line
    (artifacts.directory / "spans-zz-empty.jsonl").write_bytes(b"")

    result = cli("traces", "--dir", str(artifacts.directory), "--json")

    assert result.code == 0
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert [w.split(": ")[2] for w in warnings] == [f"{broken}:{n}" for n in (2, 3, 4, 5, 5, 6)]
    assert "invalid JSON" in warnings[0] and "not an OTLP ExportTraceServiceRequest" in warnings[1]
    assert "span skipped: bad traceId 'short'" in warnings[3] and "expected a span object" in warnings[4]
    assert "truncated last line" in warnings[5]
    # Line 1 of the broken file repeats spans already seen: they are counted again, nothing else changes.
    rows = {row["trace_id"]: row for row in map(json.loads, result.out.splitlines())}
    assert set(rows) == set(artifacts.trace_ids)


def test_traces_spread_over_many_files(cli, tmp_path: Path) -> None:
    directory = tmp_path / "rotating"
    ids = write_jobs(directory, ["weather in paris and rome"] * 3, batch_size=1, offline_max_file_bytes=1024)
    assert len(list(directory.glob("*.jsonl"))) >= 15  # one span per line, about one line per file

    listed = [json.loads(line) for line in cli("traces", "--dir", str(directory), "--json").out.splitlines()]
    assert [(row["trace_id"], row["span_count"]) for row in listed] == [(i, 5) for i in ids[::-1]]

    shown = json.loads(cli("traces", "show", ids[1], "--dir", str(directory), "--json").out)
    assert len(shown["spans"]) == 5 and {s["span_id"] for s in shown["spans"]} == {
        s["span_id"] for s in shown["spans"] if s["source"].startswith(str(directory))}


# --- show ----------------------------------------------------------------------------------------------------


def test_show_draws_the_span_tree(cli, artifacts: Artifacts) -> None:
    trace_id = artifacts.trace_ids[1]
    result = cli("traces", "show", trace_id, "--dir", str(artifacts.directory))
    assert result.code == 0 and result.err.count("warning") == 0
    lines = result.out.splitlines()
    assert lines[0] == f"trace {trace_id} · job"
    assert lines[1].startswith("service cli-tests · ") and lines[1].endswith(" · 5 spans · 1 error")
    assert lines[3].split()[:4] == ["SPAN", "TYPE", "DURATION", "STATUS"]
    rows = [line for line in lines[4:] if re.search(r"  (ok|ERROR)  ", line)]
    assert [re.split(r"\s{2,}", row.strip())[:2] for row in rows] == [
        ["job", "trace"],
        ["└─ invoke_agent Planner", "agent"],
        ["├─ chat gpt-test", "generation"],
        ["├─ execute_tool weather", "tool"],
        ["└─ execute_tool weather", "tool"],
    ]
    assert [" ERROR " in row for row in rows] == [False, False, False, True, False]
    text = result.out
    assert "│ user=u-1 session=s-1 tags=test" in text
    assert text.count("user=u-1") == 1  # inherited context is shown once, where it starts
    assert "model=gpt-test input_tokens=11 output_tokens=7" in text
    assert "tool=weather" in text
    assert "error: LookupError: no such city: atlantis" in text
    assert 'in  {"question":"weather in atlantis and paris"}' in text
    assert 'out ?, rain' in text  # text output is stored, and shown, as text


def test_show_waterfall_is_scaled_to_the_trace(cli, artifacts: Artifacts) -> None:
    out = cli("traces", "show", artifacts.trace_ids[1], "--dir", str(artifacts.directory)).out
    rows = [line for line in out.splitlines() if re.search(r"  (ok|ERROR)  ", line)]
    bars = [re.search(r"(?:ok    |ERROR )  ( *█+)$", row).group(1) for row in rows]  # type: ignore[union-attr]
    offsets = [len(bar) - len(bar.lstrip()) for bar in bars]
    ends = [len(bar) for bar in bars]
    assert offsets[0] == 0 and ends[0] == max(ends)  # the root spans the whole axis
    assert all(offsets[0] <= o and e <= ends[0] for o, e in zip(offsets, ends, strict=True))
    assert offsets[2] <= offsets[3] <= offsets[4]  # siblings in start order
    assert all(bar.strip() for bar in bars)  # even a 10 µs span gets one cell


def test_show_by_prefix_case_insensitive_and_newest_by_default(cli, artifacts: Artifacts) -> None:
    directory = str(artifacts.directory)
    first = artifacts.trace_ids[0]
    for prefix in (first[:12], first[:12].upper(), first):
        shown = json.loads(cli("traces", "show", prefix, "--dir", directory, "--json").out)
        assert shown["trace_id"] == first
    newest = json.loads(cli("traces", "show", "--dir", directory, "--json").out)
    assert newest["trace_id"] == artifacts.trace_ids[-1]
    # --dir and --json may also come before `show`
    assert json.loads(cli("traces", "--dir", directory, "--json", "show").out)["trace_id"] == artifacts.trace_ids[-1]


def test_show_unknown_and_ambiguous_prefixes_exit_1(cli, tmp_path: Path) -> None:
    directory = tmp_path / "many"
    ids = write_jobs(directory, ["weather in rome"] * 20)
    by_digit: dict[str, list[str]] = {}
    for trace_id in ids:
        by_digit.setdefault(trace_id[0], []).append(trace_id)
    shared = next(digit for digit, group in by_digit.items() if len(group) > 1)  # 20 ids, 16 digits

    ambiguous = cli("traces", "show", shared, "--dir", str(directory))
    assert (ambiguous.code, ambiguous.out) == (1, "")
    assert f"error: '{shared}' matches {len(by_digit[shared])} traces" in ambiguous.err
    assert sorted(by_digit[shared])[0] in ambiguous.err and "give more digits" in ambiguous.err

    unknown_prefix = next(c for c in "0123456789abcdef" if c not in by_digit) if len(by_digit) < 16 else None
    unknown = cli("traces", "show", unknown_prefix or "f" * 32, "--dir", str(directory))
    assert (unknown.code, unknown.out) == (1, "")
    assert "error: no trace id starts with" in unknown.err

    empty = cli("traces", "show", "--dir", str(tmp_path / "nothing"))
    assert empty.code == 1 and "error: no traces (no offline artifacts in" in empty.err


def test_show_json_is_the_whole_trace(cli, artifacts: Artifacts) -> None:
    trace_id = artifacts.trace_ids[1]
    shown = json.loads(cli("traces", "show", trace_id[:8], "--dir", str(artifacts.directory), "--json").out)
    assert set(shown) == LIST_KEYS | {"spans"}
    assert (shown["trace_id"], shown["span_count"], shown["error_count"]) == (trace_id, 5, 1)
    spans = shown["spans"]
    assert all(set(span) == SPAN_KEYS for span in spans)
    assert [(s["depth"], s["name"]) for s in spans] == [
        (0, "job"), (1, "invoke_agent Planner"), (2, "chat gpt-test"), (2, "execute_tool weather"),
        (2, "execute_tool weather")]
    ids = {s["span_id"]: s for s in spans}
    assert spans[0]["parent_span_id"] is None
    assert all(ids[s["parent_span_id"]]["depth"] == s["depth"] - 1 for s in spans[1:])
    chat, failed = spans[2], spans[3]
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 11  # OTLP intValue strings decoded
    assert chat["attributes"]["fluxloop.tags"] == ["test"]
    assert json.loads(chat["attributes"]["input.value"]) == {"question": "weather in atlantis and paris"}
    assert failed["status"] == {"code": "ERROR", "message": "no such city: atlantis"}
    assert [e["name"] for e in failed["events"]] == ["exception"]
    assert failed["events"][0]["attributes"]["exception.type"] == "LookupError"
    assert chat["status"]["code"] == "UNSET" and chat["kind"] == "client"
    assert chat["resource"]["service.name"] == "cli-tests" and chat["scope"]["name"] == "fluxloop"
    assert re.fullmatch(rf"{re.escape(str(artifacts.directory))}/spans-.*\.jsonl:\d+", chat["source"])


def test_span_text_cannot_drive_the_terminal(cli, tmp_path: Path) -> None:
    directory = tmp_path / "evil"
    fluxloop.configure(use_collector=False, offline_dir=str(directory))
    with fluxloop.instrument("evil\x1b[2Jname") as ctx:
        ctx.add_tag("\x1b]0;title\x07")
    assert fluxloop.flush(timeout=10)
    for argv in (["traces"], ["traces", "show"]):
        out = cli(*argv, "--dir", str(directory)).out
        assert "\x1b" not in out and "\x07" not in out
        assert "evil\\x1b[2Jname" in out


def _otel_spans(directory: Path, build) -> None:  # type: ignore[no-untyped-def]
    provider = TracerProvider(resource=Resource.create({"service.name": "raw-otel"}))
    provider.add_span_processor(SimpleSpanProcessor(OfflineSpanExporter(directory)))
    try:
        build(provider.get_tracer("tests.cli"))
    finally:
        provider.shutdown()


def test_deep_nesting_and_orphans(cli, tmp_path: Path) -> None:
    directory = tmp_path / "deep"

    def build(tracer: otel_trace.Tracer) -> None:
        parent = tracer.start_span("level-0")
        spans = [parent]
        for level in range(1, 2000):  # deeper than Python's recursion limit
            parent = tracer.start_span(f"level-{level}", context=otel_trace.set_span_in_context(parent))
            spans.append(parent)
        for span in reversed(spans):
            span.end()
        # A trace whose root was never written: its spans point at a parent that is not in the files.
        remote = otel_trace.SpanContext(0xABC, 0xDEF, is_remote=False,
                                        trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED))
        orphan_context = otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(remote))
        tracer.start_span("orphan-late", context=orphan_context, start_time=2_000).end(end_time=3_000)
        tracer.start_span("orphan-early", context=orphan_context, start_time=1_000).end(end_time=4_000)

    _otel_spans(directory, build)
    rows = {row["root_name"]: row for row in map(json.loads, cli("traces", "--dir", str(directory), "--json")
                                                 .out.splitlines())}
    assert rows["level-0"]["span_count"] == 2000 and rows["level-0"]["has_root"]
    assert rows["orphan-early"]["has_root"] is False and rows["orphan-early"]["span_count"] == 2
    assert "orphan-early (no root span)" in cli("traces", "--dir", str(directory)).out

    deep = cli("traces", "show", rows["level-0"]["trace_id"], "--dir", str(directory))
    assert deep.code == 0 and deep.out.count("└─ level-") == 1999
    orphans = json.loads(cli("traces", "show", "0" * 29 + "abc", "--dir", str(directory), "--json").out)
    assert [(s["name"], s["depth"]) for s in orphans["spans"]] == [("orphan-early", 0), ("orphan-late", 0)]


def test_show_renders_third_party_genai_spans(cli, tmp_path: Path) -> None:
    """Spans of other instrumentations (OpenInference, GenAI semantic conventions) get a type, model, tokens and
    input/output previews like FluxLoop's own."""
    directory = tmp_path / "third-party"

    def build(tracer: otel_trace.Tracer) -> None:
        with tracer.start_as_current_span("agent run", attributes={
                "openinference.span.kind": "AGENT", "input.value": "plan a trip"}):
            with tracer.start_as_current_span("ChatCompletion", attributes={
                    "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                    "llm.token_count.prompt": 12, "llm.token_count.completion": 5,
                    "input.value": '{"messages": [{"role": "user", "content": "plan a trip"}]}',
                    "output.value": "Go to Lisbon."}):
                pass
            with tracer.start_as_current_span("chat claude-haiku", kind=otel_trace.SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-haiku",
                    "gen_ai.usage.input_tokens": 9, "gen_ai.usage.output_tokens": 4,
                    "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "why?"}]}]',
                    "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", '
                                              '"content": "Because."}], "finish_reason": "stop"}]'}):
                pass
            with tracer.start_as_current_span("execute_tool weather", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather",
                    "gen_ai.tool.call.arguments": '{"city": "Lisbon"}', "gen_ai.tool.call.result": "sunny"}):
                pass

    _otel_spans(directory, build)
    shown = json.loads(cli("traces", "show", "--dir", str(directory), "--json").out)
    assert {span["name"]: span["observation_type"] for span in shown["spans"]} == {
        "agent run": "agent", "ChatCompletion": "generation", "chat claude-haiku": "generation",
        "execute_tool weather": "tool"}
    text = cli("traces", "show", "--dir", str(directory)).out
    assert re.search(r"ChatCompletion\s+generation", text) and re.search(r"execute_tool weather\s+tool", text)
    assert "model=gpt-4o input_tokens=12 output_tokens=5" in text, text
    assert "model=claude-haiku input_tokens=9 output_tokens=4" in text
    assert "in  plan a trip" in text and "out Go to Lisbon." in text
    assert 'in  [{"role": "user", "parts"' in text and "tool=weather" in text
    assert 'in  {"city": "Lisbon"}' in text and "out sunny" in text


# --- colors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("no_color", "colored"), [(None, True), ("1", False), ("", True)])
def test_colors_only_on_a_terminal_and_never_with_no_color(artifacts: Artifacts, no_color: str | None,
                                                           colored: bool) -> None:
    env = subprocess_env() if no_color is None else subprocess_env(NO_COLOR=no_color)
    for argv in (["traces"], ["traces", "show"], ["config"]):
        code, shown, _ = run_on_terminal(*argv, "--dir", str(artifacts.directory), env=env) if argv[0] == "traces" \
            else run_on_terminal(*argv, env=env)
        assert code == 0
        assert (ANSI in shown) is colored, (argv, shown)
    if colored:
        code, shown, _ = run_on_terminal("traces", "show", artifacts.trace_ids[1], "--dir",
                                         str(artifacts.directory), env=env)
        assert "\x1b[31mERROR " in shown  # the failed span's status in red
