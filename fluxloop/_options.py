"""The option table: the one definition of every configuration option (type, default, env names, OTEL fallback and
its unit conversion, what a change affects, one-line doc).

Resolution (:mod:`fluxloop._config`), the runtime's rebuild decisions, ``fluxloop config`` and the README's option
table are all derived from :data:`OPTIONS`; ``python -m fluxloop._options`` prints the README table.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote, urlparse

DEFAULT_COLLECTOR_URL: Final = "http://localhost:8000"
DEFAULT_OFFLINE_DIR: Final = "./fluxloop_artifacts"

# What a change of an option affects (the runtime rebuilds exactly these parts).
CALL: Final = "call path"  # the snapshot decorated calls read (always rebuilt)
PIPELINE: Final = "pipeline"  # the export pipeline: processor, exporter, spool
RESOURCE: Final = "resource"  # the OTel resource, hence which provider FluxLoop's spans go through
RECORDING: Final = "recording"  # replay recordings
LOGGING: Final = "logging"  # the level of the ``fluxloop`` logger

Caster = Callable[[Any, bool], Any]


class EnvValueError(ValueError):
    """A bad value in environment variable ``var`` (which may differ from the one the option is named after)."""

    def __init__(self, var: str, reason: str) -> None:
        super().__init__(reason)
        self.var = var


# -- casters: raw value (a configure() keyword, or an env string when ``from_env``) -> typed value --------------
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


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


def _number(kind: type, lo: float | None, hi: float | None, lo_open: bool = False) -> Caster:
    what = "an integer" if kind is int else "a number"

    def cast(value: Any, from_env: bool) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected {what}")
        if from_env and isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise ValueError(f"expected {what}") from None
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


# -- OTEL fallbacks: each reads the environment and returns (raw value in the option's unit, variable) ----------
Reader = Callable[[Mapping[str, str]], "tuple[Any, str] | None"]


@dataclass(frozen=True)
class OtelFallback:
    """An ``OTEL_*`` source of an option: the variables it reads, how, and how the README describes it."""

    variables: tuple[str, ...]
    read: Reader
    doc: str


def _present(env: Mapping[str, str], var: str) -> str | None:
    raw = env.get(var)
    return raw if raw is not None and raw.strip() else None


def _plain(var: str, note: str = "") -> OtelFallback:
    def read(env: Mapping[str, str]) -> tuple[Any, str] | None:
        raw = _present(env, var)
        return None if raw is None else (raw.strip(), var)

    return OtelFallback((var,), read, f"`{var}`{note}")


def _sdk_disabled(env: Mapping[str, str]) -> tuple[Any, str] | None:
    raw = _present(env, "OTEL_SDK_DISABLED")
    if raw is None:
        return None
    try:
        return (not _bool(raw, True)), "OTEL_SDK_DISABLED"
    except ValueError as exc:
        raise EnvValueError("OTEL_SDK_DISABLED", str(exc)) from None


_SAMPLERS: Final[dict[str, float | None]] = {
    "always_on": 1.0, "parentbased_always_on": 1.0,
    "always_off": 0.0, "parentbased_always_off": 0.0,
    "traceidratio": None, "parentbased_traceidratio": None,
}


def _sampler(env: Mapping[str, str]) -> tuple[Any, str] | None:
    raw = _present(env, "OTEL_TRACES_SAMPLER")
    if raw is None:
        return None
    kind = raw.strip().lower()
    if kind not in _SAMPLERS:
        raise EnvValueError("OTEL_TRACES_SAMPLER", f"unsupported sampler; use one of {', '.join(sorted(_SAMPLERS))}")
    rate = _SAMPLERS[kind]
    if rate is not None:
        return rate, "OTEL_TRACES_SAMPLER"
    arg = _present(env, "OTEL_TRACES_SAMPLER_ARG")
    return (1.0, "OTEL_TRACES_SAMPLER") if arg is None else (arg.strip(), "OTEL_TRACES_SAMPLER_ARG")


def _schedule_delay_ms(env: Mapping[str, str]) -> tuple[Any, str] | None:
    raw = _present(env, "OTEL_BSP_SCHEDULE_DELAY")
    if raw is None:
        return None
    try:
        return float(raw) / 1000.0, "OTEL_BSP_SCHEDULE_DELAY"  # milliseconds -> seconds
    except ValueError:
        raise EnvValueError("OTEL_BSP_SCHEDULE_DELAY", "expected a number of milliseconds") from None


def _resource_key(*keys: str) -> Reader:
    def read(env: Mapping[str, str]) -> tuple[Any, str] | None:
        raw = _present(env, "OTEL_RESOURCE_ATTRIBUTES")
        if raw is None:
            return None
        try:
            attrs = parse_key_values(raw)
        except ValueError as exc:
            raise EnvValueError("OTEL_RESOURCE_ATTRIBUTES", str(exc)) from None
        if not keys:
            return attrs, "OTEL_RESOURCE_ATTRIBUTES"
        for key in keys:
            if key in attrs:
                return attrs[key], "OTEL_RESOURCE_ATTRIBUTES"
        return None

    return read


_RESOURCE_VAR = ("OTEL_RESOURCE_ATTRIBUTES",)


def _choice(*allowed: str) -> Caster:
    def cast(value: Any, from_env: bool) -> str:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        raise ValueError(f"expected one of {', '.join(allowed)}")

    return cast


# -- the table ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One configuration option, defined once."""

    name: str
    cast: Caster
    default: Any
    doc: str
    affects: frozenset[str]
    env: str | None = None
    otel: tuple[OtelFallback, ...] = ()
    secret: bool = False
    unit: str = ""  # shown after the name in the README, e.g. "s"
    env_doc: str = ""  # how the env value is written, when not obvious
    default_doc: str = ""  # the README's default, when the value itself would not say it


def _opt(name: str, cast: Caster, default: Any, affects: Iterable[str], doc: str, *, env: bool = True,
         **more: Any) -> Option:
    return Option(name, cast, default, doc, frozenset({CALL, *affects}),
                  env=f"FLUXLOOP_{name.upper()}" if env else None, **more)


_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})

OPTIONS: Final[dict[str, Option]] = {o.name: o for o in (
    _opt("enabled", _bool, True, {PIPELINE}, "create spans at all",
         otel=(OtelFallback(("OTEL_SDK_DISABLED",), _sdk_disabled, "`OTEL_SDK_DISABLED` (inverted)"),)),
    _opt("debug", _bool, False, {LOGGING}, "set the `fluxloop` logger to DEBUG (levels only, no handler)"),
    _opt("collector_url", _url, DEFAULT_COLLECTOR_URL, {PIPELINE}, "OTLP/HTTP endpoint; `/v1/traces` is appended",
         otel=(_plain("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), _plain("OTEL_EXPORTER_OTLP_ENDPOINT"))),
    _opt("api_key", _opt_str, None, {PIPELINE}, "sent as `Authorization: Bearer <key>`", secret=True,
         default_doc="none"),
    _opt("headers", _mapping, _EMPTY, {PIPELINE}, "extra HTTP headers for the collector", secret=True,
         env_doc="`k=v,k2=v2`",
         otel=(_plain("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), _plain("OTEL_EXPORTER_OTLP_HEADERS"))),
    _opt("sample_rate", _number(float, 0.0, 1.0), 1.0, (), "share of traces kept, decided per trace",
         otel=(OtelFallback(("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"), _sampler,
                            "`OTEL_TRACES_SAMPLER` (+ `OTEL_TRACES_SAMPLER_ARG`)"),)),
    _opt("service_name", _str, "unknown_service", {RESOURCE, PIPELINE}, "resource `service.name`",
         otel=(_plain("OTEL_SERVICE_NAME"),
               OtelFallback(_RESOURCE_VAR, _resource_key("service.name"),
                            "`service.name` in `OTEL_RESOURCE_ATTRIBUTES`"))),
    _opt("environment", _str, "development", {RESOURCE}, "resource `deployment.environment.name`",
         otel=(OtelFallback(_RESOURCE_VAR, _resource_key("deployment.environment.name", "deployment.environment"),
                            "`deployment.environment.name` in `OTEL_RESOURCE_ATTRIBUTES`"),)),
    _opt("resource_attributes", _mapping, _EMPTY, {RESOURCE}, "more resource attributes", env_doc="`k=v,k2=v2`",
         otel=(OtelFallback(_RESOURCE_VAR, _resource_key(), "`OTEL_RESOURCE_ATTRIBUTES`"),)),
    _opt("record_args", _bool, False, {RECORDING}, "record `@agent` call arguments for replay"),
    _opt("recording_file", _opt_str, None, {RECORDING},
         "where recordings go; when none, `/tmp/fluxloop_args_<timestamp>.jsonl`, named when recording starts",
         default_doc="none"),
    _opt("batch_size", _number(int, 1, 100_000), 512, {PIPELINE}, "spans per export request",
         otel=(_plain("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),)),
    _opt("flush_interval", _number(float, 0.0, 3600.0, lo_open=True), 5.0, {PIPELINE},
         "longest wait before queued spans are exported", unit="s",
         otel=(OtelFallback(("OTEL_BSP_SCHEDULE_DELAY",), _schedule_delay_ms, "`OTEL_BSP_SCHEDULE_DELAY` (ms)"),)),
    _opt("max_queue_size", _number(int, 1, 10_000_000), 2048, {PIPELINE}, "spans queued before new ones are dropped",
         otel=(_plain("OTEL_BSP_MAX_QUEUE_SIZE"),)),
    _opt("timeout", _number(float, 0.0, 600.0, lo_open=True), 10.0, {PIPELINE},
         "deadline of one export, a flush and shutdown", unit="s"),
    _opt("use_collector", _bool, True, {PIPELINE}, "send to `collector_url` (off: files only)"),
    _opt("offline_enabled", _bool, True, {PIPELINE}, "write spans the collector did not take to `offline_dir`"),
    _opt("offline_dir", _path, DEFAULT_OFFLINE_DIR, {PIPELINE}, "directory of offline OTLP/JSON files"),
    _opt("offline_max_file_bytes", _number(int, 1024, None), 64 * 1024 * 1024, {PIPELINE},
         "size at which an offline file rotates", default_doc="`67108864` (64 MiB)"),
    _opt("probe_interval", _number(float, 0.0, 86400.0, lo_open=True), 30.0, {PIPELINE},
         "after a collector failure, spool this long before trying again", unit="s"),
    _opt("forward_spool", _bool, True, {PIPELINE},
         "send spooled spans in the background once the collector answers (rate-limited; exactly once together "
         "with `fluxloop upload`)"),
    _opt("capture_input", _bool, True, (), "record call arguments as `input.value`"),
    _opt("capture_output", _bool, True, (), "record return values as `output.value`"),
    _opt("max_attribute_length", _number(int, 64, None), 32 * 1024, (), "longer JSON values are cut"),
    _opt("mask_patterns", _patterns, (), {RECORDING, PIPELINE}, "extra sensitive-key regexes",
         env_doc="comma-separated regexes"),
    _opt("mask_function", _callable_or_none, None, {RECORDING, PIPELINE},
         "`(key, value) -> replacement` for every value",
         env=False, env_doc="(`configure()` only)", default_doc="none"),
    _opt("export_scope", _choice("fluxloop", "all"), "fluxloop", {PIPELINE},
         "on your application's provider: export FluxLoop's spans and what runs inside them, or `all`"),
)}


def options_markdown() -> str:
    """The README's option table, generated from :data:`OPTIONS`."""
    lines = ["| option | env var | OTEL fallback | default | what it does |", "|---|---|---|---|---|"]
    for o in OPTIONS.values():
        name = f"`{o.name}`" + (f" ({o.unit})" if o.unit else "")
        env = " ".join(part for part in (f"`{o.env}`" if o.env else "", o.env_doc) if part)
        if o.env and o.env_doc:
            env = f"`{o.env}` ({o.env_doc})"
        otel = ", ".join(fallback.doc for fallback in o.otel)
        default = o.default_doc or f"`{_shown_default(o.default)}`"
        lines.append(f"| {name} | {env} | {otel} | {default} | {o.doc} |")
    return "\n".join(lines) + "\n"


def _shown_default(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    return value if isinstance(value, str) else repr(value)


if __name__ == "__main__":
    print(options_markdown(), end="")
