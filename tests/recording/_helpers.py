"""Read a recording file back as records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fluxloop


def read_records(path: Path) -> list[dict[str, Any]]:
    """Flush, then every line of ``path`` parsed (a line that is not whole, valid JSON fails the test)."""
    assert fluxloop.flush(timeout=10)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]
