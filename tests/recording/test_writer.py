"""The background writer: a slow or failing disk never blocks or raises in the caller; flush/close honour timeouts."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from pathlib import Path

import pytest

import fluxloop
from fluxloop import recording
from fluxloop._recording_writer import RecordWriter


class SlowDisk:
    """A write function that blocks until released: the disk is as slow as the test wants."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, fd: int, data: bytes) -> int:
        self.entered.set()
        assert self.release.wait(30), "test never released the disk"
        return os.write(fd, data)


def line(i: int) -> bytes:
    return json.dumps({"i": i}).encode() + b"\n"


def run_with_deadline(fn, seconds: float = 10.0) -> None:
    """Run ``fn`` on a thread; fail if it has not finished after ``seconds`` (it would be blocked)."""
    done = threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            fn()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=body, daemon=True).start()
    assert done.wait(seconds), "the caller was blocked"
    assert not errors, errors


def test_slow_disk_never_blocks_the_caller_and_drops_are_counted(tmp_path: Path) -> None:
    disk = SlowDisk()
    path = tmp_path / "w.jsonl"
    writer = RecordWriter(str(path), max_pending_lines=100, write=disk)
    run_with_deadline(lambda: [writer.submit(line(i)) for i in range(1000)])
    assert disk.entered.wait(10)
    assert writer.flush(timeout=0.05) is False  # timeout honoured while the disk is stuck
    stats = writer.stats()
    assert stats["dropped"] >= 800
    disk.release.set()
    assert writer.flush(timeout=10) is True
    lines = path.read_bytes().splitlines()
    assert len(lines) == writer.stats()["written"] == 1000 - stats["dropped"]
    assert [json.loads(x)["i"] for x in lines] == sorted(json.loads(x)["i"] for x in lines)
    assert writer.close(timeout=10)


def test_bytes_bound_drops_too(tmp_path: Path) -> None:
    disk = SlowDisk()
    writer = RecordWriter(str(tmp_path / "w.jsonl"), max_pending_bytes=1000, write=disk)
    writer.submit(b"x" * 10 + b"\n")
    assert disk.entered.wait(10)  # the first line is being written; the queue is empty again
    assert writer.submit(b"y" * 900 + b"\n") is True
    assert writer.submit(b"z" * 200 + b"\n") is False
    assert writer.stats()["dropped"] == 1
    disk.release.set()
    assert writer.close(timeout=10)


def test_record_call_args_on_a_slow_disk(rec_file: Path) -> None:
    recording.enable_recording(rec_file)
    disk = SlowDisk()
    recording._writer._write = disk  # type: ignore[union-attr]
    run_with_deadline(lambda: [recording.record_call_args(target="m:f", i=i, pad="x" * 100)
                               for i in range(30_000)])
    assert fluxloop.flush(timeout=0.05) is False
    assert recording.stats()["dropped"] > 0
    disk.release.set()
    assert fluxloop.flush(timeout=30) is True
    stats = recording.stats()
    assert stats["written"] + stats["dropped"] == 30_000
    assert len(rec_file.read_bytes().splitlines()) == stats["written"]


def test_write_errors_are_counted_and_logged_never_raised(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = RecordWriter(str(tmp_path / "w.jsonl"), write=full_disk)
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        for i in range(5):
            assert writer.submit(line(i))
            assert writer.flush(timeout=10)
    assert writer.stats()["failed"] == 5 and writer.stats()["written"] == 0
    assert any("cannot write recording file" in r.getMessage() for r in caplog.records)
    assert writer.close(timeout=10)


def test_short_writes_are_completed(tmp_path: Path) -> None:
    def dribble(fd: int, data: bytes) -> int:
        return os.write(fd, bytes(data[:7]))

    path = tmp_path / "w.jsonl"
    writer = RecordWriter(str(path), write=dribble)
    for i in range(20):
        writer.submit(line(i))
    assert writer.close(timeout=10)
    assert [json.loads(x)["i"] for x in path.read_bytes().splitlines()] == list(range(20))


def test_close_waits_with_a_timeout_and_the_thread_finishes_the_job(tmp_path: Path) -> None:
    disk = SlowDisk()
    path = tmp_path / "w.jsonl"
    writer = RecordWriter(str(path), write=disk)
    writer.submit(line(0))
    writer.submit(line(1))
    assert disk.entered.wait(10)
    assert writer.close(timeout=0.05) is False
    assert writer.submit(line(2)) is False  # closed: refused, counted
    disk.release.set()
    assert writer.close(timeout=10) is True  # idempotent; now done
    assert len(path.read_bytes().splitlines()) == 2
    assert writer.flush(timeout=1) is True


def test_close_without_any_line_closes_at_once(tmp_path: Path) -> None:
    writer = RecordWriter(str(tmp_path / "w.jsonl"))
    assert writer.close(timeout=0) is True
    assert writer.flush(timeout=0) is True


def test_disable_recording_with_a_stuck_disk_returns(rec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recording, "CLOSE_TIMEOUT", 0.05)
    recording.enable_recording(rec_file)
    writer = recording._writer
    assert writer is not None
    disk = SlowDisk()
    writer._write = disk
    recording.record_call_args(target="m:f")
    assert disk.entered.wait(10)
    run_with_deadline(recording.disable_recording)
    assert not recording.is_recording()
    disk.release.set()
    assert writer.close(timeout=10)  # the thread finished in the background and closed the file
    assert len(rec_file.read_bytes().splitlines()) == 1
