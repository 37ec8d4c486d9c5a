"""Argument recording: one JSON line per recorded call, so the call can be replayed later (``fluxloop replay``).

Each line is (DESIGN §4; compact JSON, one object per line)::

    {"_version": "1", "iteration": 0, "target": "pkg.module:Class.method", "kwargs": {...},
     "timestamp": "2025-09-30T14:30:00.000000+00:00", "trace_id": "4bf9...", "span_id": "00f0..."}

``kwargs`` goes through the one FluxLoop serializer: callables become markers, sensitive keys ``***``, other
non-JSON values ``<repr:...>``; long values are cut with a marker.

A record is on disk when :func:`record_call_args` returns. While recording is on, every ``@fluxloop.agent``
call is recorded when its span starts, before its body runs, so a call that crashes, hangs or is killed keeps its
record. If the agent calls :func:`record_call_args` for itself, that explicit record replaces the automatic one
for replay (both lines carry the call's ids, generated when the call is not sampled), so such a handler still
replays once per call.

Recording is configuration: :func:`enable_recording` is ``configure(record_args=True, recording_file=path)`` and
:func:`disable_recording` is ``configure(record_args=False)``; ``get_config()`` shows the file in use.

Example::

    import fluxloop

    fluxloop.enable_recording("/tmp/args.jsonl")
    fluxloop.record_call_args(target="module:Handler.method", payload={"text": "hi"})
    fluxloop.disable_recording()
"""

from __future__ import annotations

import os
from typing import Any

from fluxloop import _api, _errors, _recorder, _runtime

__all__ = [
    "disable_recording",
    "enable_recording",
    "is_recording",
    "record_call_args",
    "recording_path",
    "set_recording_options",
]


def enable_recording(path: str | os.PathLike[str] | None = None) -> str:
    """Start writing records to ``path`` (created with its directory if needed; appended to if it exists) and
    return its absolute path: ``configure(record_args=True, recording_file=path)``. Without ``path``:
    ``/tmp/fluxloop_args_<YYYYmmdd_HHMMSS>.jsonl``.

    Raises ``OSError`` when the file cannot be created; the configuration is then unchanged.

    Example::

        path = fluxloop.enable_recording("/tmp/args.jsonl")
    """
    resolved = _recorder.absolute_path(path) if path is not None else None
    file = _runtime.RUNTIME.recorder.resolve_file(True, resolved)
    os.close(_recorder.open_append(file or resolved or ""))  # raises OSError before the configuration changes
    _api.configure(record_args=True, recording_file=resolved)
    return recording_path() or ""


def disable_recording() -> None:
    """Stop recording: ``configure(record_args=False)``. Every record made so far is already on disk.

    Example::

        fluxloop.disable_recording()
    """
    _api.configure(record_args=False)


def is_recording() -> bool:
    """True while records are being written.

    Example::

        if fluxloop.recording.is_recording(): ...
    """
    return _runtime.RUNTIME.recorder.active


def recording_path() -> str | None:
    """The file records go to, or None when recording is off.

    Example::

        print(fluxloop.recording.recording_path())
    """
    return _runtime.RUNTIME.recorder.path


def set_recording_options(iteration_auto_increment: bool | None = None) -> None:
    """Change recording behaviour; options left as None keep their value.

    ``iteration_auto_increment`` (default True): each target's iterations count up from 0 (an explicit
    ``iteration=N`` sets where counting continues). When False, a record carries its explicit iteration, or 0.

    Example::

        fluxloop.set_recording_options(iteration_auto_increment=False)
    """
    _runtime.RUNTIME.recorder.set_options(iteration_auto_increment)


def record_call_args(target: str, iteration: int | None = None, **kwargs: Any) -> None:
    """Append one record of ``kwargs`` for ``target`` (``"pkg.module:Class.method"``) if recording is on; the
    line is in the file when this returns.

    Omit ``iteration`` to number records per target automatically. A ``__main__:`` target is rewritten to the
    module's importable name when the program runs as ``python -m pkg.mod``. Called inside an
    ``@fluxloop.agent`` call for that same function (same name after the last ``:`` or ``.``), even inside a
    nested span, this record replaces the automatic one for replay.

    Example::

        fluxloop.record_call_args(target="module:Handler.method", payload={"text": "hi"})
    """
    recorder = _runtime.RUNTIME.recorder
    if not recorder.active:
        return
    if not isinstance(target, str) or not target:
        _errors.report("recording-target", "record_call_args(): target should be a non-empty 'module:qualname' string, "
               "got %r", target)
        target = str(target) or "?"
    recorder.record(target, iteration, kwargs)
