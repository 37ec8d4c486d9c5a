"""Iteration numbers shared by processes writing one file: what a writer counts when it catches up."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxloop import _record_numbers
from fluxloop._record_numbers import Numbering


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    descriptor = os.open(tmp_path / "rec.jsonl", os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    yield descriptor
    os.close(descriptor)


def append(fd: int, text: str) -> int:
    os.write(fd, text.encode())
    return os.fstat(fd).st_size


def line(target: str, iteration: int, spaced: bool = False) -> str:
    record = {"_version": "1", "iteration": iteration, "target": target, "kwargs": {"x": "\n"}, "timestamp": "t"}
    return (json.dumps(record) if spaced else json.dumps(record, separators=(",", ":"))) + "\n"


def test_what_the_file_held_before_the_first_write_is_not_counted(fd: int) -> None:
    numbers = Numbering()
    numbers.catch_up(fd, append(fd, line("t", 7)))
    assert numbers.take("t", None, None) == 0  # an earlier run's records: counting starts at 0, as the seed's


def test_records_others_appended_since_the_last_write_are_counted(fd: int) -> None:
    numbers = Numbering()
    numbers.catch_up(fd, os.fstat(fd).st_size)
    numbers.wrote(append(fd, line("t", numbers.take("t", None, None))))
    append(fd, line("t", 4) + line('q:"x"', 2, spaced=True) + "torn {\"_vers")
    numbers.catch_up(fd, append(fd, "\n" + line("u", 0)))
    assert [numbers.take(t, None, None) for t in ("t", 'q:"x"', "u", "other")] == [5, 3, 1, 0]


def test_catching_up_reads_only_the_newest_bytes(fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_record_numbers, "MAX_CATCH_UP_BYTES", 400)
    numbers = Numbering()
    numbers.catch_up(fd, os.fstat(fd).st_size)
    numbers.wrote(append(fd, line("t", numbers.take("t", None, None))))
    append(fd, line("old", 9))
    size = 0
    for i in range(1, 11):
        size = append(fd, line("t", i))
    numbers.catch_up(fd, size)
    assert numbers.take("t", None, None) == 11  # the newest records hold each target's highest number
    assert numbers.take("old", None, None) == 0  # beyond the bound: not read
