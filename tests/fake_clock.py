"""A fake clock for the processor's and exporter's clock seam: time moves only when a test calls ``advance``."""

from __future__ import annotations

import threading

from fluxloop_otel_exporter._clock import Waitable

# How long one real slice of a wait lasts: a waiter notices a set event or an advanced clock within it.
_SLICE = 0.005


class FakeClock:
    """``monotonic()`` returns the fake time; ``wait`` returns when the waitable fires or the fake time passes (on a
    ``Condition``, also after each real slice: callers re-check their state in a loop, see ``Clock.wait``).

    ``waiting()`` tells how many threads are inside ``wait`` (to synchronise with a worker before advancing).
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._waiting = 0

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def waiting(self) -> int:
        with self._lock:
            return self._waiting

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        deadline = None if timeout is None else self.monotonic() + timeout
        with self._lock:
            self._waiting += 1
        try:
            while True:
                if waitable.wait(_SLICE):
                    return True
                if isinstance(waitable, threading.Condition):
                    # A notify that races a slice's timeout is lost (Condition.wait returns False), and no other may
                    # come: return, as Clock.wait may, so that the caller re-checks its state (found hanging a flush).
                    return False
                if deadline is not None and self.monotonic() >= deadline:
                    return False
        finally:
            with self._lock:
                self._waiting -= 1
