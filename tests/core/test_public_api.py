"""The public API is pinned: adding or removing a name is a deliberate change to this test."""

import fluxloop

EXPECTED = [
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


def test_all_is_sorted_and_pinned() -> None:
    assert fluxloop.__all__ == sorted(fluxloop.__all__)
    assert fluxloop.__all__ == EXPECTED


def test_every_name_in_all_exists() -> None:
    for name in fluxloop.__all__:
        assert hasattr(fluxloop, name), name


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("fluxloop").joinpath("py.typed").is_file()
    assert files("fluxloop_otel_exporter").joinpath("py.typed").is_file()
