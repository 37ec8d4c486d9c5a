"""Terminal rendering for the CLI: colors (TTY only, never with NO_COLOR), the trace list, the span tree, progress.

Plain ANSI escapes: the output is a few tables and bars, which needs no rendering library.
Text that comes from spans (names, attribute values) is stripped of control characters before it is printed,
so a span cannot move the cursor or recolor the terminal.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from fluxloop import _attributes as attr
from fluxloop.cli._artifacts import SpanRecord, Trace, TraceSummary

__all__ = [
    "Painter",
    "ProgressBar",
    "format_duration",
    "format_start",
    "iso_utc",
    "render_trace",
    "render_trace_list",
]

_DEFAULT_WIDTH = 100
_NAME_MAX = 48
_MAX_DRAWN_DEPTH = 10  # tree guides drawn for this many levels; deeper spans show their depth as a number
_PREVIEW_MIN = 40
_TYPE_COLORS = {attr.TYPE_AGENT: "35", attr.TYPE_GENERATION: "36", attr.TYPE_TOOL: "33", attr.TYPE_SPAN: "34",
                attr.TYPE_TRACE: "34"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Inherited context: shown on the span that sets it, not repeated on every span below.
_INHERITED = ((attr.USER_ID, "user"), (attr.SESSION_ID, "session"), (attr.TAGS, "tags"))
_USAGE_PREFIX = attr.GEN_AI_USAGE_PREFIX
_MODEL_KEYS = (attr.GEN_AI_REQUEST_MODEL, attr.GEN_AI_RESPONSE_MODEL, "llm.model_name")
_OPENINFERENCE_TOKENS = (("llm.token_count.prompt", "input_tokens"), ("llm.token_count.completion", "output_tokens"))
# Input/output previews: FluxLoop's and OpenInference's keys, then the GenAI chat messages
_INPUT_KEYS = (attr.INPUT_VALUE, attr.GEN_AI_INPUT_MESSAGES, attr.GEN_AI_TOOL_CALL_ARGUMENTS)
_OUTPUT_KEYS = (attr.OUTPUT_VALUE, attr.GEN_AI_OUTPUT_MESSAGES, attr.GEN_AI_TOOL_CALL_RESULT)


def clean(text: str) -> str:
    """``text`` with control characters (ESC included) shown as ``\\xNN`` instead of acted on."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass(frozen=True)
class Painter:
    """Colors and box-drawing glyphs for one output stream.

    Colors only when the stream is a terminal, ``NO_COLOR`` is unset or empty and ``TERM`` is not ``dumb``;
    Unicode glyphs only when the stream's encoding can write them.
    """

    color: bool
    unicode: bool

    @classmethod
    def for_stream(cls, stream: TextIO) -> Painter:
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty and isatty())
        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        try:
            "█├└│─µ…·".encode(getattr(stream, "encoding", None) or "ascii")
            unicode = True
        except (UnicodeEncodeError, LookupError):
            unicode = False
        return cls(color, unicode)

    def paint(self, text: str, *codes: str) -> str:
        """``text`` wrapped in the SGR ``codes`` (empty codes ignored) when colors are on."""
        codes = tuple(code for code in codes if code)
        if not self.color or not codes or not text:
            return text
        return f"\033[{';'.join(codes)}m{text}\033[0m"

    def glyph(self, fancy: str, plain: str) -> str:
        return fancy if self.unicode else plain


BOLD, DIM, RED, GREEN = "1", "2", "31", "32"


# --- values --------------------------------------------------------------------------------------------------


def format_duration(ns: int, unicode: bool = True) -> str:
    """``320 µs``, ``6.21 ms``, ``12.4 ms``, ``3.20 s``, ``2m 05.0s``."""
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} {'µs' if unicode else 'us'}"
    ms = ns / 1_000_000
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m {rest:04.1f}s"


def _utc(ns: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.timezone.utc).replace(
        microsecond=(ns % 1_000_000_000) // 1000)


def format_start(ns: int) -> str:
    """``2026-11-23 21:20:58.573`` (UTC, milliseconds)."""
    return _utc(ns).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def iso_utc(ns: int) -> str:
    """``2026-11-23T21:20:58.573419Z``."""
    return _utc(ns).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def preview(value: Any, limit: int, unicode: bool = True) -> str:
    """One line of at most ``limit`` characters: JSON text as it is, other values as compact JSON."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    text = clean(" ".join(text.split()))
    if len(text) <= limit:
        return text
    return text[:max(limit - 1, 0)] + ("…" if unicode else "~")


def _fit(text: str, width: int, unicode: bool) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + ("…" if unicode else "~")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def terminal_width() -> int:
    return max(shutil.get_terminal_size((_DEFAULT_WIDTH, 24)).columns, 60)


# --- trace list ----------------------------------------------------------------------------------------------


def render_trace_list(traces: Sequence[TraceSummary], out: TextIO, painter: Painter) -> None:
    """One row per trace: id, start, duration, spans, errors, service, root name."""
    services = [clean(t.service or "-") for t in traces]
    service_width = min(max([len("SERVICE"), *map(len, services)]), 32)
    header = (f"{'TRACE ID':<32}  {'START (UTC)':<23}  {'DURATION':>9}  {'SPANS':>6}  {'ERRORS':>6}  "
              f"{'SERVICE':<{service_width}}  ROOT")
    out.write(painter.paint(header, BOLD) + "\n")
    for trace, service in zip(traces, services, strict=True):
        errors = f"{trace.error_count:>6,}"
        root = clean(trace.root_name) if trace.has_root else f"{clean(trace.root_name)} (no root span)"
        out.write(
            f"{painter.paint(trace.trace_id, BOLD)}  {format_start(trace.start_ns):<23}  "
            f"{format_duration(trace.duration_ns, painter.unicode):>9}  {trace.span_count:>6,}  "
            f"{painter.paint(errors, RED) if trace.error_count else errors}  "
            f"{_fit(service, service_width, painter.unicode):<{service_width}}  {root}\n"
        )


# --- one trace -----------------------------------------------------------------------------------------------


def render_trace(trace: Trace, out: TextIO, painter: Painter, width: int | None = None) -> None:
    """The span tree of ``trace`` with a waterfall bar per span and its key attributes below it."""
    width = width or terminal_width()
    uni = painter.unicode
    spans = trace.spans
    t0, total = trace.start_ns, max(trace.end_ns - trace.start_ns, 1)
    summary = trace.summary
    errors = sum(s.is_error for s in spans)
    dot = painter.glyph(" · ", " - ")
    out.write(f"{painter.paint('trace ' + summary.trace_id, BOLD)}{dot}{clean(summary.root_name)}\n")
    facts = [f"service {clean(summary.service or '-')}", f"{format_start(t0)} UTC",
             format_duration(trace.end_ns - t0, uni), _plural(len(spans), "span"), _plural(errors, "error")]
    if errors:
        facts[-1] = painter.paint(facts[-1], RED)
    out.write(dot.join(facts) + "\n\n")

    prefixes = [_row_prefix(s, painter) for s in spans]
    names = [p + clean(s.name) for p, s in zip(prefixes, spans, strict=True)]
    name_width = min(max([len("SPAN"), *map(len, names)]), _NAME_MAX)
    type_width = max([len("TYPE"), *(len(s.observation_type) for s in spans)])
    fixed = name_width + 2 + type_width + 2 + 9 + 2 + 6 + 2
    bar_width = min(max(width - fixed, 10), 60)
    total_text = format_duration(total, uni)
    axis = f"0{total_text:>{bar_width - 1}}" if bar_width > len(total_text) + 1 else ""
    out.write(painter.paint(f"{'SPAN':<{name_width}}  {'TYPE':<{type_width}}  {'DURATION':>9}  {'STATUS':<6}  "
                            f"{axis}".rstrip(), BOLD) + "\n")
    detail_width = max(width - 8, _PREVIEW_MIN)
    for position, (span, name) in enumerate(zip(spans, names, strict=True)):
        has_children = position + 1 < len(spans) and spans[position + 1].depth > span.depth
        color = RED if span.is_error else _TYPE_COLORS.get(span.observation_type, "")
        status = "ERROR" if span.is_error else "ok"
        bar = _bar(span.start_ns - t0, span.end_ns - t0, total, bar_width, painter.glyph("█", "#"))
        kind = f"{span.observation_type:<{type_width}}"
        row = (f"{_fit(name, name_width, uni):<{name_width}}  {painter.paint(kind, color)}  "
               f"{format_duration(span.duration_ns, uni):>9}  "
               f"{painter.paint(f'{status:<6}', RED if span.is_error else GREEN)}  {painter.paint(bar, color)}")
        out.write(row.rstrip() + "\n")
        parent = _parent_of(spans, position)
        guide = _detail_prefix(span, has_children, painter)
        for text, style in _details(span, parent, max(detail_width - len(guide), _PREVIEW_MIN), uni):
            out.write(painter.paint(guide, DIM) + painter.paint(text, style) + "\n")


def _bar(start: int, end: int, total: int, width: int, block: str) -> str:
    first = min(int(start * width / total), width - 1)
    last = max(round(end * width / total), first + 1)
    return " " * first + block * (min(last, width) - first)


def _guides(span: SpanRecord, bar: str) -> str:
    """The vertical guides of the levels above ``span`` (deep levels collapse into their depth number)."""
    if span.depth > _MAX_DRAWN_DEPTH:  # numbered, so the name keeps its room
        return f"[{span.depth}] "
    return "".join("   " if last else f"{bar}  " for last in span.ancestors_last)


def _row_prefix(span: SpanRecord, painter: Painter) -> str:
    if span.depth == 0:
        return ""
    return _guides(span, painter.glyph("│", "|")) + (painter.glyph("└─ ", "`- ") if span.is_last
                                                     else painter.glyph("├─ ", "|- "))


def _detail_prefix(span: SpanRecord, has_children: bool, painter: Painter) -> str:
    bar = painter.glyph("│", "|")
    guides = _guides(span, bar)
    if span.depth > _MAX_DRAWN_DEPTH:
        guides = " " * len(guides)
    if span.depth:
        guides += "   " if span.is_last else f"{bar}  "
    return guides + (f"{bar} " if has_children else "  ")


def _parent_of(spans: Sequence[SpanRecord], position: int) -> SpanRecord | None:
    depth = spans[position].depth
    for index in range(position - 1, -1, -1):
        if spans[index].depth < depth:
            return spans[index]
    return None


def _details(span: SpanRecord, parent: SpanRecord | None, width: int, uni: bool) -> list[tuple[str, str]]:
    """(text, style) lines under a span: its error, key attributes, input and output previews."""
    lines: list[tuple[str, str]] = []
    a = span.attributes
    if span.is_error:
        error_type = a.get(attr.ERROR_TYPE)
        message = span.status_message
        text = f"{error_type}: {message}" if error_type and not message.startswith(str(error_type)) else message
        lines.append((preview(f"error: {text or 'status ERROR'}", width, uni), RED))
    keys: list[str] = []
    model = next((a[k] for k in _MODEL_KEYS if k in a), None)
    if model is not None:
        keys.append(f"model={model}")
    keys += _tokens(a)
    tool = a.get(attr.GEN_AI_TOOL_NAME, a.get("tool.name"))
    if tool is not None:
        keys.append(f"tool={tool}")
    for key, label in _INHERITED:
        value = a.get(key)
        if value is not None and (parent is None or parent.attributes.get(key) != value):
            keys.append(f"{label}={','.join(map(str, value)) if isinstance(value, list) else value}")
    if keys:
        lines.append((preview("  ".join(keys), width, uni), DIM))
    for keys_in_order, label in ((_INPUT_KEYS, "in  "), (_OUTPUT_KEYS, "out ")):
        value = next((a[k] for k in keys_in_order if k in a), None)
        if value is not None:
            lines.append((label + preview(value, width - len(label), uni), DIM))
    return lines


def _tokens(a: Mapping[str, Any]) -> list[str]:
    """Token counts: GenAI ``gen_ai.usage.*``, else OpenInference ``llm.token_count.*``; counts FluxLoop kept
    aside because a child span reports them (``fluxloop.usage.*``) are shown in parentheses."""
    found = [f"{key[len(_USAGE_PREFIX):]}={value}" for key, value in a.items() if key.startswith(_USAGE_PREFIX)]
    if not found:
        found = [f"{name}={a[key]}" for key, name in _OPENINFERENCE_TOKENS if key in a]
    aside = [f"{key[len(attr.FLUXLOOP_USAGE_PREFIX):]}={value}" for key, value in a.items()
             if key.startswith(attr.FLUXLOOP_USAGE_PREFIX)]
    if aside:
        found.append(f"(counted below: {' '.join(aside)})")
    return found


# --- progress ------------------------------------------------------------------------------------------------


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal (at most 10 times a second); silent otherwise."""

    def __init__(self, stream: TextIO, total: int, label: str) -> None:
        isatty = getattr(stream, "isatty", None)
        self._stream = stream
        self._enabled = bool(isatty and isatty()) and total > 0
        self._unicode = Painter.for_stream(stream).unicode
        self._total = total
        self._label = label
        self._drawn_at = 0.0
        self._drawn = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    def update(self, done: int, note: str = "", *, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        fraction = min(done / self._total, 1.0)
        cells = 30
        full = int(fraction * cells)
        fill, empty = ("█", "░") if self._unicode else ("#", "-")
        text = f"{self._label} [{fill * full}{empty * (cells - full)}] {fraction:4.0%} {note}"
        self._stream.write("\r\033[K" + text[:terminal_width() - 1])
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar, so what follows starts on a clean line."""
        if self._drawn:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._drawn = False
