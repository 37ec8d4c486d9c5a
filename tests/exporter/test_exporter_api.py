"""The public API of fluxloop_otel_exporter: pinned ``__all__``, typed, and independent of ``fluxloop``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fluxloop_otel_exporter

PUBLIC_API = [
    "ExportCounters",
    "FluxLoopSpanExporter",
    "OfflineSpanExporter",
    "encode_spans_json",
    "iter_offline_files",
    "read_requests",
    "request_to_protobuf",
    "traces_endpoint",
]


def test_all_is_pinned_and_sorted() -> None:
    assert fluxloop_otel_exporter.__all__ == PUBLIC_API == sorted(PUBLIC_API)
    for name in PUBLIC_API:
        assert getattr(fluxloop_otel_exporter, name).__doc__


def test_ships_py_typed() -> None:
    assert (Path(fluxloop_otel_exporter.__file__).parent / "py.typed").is_file()


def test_never_imports_fluxloop() -> None:
    code = ("import sys, fluxloop_otel_exporter; "
            "bad = [m for m in sys.modules if m == 'fluxloop' or m.startswith('fluxloop.')]; "
            "assert not bad, bad")
    root = Path(fluxloop_otel_exporter.__file__).parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
    for module in Path(fluxloop_otel_exporter.__file__).parent.glob("*.py"):
        text = module.read_text()
        assert "import fluxloop\n" not in text and "from fluxloop " not in text and "from fluxloop." not in text
