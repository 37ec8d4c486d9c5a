"""Offline span files: an exporter that appends OTLP/JSON requests to rotating ``.jsonl`` files, and their reader.

Each ``export()`` call becomes one line (one ``ExportTraceServiceRequest``) written with a single ``os.write`` on
a descriptor opened with ``O_APPEND``, so threads and processes sharing a folder never interleave their lines.
Every process writes its own files, named ``<prefix>-<UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl``: sorting the
names sorts the files by creation time.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from fluxloop_otel_exporter._otlp_json import encode_spans_json
from fluxloop_otel_exporter._spool_format import FILE_SUFFIX, iter_spool_files, read_lines

__all__ = ["DEFAULT_MAX_FILE_BYTES", "OfflineSpanExporter", "iter_offline_files", "read_requests"]

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
_ERROR_REPORT_INTERVAL = 60.0
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)

_logger = logging.getLogger("fluxloop.exporter")
# One sequence per process, shared by every exporter, so two exporters writing to one folder never pick the
# same file name.
_file_seq = itertools.count(1)


class OfflineSpanExporter(SpanExporter):
    """Appends each batch of spans as one OTLP/JSON line to ``.jsonl`` files in ``directory``.

    Example::

        provider.add_span_processor(BatchSpanProcessor(OfflineSpanExporter("./fluxloop_artifacts")))

    The folder is created on the first export. A new file is started when the current one would grow past
    ``max_file_bytes`` (a single larger request gets a file of its own). Thread-safe and fork-safe: after
    ``os.fork()`` the child writes to files of its own. ``shutdown()`` closes the open file; later exports fail.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 file_prefix: str = "spans") -> None:
        if not isinstance(max_file_bytes, int) or isinstance(max_file_bytes, bool) or max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be a positive int, got {max_file_bytes!r}")
        if not file_prefix or os.sep in file_prefix or (os.altsep and os.altsep in file_prefix):
            raise ValueError(f"file_prefix must be a non-empty file name part, got {file_prefix!r}")
        self._directory = Path(directory)
        self._max_file_bytes = max_file_bytes
        self._prefix = file_prefix
        self._shutdown = False
        self._last_error_report = -_ERROR_REPORT_INTERVAL
        self._reset_file_state()
        weak_reinit = weakref.WeakMethod(self._after_fork_in_child)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: (m := weak_reinit()) and m())

    @property
    def directory(self) -> Path:
        """The folder the files are written to."""
        return self._directory

    @property
    def current_file(self) -> Path | None:
        """The file this process is appending to, or None before the first export and after shutdown."""
        return self._path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append ``spans`` as one line; SUCCESS once the line is written. Never raises."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            line = encode_spans_json(spans) + b"\n"
        except Exception as error:  # a span the encoder cannot handle must not crash the worker
            self._report_error(f"cannot encode {len(spans)} spans: {error!r}")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self.write_line(line) else SpanExportResult.FAILURE

    def store(self, spans: Sequence[ReadableSpan]) -> bool:
        """The spool stage: append ``spans`` as one line; True once written (works after :meth:`close` too)."""
        return self.export(spans) is SpanExportResult.SUCCESS

    def write_line(self, line: bytes) -> bool:
        """Append one complete line (ending in ``\\n``) to the current file; False when it could not be written."""
        with self._lock:
            if self._shutdown:
                return False
            if self._pid != os.getpid():  # a fork without the at-fork hook (e.g. a raw os.fork in a C extension)
                self._forget_parent_file()
            try:
                if self._fd is not None and self._file_was_replaced():
                    self._close_file()  # deleted or replaced under us: never write into an unlinked file
                if self._fd is None or (self._size > 0 and self._size + len(line) > self._max_file_bytes):
                    self._open_next_file()
                assert self._fd is not None
                written = os.write(self._fd, line)
                while written < len(line):  # a short write (disk full, signal): finish the line or fail below
                    more = os.write(self._fd, memoryview(line)[written:])
                    if more <= 0:
                        raise OSError(f"short write ({written} of {len(line)} bytes)")
                    written += more
                self._size += len(line)
                return True
            except OSError as error:
                self._close_file()  # reopen (and maybe recreate the folder) on the next write
                self._report_error(f"cannot write to {self._directory}: {error}")
                return False

    def close(self) -> None:
        """Close the open file; a later write opens a new one."""
        with self._lock:
            self._close_file()

    def shutdown(self) -> None:
        """Close the open file; later exports fail. Idempotent."""
        with self._lock:
            self._shutdown = True
            self._close_file()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Lines are handed to the OS as they are exported; nothing is buffered here."""
        return True

    def __repr__(self) -> str:
        return f"OfflineSpanExporter(directory={str(self._directory)!r}, max_file_bytes={self._max_file_bytes})"

    # --- internals (callers hold self._lock, except the constructor and the at-fork hook) ---

    def _reset_file_state(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0

    def _open_next_file(self) -> None:
        self._close_file()
        self._directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self._directory / f"{self._prefix}-{stamp}-{self._pid}-{next(_file_seq):06d}{FILE_SUFFIX}"
        fd = os.open(path, _OPEN_FLAGS, 0o644)
        try:
            self._size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        self._fd, self._path = fd, path

    def _file_was_replaced(self) -> bool:
        """Whether the open file was unlinked, or its name now names another file (deleted artifacts, rotation)."""
        assert self._fd is not None and self._path is not None
        try:
            opened = os.fstat(self._fd)
            if opened.st_nlink == 0:
                return True
            named = os.stat(self._path)
        except OSError:
            return True
        return (named.st_ino, named.st_dev) != (opened.st_ino, opened.st_dev)

    def _close_file(self) -> None:
        fd, self._fd, self._path, self._size = self._fd, None, None, 0
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _forget_parent_file(self) -> None:
        # The inherited descriptor is the child's own copy: closing it leaves the parent's file open.
        self._close_file()
        self._pid = os.getpid()

    def _after_fork_in_child(self) -> None:
        # The parent's lock may have been held by a thread that does not exist in the child: start afresh.
        fd = self._fd
        self._reset_file_state()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _report_error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error_report >= _ERROR_REPORT_INTERVAL:
            self._last_error_report = now
            _logger.error("fluxloop: offline span file: %s (reported at most once a minute)", message)


def iter_offline_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``.jsonl`` files in ``directory``, sorted by name (oldest first); [] when it does not exist.

    Example::

        for path in iter_offline_files("./fluxloop_artifacts"):
            print(path.name)
    """
    return iter_spool_files(directory)


def read_requests(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield ``(line_number, request, None)`` per valid line of ``path``, ``(line_number, None, error)`` per bad one.

    The tuple form of :func:`fluxloop_otel_exporter._spool_format.read_lines` (the typed reader). Reads line by
    line; a file that cannot be opened yields ``(0, None, error)``.

    Example::

        for number, request, error in read_requests(path):
            if error:
                print(f"{path}:{number}: {error}")
    """
    for line in read_lines(path):
        yield line.number, line.request, line.error
