"""``fluxloop config``: every option's resolved value and where it came from, secrets masked.

Example::

    $ FLUXLOOP_API_KEY=sk-0123456789abcdef fluxloop config
    OPTION                  VALUE                  SOURCE
    enabled                 true                   default
    api_key                 ****cdef               FLUXLOOP_API_KEY
    ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import orjson

from fluxloop._config import OPTIONS, SOURCE_DEFAULT, FluxLoopConfig, mask_secret, resolve_env
from fluxloop.cli._render import BOLD, DIM, Painter
from fluxloop_otel_exporter._redact import redact_url

NAME = "config"
HELP = "show the resolved configuration: each option, its value and where it came from (secrets masked)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='one JSON object: {"options": {NAME: {"value", "source"}}, "warnings": [...]}')


def run(args: argparse.Namespace) -> int:
    resolved = resolve_env()  # the resolver only: the CLI never builds the runtime
    rows = [(name, json_value(name, resolved.config), resolved.sources.get(name, SOURCE_DEFAULT)) for name in OPTIONS]
    for warning in resolved.warnings:
        print(f"fluxloop config: warning: {warning}", file=sys.stderr)
    if args.json:
        document = {"options": {name: {"value": value, "source": source} for name, value, source in rows},
                    "warnings": list(resolved.warnings)}
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    painter = Painter.for_stream(sys.stdout)
    shown = [(name, text_value(value), source) for name, value, source in rows]
    name_width = max(len("OPTION"), *(len(name) for name, _, _ in shown))
    value_width = min(max(len("VALUE"), *(len(value) for _, value, _ in shown)), 60)
    sys.stdout.write(painter.paint(f"{'OPTION':<{name_width}}  {'VALUE':<{value_width}}  SOURCE", BOLD) + "\n")
    for name, value, source in shown:
        source_text = painter.paint(source, DIM) if source == SOURCE_DEFAULT else source
        sys.stdout.write(f"{name:<{name_width}}  {value:<{value_width}}  {source_text}\n")
    return 0


def json_value(name: str, config: FluxLoopConfig) -> Any:
    """The value of option ``name`` as JSON: secrets masked, mappings as objects, callables as markers."""
    value = getattr(config, name)
    secret = OPTIONS[name].secret
    if isinstance(value, Mapping):
        return {str(k): mask_secret(str(v)) if secret else v for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    if callable(value):
        return f"<callable:{getattr(value, '__qualname__', None) or type(value).__name__}>"
    if secret and isinstance(value, str):
        return mask_secret(value)
    if name == "collector_url":
        return redact_url(value)
    return value


def text_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(empty)"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    return str(value)
