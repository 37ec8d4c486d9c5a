"""The testing kit: capture_spans() and the fluxloop_spans fixture keep spans in memory, deterministically."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import fluxloop
from fluxloop.testing import CapturedSpans, capture_spans


@fluxloop.tool
def lookup(key: str) -> str:
    return key.upper()


@fluxloop.agent(name="bot")
def bot(q: str) -> str:
    return lookup(q)


def _run(code: str, cwd: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_", "PYTEST_"))}
    base.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=base, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_capture_in_a_fresh_process_touches_nothing_outside_memory(tmp_path, refused_url) -> None:
    # The defaults: collector on, offline files in ./fluxloop_artifacts. Capturing must use neither.
    proc = _run("""
        import threading, fluxloop
        from fluxloop.testing import capture_spans
        @fluxloop.agent(name="bot")
        def bot(q): return q
        with capture_spans() as spans:
            bot("hi")
        print(spans.names, threading.active_count())
    """, cwd=str(tmp_path), FLUXLOOP_COLLECTOR_URL=refused_url)
    assert proc.returncode == 0, proc.stderr
    # No export worker thread was ever started, so no collector attempt; nothing written; nothing logged.
    assert proc.stdout.split("]")[0] + "]" == "['invoke_agent bot']"
    assert proc.stdout.split()[-1] == "1"
    assert list(tmp_path.iterdir()) == []
    assert proc.stderr == ""


def test_spans_go_to_memory_only_while_capturing_then_to_the_pipeline(tmp_path) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "out"), use_collector=False)
    with capture_spans() as spans:
        bot("a")
    assert fluxloop.flush(timeout=10)
    assert spans.names == ["execute_tool lookup", "invoke_agent bot"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    bot("b")  # after the block: the pipeline again
    assert fluxloop.flush(timeout=10)
    assert fluxloop.get_stats()["exported"] == 2
    assert spans.names == ["execute_tool lookup", "invoke_agent bot"]


def test_snapshot_has_deterministic_ids_and_times() -> None:
    def one_run() -> list[dict[str, object]]:
        with capture_spans() as spans:
            bot("a")
            bot("b")
        return spans.snapshot()

    first, second = one_run(), one_run()
    assert first == second
    assert [(s["name"], s["trace_id"], s["span_id"], s["parent_id"]) for s in first] == [
        ("invoke_agent bot", 1, 1, None), ("execute_tool lookup", 1, 2, 1),
        ("invoke_agent bot", 2, 3, None), ("execute_tool lookup", 2, 4, 3)]
    times = [(s["start_time"], s["end_time"]) for s in first]
    assert times == [(10**9, 4 * 10**9), (2 * 10**9, 3 * 10**9), (5 * 10**9, 8 * 10**9), (6 * 10**9, 7 * 10**9)]
    assert first[1]["attributes"]["gen_ai.tool.name"] == "lookup"


def test_deterministic_ids_on_the_span_contexts() -> None:
    with capture_spans(deterministic_ids=True) as spans:
        with fluxloop.instrument("job") as ctx:
            bot("a")
    assert ctx.trace_id == f"{1:032x}"
    assert {s.context.trace_id for s in spans} == {1}
    assert sorted(s.context.span_id for s in spans) == [1, 2, 3]
    with capture_spans() as spans:  # random again afterwards
        bot("b")
    assert spans[0].context.trace_id > 2**64


def test_the_pytest_fixture(fluxloop_spans: CapturedSpans) -> None:
    bot("hi")
    assert fluxloop_spans.names == ["execute_tool lookup", "invoke_agent bot"]
    assert fluxloop_spans.children_of(fluxloop_spans.by_name("invoke_agent bot"))[0].name == "execute_tool lookup"
