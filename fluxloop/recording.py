"""Argument recording: one JSON line per recorded call, so the call can be replayed later (``fluxloop replay``).

Each line is (DESIGN §4; compact JSON, one object per line)::

    {"_version": "1", "iteration": 0, "target": "pkg.module:Class.method", "kwargs": {...},
     "timestamp": "2025-09-30T14:30:00.000000+00:00", "trace_id": "4bf9...", "span_id": "00f0..."}

``kwargs`` goes through the one FluxLoop serializer: callables become markers, sensitive keys ``***``, other
non-JSON values a ``repr`` cut to 100 characters.

While recording is on, every ``@fluxloop.agent`` call is captured when its span starts (arguments serialized
then, on the calling thread, so later mutation cannot change the record) and written when the call ends,
however it ends (return, exception, cancellation, generator closed). If the agent calls
:func:`record_call_args` for itself, that explicit record (its target, its arguments) replaces the automatic
one, so such a handler still yields exactly one record per call. Calls still running when recording stops
(``disable_recording``, ``reset_config``, ``shutdown``, interpreter exit) are written then.

The disk write happens on a background thread (:mod:`fluxloop._recording_writer`). Nothing here raises into
user code, except :func:`enable_recording` when the file cannot be created.

Example::

    import fluxloop

    fluxloop.enable_recording("/tmp/args.jsonl")
    fluxloop.record_call_args(target="module:Handler.method", payload={"text": "hi"})
    fluxloop.disable_recording()
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, NamedTuple, cast

import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from fluxloop._masking import DEFAULT_MASKER, Masker
from fluxloop._errors import report
from fluxloop._recording_writer import RecordWriter
from fluxloop._serialize import dumps

__all__ = [
    "disable_recording",
    "enable_recording",
    "is_recording",
    "record_call_args",
    "set_recording_options",
]

RECORD_VERSION: Final = "1"
#: How long disable/reset/re-enable wait for pending lines to reach the disk before moving on.
CLOSE_TIMEOUT: Final = 5.0
_DEFAULT_DIR: Final = "/tmp"

#: True while records are being written. A plain attribute: the decorators read it on every call.
ACTIVE: bool = False

_lock = threading.RLock()  # guards everything below; recreated in a forked child
_writer: RecordWriter | None = None
_default_path = False  # the writer's file is the timestamped default (kept by repeated configure())
_masker: Masker = DEFAULT_MASKER
_auto_increment = True
_next_iteration: dict[str, int] = {}


class _Prepared(NamedTuple):
    """A record serialized on the calling thread, waiting for its iteration number."""

    target: str
    kwargs_json: bytes
    timestamp: bytes
    trace_id: bytes
    span_id: bytes


class _AgentScope:
    """One running ``@agent`` call and its not-yet-written automatic record."""

    __slots__ = ("function", "parent", "pending")

    def __init__(self, function: str, parent: _AgentScope | None, pending: _Prepared | None) -> None:
        self.function = function
        self.parent = parent
        self.pending = pending


_SCOPE: contextvars.ContextVar[_AgentScope | None] = contextvars.ContextVar("fluxloop_recording_scope",
                                                                            default=None)
_SUPPRESSED: contextvars.ContextVar[bool] = contextvars.ContextVar("fluxloop_recording_suppressed",
                                                                   default=False)
_open_scopes: set[_AgentScope] = set()  # calls whose automatic record is pending


def _function_name(target: str) -> str:
    """``pkg.mod:Class.method`` → ``method``: what an explicit record and its agent's target must share."""
    return target.rpartition(":")[2].rpartition(".")[2]


# -- public API -------------------------------------------------------------------------------------------------
def default_recording_path() -> str:
    """``/tmp/fluxloop_args_<YYYYmmdd_HHMMSS>.jsonl`` (the system temp dir where there is no ``/tmp``)."""
    directory = _DEFAULT_DIR if os.name == "posix" else tempfile.gettempdir()
    return os.path.join(directory, f"fluxloop_args_{_dt.datetime.now():%Y%m%d_%H%M%S}.jsonl")


def enable_recording(path: str | os.PathLike[str] | None = None) -> str:
    """Start writing records to ``path`` (created with its directory if needed; appended to if it exists) and
    return its absolute path. Without ``path``: ``/tmp/fluxloop_args_<YYYYmmdd_HHMMSS>.jsonl``.

    Raises ``OSError`` when the file cannot be created; recording is then unchanged.

    Example::

        path = fluxloop.enable_recording("/tmp/args.jsonl")
    """
    global _writer, _default_path, ACTIVE
    resolved = os.path.abspath(os.path.expanduser(os.fspath(path))) if path is not None \
        else default_recording_path()
    with _lock:
        old = _writer
        if old is not None and old.path == resolved and not old.closed:
            ACTIVE = True
            _default_path = path is None and _default_path
            return resolved
        _writer = RecordWriter(resolved)  # raises OSError before anything changed
        _default_path = path is None
        ACTIVE = True
    if old is not None:
        old.close(CLOSE_TIMEOUT)
    return resolved


def disable_recording() -> None:
    """Stop recording: pending records are written (waiting up to a few seconds) and the file is closed. Other
    configuration is unchanged.

    Example::

        fluxloop.disable_recording()
    """
    _stop(CLOSE_TIMEOUT)


def is_recording() -> bool:
    """True while records are being written.

    Example::

        if fluxloop.recording.is_recording(): ...
    """
    return ACTIVE


def recording_path() -> str | None:
    """The file records go to, or None when recording is off."""
    writer = _writer
    return writer.path if ACTIVE and writer is not None else None


def set_recording_options(iteration_auto_increment: bool | None = None) -> None:
    """Change recording behaviour; options left as None keep their value.

    ``iteration_auto_increment`` (default True): each target's iterations count up from 0 (an explicit
    ``iteration=N`` sets where counting continues). When False, a record carries its explicit iteration, or 0.

    Example::

        fluxloop.set_recording_options(iteration_auto_increment=False)
    """
    global _auto_increment
    if iteration_auto_increment is not None:
        with _lock:
            _auto_increment = bool(iteration_auto_increment)


def record_call_args(target: str, iteration: int | None = None, **kwargs: Any) -> None:
    """Append one record of ``kwargs`` for ``target`` (``"pkg.module:Class.method"``) if recording is on.

    Omit ``iteration`` to number records per target automatically. A ``__main__:`` target is rewritten to the
    module's importable name when the program runs as ``python -m pkg.mod``. Called inside an
    ``@fluxloop.agent`` call for that same function (same name after the last ``:`` or ``.``), this record
    replaces the automatic one.

    Example::

        fluxloop.record_call_args(target="module:Handler.method", payload={"text": "hi"})
    """
    if not ACTIVE:
        return
    try:
        if _SUPPRESSED.get():
            return
        target = _importable(_check_target(target))
        if iteration is not None and (isinstance(iteration, bool) or not isinstance(iteration, int)
                                      or iteration < 0):
            report("recording-iteration", "record_call_args(): iteration must be an int >= 0, got %r; "
                   "numbering it automatically", iteration)
            iteration = None
        prepared = _prepare(target, kwargs, trace.get_current_span().get_span_context())
        scope = _SCOPE.get()
        with _lock:
            if scope is not None and scope.pending is not None and scope.function == _function_name(target):
                scope.pending = None  # this call records itself: its own record replaces the automatic one
                _open_scopes.discard(scope)
            _submit(prepared, iteration)
    except Exception as exc:
        report("recording-internal", "recording failed (the call itself is unaffected): %r", exc)


def _check_target(target: Any) -> str:
    if isinstance(target, str) and target:
        return target
    report("recording-target", "record_call_args(): target should be a non-empty 'module:qualname' string, "
           "got %r", target)
    return str(target) or "?"


# -- hooks for the core (decorators, configure(), flush(), shutdown()) --------------------------------------------
def on_agent_start(target: str, arguments: dict[str, Any], span_context: SpanContext | None) -> object | None:
    """Capture an ``@agent`` call as its span starts; the token goes to :func:`on_agent_end`. Never raises."""
    if not ACTIVE:
        return None
    try:
        if _SUPPRESSED.get():
            return None
        target = _importable(target)
        scope = _AgentScope(_function_name(target), _SCOPE.get(), _prepare(target, arguments, span_context))
        with _lock:
            _open_scopes.add(scope)
        return _SCOPE.set(scope), scope
    except Exception as exc:
        report("recording-internal", "recording failed (the call itself is unaffected): %r", exc)
        return None


def on_agent_end(token: object | None) -> None:
    """Write the call's record (unless it recorded itself) and close its scope. Never raises."""
    if token is None:
        return
    try:
        ctx_token, scope = cast("tuple[contextvars.Token[_AgentScope | None], _AgentScope]", token)
        try:
            _SCOPE.reset(ctx_token)
        except ValueError:  # ended in another context (a generator resumed elsewhere): undo our own scope only
            if _SCOPE.get() is scope:
                _SCOPE.set(scope.parent)
        _emit(scope)
    except Exception as exc:
        report("recording-internal", "recording failed (the call itself is unaffected): %r", exc)


def apply_config(record_args: bool, recording_file: str | None, masker: Masker) -> None:
    """``configure()``/``reset_config()``: record to ``recording_file`` (default path when None) or stop.

    A file that cannot be created is logged and leaves recording off; this never raises.
    """
    set_masker(masker)
    if not record_args:
        _stop(CLOSE_TIMEOUT)
        return
    with _lock:
        keep = recording_file is None and ACTIVE and _default_path
    if keep:
        return
    try:
        enable_recording(recording_file)
    except OSError as exc:
        _stop(CLOSE_TIMEOUT)
        report("recording-open", "cannot open recording file %s: %s; recording is off",
               recording_file or "(default)", exc)


def set_masker(masker: Masker) -> None:
    """Use ``masker`` (built from ``mask_patterns``/``mask_function``) for records captured from now on."""
    global _masker
    _masker = masker


def reset() -> None:
    """``reset_config()``: stop writing (pending lines written, file closed), reset counters and options."""
    global _auto_increment, _masker
    _stop(CLOSE_TIMEOUT)
    with _lock:
        _next_iteration.clear()
        _auto_increment = True
        _masker = DEFAULT_MASKER


def flush(timeout: float | None = None) -> bool:
    """Wait until every record written so far is on disk; False if ``timeout`` seconds passed first.
    (Calls still running are written when they end.)"""
    writer = _writer
    return True if writer is None else writer.flush(timeout)


def shutdown(timeout: float | None = None) -> None:
    """Write pending records within ``timeout`` and stop recording (enable it again to continue); idempotent."""
    _stop(timeout)


def stats() -> dict[str, int]:
    """Counters of the current file: ``written``, ``dropped``, ``failed``, ``pending`` (zeros when off)."""
    writer = _writer
    return writer.stats() if writer is not None else {"written": 0, "dropped": 0, "failed": 0, "pending": 0}


@contextmanager
def suppressed() -> Iterator[None]:
    """Nothing is recorded inside this block, in this context (replays must not record themselves again)."""
    token = _SUPPRESSED.set(True)
    try:
        yield
    finally:
        _SUPPRESSED.reset(token)


# -- internals ----------------------------------------------------------------------------------------------------
def _stop(timeout: float | None) -> None:
    global _writer, _default_path, ACTIVE
    with _lock:
        for scope in list(_open_scopes):  # calls still running were captured while recording was on
            _emit(scope)
        ACTIVE = False
        writer, _writer = _writer, None
        _default_path = False
    if writer is not None and not writer.close(timeout):
        report("recording-close", "recording file %s: pending records were not all written within %ss; "
               "they are written in the background", writer.path, timeout)


def _emit(scope: _AgentScope) -> None:
    with _lock:
        prepared, scope.pending = scope.pending, None
        _open_scopes.discard(scope)
        if prepared is not None:
            _submit(prepared, None)


def _importable(target: str) -> str:
    """``__main__:f`` → ``pkg.mod:f`` when the program was started with ``python -m pkg.mod``, so the record
    can be replayed from another process."""
    if not target.startswith("__main__:"):
        return target
    name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    if not name or name == "__main__" or name.endswith(".__main__"):
        return target
    return name + target[len("__main__"):]


def _prepare(target: str, kwargs: Mapping[str, Any], span_context: SpanContext | None) -> _Prepared:
    """Serialize now, on the calling thread: what is recorded is the arguments as they were at this moment."""
    kwargs_json, _ = dumps(kwargs, _masker)
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat().encode()
    if span_context is None or not span_context.is_valid:
        return _Prepared(target, kwargs_json, stamp, b"null", b"null")
    return _Prepared(target, kwargs_json, stamp,
                     b'"' + trace.format_trace_id(span_context.trace_id).encode() + b'"',
                     b'"' + trace.format_span_id(span_context.span_id).encode() + b'"')


def _submit(prepared: _Prepared, iteration: int | None) -> None:
    """Number the record and queue its line, in one step (lock held by the caller or taken here), so file order
    follows iteration order within a process."""
    with _lock:
        writer = _writer
        if writer is None or not ACTIVE:
            return
        target = prepared.target
        if not _auto_increment:
            number = iteration if iteration is not None else 0
        else:
            number = _next_iteration.get(target, 0) if iteration is None else iteration
            _next_iteration[target] = number + 1
        writer.submit(b'{"_version":"' + RECORD_VERSION.encode() + b'","iteration":' + str(number).encode()
                      + b',"target":' + orjson.dumps(target) + b',"kwargs":' + prepared.kwargs_json
                      + b',"timestamp":"' + prepared.timestamp + b'","trace_id":' + prepared.trace_id
                      + b',"span_id":' + prepared.span_id + b"}\n")


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork time. Calls in flight at fork belong to the parent, which
    # writes their records; the child writes none of them (a call the forking thread was in is the parent's).
    global _lock
    _lock = threading.RLock()
    for scope in _open_scopes:
        scope.pending = None
    _open_scopes.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
