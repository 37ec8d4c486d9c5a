from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def rec_file(tmp_path: Path) -> Path:
    """Where a test records to."""
    return tmp_path / "rec.jsonl"
