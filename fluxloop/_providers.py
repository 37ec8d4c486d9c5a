"""What FluxLoop's own TracerProviders are made of: the resource built from the config, and their id generators."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from fluxloop import _attributes as attr
from fluxloop._config import FluxLoopConfig
from fluxloop._version import __version__


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


def resource_for(config: FluxLoopConfig) -> Resource:
    return _HashedResource(Resource.create({
        **config.resource_attributes,
        attr.SERVICE_NAME: config.service_name,
        attr.DEPLOYMENT_ENVIRONMENT: config.environment,
        attr.TELEMETRY_DISTRO_NAME: attr.DISTRO_NAME,
        attr.TELEMETRY_DISTRO_VERSION: __version__,
    }))


class SequentialIds(IdGenerator):
    """Trace and span ids 1, 2, 3, ... (for snapshot-style test assertions)."""

    def __init__(self) -> None:
        self._trace = self._span = 0

    def generate_span_id(self) -> int:
        self._span += 1
        return self._span

    def generate_trace_id(self) -> int:
        self._trace += 1
        return self._trace


class SwitchableIds(IdGenerator):
    """The id generator of FluxLoop's own providers: random, or sequential while a capture asks for it."""

    def __init__(self) -> None:
        self.current: IdGenerator = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self.current.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.current.generate_trace_id()
