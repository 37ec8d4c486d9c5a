"""``fluxloop traces``: list the traces in offline artifacts; ``fluxloop traces show`` draws one as a span tree.

Example::

    $ fluxloop traces --errors --limit 5
    $ fluxloop traces show 0baa18          # a unique prefix of the trace id; without one, the newest trace
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from fluxloop._config import resolve_env
from fluxloop.cli._args import int_at_least, plural
from fluxloop.cli._artifacts import (
    STATUS_ERROR,
    AmbiguousTraceId,
    Problem,
    SpanRecord,
    Trace,
    TraceIndex,
    TraceSummary,
    index_traces,
    load_trace,
    resolve_trace_id,
)
from fluxloop.cli._render import Painter, iso_utc, render_trace, render_trace_list

NAME = "traces"
HELP = "list the traces in offline artifacts, newest first ('traces show [TRACE_ID]' draws one as a tree)"

_OK, _FAILED = 0, 1
_DEFAULT_LIMIT = 50
_MAX_PROBLEMS_SHOWN = 20
_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{1,32}")
_STATUS_NAMES = {0: "UNSET", 1: "OK", STATUS_ERROR: "ERROR"}


def _trace_id_prefix(value: str) -> str:
    if not _HEX_PREFIX.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected a trace id or a prefix of one (1-32 hex digits), got {value!r}")
    return value.lower()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    dir_help = "folder of offline artifacts (default: the configured offline_dir, ./fluxloop_artifacts)"
    parser.epilog = ("Unreadable lines are reported on stderr as FILE:LINE and skipped. Colors only on a terminal, "
                     "never when NO_COLOR is set.")
    parser.add_argument("--dir", metavar="D", help=dir_help)
    parser.add_argument("--limit", metavar="N", type=int_at_least(0), default=_DEFAULT_LIMIT,
                        help=f"show the N newest traces (default {_DEFAULT_LIMIT}; 0 shows all)")
    parser.add_argument("--errors", action="store_true", help="only traces with at least one span in error")
    parser.add_argument("--json", action="store_true", help="one JSON object per trace (JSON Lines)")
    sub = parser.add_subparsers(dest="traces_command", metavar="{show}", title="subcommands")
    show_help = "draw one trace as a span tree with a waterfall, key attributes, input and output"
    show = sub.add_parser("show", help=show_help, description=show_help + ".", epilog=parser.epilog)
    show.add_argument("trace_id", metavar="TRACE_ID", nargs="?", type=_trace_id_prefix,
                      help="the trace id or a unique prefix of it (default: the newest trace)")
    # SUPPRESS: given before `show` (`traces --dir D show`), the value is kept rather than reset to a default.
    show.add_argument("--dir", metavar="D", default=argparse.SUPPRESS, help=dir_help)
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                      help="the whole trace as one JSON object (every span, attribute and event)")


def run(args: argparse.Namespace) -> int:
    command = "traces show" if args.traces_command == "show" else "traces"
    directory = Path(args.dir) if args.dir else Path(resolve_env().config.offline_dir)
    problems = _ProblemReport(f"fluxloop {command}", sys.stderr)
    index = index_traces(directory, problems)
    problems.finish()
    if args.traces_command == "show":
        return _show(index, args.trace_id, args.json, sys.stdout, sys.stderr)
    return _list(index, args, sys.stdout, sys.stderr)


def _list(index: TraceIndex, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not index.files:
        print(f"fluxloop traces: no offline artifacts (*.jsonl) in {index.directory}", file=err)
        return _OK
    traces = [t for t in index.newest_first() if t.error_count or not args.errors]
    shown = traces[:args.limit] if args.limit else traces
    if args.json:
        for trace in shown:
            out.write(orjson.dumps(summary_dict(trace)).decode() + "\n")
    elif shown:
        render_trace_list(shown, out, Painter.for_stream(out))
    kind = plural(len(traces), "trace") + (" with errors" if args.errors else "")
    spans = sum(trace.span_count for trace in traces)  # of the traces counted, not of the whole folder
    note = (f"{kind} ({plural(spans, 'span')}) in {plural(len(index.files), 'file')} "
            f"under {index.directory}")
    if len(shown) < len(traces):
        note += f"; showing the {len(shown):,} newest (--limit 0 shows all)"
    print(note, file=err)
    return _OK


def _show(index: TraceIndex, prefix: str | None, as_json: bool, out: TextIO, err: TextIO) -> int:
    try:
        summary = resolve_trace_id(index, prefix)
    except AmbiguousTraceId as ambiguous:
        listed = ", ".join(ambiguous.matches[:5]) + (", ..." if len(ambiguous.matches) > 5 else "")
        print(f"fluxloop traces show: error: {prefix!r} matches {len(ambiguous.matches)} traces ({listed}); "
              "give more digits", file=err)
        return _FAILED
    if summary is None:
        where = f"in {index.directory}" if index.files else f"(no offline artifacts in {index.directory})"
        what = f"no trace id starts with {prefix!r}" if prefix else "no traces"
        print(f"fluxloop traces show: error: {what} {where}", file=err)
        return _FAILED
    trace = load_trace(index, summary)
    if as_json:
        out.write(orjson.dumps(trace_dict(trace), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render_trace(trace, out, Painter.for_stream(out))
    return _OK


# --- JSON shapes -----------------------------------------------------------------------------------------------


def summary_dict(trace: TraceSummary) -> dict[str, Any]:
    """One trace of ``fluxloop traces --json``."""
    return {
        "trace_id": trace.trace_id,
        "root_name": trace.root_name,
        "has_root": trace.has_root,
        "service": trace.service,
        "start": iso_utc(trace.start_ns),
        "start_unix_nano": trace.start_ns,
        "end_unix_nano": trace.end_ns,
        "duration_ms": trace.duration_ns / 1e6,
        "span_count": trace.span_count,
        "error_count": trace.error_count,
    }


def trace_dict(trace: Trace) -> dict[str, Any]:
    """``fluxloop traces show --json``: the summary and every span, in tree order."""
    out = summary_dict(trace.summary)
    out.update(span_count=len(trace.spans), error_count=sum(s.is_error for s in trace.spans),
               spans=[span_dict(span) for span in trace.spans])
    return out


def span_dict(span: SpanRecord) -> dict[str, Any]:
    return {
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "observation_type": span.observation_type,
        "kind": span.kind_name,
        "depth": span.depth,
        "start": iso_utc(span.start_ns),
        "start_unix_nano": span.start_ns,
        "end_unix_nano": span.end_ns,
        "duration_ms": span.duration_ns / 1e6,
        "status": {"code": _STATUS_NAMES.get(span.status_code, str(span.status_code)),
                   "message": span.status_message},
        "attributes": span.attributes,
        "events": span.events,
        "links": span.links,
        "resource": span.resource,
        "scope": span.scope,
        "source": span.source,
    }


class _ProblemReport:
    """Reports unreadable lines on stderr as ``file:line: why`` (the first few; then how many more)."""

    def __init__(self, command: str, stream: TextIO) -> None:
        self._command = command
        self._stream = stream
        self.count = 0

    def __call__(self, problem: Problem) -> None:
        self.count += 1
        if self.count <= _MAX_PROBLEMS_SHOWN:
            print(f"{self._command}: warning: {problem} (skipped)", file=self._stream)

    def finish(self) -> None:
        if self.count > _MAX_PROBLEMS_SHOWN:
            print(f"{self._command}: warning: {self.count - _MAX_PROBLEMS_SHOWN:,} more unreadable lines skipped",
                  file=self._stream)
