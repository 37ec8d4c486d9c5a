"""The public API is pinned: adding or removing a name is a deliberate change to this test.

Like httpx's test, ``__all__`` is compared with what ``vars(fluxloop)`` actually holds, in a fresh interpreter (in
this process the pytest plugin has already imported ``fluxloop.testing``).
"""

from __future__ import annotations

import json
import subprocess
import sys

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
    "recording",
    "replay",
    "reset_config",
    "set_recording_options",
    "shutdown",
    "testing",
    "tool",
    "trace",
]

#: Public submodules `fluxloop` loads on first attribute access (PEP 562) instead of at import.
LAZY = {"replay", "testing"}

_VARS = """
import json, fluxloop
print(json.dumps({"all": fluxloop.__all__, "vars": sorted(vars(fluxloop))}))
"""


def _fresh_vars() -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", _VARS], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def test_all_is_sorted_and_pinned() -> None:
    assert fluxloop.__all__ == sorted(fluxloop.__all__)
    assert fluxloop.__all__ == EXPECTED


def test_all_matches_the_public_names_the_module_holds() -> None:
    found = _fresh_vars()
    public = {name for name in found["vars"] if not name.startswith("_") or name == "__version__"}
    # Every public name the package holds is in __all__ (no leaked helper such as an imported module), and every
    # name in __all__ is there, except the submodules loaded on first access.
    assert public == set(found["all"]) - LAZY
    assert LAZY <= set(found["all"])


def test_every_name_in_all_exists() -> None:
    for name in fluxloop.__all__:
        assert hasattr(fluxloop, name), name


def test_lazy_submodules_import_on_first_access() -> None:
    code = ("import sys, fluxloop\n"
            "assert 'fluxloop.testing' not in sys.modules and 'fluxloop.replay' not in sys.modules\n"
            "print(fluxloop.testing.capture_spans.__name__, fluxloop.replay.__name__)\n"
            "from fluxloop import *\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["capture_spans", "fluxloop.replay"]


def test_the_testing_module_holds_public_names_only() -> None:
    import fluxloop.testing

    # (pytest rewrites plugin modules' asserts and adds "@py_builtins" and the like: not identifiers)
    public = sorted(name for name in vars(fluxloop.testing) if not name.startswith("_") and name.isidentifier())
    assert public == fluxloop.testing.__all__ == ["CapturedSpans", "capture_spans", "fluxloop_spans"]


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("fluxloop").joinpath("py.typed").is_file()
    assert files("fluxloop_otel_exporter").joinpath("py.typed").is_file()
