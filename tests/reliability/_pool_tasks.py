"""Tasks for the ``multiprocessing.Pool`` tests, importable by spawn and forkserver workers (configured by env)."""

from __future__ import annotations

import fluxloop


@fluxloop.tool(name="task")
def task(i: int) -> int:
    return i * 2
