"""Write recording files by hand for replay tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

M = "replay.sample_agents"


def rec(target: str, kwargs: dict[str, Any] | None = None, iteration: int = 0, **extra: Any) -> dict[str, Any]:
    """One record as the recorder writes it."""
    return {"_version": "1", "iteration": iteration, "target": target, "kwargs": kwargs or {},
            "timestamp": "2025-09-30T14:30:00+00:00", "trace_id": None, "span_id": None, **extra}


def write(path: Path, *records: dict[str, Any] | str) -> Path:
    """Each record as one line (strings are written as they are)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path
