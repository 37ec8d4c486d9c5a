"""Replay as a regression test: saved outcomes beside a recording, their comparison, diffs and JUnit reports.

The outcomes of a recording ``calls.jsonl`` live beside it in ``calls.outcomes.jsonl`` (never inside the recording's
lines), one JSON object per record: ``{"key": ..., "target": ..., "iteration": ..., "line": ..., "outcome": {...}}``.
An outcome holds what a call produced: ``status``, ``output``, ``messages``, ``errors``, ``stub_calls``,
``exception`` (type and message).
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from fluxloop._replay_records import Record, ReplayError

SAME: Final = "same"
CHANGED: Final = "changed"
NOW_FAILING: Final = "now failing"
NOW_PASSING: Final = "now passing"
NEW: Final = "new"  # no saved outcome: reported, not a failure
#: Statuses that make ``--compare`` exit 1.
REGRESSIONS: Final = frozenset({CHANGED, NOW_FAILING, NOW_PASSING})
_PREVIEW: Final = 80
_TOKEN: Final = re.compile(r"\[[^\]]*\]|[^.\[]+")


def outcomes_path(recording: str | os.PathLike[str]) -> str:
    """Where the outcomes of ``recording`` are kept: ``x.jsonl`` → ``x.outcomes.jsonl``."""
    base = os.fspath(recording)
    stem = base[:-len(".jsonl")] if base.endswith(".jsonl") else base
    return stem + ".outcomes.jsonl"


def write_outcomes(path: str, entries: Iterable[tuple[Record, Mapping[str, Any]]], *, update: bool = False) -> None:
    """Write the outcomes file at once (a temporary file renamed over it), so a reader never sees half of it.
    With ``update``, outcomes already saved for other records are kept."""
    rows: dict[str, bytes] = {}
    if update and os.path.exists(path):
        with open(path, "rb") as file:
            for raw in file.read().splitlines():
                try:
                    rows[str(orjson.loads(raw)["key"])] = raw
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a malformed line is not carried over
    for record, outcome in entries:
        rows[record.key] = orjson.dumps({"key": record.key, "target": record.target, "iteration": record.iteration,
                                         "line": record.line, "outcome": outcome}, option=orjson.OPT_NON_STR_KEYS)
    lines = list(rows.values())
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".outcomes-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(b"".join(line + b"\n" for line in lines))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_outcomes(path: str) -> dict[str, dict[str, Any]]:
    """Saved outcomes by record key; ``ReplayError`` when the file is missing or malformed."""
    try:
        with open(path, "rb") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        raise ReplayError(f"no saved outcomes: {path} (run `fluxloop replay FILE --save-outcomes` first)") from None
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
    out: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = orjson.loads(raw)
            out[str(entry["key"])] = dict(entry["outcome"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ReplayError(f"{path}:{number}: malformed outcome line") from None
    return out


# -- comparing ----------------------------------------------------------------------------------------------------
def _tokens(path: str) -> list[str]:
    return _TOKEN.findall(path)


def _matches(pattern: list[str], path: list[str]) -> bool:
    """``pattern`` matches ``path`` or one of its ancestors; ``*`` is any key, ``[*]`` any index, ``**`` any
    number of steps."""
    if not pattern:
        return True
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    step = path[0]
    if head == step or (head == "*" and not step.startswith("[")) or (head == "[*]" and step.startswith("[")):
        return _matches(rest, path[1:])
    return False


def _ignored(path: str, patterns: Sequence[list[str]]) -> bool:
    tokens = _tokens(path)
    return any(_matches(p, tokens) for p in patterns)


def _show(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "..."


def _prune(value: Any, path: str, patterns: Sequence[list[str]]) -> Any:
    """``value`` (found at ``path``) without the parts an ignore pattern covers, for display."""
    if isinstance(value, dict):
        return {k: _prune(v, f"{path}.{k}" if path else str(k), patterns) for k, v in value.items()
                if not _ignored(f"{path}.{k}" if path else str(k), patterns)}
    if isinstance(value, list):
        return [_prune(v, f"{path}[{i}]", patterns) for i, v in enumerate(value)
                if not _ignored(f"{path}[{i}]", patterns)]
    return value


def _walk(old: Any, new: Any, path: str, patterns: Sequence[list[str]], out: list[str]) -> None:
    if path and _ignored(path, patterns):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        steps: list[tuple[str, Any, Any, bool, bool]] = [
            (f"{path}.{k}" if path else str(k), old.get(k), new.get(k), k in old, k in new)
            for k in sorted(old.keys() | new.keys(), key=str)]
    elif isinstance(old, list) and isinstance(new, list):
        steps = [(f"{path}[{i}]", old[i] if i < len(old) else None, new[i] if i < len(new) else None,
                  i < len(old), i < len(new)) for i in range(max(len(old), len(new)))]
    else:
        if old != new or type(old) is not type(new):
            out.append(f"  {path}: {_show(_prune(old, path, patterns))} -> {_show(_prune(new, path, patterns))}")
        return
    for sub, a, b, in_old, in_new in steps:
        if _ignored(sub, patterns):
            continue
        if not in_new:
            out.append(f"- {sub}: {_show(_prune(a, sub, patterns))}")
        elif not in_old:
            out.append(f"+ {sub}: {_show(_prune(b, sub, patterns))}")
        else:
            _walk(a, b, sub, patterns, out)


def diff(expected: Mapping[str, Any], actual: Mapping[str, Any], ignore: Sequence[str] = ()) -> list[str]:
    """Readable differences between two outcomes, one line each: ``path: old -> new``, ``- path: old`` (gone),
    ``+ path: new`` (added). Paths matching an ``ignore`` pattern (or under one) are left out."""
    lines: list[str] = []
    _walk(dict(expected), dict(actual), "", [_tokens(p) for p in ignore], lines)
    return lines


@dataclass
class Comparison:
    """One record replayed and compared with its saved outcome."""

    record: Record
    status: str  # same / changed / now failing / now passing / new
    diff: list[str] = field(default_factory=list)
    expected: dict[str, Any] | None = None
    actual: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``fluxloop replay --compare --json`` prints, one per line)."""
        return {"target": self.record.target, "iteration": self.record.iteration, "line": self.record.line,
                "key": self.record.key, "status": self.status, "diff": self.diff, "expected": self.expected,
                "actual": self.actual}


def compare(record: Record, expected: Mapping[str, Any] | None, actual: Mapping[str, Any],
            ignore: Sequence[str] = (), duration: float = 0.0) -> Comparison:
    """Classify ``actual`` against the saved ``expected`` outcome of ``record``."""
    if expected is None:
        return Comparison(record, NEW, [], None, dict(actual), duration)
    lines = diff(expected, actual, ignore)
    was_ok, is_ok = expected.get("status") == "ok", actual.get("status") == "ok"
    if was_ok and not is_ok:
        status = NOW_FAILING
    elif is_ok and not was_ok:
        status = NOW_PASSING
    else:
        status = CHANGED if lines else SAME
    return Comparison(record, status, lines, dict(expected), dict(actual), duration)


@dataclass
class CompareReport:
    """Every comparison of one ``--compare`` run."""

    recording: str
    comparisons: list[Comparison]

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.comparisons)

    @property
    def regressed(self) -> bool:
        """True when anything changed (changed, now failing or now passing): ``--compare`` exits 1."""
        return any(c.status in REGRESSIONS for c in self.comparisons)

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in (SAME, CHANGED, NOW_FAILING, NOW_PASSING, NEW) if self.count(s)]
        return f"{len(self.comparisons)} compared: {', '.join(parts) or 'nothing'}"

    def to_junit(self) -> bytes:
        """A JUnit XML report: one ``testcase`` per record; ``failure`` for a change, ``skipped`` when no outcome
        was saved."""
        failures = sum(c.status in REGRESSIONS for c in self.comparisons)
        skipped = self.count(NEW)
        total_time = f"{sum(c.duration for c in self.comparisons):.3f}"
        counts = {"tests": str(len(self.comparisons)), "failures": str(failures), "errors": "0",
                  "skipped": str(skipped), "time": total_time}
        root = ET.Element("testsuites", {"name": "fluxloop replay", **counts})
        suite = ET.SubElement(root, "testsuite", {"name": f"fluxloop replay {self.recording}", **counts})
        for c in self.comparisons:
            case = ET.SubElement(suite, "testcase", {
                "classname": c.record.target, "name": f"iteration {c.record.iteration} (line {c.record.line})",
                "time": f"{c.duration:.3f}"})
            if c.status in REGRESSIONS:
                failure = ET.SubElement(case, "failure", {"type": c.status.replace(" ", "_"),
                                                          "message": f"{c.status}: {len(c.diff)} difference(s)"})
                failure.text = "\n".join(c.diff)
            elif c.status == NEW:
                ET.SubElement(case, "skipped", {"message": "no saved outcome for this record"})
        return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
