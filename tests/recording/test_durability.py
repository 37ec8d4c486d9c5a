"""A record is on disk when its call returns, survives its process being killed, and never costs a neighbour's.

Everything is read straight from the file right after the call, without a flush: what a user (or another
process) would see.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import fluxloop
from fluxloop import recording
from fluxloop.replay import ReplayError, load_records

from ._helpers import read_records

REPO = Path(__file__).resolve().parents[2]
TIMES = 100


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO), FLUXLOOP_USE_COLLECTOR="false")
    return env


def present(path: Path, marker: str) -> bool:
    """True if a whole record carrying ``marker`` is in ``path`` now."""
    for line in path.read_bytes().splitlines():
        if marker.encode() in line:
            return json.loads(line)["kwargs"]["marker"] == marker
    return False


def test_each_record_is_readable_right_after_the_call_in_8_threads(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    missing: list[str] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(TIMES):
            marker = f"t{n}-{i}"
            recording.record_call_args(target="app:f", marker=marker)
            if not present(rec_file, marker):
                missing.append(marker)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert missing == []
    assert len(read_records(rec_file)) == 8 * TIMES


CHECKER = textwrap.dedent("""
    import json, sys
    import fluxloop
    path, who = sys.argv[1], sys.argv[2]
    fluxloop.enable_recording(path)

    def present(marker):
        with open(path, "rb") as file:
            for line in file.read().splitlines():
                if marker.encode() in line:
                    return json.loads(line)["kwargs"]["marker"] == marker
        return False

    missing = 0
    for i in range({times}):
        marker = f"{{who}}-{{i}}"
        fluxloop.record_call_args(target="app:f", marker=marker)
        missing += not present(marker)
    sys.exit(0 if missing == 0 else 10 + min(missing, 100))
""").format(times=TIMES)


def test_each_record_is_readable_right_after_the_call_in_4_processes(rec_file: Path) -> None:
    children = [subprocess.Popen([sys.executable, "-c", CHECKER, str(rec_file), f"p{n}"], env=child_env())
                for n in range(4)]
    assert [child.wait(timeout=120) for child in children] == [0] * 4  # 10+N: N records were missing
    records = read_records(rec_file)
    assert sorted(r["kwargs"]["marker"] for r in records) == sorted(f"p{n}-{i}" for n in range(4)
                                                                    for i in range(TIMES))


HANGS_IN_AGENT = textwrap.dedent("""
    import sys
    import fluxloop
    fluxloop.configure(record_args=True, recording_file=sys.argv[1])

    @fluxloop.agent(name="stuck")
    def handle(request: dict) -> None:
        print("inside", flush=True)
        sys.stdin.read()  # blocks until killed

    handle({"question": "what was I doing?"})
""")


def test_a_process_killed_inside_an_agent_keeps_that_calls_record(rec_file: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", HANGS_IN_AGENT, str(rec_file)], env=child_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "inside\n"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdin.close()  # type: ignore[union-attr]
        child.stdout.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    [record] = read_records(rec_file)
    assert record["target"] == "__main__:handle"
    assert record["kwargs"] == {"request": {"question": "what was I doing?"}}
    assert len(record["trace_id"]) == 32 and len(record["span_id"]) == 16


DIES_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    import fluxloop
    from fluxloop import _runtime
    fluxloop.enable_recording(sys.argv[1])

    def write_half_then_die(fd, data):
        os.write(fd, bytes(data[: len(data) // 2]))
        os.kill(os.getpid(), signal.SIGKILL)

    _runtime.RUNTIME.recorder._write = write_half_then_die
    fluxloop.record_call_args(target="app:f", who="killed", **{f"pad{i}": "x" * 250_000 for i in range(8)})
""")

WRITES_ONE = textwrap.dedent("""
    import sys
    import fluxloop
    fluxloop.enable_recording(sys.argv[1])
    fluxloop.record_call_args(target="app:f", who=sys.argv[2], pad="y" * 100_000)
""")


def test_a_writer_killed_mid_record_costs_only_its_own_record(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    recording.record_call_args(target="app:f", who="before", pad="")
    killed = subprocess.run([sys.executable, "-c", DIES_MID_WRITE, str(rec_file)], env=child_env(), timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert not rec_file.read_bytes().endswith(b"\n")  # a torn line of about 1 MB is the file's end now
    others = [subprocess.Popen([sys.executable, "-c", WRITES_ONE, str(rec_file), f"p{n}"], env=child_env())
              for n in range(3)]
    assert [child.wait(timeout=120) for child in others] == [0, 0, 0]
    recording.record_call_args(target="app:f", who="after", pad="")

    lines = rec_file.read_bytes().splitlines()
    torn = [line for line in lines if not line.startswith(b'{"_version"') or not line.endswith(b"}")]
    assert len(torn) == 1 and len(torn[0]) > 900_000  # only the killed writer's own record is lost
    whole = [json.loads(line) for line in lines if line not in torn]
    assert sorted(r["kwargs"]["who"] for r in whole) == ["after", "before", "p0", "p1", "p2"]
    problems: list[ReplayError] = []
    records = load_records(rec_file, on_malformed=problems.append)
    assert len(problems) == 1 and "malformed record" in str(problems[0])
    assert len(records) == 5


def test_a_killed_writers_line_is_ended_before_the_next_record_in_this_process(rec_file: Path) -> None:
    rec_file.write_bytes(b'{"_version":"1","iteration":0,"target":"app:f","kwargs":{"pad":"xxxx')
    recording.enable_recording(rec_file)
    recording.record_call_args(target="app:f", n=1)
    recording.record_call_args(target="app:f", n=2)
    lines = rec_file.read_bytes().splitlines()
    assert len(lines) == 3 and [json.loads(line)["kwargs"]["n"] for line in lines[1:]] == [1, 2]


def test_values_are_bounded_with_a_marker(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    recording.record_call_args(target="app:f", text="z" * 1_000_000, items=list(range(50_000)))
    [record] = read_records(rec_file)
    assert record["kwargs"]["text"].startswith("z" * 1000)
    assert record["kwargs"]["text"].endswith(f"...[truncated {1_000_000 - 256 * 1024} chars]")
    assert record["kwargs"]["items"][-1] == "...[40000 more items]"
    assert rec_file.stat().st_size < 512 * 1024


def test_a_huge_record_falls_back_to_small_bounds(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    recording.record_call_args(target="app:f", **{f"k{i}": "q" * 200_000 for i in range(40)})
    [record] = read_records(rec_file)
    assert all(v.endswith(f"...[truncated {200_000 - 1024} chars]") for v in record["kwargs"].values())


@pytest.mark.parametrize("flag", ["true", "1"])
def test_import_with_record_args_in_the_environment_creates_no_file(tmp_path: Path, flag: str) -> None:
    target = tmp_path / "env.jsonl"
    env = {**child_env(), "FLUXLOOP_RECORD_ARGS": flag, "FLUXLOOP_RECORDING_FILE": str(target)}
    code = ("import os, sys, fluxloop\n"
            "assert fluxloop.get_config().recording_file == sys.argv[1], fluxloop.get_config()\n"
            "assert not os.path.exists(sys.argv[1])\n"
            "fluxloop.record_call_args(target='app:f', n=1)\n"
            "assert open(sys.argv[1]).read().count('\\n') == 1\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert fluxloop.get_config().record_args is False  # this process is unaffected


def test_a_recording_deleted_while_recording_is_created_again(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    recording.record_call_args(target="app:f", n=1)
    rec_file.unlink()  # rotated away by hand, say
    recording.record_call_args(target="app:f", n=2)
    assert [r["kwargs"]["n"] for r in read_records(rec_file)] == [2]
    recording.enable_recording(rec_file)
    recording.record_call_args(target="app:f", n=3)
    assert [r["kwargs"]["n"] for r in read_records(rec_file)] == [2, 3]
