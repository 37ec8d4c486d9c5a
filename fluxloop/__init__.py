"""FluxLoop: trace, inspect and replay what your AI agents do, on OpenTelemetry.

Example::

    import fluxloop

    @fluxloop.agent(name="MyAgent")
    def process_request(query: str) -> str:
        return generate_response(query)
"""

from fluxloop import replay, testing
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
    "replay",
    "reset_config",
    "set_recording_options",
    "shutdown",
    "testing",
    "tool",
    "trace",
]
