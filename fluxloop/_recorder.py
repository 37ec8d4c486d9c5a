"""The recorder: writes each replay record as one whole JSON line before the recording call returns.

The runtime owns the one :class:`Recorder` of the process. A record is serialized on the calling thread (the one
serializer, bounded), numbered and written under a lock with a single ``os.write`` on an ``O_APPEND`` descriptor,
so threads never interleave; a POSIX record lock held for that write makes processes sharing the file take turns
(the kernel drops it when a holder dies). There is no writer thread: a record
is on disk (in the OS page cache) when :meth:`Recorder.record` returns, and an ``@agent`` call's record is on disk
before its body runs, so a crash, hang or SIGKILL inside the agent keeps it.

A writer killed in the middle of a write leaves a torn last line. The next writer sees that the file does not end
with a newline and starts its line with one, so the torn line costs only its own record; readers skip it.

Line format (DESIGN §4, the seed's line plus optional ids)::

    {"_version":"1","iteration":0,"target":"pkg.mod:Class.method","kwargs":{...},"timestamp":"...",
     "trace_id":"4bf9...","span_id":"00f0..."}

An explicit ``record_call_args`` made anywhere inside an automatically recorded ``@agent`` call of the same
function reuses the automatic record's iteration number and carries the call's ids (its span's, or generated
for an unsampled call): a reader (``fluxloop.replay``) takes the later record in place of the first record of
those ids when function name and iteration match.

Iterations are numbered under the file lock (``fluxloop._record_numbers``), so a process and the processes it
forks never repeat a target's number.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import os
import random
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from fluxloop._errors import report
from fluxloop._masking import DEFAULT_MASKER, Masker
from fluxloop._record_numbers import Numbering
from fluxloop._serialize import dumps_bounded

RECORD_VERSION: Final = "1"
#: A string value longer than this is cut (``...[truncated N chars]``); collections keep this many items.
MAX_VALUE_CHARS: Final = 256 * 1024
MAX_ITEMS: Final = 10_000
#: A record whose line would still be longer is serialized again with these much smaller limits.
MAX_RECORD_BYTES: Final = 4 * 1024 * 1024
_SMALL_VALUE_CHARS: Final = 1024
_SMALL_ITEMS: Final = 100
try:  # POSIX record locks: per process (forked children included), released by the kernel when one dies
    import fcntl

    _lockf: Callable[[int, int], Any] | None = fcntl.lockf
    _LOCK_EX, _LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_UN
except ImportError:  # pragma: no cover - Windows: O_APPEND alone
    _lockf, _LOCK_EX, _LOCK_UN = None, 0, 0
_FILE_MODE: Final = 0o600  # recordings hold call arguments: readable by their owner only
_DEFAULT_DIR: Final = "/tmp"


def default_recording_path() -> str:
    """``/tmp/fluxloop_args_<YYYYmmdd_HHMMSS>.jsonl`` (the system temp dir where there is no ``/tmp``)."""
    directory = _DEFAULT_DIR if os.name == "posix" else tempfile.gettempdir()
    return os.path.join(directory, f"fluxloop_args_{_dt.datetime.now():%Y%m%d_%H%M%S}.jsonl")


def absolute_path(path: str | os.PathLike[str]) -> str:
    """``path`` with ``~`` expanded, made absolute."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def open_append(path: str) -> int:
    """Open (creating it and its directory if needed) ``path`` for appending (and reading its last byte);
    raises ``OSError``."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), _FILE_MODE)


def function_name(target: str) -> str:
    """``pkg.mod:Class.method`` → ``method``: what an explicit record and its agent's target must share."""
    return target.rpartition(":")[2].rpartition(".")[2]


class _Scope:
    """One running ``@agent`` call whose automatic record is on disk; ``ids`` is the call's identity in the file
    (its ``trace_id``/``span_id`` keys), which an explicit record for the call made anywhere inside it shares."""

    __slots__ = ("function", "ids", "iteration", "parent", "superseded")

    def __init__(self, function: str, iteration: int, ids: bytes, parent: _Scope | None) -> None:
        self.function = function
        self.iteration = iteration
        self.ids = ids
        self.parent = parent
        self.superseded = False

    def owner(self, function: str) -> _Scope | None:
        """The innermost running call (this one or an enclosing one) of ``function``, if any."""
        scope: _Scope | None = self
        while scope is not None and scope.function != function:
            scope = scope.parent
        return scope


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("fluxloop_recording_scope", default=None)
_SUPPRESSED: contextvars.ContextVar[bool] = contextvars.ContextVar("fluxloop_recording_suppressed", default=False)


@contextmanager
def suppressed() -> Iterator[None]:
    """Nothing is recorded inside this block, in this context (replays must not record themselves again)."""
    token = _SUPPRESSED.set(True)
    try:
        yield
    finally:
        _SUPPRESSED.reset(token)


def _importable(target: str) -> str:
    """``__main__:f`` → ``pkg.mod:f`` when the program was started with ``python -m pkg.mod``, so the record
    can be replayed from another process."""
    if not target.startswith("__main__:"):
        return target
    name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    if not isinstance(name, str) or not name or name == "__main__" or name.endswith(".__main__"):
        return target
    return name + target[len("__main__"):]


def _ids(trace_id: int, span_id: int) -> bytes:
    return (b',"trace_id":"' + trace.format_trace_id(trace_id).encode()
            + b'","span_id":"' + trace.format_span_id(span_id).encode() + b'"')


def _span_ids(span_context: SpanContext | None) -> bytes:
    """The ids of a valid span context; nothing for none."""
    if span_context is None or not span_context.is_valid:
        return b""
    return _ids(span_context.trace_id, span_context.span_id)


def _call_ids(span_context: SpanContext | None) -> bytes:
    """An ``@agent`` call's identity: its span's ids, or for a call without a span (not sampled) ids made the
    way the SDK makes them for a non-recording span (the parent's trace, a random span id): every call has one,
    so its own explicit record can supersede its automatic one, sampled or not."""
    if span_context is not None and span_context.is_valid:
        return _ids(span_context.trace_id, span_context.span_id)
    parent = trace.get_current_span().get_span_context()
    trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128) or 1
    return _ids(trace_id, random.getrandbits(64) or 1)


class Recorder:
    """Recording for one process: the file, the per-target iteration numbers, the masker and the options.

    ``write`` is the low-level write function (``os.write`` unless a test stands in for the disk).
    """

    def __init__(self, write: Callable[[int, bytes], int] = os.write) -> None:
        #: True while records are written; a plain attribute, read by the decorators on every call.
        self.active = False
        self._write = write
        self._lock = threading.RLock()  # re-entrant: an @agent called from a signal handler mid-record
        self._path: str | None = None
        self._fd: int | None = None
        self._default: str | None = None  # the timestamped default file, kept until reset()
        self._masker: Masker = DEFAULT_MASKER
        self._numbers = Numbering()
        self._clean_size = -1  # file size right after our last write (ends with our newline)
        self.written = 0
        self.failed = 0
        self.truncated = 0

    # -- configuration (called by the runtime) -------------------------------------------------------------
    @property
    def path(self) -> str | None:
        """The file records go to, or None when recording is off."""
        return self._path if self.active else None

    def resolve_file(self, record_args: bool, recording_file: str | None) -> str | None:
        """The file ``record_args``/``recording_file`` mean: absolute, or the default name (chosen once and kept
        until :meth:`reset`), or None when recording is off."""
        if not record_args:
            return recording_file
        if recording_file is not None:
            return absolute_path(recording_file)
        if self._default is None:
            self._default = default_recording_path()
        return self._default

    def apply(self, record_args: bool, recording_file: str | None, masker: Masker, open_now: bool) -> None:
        """Record to ``recording_file`` (already resolved) or stop. With ``open_now`` the file is created now
        (``configure()``), else on the first record (import time). Never raises: a file that cannot be created
        is reported and leaves recording off."""
        self._masker = masker
        with self._lock:
            if not record_args or recording_file is None:
                self._close_locked()
                self.active = False
                return
            if recording_file != self._path:
                self._close_locked()
                self._path = recording_file
            self.active = True
            if open_now:
                self._open_locked()

    def set_masker(self, masker: Masker) -> None:
        """Use ``masker`` for records captured from now on."""
        self._masker = masker

    def set_options(self, iteration_auto_increment: bool | None = None) -> None:
        """See :func:`fluxloop.set_recording_options`."""
        if iteration_auto_increment is not None:
            with self._lock:
                self._numbers.auto_increment = bool(iteration_auto_increment)

    def reset(self) -> None:
        """``reset_config()``: close the file, forget numbering, options, masker and the default file name."""
        with self._lock:
            self._close_locked()
            self.active = False
            self._numbers.reset()
            self._default = None
            self._masker = DEFAULT_MASKER
            self.written = self.failed = self.truncated = 0

    def close(self) -> None:
        """Stop recording and close the file (``shutdown()``); idempotent. Nothing is pending: writes are
        synchronous."""
        with self._lock:
            self._close_locked()
            self.active = False

    def stats(self) -> dict[str, int]:
        """``written`` records, ``failed`` writes, ``truncated`` records (cut again with small bounds to fit)."""
        return {"written": self.written, "failed": self.failed, "truncated": self.truncated}

    def after_fork_in_child(self) -> None:
        # Another thread may have held the lock at fork time. The descriptor stays: O_APPEND writes of the
        # parent and the child land whole at the end of the file.
        self._lock = threading.RLock()
        self._clean_size = -1

    # -- recording (calling thread) -----------------------------------------------------------------------
    def record(self, target: str, iteration: int | None, kwargs: Mapping[str, Any]) -> None:
        """An explicit record (``record_call_args``): on disk when this returns. Never raises."""
        if not self.active or _SUPPRESSED.get():
            return
        try:
            target = _importable(target)
            scope = _SCOPE.get()
            owner = scope.owner(function_name(target)) if scope is not None else None
            reuse = None
            if owner is not None and not owner.superseded:
                owner.superseded = True  # the call records itself: this record replaces the automatic one
                ids = owner.ids  # the call's identity, even inside nested spans or without a span
                if iteration is None:
                    reuse = owner.iteration
            else:
                ids = _span_ids(trace.get_current_span().get_span_context())
            self._write_record(target, iteration, reuse, kwargs, ids)
        except Exception as exc:
            report("recording-internal", "recording failed (the call itself is unaffected): %r", exc)

    def on_agent_start(self, target: str, arguments: Mapping[str, Any],
                       span_context: SpanContext | None) -> object | None:
        """Write an ``@agent`` call's record as its span starts; the token goes to :meth:`on_agent_end`."""
        if not self.active or _SUPPRESSED.get():
            return None
        try:
            ids = _call_ids(span_context)
            number = self._write_record(_importable(target), None, None, arguments, ids)
            if number is None:
                return None
            scope = _Scope(function_name(target), number, ids, _SCOPE.get())
            return _SCOPE.set(scope), scope
        except Exception as exc:
            report("recording-internal", "recording failed (the call itself is unaffected): %r", exc)
            return None

    @staticmethod
    def on_agent_end(token: object | None) -> None:
        """Close the call's recording scope. Never raises."""
        if token is None:
            return
        try:
            ctx_token: contextvars.Token[_Scope | None]
            scope: _Scope
            ctx_token, scope = token  # type: ignore[misc]
            try:
                _SCOPE.reset(ctx_token)
            except ValueError:  # ended in another context (a generator resumed elsewhere): undo our own scope
                if _SCOPE.get() is scope:
                    _SCOPE.set(scope.parent)
        except Exception as exc:
            report("recording-internal", "recording failed (the call itself is unaffected): %r", exc)

    # -- internals ----------------------------------------------------------------------------------------
    def _kwargs_json(self, kwargs: Mapping[str, Any]) -> bytes:
        text = dumps_bounded(kwargs, self._masker, MAX_VALUE_CHARS, MAX_ITEMS)
        if len(text) > MAX_RECORD_BYTES:
            self.truncated += 1
            size = len(text)
            text = dumps_bounded(kwargs, self._masker, _SMALL_VALUE_CHARS, _SMALL_ITEMS)
            if len(text) > MAX_RECORD_BYTES:
                text = orjson.dumps({"...": f"[record of {size} bytes truncated]"})
        return text

    def _write_record(self, target: str, iteration: int | None, reuse: int | None, kwargs: Mapping[str, Any],
                      ids: bytes) -> int | None:
        """Serialize (outside the lock), number and write one record; its iteration, or None if not written."""
        head = b'{"_version":"' + RECORD_VERSION.encode() + b'","iteration":'
        tail = (b',"target":' + orjson.dumps(target) + b',"kwargs":' + self._kwargs_json(kwargs)
                + b',"timestamp":"' + _dt.datetime.now(_dt.timezone.utc).isoformat().encode() + b'"'
                + ids + b"}\n")
        if iteration is not None and (isinstance(iteration, bool) or not isinstance(iteration, int)
                                      or iteration < 0):
            report("recording-iteration", "record_call_args(): iteration must be an int >= 0, got %r; "
                   "numbering it automatically", iteration)
            iteration = None
        with self._lock:
            if not self.active:
                return None
            fd = self._fd if self._fd is not None else self._open_locked()
            if fd is None:
                return None
            return self._append_locked(fd, head, tail, target, iteration, reuse)

    def _lock_end(self, fd: int) -> tuple[int, int]:
        """Lock the file against other processes (its end is checked and appended to as one step) and return the
        descriptor and the file's size. A file deleted since it was opened is created again at its path."""
        if _lockf is not None:
            _lockf(fd, _LOCK_EX)
        stat = os.fstat(fd)
        if stat.st_nlink or self._path is None:
            return fd, stat.st_size
        if _lockf is not None:
            _lockf(fd, _LOCK_UN)
        new = open_append(self._path)
        os.close(fd)
        self._fd, self._clean_size = new, -1
        self._numbers.new_file()
        if _lockf is not None:
            _lockf(new, _LOCK_EX)
        return new, os.fstat(new).st_size

    def _append_locked(self, fd: int, head: bytes, tail: bytes, target: str, iteration: int | None,
                       reuse: int | None) -> int:
        """Under the file lock: catch up with other writers, number the record and append it; its number."""
        locked: int | None = None
        number: int | None = None
        try:
            fd, size = self._lock_end(fd)
            locked = fd if _lockf is not None else None
            self._numbers.catch_up(fd, size)
            number = self._numbers.take(target, iteration, reuse)
            line = head + str(number).encode() + tail
            if size != self._clean_size and size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a torn line from a killed writer: end it, so it cannot swallow ours
            data = line
            while data:  # a regular file takes the whole line at once; a short write is completed
                data = data[self._write(fd, data):]
            self._clean_size = size + len(line)
            self._numbers.wrote(self._clean_size)
            self.written += 1
        except Exception as exc:
            self.failed += 1
            self._clean_size = -1
            report("recording-write", "cannot write recording file %s: %r (%d records lost so far)",
                   self._path, exc, self.failed)
        finally:
            if locked is not None and _lockf is not None:
                try:
                    _lockf(locked, _LOCK_UN)
                except OSError:
                    pass
        return number if number is not None else self._numbers.take(target, iteration, reuse)

    def _open_locked(self) -> int | None:
        if self._fd is not None or self._path is None:
            return self._fd
        try:
            self._fd = open_append(self._path)
        except OSError as exc:
            self.active = False
            report("recording-open", "cannot open recording file %s (option recording_file): %s; recording is off",
                   self._path, exc)
            return None
        self._clean_size = -1
        self._numbers.new_file()
        return self._fd

    def _close_locked(self) -> None:
        fd, self._fd = self._fd, None
        self._path = None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
