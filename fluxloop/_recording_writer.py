"""Appends whole JSON lines to one recording file from a background thread, never blocking the caller for long.

The calling thread only appends bytes to a bounded in-memory queue (records are serialized before they get
here). One writer thread per file takes everything queued and writes it with a single ``os.write`` on an
``O_APPEND`` descriptor, so each write lands at the end of the file as one piece: threads and processes sharing
the file never interleave inside a line. A full queue drops the new line and counts it; a write error is
counted and logged (at most once a minute), never raised.

After ``os.fork()`` the child keeps the descriptor (appends stay atomic) but gets a fresh lock, an empty queue
(the parent's pending lines are the parent's to write, never written twice) and its own thread, started on the
first line it submits.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from collections.abc import Callable
from typing import Final

from fluxloop._errors import report


#: At most this many lines, and this many bytes, wait in memory for the disk; beyond that new lines are dropped.
MAX_PENDING_LINES: Final = 10_000
MAX_PENDING_BYTES: Final = 64 * 1024 * 1024
#: One ``os.write`` carries at most about this many bytes (always whole lines).
MAX_BATCH_BYTES: Final = 1024 * 1024
_FILE_MODE: Final = 0o600  # recordings hold call arguments: readable by their owner only

def open_append(path: str) -> int:
    """Open (creating it and its directory if needed) ``path`` for appending; raises ``OSError``."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), _FILE_MODE)


class RecordWriter:
    """Owns one append-only file descriptor and the thread that writes to it.

    ``write`` is the low-level write function (``os.write`` unless a test substitutes a slow disk).
    """

    def __init__(self, path: str, *, max_pending_lines: int = MAX_PENDING_LINES,
                 max_pending_bytes: int = MAX_PENDING_BYTES,
                 write: Callable[[int, bytes | memoryview], int] = os.write) -> None:
        self.path = path
        self._fd: int | None = open_append(path)
        self._max_lines = max_pending_lines
        self._max_bytes = max_pending_bytes
        self._write = write
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._init_thread_state()
        _WRITERS.add(self)

    def _init_thread_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_bytes = 0
        self._busy = False  # a batch is being written outside the lock
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- calling thread ----------------------------------------------------------------------------------------
    def submit(self, line: bytes) -> bool:
        """Queue one complete line (ending in a newline); False if it was dropped. Never blocks on the disk."""
        inline = False
        with self._cond:
            if self._closing:
                self.dropped += 1
                return False
            if len(self._pending) >= self._max_lines or self._pending_bytes + len(line) > self._max_bytes:
                self.dropped += 1
                report("recording-drop", "recording queue full (disk too slow?): records are being dropped "
                       "(%d so far) for %s", self.dropped, self.path)
                return False
            self._pending.append(line)
            self._pending_bytes += len(line)
            if self._thread is None and not self._start_thread():
                inline = True  # no threads any more (interpreter exit): write it here, once
            elif len(self._pending) == 1:  # the writer only ever waits on an empty queue
                self._cond.notify()
        if inline:
            self._drain_inline()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line submitted so far is written; False if ``timeout`` seconds passed first."""
        with self._cond:
            if not self._pending or self._thread is not None or self._start_thread():
                return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)
        self._drain_inline()
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Write what is pending, then close the file; idempotent. False if ``timeout`` passed first (the thread
        then closes the file itself once the disk lets it finish)."""
        with self._cond:
            self._closing = True
            if self._thread is None:
                if self._pending and self._start_thread():
                    self._cond.notify_all()
                else:
                    fd, self._fd = self._fd, None
                    pending, self._pending = list(self._pending), collections.deque()
                    self._pending_bytes = 0
                    self._cond.notify_all()
                    if fd is not None:
                        self._write_batch(fd, pending)
                        _close(fd)
                    return True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._fd is None, timeout)

    @property
    def closed(self) -> bool:
        return self._closing

    def stats(self) -> dict[str, int]:
        """``written``, ``dropped`` (queue full or closed), ``failed`` (write errors), ``pending`` lines."""
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed,
                "pending": len(self._pending)}

    # -- writer thread -----------------------------------------------------------------------------------------
    def _start_thread(self) -> bool:
        """Start the writer thread (lock held); False when the interpreter no longer allows new threads."""
        thread = threading.Thread(target=self._run, name="fluxloop-recording-writer", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            return False
        self._thread = thread
        return True

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._pending and not self._closing:
                    cond.wait()
                fd = self._fd
                if not self._pending or fd is None:  # closing with nothing left
                    self._fd = None
                    cond.notify_all()
                    break
                batch = self._take_batch()
                self._busy = True
            self._write_batch(fd, batch)
            with cond:
                self._busy = False
                cond.notify_all()
        if fd is not None:
            _close(fd)

    def _take_batch(self) -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        pending = self._pending
        while pending and (not batch or size + len(pending[0]) <= MAX_BATCH_BYTES):
            line = pending.popleft()
            batch.append(line)
            size += len(line)
        self._pending_bytes -= size
        return batch

    def _drain_inline(self) -> None:
        with self._cond:
            fd = self._fd
            batch = list(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
        if fd is not None and batch:
            self._write_batch(fd, batch)

    def _write_batch(self, fd: int, batch: list[bytes]) -> None:
        """One ``os.write`` for the whole batch of whole lines (a short write is completed, never split mid-way
        by us); errors are counted and logged, never raised."""
        if not batch:
            return
        data = memoryview(b"".join(batch))
        try:
            while data:
                done = self._write(fd, data)
                data = data[done:]
        except Exception as exc:
            self.failed += len(batch)
            report("recording-write", "cannot write recording file %s: %r (%d records lost so far)",
                    self.path, exc, self.failed)
            return
        self.written += len(batch)

    # -- fork --------------------------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here and its lock may have been held at fork time: start over.
        # Lines queued before the fork belong to the parent, which writes them; dropping them here is what keeps
        # a forked worker from writing them a second time. The descriptor stays: O_APPEND writes remain atomic.
        closing, fd = self._closing, self._fd
        self._init_thread_state()
        self._closing = closing
        self._fd = fd
        if closing and fd is not None:
            self._fd = None
            _close(fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


_WRITERS: weakref.WeakSet[RecordWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
