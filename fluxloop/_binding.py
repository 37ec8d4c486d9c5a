"""Binding a call's arguments to parameter names, planned once per function so each call is a dict build."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def make_binder(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """A function mapping (args, kwargs) to arguments by parameter name, ``self``/``cls`` left out."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return lambda args, kwargs: {"args": list(args), **kwargs}
    params = list(sig.parameters.values())
    skip = 1 if params and params[0].name in ("self", "cls") and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) else 0
    names = tuple(p.name for p in params[skip:])
    defaults = tuple((p.name, p.default) for p in params[skip:] if p.default is not inspect.Parameter.empty)
    count = len(names)

    if all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        def bind_simple(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = dict(zip(names, args[skip:] if skip else args))
            if kwargs:
                bound.update(kwargs)
            if len(bound) < count:
                for name, default in defaults:
                    if name not in bound:
                        bound[name] = default
            return bound
        return bind_simple

    def bind_general(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            ba = sig.bind_partial(*args, **kwargs)
        except TypeError:  # the call itself will fail; record what was passed
            return {"args": list(args[skip:]), **kwargs}
        ba.apply_defaults()
        bound: dict[str, Any] = {}
        for i, (name, value) in enumerate(ba.arguments.items()):
            if i < skip and params[0].name == name:
                continue
            if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                bound.update(value)
            elif sig.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
                bound[name] = list(value)
            else:
                bound[name] = value
        return bound
    return bind_general
