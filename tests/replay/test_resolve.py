"""Resolving targets: functions, methods on a built instance, static/class methods; clear errors otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fluxloop.replay import ReplayError, load_callable, resolve_target

from . import sample_agents
from ._helpers import M


def test_function() -> None:
    assert resolve_target(f"{M}:plain")(1, 2) == 3


def test_method_on_a_zero_argument_instance() -> None:
    bound = resolve_target(f"{M}:Handler.handle")
    assert isinstance(bound.__self__, sample_agents.Handler)


def test_method_on_a_factory_instance() -> None:
    bound = resolve_target(f"{M}:NeedsArgs.handle", factory=sample_agents.make_needs_args)
    assert bound("x") == "factory:x"


def test_static_class_and_nested_methods() -> None:
    assert resolve_target(f"{M}:Tools.add")(1, 2) == 3
    assert resolve_target(f"{M}:Tools.kind")(1) == "Tools:1"
    assert resolve_target(f"{M}:Outer.Inner.method")(2) == 4


@pytest.mark.parametrize(("target", "message"), [
    ("no_colon", "must look like 'module:function'"),
    ("nosuchmodule_xyz:f", "no module named 'nosuchmodule_xyz'"),
    (f"{M}:missing", "sample_agents has no attribute 'missing'"),
    (f"{M}:Handler.missing", "Handler has no attribute 'missing'"),
    (f"{M}:NOT_CALLABLE", "is not callable"),
    (f"{M}:NeedsArgs.handle", "NeedsArgs() raised TypeError"),
    (f"{M}:Broken.handle", "RuntimeError: cannot build"),
    (f"{M}:make.<locals>.inner", "defined inside a function"),
    ("__main__:NoSuchThingInMain", "recorded from a script run as __main__"),
])
def test_errors_are_clear(target: str, message: str) -> None:
    with pytest.raises(ReplayError) as caught:
        resolve_target(target)
    assert message in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "explodes_on_import.py").write_text("raise RuntimeError('import-time failure')\n")
    (tmp_path / "bad_dependency.py").write_text("import nosuchdependency_abc\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ReplayError, match="raised RuntimeError: import-time failure"):
        resolve_target("explodes_on_import:f")
    with pytest.raises(ReplayError, match="importing 'bad_dependency' failed: No module named 'nosuchdependency_abc'"):
        resolve_target("bad_dependency:f")
    for name in ("explodes_on_import", "bad_dependency"):
        sys.modules.pop(name, None)


def test_load_callable() -> None:
    assert load_callable(f"{M}:make_needs_args")().prefix == "factory:"
    with pytest.raises(ReplayError, match="must look like 'module:callable'"):
        load_callable("nocolon")
    with pytest.raises(ReplayError, match="is not callable"):
        load_callable(f"{M}:NOT_CALLABLE")
