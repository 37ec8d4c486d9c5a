"""Redaction at export: every span leaving through FluxLoop's pipeline is masked by the one set of rules.

It runs on the export worker, never on the calling thread, and covers FluxLoop's spans and other
instrumentations' alike: span name, string and string-array attributes (a sensitive key masks its value, like
``http.request.header.authorization``; any text is scanned for secret shapes), event and link attributes and
the status description. Input, output and metadata of FluxLoop's own spans were masked structurally when they
were captured (with ``mask_function``), so they are not scanned again. A span with nothing to mask is passed on
as it is; otherwise a new ``ReadableSpan`` is built (public API; the original is never mutated).

When FluxLoop exports the spans of an application's provider, a ``service_name`` configured for FluxLoop is
applied to what FluxLoop exports (the application's own exporters keep its resource).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, Status

from fluxloop import _attributes as attr
from fluxloop._masking import MASK, Masker

# FluxLoop attributes whose values the serializer already masked, by key and structure, at capture time.
_PRE_MASKED: Final = frozenset({attr.INPUT_VALUE, attr.OUTPUT_VALUE, attr.GEN_AI_INPUT_MESSAGES,
                                 attr.GEN_AI_OUTPUT_MESSAGES, attr.MASKED_PATHS})
_PRIMITIVE: Final = (str, bool, int, float)
_RESOURCE_CACHE_LIMIT: Final = 64
# Short texts are remembered with their masked form: a function's span name and static attributes repeat on
# every span, so the export worker scans them once. Bounded: the memo is emptied when full.
_TEXT_MEMO_MAX_CHARS: Final = 256
_TEXT_MEMO_LIMIT: Final = 4096


def is_fluxloop_span(span: object) -> bool:
    """True for spans FluxLoop's decorators and ``instrument()`` made (any other object: False)."""
    scope = getattr(span, "instrumentation_scope", None)
    return scope is not None and scope.name == attr.SCOPE_NAME


def is_own_provider_span(span: ReadableSpan) -> bool:
    """True for spans of a provider FluxLoop built itself (its resource names the FluxLoop distro)."""
    return span.resource.attributes.get(attr.TELEMETRY_DISTRO_NAME) == attr.DISTRO_NAME


class SpanRedactor:
    """Masks spans for export with ``masker``; gives spans of an application's provider ``service_name``
    (None: keep theirs). Thread-safe; used by the export worker."""

    __slots__ = ("masker", "service_name", "_resources", "_texts", "_clean")

    def __init__(self, masker: Masker, service_name: str | None = None) -> None:
        self.masker = masker
        self.service_name = service_name
        self._resources: dict[int, tuple[Resource, Resource]] = {}
        self._texts: dict[str, str | None] = {}  # text -> its masked form, None when masking leaves it as it is
        self._clean: set[tuple[str, str]] = set()  # (key, text) attribute pairs known to need no masking

    def redact_batch(self, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        """Each span redacted; a span that cannot be redacted is dropped, never exported in clear."""
        out = []
        for span in spans:
            try:
                out.append(self.redact(span))
            except Exception:  # pragma: no cover - defensive: a hostile span must not leak or stop the batch
                continue
        return out

    def redact(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` itself when nothing needs masking, else a masked copy."""
        ours = is_fluxloop_span(span)
        mask = self._mask_text
        name = mask(span.name)
        attributes = self._attributes(span.attributes, skip_pre_masked=ours)
        events = self._events(span.events)
        links = self._links(span.links)
        status = span.status
        if status.description:
            description = mask(status.description)
            if description != status.description:
                status = Status(status.status_code, description)
        resource = self._resource(span.resource)
        if (name is span.name or name == span.name) and attributes is None and events is None and links is None \
                and status is span.status and resource is span.resource:
            return span
        return ReadableSpan(
            name=name, context=span.context, parent=span.parent, resource=resource,
            attributes=span.attributes if attributes is None else attributes,
            events=span.events if events is None else events, links=span.links if links is None else links,
            kind=span.kind, status=status, start_time=span.start_time, end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope)

    # -- parts ------------------------------------------------------------------------------------------------
    def _attributes(self, attributes: Mapping[str, Any] | None, skip_pre_masked: bool = False) -> dict[str, Any] | None:
        """A masked copy of ``attributes``, or None when nothing changed."""
        if not attributes:
            return None
        changed: dict[str, Any] | None = None
        clean = self._clean
        for key, value in attributes.items():
            pair = (key, value) if type(value) is str and len(value) <= _TEXT_MEMO_MAX_CHARS else None
            if pair is not None and pair in clean:
                continue
            if skip_pre_masked and (key in _PRE_MASKED or key.startswith(attr.METADATA_PREFIX)):
                continue
            new = self._value(key, value)
            if new is not value:
                if changed is None:
                    changed = {}
                changed[key] = new
            elif pair is not None:
                if len(clean) >= _TEXT_MEMO_LIMIT:
                    clean.clear()
                clean.add(pair)
        if changed is None:
            return None
        return {**attributes, **changed}

    def _value(self, key: str, value: Any) -> Any:
        """``value`` masked for ``key``; the same object when nothing changed."""
        if isinstance(value, str):
            if self.masker.is_sensitive_key(key):
                return self._key_masked(key, value)
            return self._mask_text(value)
        if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)) and value \
                and isinstance(value[0], str):
            if self.masker.is_sensitive_key(key):
                return tuple(self._key_masked(key, item) for item in value)
            items = tuple(self._mask_text(item) if isinstance(item, str) else item for item in value)
            return value if all(a is b or a == b for a, b in zip(items, value)) else items
        return value

    def _mask_text(self, text: str) -> str:
        """``text`` itself when it holds no secret shape, else its masked copy (short texts remembered)."""
        if len(text) > _TEXT_MEMO_MAX_CHARS:
            masked = self.masker.mask_text(text)
            return text if masked == text else masked
        known = self._texts.get(text, text)
        if known is text:  # not seen yet (a remembered entry is never the caller's own object)
            masked = self.masker.mask_text(text)
            known = None if masked == text else masked
            if len(self._texts) >= _TEXT_MEMO_LIMIT:
                self._texts.clear()
            self._texts[text] = known
        return text if known is None else known

    def _key_masked(self, key: str, value: str) -> Any:
        if value == MASK:
            return value
        shown = self.masker.masked_value(key, value)
        return shown if isinstance(shown, _PRIMITIVE) and shown != value else MASK

    def _events(self, events: Sequence[Event]) -> list[Event] | None:
        if not events:
            return None
        out: list[Event] = []
        changed = False
        for event in events:
            attributes = self._attributes(event.attributes)
            name = self._mask_text(event.name)
            if attributes is None and name == event.name:
                out.append(event)
                continue
            changed = True
            out.append(Event(name, event.attributes if attributes is None else attributes, event.timestamp,
                             limit=None))
        return out if changed else None

    def _links(self, links: Sequence[Link]) -> list[Link] | None:
        if not links:
            return None
        out: list[Link] = []
        changed = False
        for link in links:
            attributes = self._attributes(link.attributes)
            if attributes is None:
                out.append(link)
                continue
            changed = True
            out.append(Link(link.context, attributes))
        return out if changed else None

    def _resource(self, resource: Resource) -> Resource:
        """``resource`` with FluxLoop's service name when it is an application's resource naming another."""
        service = self.service_name
        if service is None or resource.attributes.get(attr.TELEMETRY_DISTRO_NAME) == attr.DISTRO_NAME \
                or resource.attributes.get(attr.SERVICE_NAME) == service:
            return resource
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1]
        renamed = resource.merge(Resource({attr.SERVICE_NAME: service}))
        if len(self._resources) >= _RESOURCE_CACHE_LIMIT:
            self._resources.clear()
        self._resources[id(resource)] = (resource, renamed)
        return renamed
