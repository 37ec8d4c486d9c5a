"""Loading and selecting records: clear errors naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxloop.replay import Record, ReplayError, load_records, select_records

from ._helpers import M, rec, write


def test_loads_records_in_order_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", rec(f"{M}:greet", {"name": "a"}), "", rec(f"{M}:greet", {"name": "b"}, 1,
                                                                                 trace_id="ab" * 16))
    records = load_records(path)
    assert [(r.line, r.iteration, r.kwargs) for r in records] == [(1, 0, {"name": "a"}), (3, 1, {"name": "b"})]
    assert records[1].trace_id == "ab" * 16 and records[0].timestamp == "2025-09-30T14:30:00+00:00"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="recording file not found: .*nope.jsonl"):
        load_records(tmp_path / "nope.jsonl")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="not a file"):
        load_records(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no records in"):
        load_records(write(tmp_path / "r.jsonl", "", "  "))


@pytest.mark.parametrize(("line", "why"), [
    ('{"_version": "1", "target": "m:f", "kwargs": {', "not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"_version": "2", "target": "m:f", "kwargs": {}}', "unsupported _version '2'"),
    ('{"_version": "1", "kwargs": {}}', "'target' must be"),
    ('{"_version": "1", "target": "no_colon", "kwargs": {}}', "'target' must be"),
    ('{"_version": "1", "target": "m:f", "kwargs": [1]}', "'kwargs' must be a JSON object"),
    ('{"_version": "1", "target": "m:f", "kwargs": {}, "iteration": "3"}', "'iteration' must be an integer"),
])
def test_malformed_line_is_named_with_its_number(tmp_path: Path, line: str, why: str) -> None:
    path = write(tmp_path / "r.jsonl", rec("m:f"), rec("m:f"), line)
    with pytest.raises(ReplayError) as caught:
        load_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: malformed record: ")
    assert why in message


def test_a_record_without_version_or_iteration_is_read_as_version_1_iteration_0(tmp_path: Path) -> None:
    [record] = load_records(write(tmp_path / "r.jsonl", '{"target": "m:f", "kwargs": {"a": 1}}'))
    assert (record.iteration, record.kwargs) == (0, {"a": 1})


RECORDS = [Record("a:f", 0, {}, 1), Record("b:g", 0, {}, 2), Record("a:f", 1, {}, 3), Record("a:f", 2, {}, 4),
           Record("b:g", 1, {}, 5)]


def test_default_selection_is_the_last_record_of_each_target() -> None:
    assert [r.line for r in select_records(RECORDS)] == [4, 5]


def test_all_and_target_and_iteration() -> None:
    assert [r.line for r in select_records(RECORDS, all_records=True)] == [1, 2, 3, 4, 5]
    assert [r.line for r in select_records(RECORDS, target="a:f", all_records=True)] == [1, 3, 4]
    assert [r.line for r in select_records(RECORDS, target="a:f")] == [4]
    assert [r.line for r in select_records(RECORDS, iteration=0)] == [1, 2]
    assert [r.line for r in select_records(RECORDS, target="b:g", iteration=1)] == [5]


def test_selection_errors_list_what_there_is() -> None:
    with pytest.raises(ReplayError, match=r"no records for target 'c:h'; targets recorded: a:f, b:g"):
        select_records(RECORDS, target="c:h")
    with pytest.raises(ReplayError, match=r"no record with iteration 9 for target 'a:f'; iterations recorded: 0, 1, 2"):
        select_records(RECORDS, target="a:f", iteration=9)
