"""Read a recording file back, as a user would right after the call returned (no flush)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluxloop.replay import Record, load_records, select_records


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` parsed, read right away (a line that is not whole, valid JSON fails the test)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def replayable(path: Path) -> list[Record]:
    """The records ``fluxloop replay --all`` would run: automatic records a call's own record replaced left out."""
    return select_records(load_records(path), all_records=True)
