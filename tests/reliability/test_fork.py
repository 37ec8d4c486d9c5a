"""Fault 4: pre-fork servers. Children forked with ``os.fork`` or ``multiprocessing`` (fork) export their own spans,
none twice (the parent's queued spans stay the parent's), and a fork in the middle of exporting never deadlocks."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from exporter._otlp_sink import HOLD

import fluxloop
from fluxloop import _runtime

from ._harness import (
    Child,
    Forks,
    OtlpSink,
    StatsSince,
    assert_each_once,
    child_env,
    delivered_spans,
    offline_spans,
    strict_json,
)

pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")]


@fluxloop.trace(name="parent")
def parent_work(i: int) -> int:
    return i


@fluxloop.trace(name="child")
def child_work(k: int, i: int) -> int:
    return i


@fluxloop.agent(name="served")
def served(who: str, i: int) -> int:
    return i


def _keys(spans: list, name: str) -> Counter:
    return Counter(tuple(strict_json(s.attributes["input.value"]).values()) for s in spans if s.name == name)


def test_forked_workers_export_their_own_spans_and_never_the_parents(sink: OtlpSink, offline_dir: Path,
                                                                     stats: StatsSince) -> None:
    fluxloop.configure(use_collector=True, collector_url=sink.url, offline_dir=str(offline_dir),
                       flush_interval=60.0, batch_size=10_000)
    for i in range(50):
        parent_work(i)
    assert stats()["queued"] == 50  # queued in the parent at fork time

    def worker(k: int) -> Callable[[], bool]:
        def body() -> bool:
            for i in range(100):
                child_work(k, i)
            return fluxloop.flush(timeout=10)
        return body

    with Forks() as forks:
        for k in range(4):
            forks.fork(worker(k))
        assert forks.wait_all(30) == [0] * 4
    assert fluxloop.flush(timeout=10)
    spans = delivered_spans(sink)
    assert_each_once(spans)
    assert _keys(spans, "parent") == Counter((i,) for i in range(50))
    assert _keys(spans, "child") == Counter((k, i) for k in range(4) for i in range(100))


PRODUCED_MAX = 20_000  # the busy producer of the next test stops here (10 s at its pace) if the forks take longer


def test_fork_while_exporting_and_recording_never_deadlocks(sink: OtlpSink, offline_dir: Path, tmp_path: Path,
                                                            stats: StatsSince, figure) -> None:
    recording = tmp_path / "args.jsonl"
    # The queue holds everything the producer can make (PRODUCED_MAX), so "nothing dropped" never depends on how
    # fast this machine exports.
    fluxloop.configure(use_collector=True, collector_url=sink.url, offline_dir=str(offline_dir), batch_size=16,
                       flush_interval=0.005, record_args=True, recording_file=str(recording),
                       max_queue_size=2 * PRODUCED_MAX)
    served("parent", -1)  # pipeline started before any fork (see the next test for a fork during start-up)
    stop = threading.Event()
    produced = [-1]

    def produce() -> None:  # keeps the export worker and the recording writer busy while we fork
        started = time.monotonic()
        for i in range(PRODUCED_MAX):
            if stop.is_set():
                return
            served("parent", i)
            produced.append(i)
            ahead = started + (i + 1) / 2_000 - time.monotonic()  # 2,000 calls/s: busy, within the queue
            if ahead > 0:
                time.sleep(ahead)

    def worker(k: int) -> Callable[[], bool]:
        def body() -> bool:
            for i in range(20):
                served(f"child{k}", i)
            return fluxloop.flush(timeout=60)
        return body

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        with Forks() as forks:
            for k in range(16):
                forks.fork(worker(k))
            codes = forks.wait_all(120)
    finally:
        stop.set()
        producer.join(60)
    assert not producer.is_alive()
    assert codes == [0] * 16
    assert fluxloop.flush(timeout=120)
    assert stats()["dropped"] == 0
    spans = delivered_spans(sink)
    assert_each_once(spans)
    keys = _keys(spans, "invoke_agent served")
    assert keys == Counter([("parent", i) for i in produced] + [(f"child{k}", i) for k in range(16) for i in range(20)])
    lines = recording.read_bytes().splitlines()
    records = Counter((r["kwargs"]["who"], r["kwargs"]["i"]) for r in map(strict_json, lines))
    assert records == keys  # every recorded call once, every line whole
    figure("parent_spans_during_forks", len(produced))


def test_fork_while_another_thread_is_inside_configure_does_not_deadlock_the_child(offline_dir: Path) -> None:
    # Another thread is inside configure()/start() when the fork happens; configure() holds the runtime's lock
    # while it rebuilds the pipeline (flushing the old one: up to `timeout` seconds). Held here explicitly, so
    # the race that the previous test can hit by chance (about 2 runs in 5 without its warm-up call) is certain.
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir))
    inside, leave = threading.Event(), threading.Event()

    def configure_in_progress() -> None:
        with _runtime.RUNTIME.lock:
            inside.set()
            leave.wait(30)

    holder = threading.Thread(target=configure_in_progress)
    holder.start()
    try:
        assert inside.wait(10)

        def child() -> bool:
            served("child", 0)
            fluxloop.shutdown(timeout=5)  # what the exit hook does
            return True

        with Forks() as forks:
            forks.fork(child)
            codes = forks.wait_all(5)
    finally:
        leave.set()
        holder.join(30)
    assert codes == [0]


EXIT_SCRIPT = """
import json, os, sys
import fluxloop

@fluxloop.trace(name="parent")
def parent_work(i):
    return i

@fluxloop.trace(name="child")
def child_work(k, i):
    return i

fluxloop.configure(use_collector=True, collector_url=sys.argv[1], offline_dir=sys.argv[2], flush_interval=60.0,
                   batch_size=10_000)
for i in range(10):
    parent_work(i)
pids = []
for k in range(3):
    pid = os.fork()
    if pid == 0:
        for i in range(50):
            child_work(k, i)
        sys.exit(0)  # a normal exit: atexit runs in the child too
    pids.append(pid)
print("CODES", json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]), flush=True)
"""


def test_forked_children_that_exit_normally_flush_through_the_exit_hook(spawn: Callable[..., Child],
                                                                         sink: OtlpSink, offline_dir: Path) -> None:
    child = spawn(EXIT_SCRIPT, sink.url, str(offline_dir))
    assert child.expect_json("CODES") == [0, 0, 0]
    assert child.wait(20) == 0, child.stderr()
    spans = delivered_spans(sink)
    assert_each_once(spans)
    assert _keys(spans, "parent") == Counter((i,) for i in range(10))
    assert _keys(spans, "child") == Counter((k, i) for k in range(3) for i in range(50))


MP_SCRIPT = """
import json, multiprocessing, sys
import fluxloop

@fluxloop.trace(name="parent")
def parent_work(i):
    return i

@fluxloop.tool
def task(i):
    return i * 2

def task_then_flush(i):
    result = task(i)
    fluxloop.flush(timeout=10)
    return result

def run_some(start):
    for i in range(start, start + 50):
        task(i)

fluxloop.configure(use_collector=True, collector_url=sys.argv[1], offline_dir=sys.argv[2], flush_interval=60.0,
                   batch_size=10_000)
for i in range(10):
    parent_work(i)  # queued in the parent when the workers fork
ctx = multiprocessing.get_context("fork")
mode = sys.argv[3]
if mode == "process":
    workers = [ctx.Process(target=run_some, args=(k * 50,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    print("RESULT", json.dumps([w.exitcode for w in workers]), flush=True)
else:
    with ctx.Pool(4) as pool:
        results = pool.map(task_then_flush if mode == "pool-flush" else task, range(200), chunksize=10)
        pool.close()
        pool.join()
    print("RESULT", json.dumps(results == [2 * i for i in range(200)]), flush=True)
"""


def _run_mp(spawn: Callable[..., Child], sink: OtlpSink, offline_dir: Path, mode: str) -> list:
    child = spawn(MP_SCRIPT, sink.url, str(offline_dir), mode)
    result = child.expect_json("RESULT", timeout=60)
    assert result in (True, [0, 0, 0, 0]), child.stderr()
    assert child.wait(30) == 0, child.stderr()
    spans = delivered_spans(sink)
    assert_each_once(spans)
    assert _keys(spans, "parent") == Counter((i,) for i in range(10))  # the parent's, once, never a worker's
    return spans


def test_multiprocessing_fork_workers_that_flush_export_every_span_once(spawn: Callable[..., Child],
                                                                         sink: OtlpSink, offline_dir: Path) -> None:
    spans = _run_mp(spawn, sink, offline_dir, "pool-flush")
    assert _keys(spans, "execute_tool task") == Counter((i,) for i in range(200))


@pytest.mark.parametrize("mode", ["pool", "process"])
def test_multiprocessing_fork_workers_export_their_spans_without_an_explicit_flush(
        spawn: Callable[..., Child], sink: OtlpSink, offline_dir: Path, mode: str) -> None:
    spans = _run_mp(spawn, sink, offline_dir, mode)
    assert _keys(spans, "execute_tool task") == Counter((i,) for i in range(200))


POOL_SCRIPT = """
import json, multiprocessing, sys
method, module = sys.argv[1], sys.argv[2]
tasks = __import__(f"reliability.{module}", fromlist=["task"])
if __name__ == "__main__":
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:  # the idiom of Python's docs: __exit__ ends the workers with SIGTERM
        results = pool.map(tasks.task, range(200), chunksize=10)
    print("RESULT", json.dumps(results == [2 * i for i in range(200)]), flush=True)
"""


@pytest.mark.parametrize(("method", "module"), [
    ("fork", "_pool_tasks"), ("spawn", "_pool_tasks"), ("forkserver", "_pool_tasks"), ("forkserver", "_pool_lazy"),
])
def test_pool_workers_ended_by_sigterm_deliver_their_spans(spawn: Callable[..., Child], sink: OtlpSink,
                                                           offline_dir: Path, tmp_path: Path, method: str,
                                                           module: str) -> None:
    # Found: `with multiprocessing.Pool() as pool:` delivered 0 of 200 worker spans with fork, spawn and
    # forkserver (and with a forkserver worker that imports FluxLoop only on its first task): Pool.__exit__
    # terminates the workers with SIGTERM, which skips every exit hook. Workers are configured by environment.
    env = child_env(FLUXLOOP_COLLECTOR_URL=sink.url, FLUXLOOP_OFFLINE_DIR=str(offline_dir),
                    FLUXLOOP_FLUSH_INTERVAL="60")
    script = tmp_path / "pool_main.py"  # spawn and forkserver re-import the main module: a file, not -c
    script.write_text(POOL_SCRIPT)
    child = spawn(f"import runpy, sys; sys.argv = [{str(script)!r}, *sys.argv[1:]]; "
                  f"runpy.run_path({str(script)!r}, run_name='__main__')", method, module, env=env)
    assert child.expect_json("RESULT", timeout=120) is True, child.stderr()
    assert child.wait(60) == 0, child.stderr()
    spans = delivered_spans(sink)
    assert_each_once(spans)
    assert _keys(spans, "execute_tool task") == Counter((i,) for i in range(200)), child.stderr()


SIGTERM_IN_SHUTDOWN_SCRIPT = """
import json, multiprocessing, os, sys
import fluxloop

@fluxloop.tool(name="task")
def task(i):
    return i

def work():
    fluxloop.configure(use_collector=True, collector_url=sys.argv[1], offline_dir=sys.argv[2], flush_interval=60.0,
                       timeout=2.0)
    for i in range(50):
        task(i)
    print("WORKER", json.dumps(os.getpid()), flush=True)
    fluxloop.shutdown()  # the collector holds its export: SIGTERM arrives in here
    print("AFTER SHUTDOWN", flush=True)  # never reached: the worker dies of the SIGTERM once shutdown returns

if __name__ == "__main__":
    worker = multiprocessing.get_context("fork").Process(target=work)
    worker.start()
    worker.join(60)
    print("RESULT", json.dumps(worker.exitcode), flush=True)
"""


def test_a_sigterm_during_a_workers_shutdown_lets_that_shutdown_finish(spawn: Callable[..., Child], sink: OtlpSink,
                                                                       offline_dir: Path) -> None:
    # Found on Python 3.13 (the Pool test above lost spans in 2 runs of 3): its workers run atexit, so FluxLoop's exit
    # hook was flushing when Pool.terminate()'s SIGTERM came; the handler's own shutdown() found one under way and
    # returned at once, and the worker re-killed itself mid-flush: nothing delivered, spooled or logged. Made certain
    # here on every Python: the worker is inside shutdown() (its export held by the collector) when SIGTERM comes.
    sink.default = HOLD
    child = spawn(SIGTERM_IN_SHUTDOWN_SCRIPT, sink.url, str(offline_dir))
    pid = child.expect_json("WORKER")
    deadline = time.monotonic() + 30
    while not sink.attempts:  # the export reached the collector: the worker is inside shutdown() now
        assert time.monotonic() < deadline, child.stderr()
        time.sleep(0.01)
    os.kill(pid, signal.SIGTERM)
    assert child.expect_json("RESULT", timeout=30) == -signal.SIGTERM, child.stderr()  # it still dies of SIGTERM
    assert child.wait(30) == 0, child.stderr()
    spans = offline_spans(offline_dir)  # the held export was cut at the end of the budget and spooled
    assert_each_once(spans)
    assert _keys(spans, "execute_tool task") == Counter((i,) for i in range(50)), child.stderr()
    assert "AFTER SHUTDOWN" not in child.lines
