"""Reporting FluxLoop's own problems: logged at most once a minute per kind, never raised into user code."""

from __future__ import annotations

import logging
import time
from typing import Final

_logger = logging.getLogger("fluxloop")
REPORT_INTERVAL: Final = 60.0
_reported: dict[str, float] = {}


def report(kind: str, message: str, *args: object) -> None:
    """Log ``message % args`` as a warning at most once a minute per ``kind``; never raises."""
    try:
        now = time.monotonic()
        if now - _reported.get(kind, -REPORT_INTERVAL) >= REPORT_INTERVAL:
            _reported[kind] = now
            _logger.warning("fluxloop: " + message, *args)
    except Exception:  # pragma: no cover - logging itself failed
        pass


def internal_error(where: str, exc: BaseException) -> None:
    """An instrumentation failure in ``where``: reported (rate-limited); the user's call is unaffected."""
    report(where, "instrumentation error in %s (the call itself is unaffected): %r", where, exc)
