"""The one place that resolves FluxLoop configuration: options table, validation and precedence.

Precedence, highest first: ``configure()`` keyword > ``FLUXLOOP_*`` variable > ``OTEL_*`` variable > default.
Hot paths never read ``os.environ``: they read the immutable :class:`FluxLoopConfig` this module resolves.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote, urlparse

_logger = logging.getLogger("fluxloop")

DEFAULT_COLLECTOR_URL: Final = "http://localhost:8000"
DEFAULT_OFFLINE_DIR: Final = "./fluxloop_artifacts"

SOURCE_DEFAULT: Final = "default"
SOURCE_CONFIGURE: Final = "configure()"


@dataclass(frozen=True, repr=False)
class FluxLoopConfig:
    """An immutable snapshot of the resolved configuration (``fluxloop.get_config()``).

    Example::

        >>> fluxloop.get_config().sample_rate
        1.0
    """

    enabled: bool = True
    debug: bool = False
    collector_url: str = DEFAULT_COLLECTOR_URL
    api_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sample_rate: float = 1.0
    service_name: str = "unknown_service"
    environment: str = "development"
    resource_attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    record_args: bool = False
    recording_file: str | None = None
    batch_size: int = 512
    flush_interval: float = 5.0
    max_queue_size: int = 2048
    timeout: float = 10.0
    use_collector: bool = True
    offline_enabled: bool = True
    offline_dir: str = DEFAULT_OFFLINE_DIR
    offline_max_file_bytes: int = 64 * 1024 * 1024
    probe_interval: float = 30.0
    capture_input: bool = True
    capture_output: bool = True
    max_attribute_length: int = 32 * 1024
    mask_patterns: tuple[str, ...] = ()
    mask_function: Callable[[str, Any], Any] | None = None
    #: On an application's provider: export FluxLoop's spans and what runs inside them ("fluxloop"), or "all".
    export_scope: str = "fluxloop"

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key" and value:
                value = mask_secret(value)
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


def mask_secret(value: str) -> str:
    """Show at most the last 4 characters of a secret, never the whole of it."""
    if not value:
        return value
    return "****" + value[-4:] if len(value) >= 16 else "****"


# --------------------------------------------------------------------------------------------------------
# Casters: each takes a raw value (from configure() or an env string) and returns the typed value or raises
# ValueError with a short reason. ``from_env`` says whether strings should be parsed.

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _bool(value: Any, from_env: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ValueError("expected a boolean (true/false)")


def _number(kind: type, lo: float | None, hi: float | None, lo_open: bool = False) -> Callable[[Any, bool], Any]:
    def cast(value: Any, from_env: bool) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}")
        if from_env and isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
        if kind is int and not isinstance(value, int):
            raise ValueError("expected an integer")
        if kind is float:
            if not isinstance(value, (int, float)):
                raise ValueError("expected a number")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError("expected a finite number")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise ValueError(f"must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and value > hi:
            raise ValueError(f"must be <= {hi:g}")
        return value

    return cast


def _str(value: Any, from_env: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _opt_str(value: Any, from_env: bool) -> str | None:
    if value is None or (from_env and isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _str(value, from_env)


def _path(value: Any, from_env: bool) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _str(value, from_env)


def _url(value: Any, from_env: bool) -> str:
    url = _str(value, from_env)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return url


def _mapping(value: Any, from_env: bool) -> Mapping[str, str]:
    if from_env and isinstance(value, str):
        value = parse_key_values(value)
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("expected a mapping of str to str")
    return MappingProxyType(dict(value))


def _patterns(value: Any, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(value, str):
        value = [p for p in value.split(",") if p.strip()]
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError("expected a list of regular expressions")
    out = tuple(value)
    for pattern in out:
        if not isinstance(pattern, str):
            raise ValueError("expected a list of regular expressions")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return out


def _callable_or_none(value: Any, from_env: bool) -> Any:
    if value is None or callable(value):
        return value
    raise ValueError("expected a callable (key, value) -> value, or None")


def _choice(*allowed: str) -> Callable[[Any, bool], str]:
    def cast(value: Any, from_env: bool) -> str:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        raise ValueError(f"expected one of {', '.join(allowed)}")

    return cast


def parse_key_values(text: str) -> dict[str, str]:
    """Parse the W3C-baggage-like ``k1=v1,k2=v2`` form of OTEL_*_HEADERS and OTEL_RESOURCE_ATTRIBUTES."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item.strip()!r}")
        out[unquote(key.strip())] = unquote(val.strip())
    return out


@dataclass(frozen=True)
class _Option:
    """One configuration option: its caster and the environment variables that can set it."""

    cast: Callable[[Any, bool], Any]
    env: str | None = None
    otel: tuple[str, ...] = ()
    secret: bool = False


OPTIONS: Final[dict[str, _Option]] = {
    "enabled": _Option(_bool, "FLUXLOOP_ENABLED", ("OTEL_SDK_DISABLED",)),
    "debug": _Option(_bool, "FLUXLOOP_DEBUG"),
    "collector_url": _Option(_url, "FLUXLOOP_COLLECTOR_URL",
                             ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")),
    "api_key": _Option(_opt_str, "FLUXLOOP_API_KEY", secret=True),
    "headers": _Option(_mapping, "FLUXLOOP_HEADERS",
                       ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), secret=True),
    "sample_rate": _Option(_number(float, 0.0, 1.0), "FLUXLOOP_SAMPLE_RATE", ("OTEL_TRACES_SAMPLER",)),
    "service_name": _Option(_str, "FLUXLOOP_SERVICE_NAME", ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES")),
    "environment": _Option(_str, "FLUXLOOP_ENVIRONMENT", ("OTEL_RESOURCE_ATTRIBUTES",)),
    "resource_attributes": _Option(_mapping, "FLUXLOOP_RESOURCE_ATTRIBUTES", ("OTEL_RESOURCE_ATTRIBUTES",)),
    "record_args": _Option(_bool, "FLUXLOOP_RECORD_ARGS"),
    "recording_file": _Option(_opt_str, "FLUXLOOP_RECORDING_FILE"),
    "batch_size": _Option(_number(int, 1, 100_000), "FLUXLOOP_BATCH_SIZE", ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",)),
    "flush_interval": _Option(_number(float, 0.0, 3600.0, lo_open=True), "FLUXLOOP_FLUSH_INTERVAL",
                              ("OTEL_BSP_SCHEDULE_DELAY",)),
    "max_queue_size": _Option(_number(int, 1, 10_000_000), "FLUXLOOP_MAX_QUEUE_SIZE", ("OTEL_BSP_MAX_QUEUE_SIZE",)),
    "timeout": _Option(_number(float, 0.0, 600.0, lo_open=True), "FLUXLOOP_TIMEOUT"),
    "use_collector": _Option(_bool, "FLUXLOOP_USE_COLLECTOR"),
    "offline_enabled": _Option(_bool, "FLUXLOOP_OFFLINE_ENABLED"),
    "offline_dir": _Option(_path, "FLUXLOOP_OFFLINE_DIR"),
    "offline_max_file_bytes": _Option(_number(int, 1024, None), "FLUXLOOP_OFFLINE_MAX_FILE_BYTES"),
    "probe_interval": _Option(_number(float, 0.0, 86400.0, lo_open=True), "FLUXLOOP_PROBE_INTERVAL"),
    "capture_input": _Option(_bool, "FLUXLOOP_CAPTURE_INPUT"),
    "capture_output": _Option(_bool, "FLUXLOOP_CAPTURE_OUTPUT"),
    "max_attribute_length": _Option(_number(int, 64, None), "FLUXLOOP_MAX_ATTRIBUTE_LENGTH"),
    "mask_patterns": _Option(_patterns, "FLUXLOOP_MASK_PATTERNS"),
    "mask_function": _Option(_callable_or_none),
    "export_scope": _Option(_choice("fluxloop", "all"), "FLUXLOOP_EXPORT_SCOPE"),
}

_SAMPLERS: Final[dict[str, float | None]] = {
    "always_on": 1.0, "parentbased_always_on": 1.0,
    "always_off": 0.0, "parentbased_always_off": 0.0,
    "traceidratio": None, "parentbased_traceidratio": None,
}


def _otel_value(name: str, opt: _Option, env: Mapping[str, str]) -> tuple[Any, str] | None:
    """The raw value an OTEL_* fallback gives option ``name``, converted to the option's unit, and its source."""
    for var in opt.otel:
        raw = env.get(var)
        if raw is None or not raw.strip():
            continue
        if name == "enabled":
            return (not _bool(raw, True)), var
        if name == "collector_url":
            # The base endpoint gets /v1/traces appended by the exporter; the signal endpoint is used as is.
            return raw.strip(), var
        if name == "sample_rate":
            kind = raw.strip().lower()
            if kind not in _SAMPLERS:
                raise ValueError(f"unsupported sampler; use one of {', '.join(sorted(_SAMPLERS))}")
            rate = _SAMPLERS[kind]
            if rate is None:
                arg = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
                return arg, "OTEL_TRACES_SAMPLER_ARG"
            return rate, var
        if name == "flush_interval":
            return float(raw) / 1000.0, var  # OTEL_BSP_SCHEDULE_DELAY is in milliseconds
        if var == "OTEL_RESOURCE_ATTRIBUTES":
            attrs = parse_key_values(raw)
            if name == "service_name" and "service.name" in attrs:
                return attrs["service.name"], var
            if name == "environment":
                for key in ("deployment.environment.name", "deployment.environment"):
                    if key in attrs:
                        return attrs[key], var
            if name == "resource_attributes":
                return attrs, var
            continue
        return raw, var
    return None


@dataclass(frozen=True)
class Resolved:
    """A resolved configuration with, for each option, where its value came from."""

    config: FluxLoopConfig
    sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()


def resolve_env(env: Mapping[str, str] | None = None) -> Resolved:
    """Resolve defaults < OTEL_* < FLUXLOOP_*; a bad value is skipped with a warning naming it, never raised."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for name, opt in OPTIONS.items():
        sources[name] = SOURCE_DEFAULT
        rejected: list[str] = []
        candidates: list[tuple[Callable[[], tuple[Any, str] | None], str]] = []
        if opt.env:
            candidates.append((lambda opt=opt: (env[opt.env], opt.env) if env.get(opt.env) is not None else None,
                               opt.env))
        if opt.otel:
            candidates.append((lambda name=name, opt=opt: _otel_value(name, opt, env), "/".join(opt.otel)))
        for get, label in candidates:
            try:
                found = get()
                if found is None:
                    continue
                raw, var = found
                values[name] = opt.cast(raw, True)
                sources[name] = var
                break
            except (ValueError, TypeError) as exc:
                if opt.secret:  # neither the value nor a parser message quoting part of it
                    rejected.append(f"{label}=<hidden> ignored for option {name!r}: not a valid value")
                else:
                    rejected.append(f"{label}={_raw_of(env, label)!r} ignored for option {name!r}: {exc}")
        if rejected:
            used = "<hidden>" if opt.secret else repr(values.get(name, getattr(_DEFAULTS, name)))
            where = "the default" if sources[name] == SOURCE_DEFAULT else sources[name]
            problems.extend(f"{message}; using {used} from {where}" for message in rejected)
    return Resolved(FluxLoopConfig(**values), MappingProxyType(sources), tuple(problems))


_DEFAULTS: Final = FluxLoopConfig()


def _raw_of(env: Mapping[str, str], label: str) -> str | None:
    for var in label.split("/"):
        if var in env:
            return env[var]
    return None


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


def report_env_warnings(resolved: Resolved, _seen: set[str] = set()) -> None:  # noqa: B006 (once per process)
    """Log each environment problem once per process."""
    for message in resolved.warnings:
        if message not in _seen:
            _seen.add(message)
            _logger.warning("fluxloop: %s", message)
