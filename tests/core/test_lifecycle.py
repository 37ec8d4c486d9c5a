"""flush, shutdown, get_stats and reset_config: counters, threads and files a user can observe."""

from __future__ import annotations

import threading

import fluxloop
from fluxloop_otel_exporter import iter_offline_files, read_requests


@fluxloop.tool
def step(i: int) -> int:
    return i


def _span_count(directory: str) -> int:
    total = 0
    for path in iter_offline_files(directory):
        for _, request, _ in read_requests(path):
            for rs in (request or {}).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    total += len(ss.get("spans", []))
    return total


def test_flush_exports_to_offline_files_and_stats_count_them(tmp_path) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "out"), flush_interval=3600)
    for i in range(25):
        step(i)
    assert fluxloop.get_stats()["queued"] == 25
    assert fluxloop.flush(timeout=10) is True
    stats = fluxloop.get_stats()
    assert (stats["queued"], stats["exported"], stats["dropped"], stats["failed"]) == (0, 25, 0, 0)
    assert _span_count(str(tmp_path / "out")) == 25


def test_reset_config_starts_counters_afresh(tmp_path) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "out"))
    step(1)
    assert fluxloop.flush(timeout=10)
    assert fluxloop.get_stats()["exported"] == 1
    fluxloop.reset_config()
    assert fluxloop.get_stats() == {"exported": 0, "dropped": 0, "failed": 0, "spooled": 0, "queued": 0}


def test_many_configure_reset_cycles_leave_one_worker_thread(tmp_path) -> None:
    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "fluxloop-span-processor"]

    for i in range(30):
        fluxloop.configure(offline_dir=str(tmp_path / f"out{i}"), batch_size=1 + i)
        step(i)
        fluxloop.reset_config()
    step(0)
    assert len(workers()) <= 1


def test_shutdown_is_idempotent_and_configure_revives(tmp_path) -> None:
    fluxloop.configure(offline_dir=str(tmp_path / "a"))
    step(1)
    fluxloop.shutdown(timeout=5)
    fluxloop.shutdown(timeout=5)
    assert _span_count(str(tmp_path / "a")) == 1
    fluxloop.configure(offline_dir=str(tmp_path / "b"))
    step(2)
    assert fluxloop.flush(timeout=10)
    assert _span_count(str(tmp_path / "b")) == 1
