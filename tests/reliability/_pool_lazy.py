"""A task module that does not import FluxLoop: the worker imports it on its first task (forkserver finding)."""

from __future__ import annotations

import importlib
from typing import Any

_tool: Any = None


def _double(i: int) -> int:
    return i * 2


def task(i: int) -> int:
    global _tool
    if _tool is None:  # the worker's first task: only now is FluxLoop imported (what the finding is about)
        fluxloop = importlib.import_module("fluxloop")
        _tool = fluxloop.tool(name="task")(_double)
    return int(_tool(i))
