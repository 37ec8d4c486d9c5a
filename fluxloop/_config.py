"""The one place that resolves FluxLoop configuration from the option table, with validation and precedence.

Precedence, highest first: ``configure()`` keyword > ``FLUXLOOP_*`` variable > ``OTEL_*`` variable > default.
Hot paths never read ``os.environ``: they read the immutable :class:`FluxLoopConfig` this module resolves. Every
option is defined once, in :data:`fluxloop._options.OPTIONS`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final

from fluxloop._options import OPTIONS, EnvValueError, Option
from fluxloop_otel_exporter._redact import redact_url

_logger = logging.getLogger("fluxloop")

SOURCE_DEFAULT: Final = "default"
SOURCE_CONFIGURE: Final = "configure()"


def _default(name: str) -> Any:
    """The dataclass default of option ``name``, taken from the option table."""
    value = OPTIONS[name].default
    if isinstance(value, Mapping):
        return field(default_factory=lambda: value)
    return value


@dataclass(frozen=True, repr=False)
class FluxLoopConfig:
    """An immutable snapshot of the resolved configuration (``fluxloop.get_config()``).

    Example::

        >>> fluxloop.get_config().sample_rate
        1.0
    """

    enabled: bool = _default("enabled")
    debug: bool = _default("debug")
    collector_url: str = _default("collector_url")
    api_key: str | None = _default("api_key")
    headers: Mapping[str, str] = _default("headers")
    sample_rate: float = _default("sample_rate")
    service_name: str = _default("service_name")
    environment: str = _default("environment")
    resource_attributes: Mapping[str, str] = _default("resource_attributes")
    record_args: bool = _default("record_args")
    recording_file: str | None = _default("recording_file")
    batch_size: int = _default("batch_size")
    flush_interval: float = _default("flush_interval")
    max_queue_size: int = _default("max_queue_size")
    timeout: float = _default("timeout")
    use_collector: bool = _default("use_collector")
    offline_enabled: bool = _default("offline_enabled")
    offline_dir: str = _default("offline_dir")
    offline_max_file_bytes: int = _default("offline_max_file_bytes")
    probe_interval: float = _default("probe_interval")
    forward_spool: bool = _default("forward_spool")
    capture_input: bool = _default("capture_input")
    capture_output: bool = _default("capture_output")
    max_attribute_length: int = _default("max_attribute_length")
    mask_patterns: tuple[str, ...] = _default("mask_patterns")
    mask_function: Callable[[str, Any], Any] | None = _default("mask_function")
    export_scope: str = _default("export_scope")

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key" and value:
                value = mask_secret(value)
            elif f.name == "collector_url":
                value = redact_url(value)
            elif f.name == "headers":
                value = {k: mask_secret(v) for k, v in value.items()}
            elif isinstance(value, MappingProxyType):
                value = dict(value)
            parts.append(f"{f.name}={value!r}")
        return f"FluxLoopConfig({', '.join(parts)})"

    __str__ = __repr__

    @property
    def export_headers(self) -> dict[str, str]:
        """Headers for the collector: OTEL/FLUXLOOP headers plus ``Authorization: Bearer <api_key>``."""
        out = dict(self.headers)
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        return out


if [f.name for f in fields(FluxLoopConfig)] != list(OPTIONS):  # pragma: no cover - a programming error
    raise RuntimeError("FluxLoopConfig fields and the option table disagree")


def mask_secret(value: str) -> str:
    """Show at most the last 4 characters of a secret, never the whole of it."""
    if not value:
        return value
    return "****" + value[-4:] if len(value) >= 16 else "****"


@dataclass(frozen=True)
class Resolved:
    """A resolved configuration with, for each option, where its value came from."""

    config: FluxLoopConfig
    sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()


def _candidates(opt: Option, env: Mapping[str, str]) -> list[tuple[Callable[[], tuple[Any, str] | None], str]]:
    """Where option ``opt`` may come from, highest precedence first, each with the variable to blame."""
    out: list[tuple[Callable[[], tuple[Any, str] | None], str]] = []
    if opt.env:
        var = opt.env
        # An empty (or blank) variable is unset, as OpenTelemetry's spec says for OTEL_*: a blank value in a
        # Compose file or Helm chart must not silently switch tracing or export off.
        out.append((lambda: (env[var], var) if (env.get(var) or "").strip() else None, var))
    for fallback in opt.otel:
        out.append((functools.partial(fallback.read, env), fallback.variables[0]))
    return out


def resolve_env(env: Mapping[str, str] | None = None) -> Resolved:
    """Resolve defaults < OTEL_* < FLUXLOOP_*; a bad value is skipped with a warning naming it, never raised."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for name, opt in OPTIONS.items():
        sources[name] = SOURCE_DEFAULT
        rejected: list[str] = []
        for get, var in _candidates(opt, env):
            try:
                found = get()
                if found is None:
                    continue
                raw, var = found
                values[name] = opt.cast(raw, True)
                sources[name] = var
                break
            except EnvValueError as exc:
                rejected.append(_rejection(opt, exc.var, env, exc))
            except (ValueError, TypeError) as exc:
                rejected.append(_rejection(opt, var, env, exc))
        if rejected:
            used = "<hidden>" if opt.secret else repr(values.get(name, opt.default))
            where = "the default" if sources[name] == SOURCE_DEFAULT else sources[name]
            problems.extend(f"{message}; using {used} from {where}" for message in rejected)
    return Resolved(FluxLoopConfig(**values), MappingProxyType(sources), tuple(problems))


def _rejection(opt: Option, var: str, env: Mapping[str, str], exc: Exception) -> str:
    if opt.secret:  # neither the value nor a parser message quoting part of it
        return f"{var}=<hidden> ignored for option {opt.name!r}: not a valid value"
    return f"{var}={env.get(var)!r} ignored for option {opt.name!r}: {exc}"


def validate_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``configure()`` keywords; raise ``ValueError`` naming the first bad option and value."""
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        opt = OPTIONS.get(name)
        if opt is None:
            raise ValueError(f"configure(): unknown option {name!r}; known options: {', '.join(OPTIONS)}")
        try:
            out[name] = opt.cast(value, False)
        except ValueError as exc:
            shown = "<hidden>" if opt.secret else repr(value)
            raise ValueError(f"configure(): invalid value {shown} for option {name!r}: {exc}") from None
    return out


def apply_overrides(base: Resolved, overrides: Mapping[str, Any]) -> Resolved:
    """Layer already validated ``configure()`` values over an environment resolution."""
    sources = dict(base.sources)
    sources.update({name: SOURCE_CONFIGURE for name in overrides})
    return Resolved(replace(base.config, **overrides), MappingProxyType(sources), base.warnings)


def changed_options(old: FluxLoopConfig, new: FluxLoopConfig) -> set[str]:
    """Names of the options whose value differs."""
    return {name for name in OPTIONS if getattr(old, name) != getattr(new, name)}


def affected(names: set[str]) -> set[str]:
    """What a change of options ``names`` affects (see the ``affects`` column of the option table)."""
    return {part for name in names for part in OPTIONS[name].affects}


def report_env_warnings(resolved: Resolved, seen: set[str] | None = None) -> None:
    """Log each environment problem of ``resolved``; with ``seen`` (a memo the caller owns), each only once."""
    for message in resolved.warnings:
        if seen is not None:
            if message in seen:
                continue
            seen.add(message)
        _logger.warning("fluxloop: %s", message)
