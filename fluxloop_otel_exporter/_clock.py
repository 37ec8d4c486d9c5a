"""The clock seam: what FluxLoop's processor and exporter read the time and wait with, so tests can fake it.

Production code uses :data:`SYSTEM_CLOCK` (``time.monotonic`` and the waitable's own ``wait``). A test passes a
clock whose ``monotonic()`` it advances by hand, which drives breaker probes, flush deadlines and shutdown budgets
without real seconds passing.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "Waitable"]


class Waitable(Protocol):
    """A ``threading.Event``, or a ``threading.Condition`` whose lock the caller holds."""

    def wait(self, timeout: float | None = None) -> bool: ...


class Clock(Protocol):
    """Monotonic time in seconds, and a wait on an event or condition bounded by that time."""

    def monotonic(self) -> float: ...

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """Wait until ``waitable`` is set or notified (True) or ``timeout`` seconds of this clock pass (False).

        Like ``Condition.wait``, it may return early: callers that wait for a state re-check it in a loop.
        """
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        return bool(waitable.wait(timeout))


SYSTEM_CLOCK: Clock = SystemClock()
