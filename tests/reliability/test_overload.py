"""Fault 6 and the DESIGN §5 target. A burst far beyond ``max_queue_size``: the application never blocks, drops are
counted in ``get_stats()``, memory stays bounded. The collector down for 10 s at 2,000 spans/s: 0 spans lost (all
spooled), ``flush()`` within ``timeout``, process exit within ``timeout`` + 1 s (with LOADED_MARGIN of slack).

No assertion depends on the machine's speed: the stuck collector is held until the burst is over (a call that
waited for it would never return), and queues are sized so that a slow export worker cannot change the counts.
Latencies and throughput are reported as figures; benchmarks/ measures them."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from exporter._otlp_sink import HOLD, OtlpSink

import fluxloop
from fluxloop.cli import main as cli

from ._harness import LOADED_MARGIN, Child, LateCollector, StatsSince, assert_each_once, delivered_spans, offline_spans

pytestmark = pytest.mark.reliability

BURST = 50_000


@fluxloop.tool
def burst_tool(i: int) -> int:
    return i


def test_burst_beyond_the_queue_never_blocks_and_counts_every_drop(sink: OtlpSink, offline_dir: Path,
                                                                   stats: StatsSince, figure,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # The collector takes the first batch and holds it until the burst is over: the export worker is stuck
    # however long the burst takes, the queue (1,000) fills, and a call that waited for the export would never
    # return. Released, the collector answers 200.
    sink.script.append(HOLD)
    # forward_spool off: spooled spans forwarded once the collector answers would reach the sink too, and this
    # test compares what the sink got with what was exported live (forwarding has tests of its own).
    fluxloop.configure(use_collector=True, collector_url=sink.url, offline_dir=str(offline_dir), timeout=120.0,
                       max_queue_size=1_000, batch_size=100, flush_interval=0.05, probe_interval=60.0,
                       forward_spool=False)
    durations = []
    results = []
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        for i in range(BURST):
            started = time.perf_counter()
            results.append(burst_tool(i))
            durations.append(time.perf_counter() - started)
        during = stats()
        held = len(sink.attempts)
        sink.release.set()
        assert fluxloop.flush(timeout=60)
    assert results == list(range(BURST))
    assert held == 1  # the whole burst ran while the collector held the first batch: no call waited for it
    assert during["queued"] <= 1_200  # bounded: the queue, plus at most two batches the sender holds
    # Beyond the queue, what the sender could not take went to disk (once the request in flight was older than
    # the sender's patience) or, faster than the disk takes it, was dropped and counted.
    # (A batch the worker is encoding or writing is in none of the counts for that moment.)
    assert during["dropped"] + during["spooled"] + during["queued"] >= BURST - 100
    after = stats()
    # Every span is accounted for: exported, spooled, or counted as dropped.
    assert after["exported"] + after["spooled"] + after["dropped"] + after["failed"] == BURST
    assert after["failed"] == 0 and after["queued"] == 0
    assert len(assert_each_once(delivered_spans(sink))) == after["exported"] >= 100
    drop_warnings = [r for r in caplog.records if "span queue full" in r.getMessage()]
    assert len(drop_warnings) == 1  # rate-limited: once a minute, not once per span
    durations.sort()
    figure("dropped", after["dropped"])
    figure("spooled", after["spooled"])
    figure("call_p50_us", round(statistics.median(durations) * 1e6, 1))
    figure("call_p99_us", round(durations[int(len(durations) * 0.99)] * 1e6, 1))
    figure("call_max_ms", round(durations[-1] * 1e3, 2))


MEMORY_SCRIPT = """
import gc, json, os, sys, time
import fluxloop

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

@fluxloop.tool
def big(i, payload):
    return len(payload)

# A collector that never answers, timeout 30 s: the export worker stays stuck for the whole test.
fluxloop.configure(use_collector=True, collector_url=sys.argv[1], offline_dir=sys.argv[2], timeout=30.0,
                   batch_size=512, probe_interval=60.0)
payload = "x" * 8192

def burst(start, n):
    worst = 0.0
    for i in range(start, start + n):
        t = time.perf_counter()
        big(i, payload)
        worst = max(worst, time.perf_counter() - t)
    gc.collect()
    return worst

before = rss()
burst(0, 10_000)  # fills the queue (2,048 spans): from here on every new span is dropped
filled = rss()
worst = burst(10_000, 50_000)
settled = rss()  # the queue, the sender's two batches and the spool's write buffers are all in use by now
worst = max(worst, burst(60_000, 50_000))
after = rss()
print("RESULT", json.dumps({"before": before, "filled": filled, "settled": settled, "after": after,
                            "worst_call_s": worst,
                            "stats": fluxloop.get_stats()}), flush=True)
os._exit(0)  # the worker is stuck for 30 s by design; this test is about memory, not exit
"""


def test_memory_stays_bounded_under_overload(spawn: Callable[..., Child], silent: str, offline_dir: Path,
                                             figure) -> None:
    child = spawn(MEMORY_SCRIPT, silent, str(offline_dir))
    result = child.expect_json("RESULT", timeout=120)
    assert child.wait(10) == 0
    mib = 1024 * 1024
    growth = result["after"] - result["filled"]
    # 100,000 more spans of 8 KiB input each would hold > 800 MiB if they were kept. What is held is bounded: the
    # queue (2,048 spans), the sender's batch in flight and the one waiting, the spool's buffer for one batch.
    assert growth < 64 * mib, result
    # ... and once those are in use, 50,000 more spans add nothing that lasts (allocator noise only).
    assert result["after"] - result["settled"] < 16 * mib, result
    # The stuck sender's backlog goes to disk; what the disk cannot take as fast as the burst comes is dropped.
    counts = result["stats"]
    assert counts["dropped"] + counts["spooled"] + counts["queued"] >= 110_000 - 512  # (a batch in the worker's hands)
    figure("worst_call_ms", round(result["worst_call_s"] * 1e3, 2))
    figure("rss_filled_mib", round(result["filled"] / mib, 1))
    figure("rss_growth_over_50k_more_spans_mib", round(growth / mib, 2))
    figure("dropped", result["stats"]["dropped"])


DOWN_SCRIPT = """
import json, sys, time
import fluxloop

@fluxloop.trace(name="down")
def down(i):
    return i

@fluxloop.trace(name="up")
def up(i):
    return i

def report(tag, value):
    print(tag, json.dumps(value), flush=True)

def pace(rate, count, work):
    durations, start = [], time.monotonic()
    for i in range(count):
        t = time.perf_counter()
        work(i)
        durations.append(time.perf_counter() - t)
        ahead = start + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    durations.sort()
    return {"p50": durations[len(durations) // 2], "p99": durations[int(len(durations) * 0.99)],
            "max": durations[-1]}

# Defaults (timeout 10 s, batch_size 512, flush_interval 5 s) except a short probe interval, so the recovery is seen
# within the test, and a queue that holds the whole outage, so that no span is dropped however slowly this machine
# spools (how fast it spools is measured by benchmarks/).
fluxloop.configure(use_collector=True, collector_url=sys.argv[1], offline_dir=sys.argv[2], probe_interval=0.5,
                   max_queue_size=22_000)
started = time.monotonic()
calls_down = pace(2_000, 20_000, down)  # 10 s at 2,000 spans/s, collector down
report("DOWN", {"seconds": time.monotonic() - started, "calls": calls_down})
assert sys.stdin.readline() == "go\\n"  # the collector is up again
calls_up = pace(2_000, 2_000, up)
t = time.monotonic()
ok = fluxloop.flush()  # default timeout: 10 s
flush_s = time.monotonic() - t
report("FLUSHED", {"ok": ok, "flush_s": flush_s, "calls": calls_up, "stats": fluxloop.get_stats()})
report("END", 0)
"""


def test_collector_down_10s_at_2000_spans_per_s_loses_nothing(spawn: Callable[..., Child],
                                                              late_collector: LateCollector, offline_dir: Path,
                                                              figure, capsys: pytest.CaptureFixture[str]) -> None:
    timeout = 10.0  # FluxLoop's default
    child = spawn(DOWN_SCRIPT, late_collector.url, str(offline_dir))
    down = child.expect_json("DOWN", timeout=180)
    late_collector.up()
    child.send("go")
    flushed = child.expect_json("FLUSHED", timeout=180)
    child.expect("END")
    exit_started = time.monotonic()
    assert child.wait(timeout + 10) == 0, child.stderr()
    exit_s = time.monotonic() - exit_started

    assert flushed["ok"] and flushed["flush_s"] <= timeout + LOADED_MARGIN
    assert exit_s <= timeout + LOADED_MARGIN
    stats = flushed["stats"]
    assert stats["dropped"] == stats["failed"] == 0
    assert stats["spooled"] + stats["exported"] == 22_000

    on_disk = assert_each_once(offline_spans(offline_dir))
    arrived = delivered_spans(late_collector.sink)  # live, and forwarded from the spool
    live = {s.span_id: s for s in arrived}
    # Each span once, except the documented at-least-once window: a request that timed out or was cut off at exit
    # after the collector stored it is sent again from the spool. Such a repeat is always a spooled span's.
    repeated = {sid for sid, n in Counter(s.span_id for s in arrived).items() if n > 1}
    assert repeated <= on_disk.keys()
    everything = {**on_disk, **live}
    assert Counter(s.name for s in everything.values()) == {"down": 20_000, "up": 2_000}
    # The outage is on disk, except what was still queued when the collector came back.
    assert Counter(s.name for s in on_disk.values())["down"] > 0
    assert Counter(s.name for s in live.values())["up"] > 0  # the breaker closed again: live delivery resumed

    # Whatever the forwarder has not sent yet, `fluxloop upload` sends (what the forwarder recorded, it skips):
    # every span arrives. Upload's exactly-once is tested on its own (tests/cli/test_upload.py).
    capsys.readouterr()
    assert cli(["upload", "--dir", str(offline_dir), "--collector-url", late_collector.url]) == 0
    assert {s.span_id for s in delivered_spans(late_collector.sink)} == everything.keys()
    figure("repeated_in_the_at_least_once_window", len(repeated))

    figure("outage_s", round(down["seconds"], 2))
    figure("spooled", stats["spooled"])
    figure("exported_live_after_recovery", stats["exported"])
    for key in ("p50", "p99", "max"):
        figure(f"call_{key}_during_outage_us", round(down["calls"][key] * 1e6, 1))
    figure("flush_s", round(flushed["flush_s"], 3))
    figure("exit_s", round(exit_s, 3))


@pytest.mark.parametrize("collector", ["healthy", "hanging"])
def test_configure_under_load_accounts_for_every_span(sink: OtlpSink, silent: str, offline_dir: Path,
                                                      stats: StatsSince, figure, collector: str) -> None:
    # Found: configure() while 4 threads produced flat out lost 8-12k of ~35k spans with no counter. With a hanging
    # collector and a short timeout each retired pipeline's shutdown runs out of budget with spans still queued.
    url = sink.url if collector == "healthy" else silent
    fluxloop.configure(use_collector=True, collector_url=url, offline_dir=str(offline_dir), batch_size=256,
                       timeout=0.5, max_queue_size=20_000)
    stop = threading.Event()
    made = [0, 0, 0, 0]  # one slot per thread: no shared counter to race on

    def produce(k: int) -> None:
        while not stop.is_set() and made[k] < 6_000:  # flat out, bounded so the test stays short
            burst_tool(made[k])
            made[k] += 1

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    try:
        for j in range(4):  # each batch_size change builds a new pipeline and retires the old one under load
            target = sum(made) + 2_000
            deadline = time.monotonic() + 60
            while sum(made) < target and any(thread.is_alive() for thread in threads):
                assert time.monotonic() < deadline, "the producers stalled"
                time.sleep(0.01)
            fluxloop.configure(batch_size=257 + j)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert fluxloop.flush(timeout=60)
    counts = stats()
    produced = sum(made)
    assert counts["queued"] == 0
    assert counts["exported"] + counts["spooled"] + counts["dropped"] + counts["failed"] == produced, counts
    figure("produced", produced)
    figure("dropped", counts["dropped"])
    figure("spooled", counts["spooled"])
