"""Fault 3: process exit. The exit hook delivers or spools a short script's spans within ``timeout`` + 1 s; a
script killed by SIGTERM loses exactly what was still queued in memory (the documented policy), and a SIGTERM
handler that calls ``sys.exit`` makes it lose nothing."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ._harness import LOADED_MARGIN, Child, OtlpSink, assert_each_once, delivered_spans, offline_spans, strict_json

pytestmark = pytest.mark.reliability

PRELUDE = """
import json, signal, sys, time
import fluxloop

def report(tag, value):
    print(tag, json.dumps(value), flush=True)

@fluxloop.trace(name="kept")
def kept(i):
    return i

@fluxloop.trace(name="queued")
def queued(i):
    return i

collector, spool, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
# flush_interval 60 s and a large batch: nothing leaves the queue unless flushed, so what the exit path does
# (or fails to do) is all that decides where the spans end up.
fluxloop.configure(use_collector=True, collector_url=collector, offline_dir=spool, timeout=timeout,
                   flush_interval=60.0, batch_size=10_000, probe_interval=60.0, service_name="exit-test")
"""

SHORT_SCRIPT = PRELUDE + """
for i in range(200):
    queued(i)
report("QUEUED", fluxloop.get_stats()["queued"])
report("END", 0)
"""  # ... and the interpreter exits: FluxLoop's atexit hook runs

SIGNAL_SCRIPT = PRELUDE + """
if sys.argv[4] == "handler":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # what a user adds to flush on SIGTERM
for i in range(100):
    kept(i)
assert fluxloop.flush(timeout=10)  # exported (or spooled) before the signal
for i in range(100):
    queued(i)
report("QUEUED", fluxloop.get_stats()["queued"])
report("READY", 0)
sys.stdin.readline()  # wait for the signal
report("NOT-REACHED", 0)
"""


def _inputs(spans: list, name: str) -> list[int]:
    return sorted(strict_json(s.attributes["input.value"])["i"] for s in spans if s.name == name)


def _run_to_exit(child: Child, timeout: float) -> tuple[int, float]:
    child.expect("END")
    started = time.monotonic()
    code = child.wait(timeout + 10)
    return code, time.monotonic() - started


def test_exit_hook_delivers_a_short_scripts_spans(spawn: Callable[..., Child], sink: OtlpSink, offline_dir: Path,
                                                  figure) -> None:
    child = spawn(SHORT_SCRIPT, sink.url, str(offline_dir), "10")
    assert child.expect_json("QUEUED") == 200  # nothing exported before the exit
    code, exit_s = _run_to_exit(child, 10)
    assert code == 0, child.stderr()
    spans = delivered_spans(sink)
    assert_each_once(spans)
    assert _inputs(spans, "queued") == list(range(200))
    assert not offline_dir.exists()
    assert exit_s <= 10 + LOADED_MARGIN
    figure("exit_s", round(exit_s, 3))


def test_exit_hook_spools_when_the_collector_refuses(spawn: Callable[..., Child], refused: str,
                                                     offline_dir: Path, figure) -> None:
    child = spawn(SHORT_SCRIPT, refused, str(offline_dir), "10")
    code, exit_s = _run_to_exit(child, 10)
    assert code == 0, child.stderr()
    spans = offline_spans(offline_dir)
    assert_each_once(spans)
    assert _inputs(spans, "queued") == list(range(200))
    assert exit_s <= 10 + LOADED_MARGIN
    figure("exit_s", round(exit_s, 3))


def test_exit_with_a_hanging_collector_takes_at_most_timeout_plus_1s(spawn: Callable[..., Child], silent: str,
                                                                    offline_dir: Path, figure) -> None:
    child = spawn(SHORT_SCRIPT, silent, str(offline_dir), "1.5")
    code, exit_s = _run_to_exit(child, 1.5)
    assert code == 0, child.stderr()
    assert exit_s <= 1.5 + LOADED_MARGIN
    figure("exit_s", round(exit_s, 3))


def test_exit_with_a_hanging_collector_spools_what_was_queued(spawn: Callable[..., Child], silent: str,
                                                              offline_dir: Path) -> None:
    child = spawn(SHORT_SCRIPT, silent, str(offline_dir), "1.5")
    code, _ = _run_to_exit(child, 1.5)
    assert code == 0, child.stderr()
    assert _inputs(offline_spans(offline_dir), "queued") == list(range(200))


def test_sigterm_without_a_handler_loses_only_the_spans_still_queued(spawn: Callable[..., Child], sink: OtlpSink,
                                                                    offline_dir: Path, figure) -> None:
    # Documented policy: FluxLoop installs no signal handler. Python's default SIGTERM action ends the process at
    # once, without atexit: spans exported or spooled before the signal are kept; spans still queued are lost.
    child = spawn(SIGNAL_SCRIPT, sink.url, str(offline_dir), "10", "default")
    queued_at_signal = child.expect_json("QUEUED")
    child.expect("READY")
    child.signal(signal.SIGTERM)
    assert child.wait(10) == -signal.SIGTERM
    spans = delivered_spans(sink)
    assert_each_once(spans)
    assert _inputs(spans, "kept") == list(range(100))  # everything flushed before the signal is there
    assert _inputs(spans, "queued") == []
    assert not offline_dir.exists()
    lost = 100 - len(_inputs(spans, "queued"))
    assert lost == queued_at_signal == 100  # exactly what was queued, no more
    figure("lost_equals_queued", lost)


@pytest.mark.parametrize("collector", ["accepting", "refusing"])
def test_sigterm_with_a_sys_exit_handler_loses_nothing(spawn: Callable[..., Child], sink: OtlpSink, refused: str,
                                                       offline_dir: Path, collector: str, figure) -> None:
    url = sink.url if collector == "accepting" else refused
    child = spawn(SIGNAL_SCRIPT, url, str(offline_dir), "10", "handler")
    child.expect("READY")
    started = time.monotonic()
    child.signal(signal.SIGTERM)
    assert child.wait(10 + 10) == 0, child.stderr()
    exit_s = time.monotonic() - started
    assert exit_s <= 10 + LOADED_MARGIN
    spans = delivered_spans(sink) if collector == "accepting" else offline_spans(offline_dir)
    assert_each_once(spans)
    assert Counter(s.name for s in spans) == {"kept": 100, "queued": 100}
    assert _inputs(spans, "queued") == list(range(100))
    figure("exit_after_sigterm_s", round(exit_s, 3))


def test_ctrl_c_runs_the_exit_hook(spawn: Callable[..., Child], sink: OtlpSink, offline_dir: Path) -> None:
    # SIGINT's default is KeyboardInterrupt: the interpreter unwinds and atexit runs.
    child = spawn(SIGNAL_SCRIPT, sink.url, str(offline_dir), "10", "default")
    child.expect("READY")
    child.signal(signal.SIGINT)
    assert child.wait(20) != 0
    assert Counter(s.name for s in delivered_spans(sink)) == {"kept": 100, "queued": 100}


LOSSY_SCRIPT = """
import logging, sys
import fluxloop

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

@fluxloop.trace(name="lost")
def lost(i):
    return i

# Offline storage off and nothing listening: every span is lost, and must be counted and said at exit.
fluxloop.configure(use_collector=True, collector_url=sys.argv[1], offline_enabled=False, timeout=1.0,
                   flush_interval=60.0, max_queue_size=100, batch_size=50)
# One burst, however loaded the machine: with this switch interval the export worker cannot take the GIL before
# the loop ends (nothing in it blocks), so the first 100 spans fill the queue and the other 200 are dropped.
interval = sys.getswitchinterval()
sys.setswitchinterval(1000.0)
for i in range(300):
    lost(i)
sys.setswitchinterval(interval)
print("END", flush=True)
"""


def test_exit_logs_a_summary_when_spans_were_dropped_or_failed(spawn: Callable[..., Child], refused: str) -> None:
    # Found: nothing was said at exit when spans had been dropped or lost.
    child = spawn(LOSSY_SCRIPT, refused)
    child.expect("END")
    assert child.wait(30) == 0, child.stderr()
    err = child.stderr()
    [summary] = [line for line in err.splitlines() if "spans this pipeline handled" in line]
    found = re.search(r"0 exported, 0 spooled, (\d+) dropped \(queue full\), (\d+) failed", summary)
    assert found, err
    dropped, failed = map(int, found.groups())
    assert dropped + failed == 300 and dropped >= 100 and failed >= 100
    # The drop warnings give true counts: one per burst the worker saw (how many depends on when it ran), adding
    # up to the summary's, the last with the total.
    warned = re.findall(r"dropped (\d+) span\(s\) \((\d+) in all\)", err)
    assert warned and sum(int(n) for n, _ in warned) == dropped and int(warned[-1][1]) == dropped, err
