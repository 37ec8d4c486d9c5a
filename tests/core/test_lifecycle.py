"""flush, shutdown, get_stats and reset_config: counters, threads and files a user can observe."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import fluxloop
import fluxloop._decorators
from fluxloop import _errors
from fluxloop_otel_exporter import iter_offline_files, read_requests


@fluxloop.tool
def step(i: int) -> int:
    return i


def _span_count(directory: str) -> int:
    total = 0
    for path in iter_offline_files(directory):
        for _, request, _ in read_requests(path):
            for rs in (request or {}).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    total += len(ss.get("spans", []))
    return total


def test_flush_exports_to_offline_files_and_stats_count_them(tmp_path) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "out"), flush_interval=3600)
    for i in range(25):
        step(i)
    assert fluxloop.get_stats()["queued"] == 25
    assert fluxloop.flush(timeout=10) is True
    stats = fluxloop.get_stats()
    assert (stats["queued"], stats["exported"], stats["dropped"], stats["failed"]) == (0, 25, 0, 0)
    assert _span_count(str(tmp_path / "out")) == 25


def test_reset_config_starts_counters_afresh(tmp_path) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "out"))
    step(1)
    assert fluxloop.flush(timeout=10)
    assert fluxloop.get_stats()["exported"] == 1
    fluxloop.reset_config()
    assert fluxloop.get_stats() == {"exported": 0, "dropped": 0, "failed": 0, "spooled": 0, "queued": 0}


def test_many_configure_reset_cycles_leave_one_worker_thread(tmp_path) -> None:
    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "fluxloop-span-processor"]

    for i in range(30):
        fluxloop.configure(offline_dir=str(tmp_path / f"out{i}"), batch_size=1 + i)
        step(i)
        fluxloop.reset_config()
    step(0)
    assert len(workers()) <= 1


def test_shutdown_is_idempotent_and_configure_revives(tmp_path) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "a"))
    step(1)
    fluxloop.shutdown(timeout=5)
    fluxloop.shutdown(timeout=5)
    assert _span_count(str(tmp_path / "a")) == 1
    fluxloop.configure(offline_dir=str(tmp_path / "b"))
    step(2)
    assert fluxloop.flush(timeout=10)
    assert _span_count(str(tmp_path / "b")) == 1


# -- the runtime's states: IDLE -> RUNNING -> SHUT_DOWN ---------------------------------------------------------
def _run(code: str, cwd: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with no FLUXLOOP_/OTEL_ settings (and not "under pytest")."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("FLUXLOOP_", "OTEL_", "PYTEST_"))}
    base.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=base, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_import_builds_nothing(tmp_path) -> None:
    recording = tmp_path / "rec.jsonl"
    proc = _run("""
        import atexit, sys, threading
        import logging, opentelemetry.sdk.trace  # their own atexit hooks are not FluxLoop's
        before = atexit._ncallbacks()
        import fluxloop, fluxloop._runtime
        print("runtime built:", "RUNTIME" in vars(fluxloop._runtime))
        print("threads:", threading.active_count())
        print("atexit added:", atexit._ncallbacks() - before)
        print("loaded:", sorted(m for m in ("pytest", "requests", "google.protobuf", "fluxloop.testing",
                                             "fluxloop.replay", "fluxloop_otel_exporter._exporter") if m in sys.modules))
    """, cwd=str(tmp_path), FLUXLOOP_RECORD_ARGS="true", FLUXLOOP_RECORDING_FILE=str(recording))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["runtime built: False", "threads: 1", "atexit added: 0", "loaded: []"]
    assert not recording.exists()
    assert list(tmp_path.iterdir()) == []


def test_first_span_starts_the_runtime(tmp_path) -> None:
    proc = _run("""
        import threading, fluxloop, fluxloop._runtime as rt
        @fluxloop.tool
        def step(i): return i
        assert rt.RUNTIME.phase is rt.Phase.IDLE and threading.active_count() == 1
        step(1)
        print(rt.RUNTIME.phase.value, sorted(t.name for t in threading.enumerate())[0], fluxloop.flush(10))
        print(fluxloop.get_stats()["exported"])
    """, FLUXLOOP_USE_COLLECTOR="false", FLUXLOOP_OFFLINE_DIR=str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["running", "MainThread", "True", "1"]
    assert _span_count(str(tmp_path / "out")) == 1


def test_after_shutdown_spans_are_dropped_counted_and_reported_once(tmp_path, caplog) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "out"))
    step(1)
    fluxloop.shutdown(timeout=5)
    workers = [t for t in threading.enumerate() if t.name == "fluxloop-span-processor"]
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        step(2)
        step(3)
        with fluxloop.instrument("after"):
            pass
    # No pipeline came back to life: no new worker, nothing more on disk, and the drops are counted.
    assert [t for t in threading.enumerate() if t.name == "fluxloop-span-processor"] == workers == []
    assert _span_count(str(tmp_path / "out")) == 1
    stats = fluxloop.get_stats()
    assert (stats["exported"], stats["dropped"]) == (1, 3)
    assert len([r for r in caplog.records if "after fluxloop.shutdown()" in r.getMessage()]) == 1
    # configure() starts again; reset_config() clears the count.
    fluxloop.configure(offline_dir=str(tmp_path / "again"))
    step(4)
    assert fluxloop.flush(timeout=10)
    assert _span_count(str(tmp_path / "again")) == 1
    fluxloop.reset_config()
    assert fluxloop.get_stats()["dropped"] == 0


def test_a_call_after_the_exit_hook_does_not_revive_the_worker(tmp_path) -> None:
    proc = _run("""
        import atexit, threading, fluxloop
        @fluxloop.tool
        def step(i): return i
        def late():  # registered before FluxLoop started, so it runs after FluxLoop's exit hook
            step(2)
            names = [t.name for t in threading.enumerate() if t.name == "fluxloop-span-processor"]
            print("late", names, fluxloop.get_stats()["dropped"], flush=True)
        atexit.register(late)
        step(1)
    """, FLUXLOOP_USE_COLLECTOR="false", FLUXLOOP_OFFLINE_DIR=str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "late [] 1"
    assert _span_count(str(tmp_path / "out")) == 1
    assert "after fluxloop.shutdown()" in proc.stderr


def test_the_application_shutting_its_provider_down_is_noticed(tmp_path) -> None:
    proc = _run("""
        import threading
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        import fluxloop, fluxloop._runtime as rt
        @fluxloop.tool
        def step(i): return i
        step(1)
        provider.shutdown()
        workers = [t for t in threading.enumerate() if t.name == "fluxloop-span-processor"]
        print(rt.RUNTIME.phase.value, len(workers), fluxloop.get_stats()["exported"])
        step(2)
        with trace.get_tracer("app").start_as_current_span("app span"):
            pass
        print(fluxloop.get_stats()["dropped"])
    """, FLUXLOOP_USE_COLLECTOR="false", FLUXLOOP_OFFLINE_DIR=str(tmp_path / "out"),
        FLUXLOOP_EXPORT_SCOPE="all")  # the app's own span is FluxLoop's to export (and to count) only then
    assert proc.returncode == 0, proc.stderr
    # Stats survive (the span was exported while retiring), the state says so, later spans are counted as dropped.
    assert proc.stdout.split() == ["shut_down", "0", "1", "2"]
    assert _span_count(str(tmp_path / "out")) == 1


def test_works_where_register_at_fork_does_not_exist(tmp_path) -> None:
    proc = _run("""
        import os, random  # random seeds itself through register_at_fork at import, as CPython does on POSIX
        del os.register_at_fork, os.fork  # as on Windows: neither exists (asyncio >= 3.12 checks for fork)
        import fluxloop
        @fluxloop.agent
        def bot(q): return q
        fluxloop.configure(use_collector=False)
        bot("hi")
        from fluxloop._process import HOOKS
        print(fluxloop.flush(10), fluxloop.get_stats()["exported"], HOOKS.fork_hook_installed)
    """, FLUXLOOP_OFFLINE_DIR=str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "1", "False"]


def test_reset_config_forgets_reported_problems(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        _errors.report("test-kind", "problem %d", 1)
        _errors.report("test-kind", "problem %d", 2)  # rate-limited
        fluxloop.reset_config()
        _errors.report("test-kind", "problem %d", 3)
    assert [r.getMessage() for r in caplog.records if "problem" in r.getMessage()] == \
        ["fluxloop: problem 1", "fluxloop: problem 3"]


def test_debug_sets_the_level_and_adds_no_handler() -> None:
    logger = logging.getLogger("fluxloop")
    fluxloop.configure(debug=True)
    assert logger.level == logging.DEBUG
    assert logger.handlers == []
    fluxloop.configure(debug=False)
    assert logger.level == logging.NOTSET and logger.handlers == []


# -- internal errors: re-raised under pytest, never seen by the application ----------------------------------
def test_instrumentation_errors_fail_the_test_under_pytest(monkeypatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(fluxloop._decorators, "put_io", broken)
    with pytest.raises(RuntimeError, match="instrumentation bug"):
        step(1)
    with _errors.tolerated():  # tests that inject failures on purpose opt out
        assert step(2) == 2


def test_instrumentation_errors_never_reach_the_application() -> None:
    proc = _run("""
        import fluxloop, fluxloop._decorators as d
        def broken(*args, **kwargs): raise RuntimeError("instrumentation bug")
        d.put_io = broken
        @fluxloop.tool
        def step(i): return i
        print(step(7))
    """, FLUXLOOP_USE_COLLECTOR="false", FLUXLOOP_OFFLINE_ENABLED="false")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "7"
    assert "instrumentation bug" in proc.stderr


def test_one_registry_installs_each_os_hook_once_and_holds_owners_weakly() -> None:
    from fluxloop._process import ProcessHooks

    class Owner:
        def __init__(self) -> None:
            self.calls = 0

        def hook(self) -> None:
            self.calls += 1

    hooks = ProcessHooks()
    kept, dropped = Owner(), Owner()
    hooks.after_fork_in_child(kept.hook)
    hooks.after_fork_in_child(dropped.hook)
    del dropped
    pid = os.fork()
    if pid == 0:  # the child: our registry ran kept.hook before anything else
        os._exit(0 if kept.calls == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert kept.calls == 0  # only in the child
