"""Fixtures of the masking suite: spans read back from the offline artifacts FluxLoop wrote, as a user would."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import fluxloop
from fluxloop_otel_exporter import iter_offline_files, read_requests


@dataclass
class Exported:
    """One span as written to an offline artifact, with its resource."""

    name: str
    scope: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_message: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


def _value(value: dict[str, Any]) -> Any:
    if "arrayValue" in value:
        return [_value(v) for v in value["arrayValue"].get("values", [])]
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return None


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: _value(kv.get("value") or {}) for kv in items}


def read_exported(directory: Path) -> list[Exported]:
    """Every span in the ``.jsonl`` artifacts under ``directory``."""
    spans = []
    for path in iter_offline_files(directory):
        for number, request, error in read_requests(path):
            assert error is None and request is not None, f"{path}:{number}: {error}"
            for rs in request.get("resourceSpans", []):
                resource = _attributes(rs.get("resource", {}).get("attributes", []))
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        spans.append(Exported(
                            s["name"], ss.get("scope", {}).get("name", ""), s["spanId"], s.get("parentSpanId") or None,
                            _attributes(s.get("attributes", [])), resource, (s.get("status") or {}).get("message", ""),
                            [{"name": e["name"], "attributes": _attributes(e.get("attributes", []))}
                             for e in s.get("events", [])]))
    return spans


def artifact_text(directory: Path) -> str:
    """All bytes FluxLoop wrote under ``directory``, as text."""
    return "\n".join(p.read_text("utf-8", "replace") for p in sorted(directory.rglob("*")) if p.is_file())


@pytest.fixture
def offline_dir(tmp_path: Path) -> Path:
    """Where this test's spans are written (FluxLoop configured offline, no collector)."""
    directory = tmp_path / "artifacts"
    fluxloop.configure(use_collector=False, offline_dir=str(directory))
    return directory


@pytest.fixture
def exported(offline_dir: Path) -> Callable[[], list[Exported]]:
    """Flush (as a short-lived script does at exit) and read the artifacts back."""

    def read() -> list[Exported]:
        assert fluxloop.flush(timeout=10)
        return read_exported(offline_dir)

    return read


def by_name(spans: list[Exported], name: str) -> Exported:
    matches = [s for s in spans if s.name == name]
    assert len(matches) == 1, f"{name!r} in {[s.name for s in spans]}"
    return matches[0]


def as_json(text: str) -> Any:
    return json.loads(text)
