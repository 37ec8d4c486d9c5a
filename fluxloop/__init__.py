"""FluxLoop: trace, inspect and replay what your AI agents do, on OpenTelemetry.

Example::

    import fluxloop

    @fluxloop.agent(name="MyAgent")
    def process_request(query: str) -> str:
        return generate_response(query)
"""

import importlib as _importlib
from types import ModuleType as _ModuleType

from fluxloop._api import configure, flush, get_config, get_stats, reset_config, shutdown
from fluxloop._config import FluxLoopConfig
from fluxloop._context import InstrumentContext, get_current_context, instrument
from fluxloop._decorators import agent, prompt, tool, trace
from fluxloop._processor import FluxLoopSpanProcessor
from fluxloop._version import __version__
from fluxloop.recording import (
    disable_recording,
    enable_recording,
    record_call_args,
    set_recording_options,
)

# Public submodules loaded on first access, so `import fluxloop` imports neither pytest nor the replay machinery
# (the pytest plugin in `fluxloop.testing` is found through its `pytest11` entry point).
_LAZY_SUBMODULES = ("replay", "testing")


def __getattr__(name: str) -> _ModuleType:
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"fluxloop.{name}")
    raise AttributeError(f"module 'fluxloop' has no attribute {name!r}")


__all__ = [
    "FluxLoopConfig",
    "FluxLoopSpanProcessor",
    "InstrumentContext",
    "__version__",
    "agent",
    "configure",
    "disable_recording",
    "enable_recording",
    "flush",
    "get_config",
    "get_current_context",
    "get_stats",
    "instrument",
    "prompt",
    "record_call_args",
    "recording",
    "replay",
    "reset_config",
    "set_recording_options",
    "shutdown",
    "testing",
    "tool",
    "trace",
]
