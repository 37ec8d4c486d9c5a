"""The one owner of process state: the :class:`Runtime` (config, provider wiring, pipeline, recording, memos,
fork/exit hooks) with its states IDLE -> RUNNING -> SHUT_DOWN.

Nothing is built at import: the runtime object itself is created on first use of :data:`RUNTIME`, and it resolves
the configuration, wires a provider and starts the pipeline on the first span or ``configure()``. Decorated calls
read :data:`STATE`, an immutable snapshot replaced atomically on every change, so the call path never takes a lock
or reads the environment.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from fluxloop import _attributes as attr
from fluxloop import _errors
from fluxloop._config import (
    FluxLoopConfig,
    Resolved,
    affected,
    apply_overrides,
    changed_options,
    report_env_warnings,
    resolve_env,
    validate_overrides,
)
from fluxloop._masking import DEFAULT_MASKER, Masker
from fluxloop._options import LOGGING, PIPELINE, RECORDING, RESOURCE
from fluxloop._process import HOOKS, ProcessHooks
from fluxloop._providers import SequentialIds, SwitchableIds, resource_for
from fluxloop._recorder import Recorder
from fluxloop._sampling import FluxLoopSampler
from fluxloop._version import __version__

if TYPE_CHECKING:
    from fluxloop._pipeline import PipelineSwitch
    from fluxloop._processor import FluxLoopSpanProcessor

    BuildProcessor = Callable[[FluxLoopConfig], FluxLoopSpanProcessor | None]

_logger = logging.getLogger("fluxloop")

#: Extra time the exit hook allows beyond ``timeout`` (DESIGN: exit within timeout + 1 s), so a batch hanging on a
#: silent collector can still fail over to offline_dir instead of being lost.
EXIT_GRACE = 0.9


class Phase(enum.Enum):
    """Where the runtime is in its life."""

    IDLE = "idle"  # nothing built: no provider wiring, no pipeline, no thread
    RUNNING = "running"  # provider wired; pipeline built (unless only capture_spans() has run)
    SHUT_DOWN = "shut_down"  # pipeline retired; spans are dropped and counted until configure()/reset_config()


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


_DEFAULTS = FluxLoopConfig()
# Before the runtime starts: "enabled, sampled, no tracer" sends the first call to RUNTIME.start().
_IDLE_STATE = CallState(True, 1.0, _DEFAULTS.capture_input, _DEFAULTS.capture_output, _DEFAULTS.max_attribute_length,
                        DEFAULT_MASKER, None, _DEFAULTS)


_RECORDING_SWITCHES = frozenset({"record_args", "recording_file"})
_RETIRED_LIVE = 16  # retired pipelines whose counters are still read live
_ZERO_STATS = {"exported": 0, "dropped": 0, "failed": 0, "spooled": 0}


class Runtime:
    """All of FluxLoop's process state. Use it through the public functions in :mod:`fluxloop._api`."""

    def __init__(self, hooks: ProcessHooks, switch: PipelineSwitch, build_processor: BuildProcessor) -> None:
        self.lock = threading.RLock()
        self.hooks = hooks
        self.phase = Phase.IDLE
        self.overrides: dict[str, Any] = {}
        self._resolved: Resolved | None = None
        self._build_processor = build_processor
        self.switch = switch
        self.switch.on_shutdown = self._provider_shut_down
        self.sampler = FluxLoopSampler(1.0)
        self.ids = SwitchableIds()
        self.attached: set[int] = set()
        self.created: set[int] = set()  # providers FluxLoop made itself: never "the application's"
        self.own_providers: dict[tuple[Any, ...], TracerProvider] = {}
        self.pipeline_built = False
        self.captures = 0
        # Memos, reset by reset_config():
        self.retired = dict(_ZERO_STATS)
        self.retired_live: list[FluxLoopSpanProcessor] = []
        self.dropped_after_shutdown = 0
        self.reported_env: set[str] = set()
        self._hooks_registered = False
        self._recorder = Recorder()  # recording (issue 14): the one recorder of the process
        self._recorder_primed = False

    # -- configuration ----------------------------------------------------------------------------------------
    @property
    def resolved(self) -> Resolved:
        """The configuration in force (resolved from the environment on first use; no side effects)."""
        resolved = self._resolved
        if resolved is None:
            with self.lock:
                if self._resolved is None:
                    self._resolved = self._with_recording_file(apply_overrides(resolve_env(), self.overrides))
                    report_env_warnings(self._resolved, self.reported_env)
                resolved = self._resolved
        return resolved

    def configure(self, options: dict[str, Any]) -> None:
        """Layer ``options`` over the environment and start (or restart) the runtime with the result."""
        validated = validate_overrides(options)  # raises before anything changes
        with self.hooks.deferring_sigterm(), self.lock:  # it may retire (flush) a pipeline: see shutdown()
            overrides = {**self.overrides, **validated}
            resolved = self._with_recording_file(apply_overrides(resolve_env(), overrides))
            report_env_warnings(resolved, self.reported_env)
            old = self.resolved.config
            self.overrides = overrides
            self._resolved = resolved
            if self.phase is not Phase.RUNNING:
                self._start_locked(build=not self.captures)
            else:
                self._apply(old, resolved.config)

    def reset(self) -> None:
        """Back to IDLE with nothing configured: pipeline retired, recording stopped, counters and memos cleared."""
        global STATE
        with self.hooks.deferring_sigterm(), self.lock:
            self._retire(self.switch.swap(None))
            self._recording_reset()
            self.overrides = {}
            self._resolved = None
            self.pipeline_built = False
            self.switch.closed = False
            self.switch.dropped_closed = 0
            self.retired = dict(_ZERO_STATS)
            self.retired_live = []
            self.dropped_after_shutdown = 0
            self.reported_env.clear()
            _errors.reset()
            self.phase = Phase.IDLE
            STATE = _IDLE_STATE
            config = self.resolved.config  # re-resolved now, so env problems are reported at reset time
            self._apply_logging(config)
            self._apply_recording(config, switch=config.record_args)  # FLUXLOOP_RECORD_ARGS applies at once

    def _apply(self, old: FluxLoopConfig, new: FluxLoopConfig) -> None:
        """Apply a configuration change while RUNNING: rebuild exactly what the changed options affect."""
        global STATE
        changed = changed_options(old, new)
        parts = affected(changed)
        if LOGGING in parts:
            self._apply_logging(new)
        if RECORDING in parts:
            self._apply_recording(new, switch=bool(changed & _RECORDING_SWITCHES))
        if (PIPELINE in parts and self.pipeline_built) or (not self.pipeline_built and not self.captures):
            self._retire(self.switch.swap(self._build_processor(new)))
            self.pipeline_built = True
        tracer = STATE.tracer
        if RESOURCE in parts or PIPELINE in parts or tracer is None:
            tracer = self._tracer_for(new) if new.enabled else None
        self.sampler.rate = new.sample_rate
        self.switch.filter_rate = new.sample_rate if self._on_app_provider() else 1.0
        self.switch.shutdown_timeout = new.timeout
        STATE = _call_state(new, tracer)

    # -- start ------------------------------------------------------------------------------------------------
    def start(self) -> trace.Tracer | None:
        """The tracer for the first span: moves IDLE -> RUNNING; after SHUT_DOWN counts a dropped span."""
        with self.lock:
            if self.phase is Phase.SHUT_DOWN:
                self._drop_after_shutdown()
                return None
            if STATE.tracer is not None:
                return STATE.tracer
            return self._start_locked(build=not self.captures)

    def _start_locked(self, build: bool) -> trace.Tracer | None:
        global STATE
        config = self.resolved.config
        self._register_process_hooks()
        self.phase = Phase.RUNNING
        self.switch.closed = False
        self._apply_logging(config)
        self._apply_recording(config, switch=config.record_args)
        tracer = self._tracer_for(config) if config.enabled else None
        if build and not self.pipeline_built:
            self._retire(self.switch.swap(self._build_processor(config)))
            self.pipeline_built = True
        self.sampler.rate = config.sample_rate
        self.switch.shutdown_timeout = config.timeout
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
            own = self.own_providers.get(key)
            if own is None:
                provider = TracerProvider(resource=resource_for(config), sampler=self.sampler, id_generator=self.ids,
                                          shutdown_on_exit=False)
                self.own_providers[key] = provider
                self.created.add(id(provider))
                if not isinstance(current, TracerProvider):
                    trace.set_tracer_provider(provider)
            else:
                provider = own
            self.switch.filter_rate = 1.0
        if id(provider) not in self.attached:
            provider.add_span_processor(self.switch)
            self.attached.add(id(provider))
        return provider.get_tracer(attr.SCOPE_NAME, __version__)

    def _on_app_provider(self) -> bool:
        current = trace.get_tracer_provider()
        return isinstance(current, TracerProvider) and id(current) not in self.created

    @staticmethod
    def _apply_logging(config: FluxLoopConfig) -> None:
        """``debug`` sets the ``fluxloop`` logger's level, nothing else: the application owns handlers."""
        if config.debug:
            _logger.setLevel(logging.DEBUG)
        elif _logger.level == logging.DEBUG:
            _logger.setLevel(logging.NOTSET)

    # -- recording: the one place the runtime drives its Recorder (issue 14) ----------------------------------
    @property
    def recorder(self) -> Recorder:
        """The process's recorder; on first use it takes ``record_args``/``recording_file`` from the configuration
        (opening nothing: the first record creates the file)."""
        if not self._recorder_primed:
            with self.lock:
                if not self._recorder_primed:
                    self._register_process_hooks()  # the recorder's lock is recreated after fork
                    self._apply_recording(self.resolved.config, switch=True, open_now=False)
        return self._recorder

    def _with_recording_file(self, resolved: Resolved) -> Resolved:
        """``resolved`` with ``recording_file`` as the recorder uses it (absolute, or the default name, chosen once),
        so ``get_config()`` tells the truth."""
        config = resolved.config
        path = self._recorder.resolve_file(config.record_args, config.recording_file)
        if path == config.recording_file:
            return resolved
        return Resolved(replace(config, recording_file=path), resolved.sources, resolved.warnings)

    def _apply_recording(self, config: FluxLoopConfig, switch: bool, open_now: bool = True) -> None:
        """Mask options always; ``record_args``/``recording_file`` when they changed (``switch``)."""
        masker = Masker(config.mask_patterns, config.mask_function)
        if switch:
            self._recorder_primed = True
            self._recorder.apply(config.record_args, config.recording_file, masker, open_now)
        self._recorder.set_masker(masker)  # mask options apply to records too, recording on or off

    def _recording_shutdown(self) -> None:
        self._recorder.close()  # records are written synchronously: nothing is pending

    def _recording_reset(self) -> None:
        self._recorder.reset()

    # -- capture (fluxloop.testing) -------------------------------------------------------------------------
    @contextmanager
    def capture(self, listener: SpanProcessor, sequential_ids: bool) -> Iterator[None]:
        """Route finished spans to ``listener`` only (not to the pipeline) for the duration of the block."""
        global STATE
        with self.lock:
            if self.phase is not Phase.SHUT_DOWN and STATE.tracer is None:
                self._start_locked(build=False)  # wire the provider, build no pipeline: no collector, no files
            self.captures += 1
            self.switch.add_listener(listener)
            previous_ids = self.ids.current
            if sequential_ids:
                self.ids.current = SequentialIds()
        try:
            yield
        finally:
            with self.lock:
                self.ids.current = previous_ids
                self.switch.remove_listener(listener)
                self.captures -= 1
                if not self.captures and not self.pipeline_built and self.phase is Phase.RUNNING:
                    STATE = _call_state(self.resolved.config, None)  # the next span builds the pipeline

    # -- lifecycle --------------------------------------------------------------------------------------------
    def _retire(self, pipeline: FluxLoopSpanProcessor | None, timeout: float | None = None) -> None:
        """Shut an old pipeline down (flushing it within ``timeout``, default the option) and keep its counters."""
        if pipeline is None:
            return
        timeout = self.resolved.config.timeout if timeout is None else timeout
        pipeline.shutdown(int(max(timeout, 0.0) * 1000))
        # Its counters stay live for a while: a thread that read the switch just before the swap may still hand
        # it a span, which it counts (as dropped). Older retired pipelines are folded into fixed sums.
        self.retired_live.append(pipeline)
        while len(self.retired_live) > _RETIRED_LIVE:
            self._fold(self.retired, self.retired_live.pop(0))

    def _fold(self, into: dict[str, int], pipeline: FluxLoopSpanProcessor) -> None:
        stats = self._pipeline_stats(pipeline)
        stats["dropped"] = stats.get("dropped", 0) + stats.pop("queued", 0)  # left in a stopped queue: lost
        for key, value in stats.items():
            if key in into:
                into[key] += value

    def flush(self, timeout: float | None) -> bool:
        timeout = self.resolved.config.timeout if timeout is None else timeout
        return self.switch.force_flush(int(max(timeout, 0.0) * 1000))  # records are written synchronously

    def shutdown(self, timeout: float | None = None) -> None:
        """-> SHUT_DOWN: flush within ``timeout``, stop threads and recording. Idempotent."""
        global STATE
        # A multiprocessing worker's SIGTERM handler (flush_on_sigterm) calls shutdown() too. Interrupting this
        # one (its exit hook's, e.g. Python 3.13 workers run atexit) it would find SHUT_DOWN and die mid-flush:
        # deferred, it lets this flush finish, then the worker dies.
        with self.hooks.deferring_sigterm(), self.lock:
            if self.phase is Phase.SHUT_DOWN:
                return
            timeout = self.resolved.config.timeout if timeout is None else timeout
            self.phase = Phase.SHUT_DOWN
            self.switch.closed = True
            self._retire(self.switch.swap(None), timeout)
            self.pipeline_built = False
            self._recording_shutdown()
            STATE = _call_state(self.resolved.config, None)

    def _provider_shut_down(self) -> None:
        """The application shut its TracerProvider down (which shuts our switch down): FluxLoop stops with it."""
        self.shutdown(self.resolved.config.timeout)

    def _drop_after_shutdown(self) -> None:
        self.dropped_after_shutdown += 1
        if self.dropped_after_shutdown == 1:
            _logger.warning("fluxloop: a span was started after fluxloop.shutdown(); spans are dropped (and counted "
                            "in get_stats()['dropped']) until configure() or reset_config()")

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
        for retired in list(self.retired_live):
            self._fold(out, retired)
        out["queued"] = 0
        out["dropped"] += self.dropped_after_shutdown + self.switch.dropped_closed
        pipeline = self.switch.pipeline
        if pipeline is not None:
            for key, value in self._pipeline_stats(pipeline).items():
                out[key] = out.get(key, 0) + value
        return out

    # -- process hooks ----------------------------------------------------------------------------------------
    def _register_process_hooks(self) -> None:
        if self._hooks_registered:
            return
        self._hooks_registered = True
        self.hooks.after_fork_in_child(self.after_fork_in_child)
        self.hooks.at_exit(self._at_exit)
        self.hooks.in_multiprocessing_child(self._flush_at_multiprocessing_exit)
        if self.hooks.in_multiprocessing_child_now():  # a spawn/forkserver worker, or FluxLoop first used in one
            self._flush_at_multiprocessing_exit()

    def _at_exit(self) -> None:
        self.shutdown(self.resolved.config.timeout + EXIT_GRACE)

    def _flush_at_multiprocessing_exit(self) -> None:
        # A multiprocessing child ends with os._exit() after running multiprocessing's finalizers, never atexit;
        # it also clears the finalizers inherited at fork, so this runs from its after-fork hook.
        self.hooks.at_multiprocessing_exit(self.shutdown)
        # Pool.__exit__ / terminate() end workers with SIGTERM, which skips the finalizers: flush first.
        self.hooks.flush_on_sigterm(self._shutdown_on_sigterm)

    def _shutdown_on_sigterm(self) -> None:
        self.shutdown(self.resolved.config.timeout)

    def after_fork_in_child(self) -> None:
        # Another parent thread may have held the lock at fork time: the child starts with a fresh one.
        self.lock = threading.RLock()
        self._recorder.after_fork_in_child()
        # The parent's exporter holds the parent's sockets: the child gets a pipeline of its own.
        if self.phase is Phase.RUNNING and self.pipeline_built and self.resolved.config.enabled:
            self.switch.swap(self._build_processor(self.resolved.config))


STATE: CallState = _IDLE_STATE
RUNTIME: Runtime  # created on first access (module __getattr__ below), never at import
_CREATE_LOCK = threading.Lock()


def __getattr__(name: str) -> Any:
    if name == "RUNTIME":
        with _CREATE_LOCK:
            runtime = globals().get("RUNTIME")
            if runtime is None:
                # First use, not import: the export pipeline brings in the exporter package (requests, protobuf),
                # which alone costs several times `import opentelemetry.sdk.trace`.
                from fluxloop import _pipeline

                runtime = Runtime(HOOKS, _pipeline.PipelineSwitch(), _pipeline.build_processor)
                globals()["RUNTIME"] = runtime
            return runtime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
