"""Iteration numbers of recording records: counted per target, kept unique among processes sharing one file.

A number is taken under the file's lock, after :meth:`Numbering.catch_up` has counted the records other
processes appended since this one last wrote (nothing is read when no one else wrote; at most the newest
:data:`MAX_CATCH_UP_BYTES`). Each target continues after the highest number seen, so a process and the
processes it forks (which inherit what it knew) never repeat a target's number. What a file held before a
process's first write is not read: an independently started process counts from 0, as the original did.
"""

from __future__ import annotations

import os
import re
from typing import Final

import orjson

#: A writer catching up with other processes' records reads at most this much of what they appended.
MAX_CATCH_UP_BYTES: Final = 8 * 1024 * 1024
#: The start of a record line (FluxLoop's compact one or the original's spaced one): iteration and target.
_LINE_HEAD: Final = re.compile(rb'\{"_version":\s*"1",\s*"iteration":\s*(\d+),\s*"target":\s*("(?:[^"\\]|\\.)*")')
_LINE_HEAD_BYTES: Final = 4096


class Numbering:
    """The per-target counters of one process; the caller holds the file lock around :meth:`catch_up` and
    :meth:`take`."""

    def __init__(self) -> None:
        #: ``set_recording_options(iteration_auto_increment=...)``.
        self.auto_increment = True
        self._next: dict[str, int] = {}
        self._known = -1  # the file up to this offset is counted (kept across fork: the child knows it too)

    def reset(self) -> None:
        """Forget every counter and the option (``reset_config()``)."""
        self._next.clear()
        self._known = -1
        self.auto_increment = True

    def new_file(self) -> None:
        """The file was (re)opened: its earlier content is not counted."""
        self._known = -1

    def wrote(self, end: int) -> None:
        """This process's line ends the file at ``end``."""
        self._known = end

    def catch_up(self, fd: int, size: int) -> None:
        """Count the records others appended to ``fd`` (now ``size`` bytes) since this process last looked."""
        known, self._known = self._known, size
        if known < 0 or known >= size:  # first look at this file (or it shrank), or no one else wrote
            return
        start = max(known, size - MAX_CATCH_UP_BYTES)
        data = os.pread(fd, size - start, start)
        if start > known:  # began mid-line: skip to the next whole line
            data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
        for line in data.split(b"\n"):
            found = _LINE_HEAD.match(line, 0, _LINE_HEAD_BYTES)
            if found is None:
                continue
            try:
                target = orjson.loads(found.group(2))
            except orjson.JSONDecodeError:
                continue
            if isinstance(target, str):
                self._next[target] = max(self._next.get(target, 0), int(found.group(1)) + 1)

    def take(self, target: str, iteration: int | None, reuse: int | None) -> int:
        """The record's iteration: ``reuse`` (an explicit record taking its call's number), else the explicit
        ``iteration``, else the target's next; counting continues after it."""
        if reuse is not None:
            if self.auto_increment:
                self._next[target] = max(self._next.get(target, 0), reuse + 1)
            return reuse
        if not self.auto_increment:
            return iteration if iteration is not None else 0
        number = self._next.get(target, 0) if iteration is None else iteration
        self._next[target] = number + 1
        return number
