"""Threads and processes appending to one recording file: only whole, valid lines, none lost, none duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest

import fluxloop
from fluxloop import _runtime, recording

from ._helpers import read_records

REPO = Path(__file__).resolve().parents[2]
THREADS = 8
PROCESSES = 4
PER_WRITER = 200


def payload_size(i: int) -> int:
    """Mostly small lines, some far beyond PIPE_BUF (4 KiB), one near the per-value bound."""
    if i == 100:
        return 250_000
    if i % 25 == 0:
        return 70_000
    return 10 + i % 50


def write_many(who: str, start: threading.Barrier | None = None) -> None:
    if start is not None:
        start.wait()
    for i in range(PER_WRITER):
        size = payload_size(i)
        recording.record_call_args(target=f"{who}:f", who=who, i=i, size=size, pad="x" * size)


def check_lines(path: Path) -> list[dict]:
    """Every line is whole JSON and its padding is intact (no interleaving inside a line)."""
    records = read_records(path)
    for rec in records:
        kw = rec["kwargs"]
        assert kw["pad"] == "x" * kw["size"]
    return records


def test_eight_threads_one_file(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    start = threading.Barrier(THREADS)
    threads = [threading.Thread(target=write_many, args=(f"t{n}", start)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = check_lines(rec_file)
    assert len(records) == THREADS * PER_WRITER
    for n in range(THREADS):
        mine = [r for r in records if r["target"] == f"t{n}:f"]
        assert [r["kwargs"]["i"] for r in mine] == list(range(PER_WRITER))  # in order, none lost
        assert [r["iteration"] for r in mine] == list(range(PER_WRITER))


CHILD = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, {tests!r})
    from fluxloop import _runtime, recording
    from recording.test_concurrency import write_many
    recording.enable_recording({path!r})
    assert sys.stdin.readline() == "go\\n"
    threads = [threading.Thread(target=write_many, args=("p{n}-" + str(t),)) for t in range(2)]
    for t in threads: t.start()
    for t in threads: t.join()
    recording.disable_recording()
""")


def test_four_processes_and_eight_threads_one_file(rec_file: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO), FLUXLOOP_ENABLED="false")
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(REPO / "tests"), path=str(rec_file), n=n)],
                         stdin=subprocess.PIPE, env=env, text=True)
        for n in range(PROCESSES)
    ]
    recording.enable_recording(rec_file)
    start = threading.Barrier(THREADS + 1)
    threads = [threading.Thread(target=write_many, args=(f"t{n}", start)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for child in children:  # every child is ready and waiting; let them all go with the threads
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
    start.wait()
    for t in threads:
        t.join()
    for child in children:
        assert child.wait(timeout=120) == 0
    records = check_lines(rec_file)
    writers = [f"t{n}" for n in range(THREADS)] + [f"p{n}-{t}" for n in range(PROCESSES) for t in range(2)]
    assert len(records) == len(writers) * PER_WRITER
    seen = Counter((r["kwargs"]["who"], r["kwargs"]["i"]) for r in records)
    assert set(seen.values()) == {1}
    assert set(seen) == {(w, i) for w in writers for i in range(PER_WRITER)}


class Gate:
    """A write function that holds the parent's writer mid-write until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, fd: int, data: bytes) -> int:
        self.entered.set()
        assert self.release.wait(30)
        return os.write(fd, data)


def wait_child(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def wait_child_within(pid: int, seconds: float) -> int:
    """The child's exit code; a child still running after ``seconds`` (deadlocked) is killed and fails."""
    done = threading.Event()
    result: list[int] = []

    def reap() -> None:
        result.append(wait_child(pid))
        done.set()

    threading.Thread(target=reap, daemon=True).start()
    if not done.wait(seconds):
        os.kill(pid, signal.SIGKILL)
        done.wait(10)
        pytest.fail("the forked child deadlocked")
    return result[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_is_mid_write(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    recorder = _runtime.RUNTIME.recorder
    gate = Gate()
    recorder._write = gate
    try:
        writer = threading.Thread(target=recording.record_call_args, kwargs={"target": "parent:f", "n": 0})
        writer.start()
        assert gate.entered.wait(10)  # that thread holds the recorder's lock inside its write
        pid = os.fork()
        if pid == 0:  # child: the lock held by a thread that does not exist here must not block it
            code = 1
            try:
                recorder._write = os.write
                recording.record_call_args(target="child:f", n=0)
                code = 0
            finally:
                os._exit(code)
        gate.release.set()  # the child's record waits for this write (file lock), then goes after it
        assert wait_child_within(pid, 60) == 0
        writer.join(10)
    finally:
        recorder._write = os.write
    records = read_records(rec_file)
    assert sorted((r["target"], r["kwargs"]["n"]) for r in records) == [("child:f", 0), ("parent:f", 0)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_record_into_the_same_file(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    recording.record_call_args(target="parent:f", n=0)
    pids = []
    for w in range(PROCESSES):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for i in range(50):
                    recording.record_call_args(target=f"worker{w}:f", n=i)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [wait_child(pid) for pid in pids] == [0] * PROCESSES
    records = read_records(rec_file)
    assert Counter(r["target"] for r in records) == {"parent:f": 1, **{f"worker{w}:f": 50 for w in range(PROCESSES)}}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_iterations_stay_unique_per_target_across_a_fork(rec_file: Path) -> None:
    recording.enable_recording(rec_file)

    @fluxloop.agent
    def a(x: str) -> str:
        return x

    a("parent-before")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            a("child")
            recording.record_call_args(target="m:T.f", x=1)
            code = 0
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    a("parent-after")
    recording.record_call_args(target="m:T.f", x=2)
    assert [(r["kwargs"]["x"], r["iteration"]) for r in read_records(rec_file)] == [
        ("parent-before", 0), ("child", 1), (1, 0), ("parent-after", 2), (2, 1)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_recording_one_target_number_it_without_repeats(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    recording.record_call_args(target="shared:f", who="parent")
    pids = []
    for w in range(PROCESSES):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for i in range(50):
                    recording.record_call_args(target="shared:f", who=f"worker{w}", n=i)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [wait_child(pid) for pid in pids] == [0] * PROCESSES
    recording.record_call_args(target="shared:f", who="parent")
    records = read_records(rec_file)
    assert [r["iteration"] for r in records] == list(range(PROCESSES * 50 + 2))  # file order is number order
    assert records[-1]["kwargs"] == {"who": "parent"}
