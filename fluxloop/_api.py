"""Module-level configuration and lifecycle functions of the public API."""

from __future__ import annotations

from typing import Any

from fluxloop import _runtime
from fluxloop._config import FluxLoopConfig


def configure(**options: Any) -> None:
    """Set options (see the README's configuration table); they win over ``FLUXLOOP_*`` and ``OTEL_*``.

    Calls add up until :func:`reset_config`. An unknown option, a wrong type or an out-of-range value raises
    ``ValueError`` naming the option and value, and leaves the previous configuration in force.

    Example::

        fluxloop.configure(collector_url="http://localhost:8000", api_key="...", sample_rate=0.1)
    """
    _runtime.RUNTIME.configure(options)


def reset_config() -> None:
    """Drop everything ``configure()`` set: back to environment and defaults; the old pipeline is flushed and
    torn down (threads, files, exporters), recording counters reset.

    Example::

        fluxloop.reset_config()
    """
    _runtime.RUNTIME.reset()


def get_config() -> FluxLoopConfig:
    """The configuration in force, as an immutable snapshot (its repr masks secrets).

    Example::

        >>> fluxloop.get_config().service_name
        'unknown_service'
    """
    return _runtime.RUNTIME.resolved.config


def flush(timeout: float | None = None) -> bool:
    """Export every span finished so far; False if ``timeout`` (seconds, default the ``timeout`` option) passed
    first. (Recordings need no flush: each record is on disk when its call returns.)

    Example::

        assert fluxloop.flush(timeout=5)
    """
    return _runtime.RUNTIME.flush(timeout)


def shutdown(timeout: float | None = None) -> None:
    """Flush within ``timeout`` and stop background threads; idempotent. Runs by itself at interpreter exit.

    Example::

        fluxloop.shutdown()
    """
    _runtime.RUNTIME.shutdown(timeout)


def get_stats() -> dict[str, int]:
    """Span counters since start: ``queued`` (waiting now), ``exported``, ``dropped`` (queue full), ``failed``
    (lost), ``spooled`` (written to ``offline_dir`` because the collector was unreachable).

    Example::

        >>> fluxloop.get_stats()["dropped"]
        0
    """
    return _runtime.RUNTIME.stats()
