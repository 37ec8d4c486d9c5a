"""Reporting FluxLoop's own problems: logged at most once a minute per kind, never raised into the application.

Under pytest an instrumentation error is re-raised instead (after being logged), so a bug in FluxLoop fails the
test suite rather than hiding in a log line; a test that injects failures on purpose wraps its calls in
:func:`tolerated`. Outside pytest nothing here ever raises.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

_logger = logging.getLogger("fluxloop")
REPORT_INTERVAL: Final = 60.0
#: Set by pytest (>= 8.2) for the whole session, in the process that runs the tests.
_PYTEST_MARKERS: Final = ("PYTEST_VERSION", "PYTEST_CURRENT_TEST")

_reported: dict[str, float] = {}
_tolerated: contextvars.ContextVar[bool] = contextvars.ContextVar("fluxloop_tolerated_errors", default=False)


def report(kind: str, message: str, *args: object) -> None:
    """Log ``message % args`` as a warning at most once a minute per ``kind``; never raises."""
    try:
        now = time.monotonic()
        if now - _reported.get(kind, -REPORT_INTERVAL) >= REPORT_INTERVAL:
            _reported[kind] = now
            _logger.warning("fluxloop: " + message, *args)
    except Exception:  # pragma: no cover - logging itself failed
        pass


def reset() -> None:
    """Forget what was reported (``reset_config()``): the next problem of each kind is logged again."""
    _reported.clear()


def under_pytest() -> bool:
    """True while pytest runs this process's tests."""
    return any(name in os.environ for name in _PYTEST_MARKERS)


@contextmanager
def tolerated() -> Iterator[None]:
    """Inside this block instrumentation errors are only logged, even under pytest (for fault-injection tests).

    Example::

        with tolerated():
            call_with_a_hostile_argument()
    """
    token = _tolerated.set(True)
    try:
        yield
    finally:
        _tolerated.reset(token)


def internal_error(where: str, exc: BaseException, *, reraise: bool = True) -> None:
    """An instrumentation failure in ``where``: reported (rate-limited); the user's call is unaffected.

    Under pytest (and outside :func:`tolerated`) ``exc`` is re-raised after reporting when ``reraise`` is
    True; callers on background threads pass False.
    """
    report(where, "instrumentation error in %s (the call itself is unaffected): %r", where, exc)
    if reraise and not _tolerated.get() and under_pytest():
        raise exc
