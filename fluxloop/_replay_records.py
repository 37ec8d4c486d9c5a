"""Reading recordings: parse a recording file into records, salvage torn lines, choose the records to replay."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from fluxloop._recorder import RECORD_VERSION, function_name

#: Every record FluxLoop (and the original fluxloop) writes starts with this.
_RECORD_START: Final = b'{"_version"'


class ReplayError(Exception):
    """A problem with the input, not with FluxLoop: missing file, bad line, unknown target, stale arguments."""


@dataclass(frozen=True)
class Record:
    """One recorded call (a line of a recording file)."""

    target: str
    iteration: int
    kwargs: dict[str, Any]
    line: int = 0
    timestamp: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    @property
    def key(self) -> str:
        """Identifies the record across runs: its span (and target, iteration) when it has one, else its line."""
        where = f"{self.trace_id}/{self.span_id}" if self.span_id else f"line {self.line}"
        return f"{where} {self.target}#{self.iteration}"


def load_records(path: str | os.PathLike[str],
                 on_malformed: Callable[[ReplayError], None] | None = None) -> list[Record]:
    """Every record of a recording file, in file order; ``ReplayError`` names the file and line of any problem.

    With ``on_malformed``, a malformed line (garbage, or the torn line a killed writer leaves) is passed to it and
    skipped instead, so the rest can still be replayed. A whole record glued to the end of a torn line is kept.

    Example::

        records = load_records("/tmp/agent_args.jsonl")
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        raise ReplayError(f"recording file not found: {name}") from None
    except IsADirectoryError:
        raise ReplayError(f"not a file: {name}") from None
    except OSError as exc:
        raise ReplayError(f"cannot read {name}: {exc.strerror or exc}") from None
    records = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            records.append(_parse_line(name, number, raw))
        except ReplayError as problem:
            if on_malformed is None:
                raise
            on_malformed(problem)
            salvaged = _salvage(name, number, raw)
            if salvaged is not None:
                records.append(salvaged)
    if not records:
        raise ReplayError(f"no records in {name}")
    return records


def _salvage(path: str, number: int, raw: bytes) -> Record | None:
    """The whole record at the end of a line that starts with a torn one (a writer killed mid-line and another
    process's record appended right after it), if there is one."""
    start = raw.find(_RECORD_START, 1)
    while start > 0:
        try:
            return _parse_line(path, number, raw[start:])
        except ReplayError:
            start = raw.find(_RECORD_START, start + 1)
    return None


def _parse_line(path: str, number: int, raw: bytes) -> Record:
    def bad(why: str) -> ReplayError:
        return ReplayError(f"{path}:{number}: malformed record: {why}")

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("_version", RECORD_VERSION)
    if version != RECORD_VERSION:
        raise bad(f"unsupported _version {version!r} (this FluxLoop reads version {RECORD_VERSION!r})")
    target = data.get("target")
    if not isinstance(target, str) or ":" not in target:
        raise bad(f"'target' must be a 'module:function' or 'module:Class.method' string, got {target!r}")
    kwargs = data.get("kwargs")
    if not isinstance(kwargs, dict):
        raise bad(f"'kwargs' must be a JSON object, got {kwargs!r:.60}")
    iteration = data.get("iteration", 0)
    if isinstance(iteration, bool) or not isinstance(iteration, int):
        raise bad(f"'iteration' must be an integer, got {iteration!r:.60}")
    return Record(target, iteration, kwargs, number, _opt_str(data.get("timestamp")),
                  _opt_str(data.get("trace_id")), _opt_str(data.get("span_id")))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def drop_superseded(records: Sequence[Record]) -> list[Record]:
    """``records`` without the automatic ``@agent`` records that the call's own ``record_call_args`` replaced:
    the first record of a span is dropped when a later record of that span has the same function name and
    iteration (the recorder gives the explicit record the automatic one's number)."""
    first: dict[tuple[str | None, str], Record] = {}
    dropped: set[int] = set()
    for record in records:
        if record.span_id is None:
            continue
        key = (record.trace_id, record.span_id)
        earlier = first.setdefault(key, record)
        if (earlier is not record and earlier.line not in dropped and earlier.iteration == record.iteration
                and function_name(earlier.target) == function_name(record.target)):
            dropped.add(earlier.line)
    return [r for r in records if r.line not in dropped] if dropped else list(records)


def select_records(records: Sequence[Record], *, target: str | None = None, iteration: int | None = None,
                   all_records: bool = False) -> list[Record]:
    """The records to replay (superseded automatic records left out): those of ``target`` (default: every
    target), then those with ``iteration``, or all of them with ``all_records``, else the last record of each
    target. ``ReplayError`` if none match."""
    chosen = drop_superseded(records)
    if target is not None:
        chosen = [r for r in chosen if r.target == target]
        if not chosen:
            raise ReplayError(f"no records for target {target!r}; targets recorded: "
                              f"{_listing(sorted({r.target for r in records}))}")
    if iteration is not None:
        matching = [r for r in chosen if r.iteration == iteration]
        if not matching:
            raise ReplayError(f"no record with iteration {iteration}"
                              f"{f' for target {target!r}' if target else ''}; iterations recorded: "
                              f"{_listing(sorted({r.iteration for r in chosen}))}")
        return matching
    if all_records:
        return chosen
    last: dict[str, Record] = {}
    for record in chosen:
        last.pop(record.target, None)
        last[record.target] = record
    return sorted(last.values(), key=lambda r: r.line)


def _listing(items: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
