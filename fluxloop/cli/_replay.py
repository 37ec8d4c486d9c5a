"""``fluxloop replay``: run recorded calls again against the current code; save or compare their outcomes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import orjson

from fluxloop._replay_compare import NEW, SAME, CompareReport, compare, outcomes_path, read_outcomes, write_outcomes
from fluxloop.cli._args import int_at_least, plural
from fluxloop.replay import (
    Record,
    ReplayError,
    ReplayResult,
    load_callable,
    load_records,
    replay_record,
    select_records,
)

NAME = "replay"
HELP = "replay recorded calls (a recording .jsonl file) against the current code"

_OK, _FAILED = 0, 1
_PREVIEW = 100


def _factory_spec(value: str) -> str:
    module, sep, name = value.partition(":")
    if not sep or not module or not name:
        raise argparse.ArgumentTypeError(f"expected module:callable, got {value!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="recording file (JSON lines written by FluxLoop recording)")
    parser.add_argument("--target", metavar="T", help="only records of this target (module:qualname)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--iteration", metavar="N", type=int_at_least(0), help="only records with this iteration")
    which.add_argument("--all", action="store_true", help="every record (default: the last one of each target)")
    parser.add_argument("--factory", metavar="MODULE:CALLABLE", type=_factory_spec,
                        help="builds the instance for Class.method targets (default: Class())")
    parser.add_argument("--json", action="store_true", help="print one JSON object per replayed record")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show messages sent, and the traceback of exceptions the target raised")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--save-outcomes", action="store_true",
                      help="replay every record and keep each outcome beside the recording (the baseline)")
    mode.add_argument("--compare", action="store_true",
                      help="replay every record and compare with the saved outcomes; exit 1 when anything changed")
    parser.add_argument("--outcomes", metavar="PATH",
                        help="the outcomes file (default: FILE with .outcomes.jsonl in place of .jsonl)")
    parser.add_argument("--ignore", metavar="PATH", action="append", default=[],
                        help="leave a volatile field out of --compare (output.id, messages[*].ts, **.created_at); "
                             "repeatable")
    parser.add_argument("--junit", metavar="FILE", help="with --compare: also write a JUnit XML report to FILE")


def run(args: argparse.Namespace) -> int:
    # Like `python -m`: modules of the directory the command runs in are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    malformed: list[ReplayError] = []

    def report(problem: ReplayError) -> None:  # reported with file:line, skipped; the rest is replayed
        malformed.append(problem)
        print(f"fluxloop replay: skipped {problem}", file=sys.stderr)

    if (args.ignore or args.junit) and not args.compare:
        print("fluxloop replay: error: --ignore and --junit go with --compare", file=sys.stderr)
        return _FAILED
    everything = args.all or ((args.compare or args.save_outcomes) and args.iteration is None)
    try:
        records = select_records(load_records(args.file, on_malformed=report), target=args.target,
                                 iteration=args.iteration, all_records=everything)
        factory = load_callable(args.factory) if args.factory else None
        saved = read_outcomes(args.outcomes or outcomes_path(args.file)) if args.compare else None
    except ReplayError as exc:
        print(f"fluxloop replay: error: {exc}", file=sys.stderr)
        return _FAILED
    source = os.path.abspath(args.file)
    if saved is not None:
        return _compare(args, records, saved, factory, source, malformed)
    failed = 0
    results: list[ReplayResult] = []
    for record in records:
        # In --json mode stdout carries only our JSON: what the target prints goes to stderr.
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            result = replay_record(record, factory=factory, source=source)
        results.append(result)
        failed += not result.ok
        if args.json:
            sys.stdout.write(orjson.dumps(result.to_dict()).decode() + "\n")
        else:
            _print_result(result, args.verbose, sys.stdout)
        if args.verbose and result.exception is not None:
            traceback.print_exception(type(result.exception), result.exception, result.exception.__traceback__,
                                      file=sys.stderr)
        sys.stdout.flush()
    summary = f"{len(records)} replayed: {len(records) - failed} ok, {failed} failed"
    if malformed:
        summary += f", {plural(len(malformed), 'malformed line')} skipped"
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if args.save_outcomes:
        path = args.outcomes or outcomes_path(args.file)
        try:
            write_outcomes(path, [(result.record, result.outcome()) for result in results],
                           update=args.target is not None or args.iteration is not None)
        except OSError as exc:
            print(f"fluxloop replay: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return _FAILED
        print(f"saved {plural(len(results), 'outcome')} to {path}", file=sys.stderr if args.json else sys.stdout)
        return _FAILED if malformed else _OK  # calls that fail are part of the baseline
    return _FAILED if failed or malformed else _OK


def _compare(args: argparse.Namespace, records: list[Record], saved: dict[str, dict[str, Any]],
             factory: Callable[[], Any] | None, source: str, malformed: list[ReplayError]) -> int:
    report = CompareReport(args.file, [])
    for record in records:
        with _stdout_to_stderr():  # stdout carries only the report
            result = replay_record(record, factory=factory, source=source)
        comparison = compare(record, saved.get(record.key), result.outcome(), args.ignore, result.duration)
        report.comparisons.append(comparison)
        if args.json:
            sys.stdout.write(orjson.dumps(comparison.to_dict(), option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
        else:
            print(f"{comparison.status:<12} {record.target}  iteration {record.iteration}  (line {record.line})")
            if comparison.status == NEW:
                print(f"{'':13}no saved outcome for this record")
            elif comparison.status != SAME or args.verbose:
                for line in comparison.diff:
                    print(f"{'':13}{line}")
            if result.unrebuildable:
                print(f"{'':13}not rebuildable from the recording: {', '.join(result.unrebuildable)}")
        sys.stdout.flush()
    summary = report.summary()
    if malformed:
        summary += f", {plural(len(malformed), 'malformed line')} skipped"
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if args.junit:
        try:
            with open(args.junit, "wb") as file:
                file.write(report.to_junit())
        except OSError as exc:
            print(f"fluxloop replay: error: cannot write {args.junit}: {exc.strerror or exc}", file=sys.stderr)
            return _FAILED
    return _FAILED if report.regressed or malformed else _OK


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _print_result(result: ReplayResult, verbose: bool, out: TextIO) -> None:
    record = result.record
    head = (f"{'ok' if result.ok else 'error':<5}  {record.target}  iteration {record.iteration}  "
            f"(line {record.line})  {result.duration * 1000:.1f} ms  "
            f"{plural(len(result.messages), 'message')}, {plural(len(result.errors), 'error')} sent")
    print(head, file=out)
    if result.error:
        print(f"       {result.error}", file=out)
    if result.trace_id:
        print(f"       trace {result.trace_id}", file=out)
    if result.masked:
        print(f"       masked in the recording, replayed as \"***\": {', '.join(result.masked)}", file=out)
    if result.unrebuildable:
        print(f"       not rebuildable from the recording (<repr:...> or cut), replayed as recorded: "
              f"{', '.join(result.unrebuildable)}", file=out)
    for path, calls in result.stub_calls.items():
        print(f"       stub {path} called {plural(len(calls), 'time')}", file=out)
    if verbose:
        for label, items in (("message", result.messages), ("error", result.errors)):
            for item in items:
                print(f"       {label}: {_preview(item)}", file=out)


def _preview(value: Any) -> str:
    try:
        text = orjson.dumps(value, default=repr).decode()
    except Exception:
        text = repr(value)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "..."
