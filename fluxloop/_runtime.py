"""The one owner of global state: resolved config, tracer provider, export pipeline and recorder wiring.

Decorators read :data:`STATE`, an immutable snapshot replaced atomically on every change, so the call path
never takes a lock or reads the environment.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from fluxloop import _attributes as attr
from fluxloop import recording
from fluxloop._config import (
    FluxLoopConfig,
    Resolved,
    apply_overrides,
    report_env_warnings,
    resolve_env,
    validate_overrides,
)
from fluxloop._masking import Masker
from fluxloop._pipeline import PipelineSwitch, build_processor
from fluxloop._processor import FluxLoopSpanProcessor
from fluxloop._sampling import FluxLoopSampler
from fluxloop._version import __version__

_logger = logging.getLogger("fluxloop")

# Options whose change needs a new export pipeline / a new resource.
_PIPELINE_OPTIONS = ("enabled", "collector_url", "api_key", "headers", "timeout", "use_collector",
                     "offline_enabled", "offline_dir", "offline_max_file_bytes", "probe_interval",
                     "max_queue_size", "batch_size", "flush_interval",
                     "mask_patterns", "mask_function", "service_name", "export_scope")  # the export stage
_RESOURCE_OPTIONS = ("service_name", "environment", "resource_attributes")
_RECORDING_OPTIONS = ("record_args", "recording_file")


@dataclass(frozen=True, slots=True)
class CallState:
    """What a decorated call needs, resolved once per configuration change."""

    enabled: bool
    sample_rate: float
    capture_input: bool
    capture_output: bool
    max_attribute_length: int
    masker: Masker
    tracer: trace.Tracer | None
    config: FluxLoopConfig


def _call_state(config: FluxLoopConfig, tracer: trace.Tracer | None) -> CallState:
    return CallState(config.enabled, config.sample_rate, config.capture_input, config.capture_output,
                     config.max_attribute_length, Masker(config.mask_patterns, config.mask_function), tracer,
                     config)


class _HashedResource(Resource):
    """A Resource whose hash is computed once. Resource is immutable, but its own ``__hash__`` runs ``json.dumps``
    of every attribute on each call, and the stock OTLP encoder hashes the resource once per exported span."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._fluxloop_hash = super().__hash__()

    def __hash__(self) -> int:
        return self._fluxloop_hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def _resource(config: FluxLoopConfig) -> Resource:
    return _HashedResource(Resource.create({
        **config.resource_attributes,
        attr.SERVICE_NAME: config.service_name,
        attr.DEPLOYMENT_ENVIRONMENT: config.environment,
        attr.TELEMETRY_DISTRO_NAME: attr.DISTRO_NAME,
        attr.TELEMETRY_DISTRO_VERSION: __version__,
    }))


def _changed(old: FluxLoopConfig, new: FluxLoopConfig, names: tuple[str, ...]) -> bool:
    return any(getattr(old, n) != getattr(new, n) for n in names)


class _Runtime:
    """Provider, pipeline and recorder for this process. Use through the module functions below."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.overrides: dict[str, Any] = {}
        self.resolved: Resolved = resolve_env()
        report_env_warnings(self.resolved)
        self.switch = PipelineSwitch()
        self.sampler = FluxLoopSampler(self.resolved.config.sample_rate)
        self.attached: set[int] = set()
        self.created: set[int] = set()  # providers FluxLoop made itself: never "the application's"
        self.own_providers: dict[tuple[Any, ...], TracerProvider] = {}
        self.retired = {"exported": 0, "dropped": 0, "failed": 0, "spooled": 0}
        self.started = False
        self._apply_logging(self.resolved.config)
        recording.set_masker(Masker(self.resolved.config.mask_patterns, self.resolved.config.mask_function))
        if self.resolved.config.record_args:
            self._apply_recording(self.resolved.config)

    # -- provider ---------------------------------------------------------------------------------------------
    def start(self) -> trace.Tracer | None:
        """Attach to (or install) a TracerProvider and build the pipeline; idempotent. Returns the tracer."""
        global STATE
        with self.lock:
            if STATE.tracer is not None:
                return STATE.tracer
            config = self.resolved.config
            if not config.enabled:
                return None
            tracer = self._tracer_for(config)
            if not self.started:
                self.started = True
                self._retire(self.switch.swap(build_processor(config)))
            STATE = _call_state(config, tracer)
            return tracer

    def _tracer_for(self, config: FluxLoopConfig) -> trace.Tracer:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider) and id(current) not in self.created:
            # The application installed its own SDK provider: add our pipeline, never replace it.
            provider = current
            self.switch.filter_rate = config.sample_rate
        else:
            # One provider per distinct resource (a provider's resource cannot change); the first is global.
            key = (config.service_name, config.environment, tuple(sorted(config.resource_attributes.items())))
            provider = self.own_providers.get(key)
            if provider is None:
                provider = TracerProvider(resource=_resource(config), sampler=self.sampler, shutdown_on_exit=False)
                self.own_providers[key] = provider
                self.created.add(id(provider))
                if not isinstance(current, TracerProvider):
                    trace.set_tracer_provider(provider)
            self.switch.filter_rate = 1.0
        if id(provider) not in self.attached:
            provider.add_span_processor(self.switch)
            self.attached.add(id(provider))
        self.sampler.rate = config.sample_rate
        self.switch.shutdown_timeout = config.timeout
        return provider.get_tracer(attr.SCOPE_NAME, __version__)

    # -- configuration ----------------------------------------------------------------------------------------
    def configure(self, options: dict[str, Any]) -> None:
        validated = validate_overrides(options)  # raises before anything changes
        with self.lock:
            overrides = {**self.overrides, **validated}
            resolved = apply_overrides(resolve_env(), overrides)
            report_env_warnings(resolved)
            self._apply(resolved, recording_changed=any(k in validated for k in _RECORDING_OPTIONS))
            self.overrides = overrides

    def reset(self) -> None:
        with self.lock:
            self.overrides = {}
            recording.reset()
            resolved = resolve_env()
            report_env_warnings(resolved)
            # Tear down what configure() built, even where the new config would reuse it: a fresh start.
            self._apply(resolved, recording_changed=resolved.config.record_args, rebuild=True)
            self.retired = dict.fromkeys(self.retired, 0)  # get_stats() counts from here

    def _apply(self, resolved: Resolved, recording_changed: bool, rebuild: bool = False) -> None:
        global STATE
        old, new = self.resolved.config, resolved.config
        self.resolved = resolved
        self._apply_logging(new)
        if recording_changed:
            self._apply_recording(new)
        if self.started and (rebuild or _changed(old, new, _PIPELINE_OPTIONS)):
            self._retire(self.switch.swap(build_processor(new)))
        tracer = None
        if self.started and new.enabled:
            tracer = self._tracer_for(new)
        self.sampler.rate = new.sample_rate
        STATE = _call_state(new, tracer)
        recording.set_masker(STATE.masker)  # mask options apply to records too, recording on or off

    def _apply_recording(self, config: FluxLoopConfig) -> None:
        recording.apply_config(config.record_args, config.recording_file,
                               Masker(config.mask_patterns, config.mask_function))

    @staticmethod
    def _apply_logging(config: FluxLoopConfig) -> None:
        if config.debug:
            _logger.setLevel(logging.DEBUG)
            if not _logger.handlers:
                _logger.addHandler(logging.StreamHandler())
        elif _logger.level == logging.DEBUG:
            _logger.setLevel(logging.NOTSET)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def _retire(self, pipeline: FluxLoopSpanProcessor | None, timeout: float | None = None) -> None:
        """Shut an old pipeline down (flushing it within ``timeout``, default the option) and keep its counters."""
        if pipeline is None:
            return
        timeout = self.resolved.config.timeout if timeout is None else timeout
        pipeline.shutdown(int(max(timeout, 0.0) * 1000))
        for key, value in self._pipeline_stats(pipeline).items():
            if key in self.retired:
                self.retired[key] += value

    def flush(self, timeout: float | None) -> bool:
        timeout = self.resolved.config.timeout if timeout is None else timeout
        deadline = time.monotonic() + max(timeout, 0.0)
        ok = self.switch.force_flush(int(max(timeout, 0.0) * 1000))
        return recording.flush(max(0.0, deadline - time.monotonic())) and ok

    def shutdown(self, timeout: float | None = None) -> None:
        global STATE
        with self.lock:
            timeout = self.resolved.config.timeout if timeout is None else timeout
            deadline = time.monotonic() + max(timeout, 0.0)
            self._retire(self.switch.swap(None), timeout)
            recording.shutdown(max(0.0, deadline - time.monotonic()))
            self.started = False
            STATE = _call_state(self.resolved.config, None)

    @staticmethod
    def _pipeline_stats(pipeline: FluxLoopSpanProcessor) -> dict[str, int]:
        stats = pipeline.stats()
        counters = getattr(pipeline.exporter, "counters", None)
        if counters is not None:
            # The exporter knows what was delivered, spooled and lost; the processor's own "failed" counts
            # the same lost spans again (plus any the exporter raised on, which it then could not count).
            stats["exported"] = counters.exported
            stats["spooled"] = counters.spooled
            stats["failed"] = max(stats["failed"], counters.failed)
        else:
            stats.setdefault("spooled", 0)
        return stats

    def stats(self) -> dict[str, int]:
        out = dict(self.retired)
        out["queued"] = 0
        pipeline = self.switch.pipeline
        if pipeline is not None:
            for key, value in self._pipeline_stats(pipeline).items():
                out[key] = out.get(key, 0) + value
        return out

    def after_fork_in_child(self) -> None:
        # Another parent thread may have held the lock at fork time: the child starts with a fresh one.
        self.lock = threading.RLock()
        # The parent's exporter holds the parent's sockets: the child gets a pipeline of its own.
        if self.started and self.resolved.config.enabled:
            self.switch.swap(build_processor(self.resolved.config))



def _flush_at_multiprocessing_exit(runtime: _Runtime) -> None:
    # A multiprocessing child ends with os._exit() after running multiprocessing's finalizers, never atexit;
    # it also clears the finalizers inherited at fork, so this is registered from its after-fork hook.
    multiprocessing.util.Finalize(None, runtime.shutdown, exitpriority=0)


RUNTIME = _Runtime()
multiprocessing.util.register_after_fork(RUNTIME, _flush_at_multiprocessing_exit)
STATE: CallState = _call_state(RUNTIME.resolved.config, None)

os.register_at_fork(after_in_child=RUNTIME.after_fork_in_child)
# At exit, an export hanging on a silent collector gives up after `timeout`; the extra 0.9 s (DESIGN: exit within
# timeout + 1 s) lets that batch and what is still queued fail over to offline_dir instead of being lost.
atexit.register(lambda: RUNTIME.shutdown(RUNTIME.resolved.config.timeout + 0.9))
