"""The export stage: every span through FluxLoop's pipeline is redacted on the worker, spans other
instrumentations start inside ``instrument()`` inherit its user, session and tags, and on an application's
provider FluxLoop exports its own spans and what runs inside them (``export_scope``), under its service name."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import fluxloop
from fluxloop import _attributes as attr
from fluxloop._masking import Masker
from fluxloop._redaction import SpanRedactor

from .conftest import Exported, artifact_text, by_name, read_exported

SK = "sk-live-" + uuid.uuid4().hex


def test_third_party_spans_are_redacted_and_inherit_the_instrument_context(
        exported: Callable[[], list[Exported]], offline_dir: Path) -> None:
    with fluxloop.instrument("chat turn", user_id="u-7", session_id="s-42", tags=["beta"]) as ctx:
        ctx.add_metadata("tenant", "acme")
        with trace.get_tracer("acme.llm").start_as_current_span(f"call {SK}") as span:
            span.set_attribute("llm.input_messages.0.message.content", f"my key is {SK}")
            span.set_attribute("llm.token_count.prompt", 12)
            span.set_attribute("http.request.header.x-api-key", ["k-" + uuid.uuid4().hex])
            span.add_event("request", {"body": f'{{"api_key": "{SK}"}}'})
            span.set_status(Status(StatusCode.ERROR, f"401 for Bearer {SK}"))
            with trace.get_tracer("acme.db").start_as_current_span("query") as inner:
                inner.set_attribute("db.connection_string", "postgres://app:hunter2hunter2@db/main")
    spans = exported()
    llm, query = by_name(spans, "call sk-***"), by_name(spans, "query")
    assert llm.scope == "acme.llm"
    assert llm.attributes["llm.input_messages.0.message.content"] == "my key is sk-***"
    assert llm.attributes["llm.token_count.prompt"] == 12
    assert llm.attributes["http.request.header.x-api-key"] == ["***"]
    assert llm.events[0]["attributes"]["body"] == '{"api_key": "***"}'
    assert llm.status_message == "401 for Bearer ***"
    assert query.attributes["db.connection_string"] == "postgres://app:***@db/main"
    for span in (llm, query):  # set at start, so a sampler or on_start processor downstream sees them too
        assert span.attributes[attr.USER_ID] == "u-7"
        assert span.attributes[attr.SESSION_ID] == "s-42"
        assert span.attributes[attr.TAGS] == ["beta"]
        assert span.attributes[attr.METADATA_PREFIX + "tenant"] == "acme"
    assert SK not in artifact_text(offline_dir) and "hunter2hunter2" not in artifact_text(offline_dir)


def test_the_capture_fixture_sees_what_is_exported(offline_dir: Path) -> None:
    with fluxloop.testing.capture_spans() as captured:
        with fluxloop.instrument("job", user_id=SK):
            pass
    [span] = captured.spans
    assert span.attributes[attr.USER_ID] == "sk-***"


def test_redaction_runs_on_the_export_worker_not_the_calling_thread(offline_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    original = SpanRedactor.redact_batch

    def noting(self: SpanRedactor, spans: list[ReadableSpan]) -> list[ReadableSpan]:
        threads.append(threading.current_thread().name)
        return original(self, spans)

    monkeypatch.setattr(SpanRedactor, "redact_batch", noting)
    fluxloop.configure(flush_interval=60)  # rebuilt pipeline; nothing exported until the flush
    with fluxloop.instrument("job", user_id=SK):
        pass
    assert threads == []
    assert fluxloop.flush(timeout=10)
    assert threads and threading.current_thread().name not in threads
    assert read_exported(offline_dir)[0].attributes[attr.USER_ID] == "sk-***"


def test_a_span_with_nothing_to_mask_is_passed_on_unchanged() -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("plain") as span:
        span.set_attribute("n", 1)
        span.set_attribute("text", "hello")
    [finished] = memory.get_finished_spans()
    assert SpanRedactor(Masker()).redact(finished) is finished


def test_a_remembered_verdict_never_lets_a_secret_through_on_later_spans() -> None:
    # The redactor remembers short texts it scanned (a function's static attributes repeat on every span):
    # the same secret on every later span, under the same or another key, is masked each time, and what it
    # remembers stays bounded however many distinct values pass.
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i in range(3):
        with tracer.start_as_current_span(f"call {SK}") as span:
            span.set_attribute("note", f"key {SK}")
            span.set_attribute("other.note" if i else "note", f"key {SK}")
            span.set_attribute("static", "hello")
            span.set_attribute("api_key", "plain-value")
    redactor = SpanRedactor(Masker())
    for _ in range(2):
        for exported in redactor.redact_batch(memory.get_finished_spans()):
            assert SK not in exported.name and SK not in repr(dict(exported.attributes or {}))
            assert exported.attributes is not None and exported.attributes["static"] == "hello"
            assert exported.attributes["api_key"] == "***"
    memory.clear()
    for i in range(20_000):
        with tracer.start_as_current_span(f"call {i}") as span:
            span.set_attribute("request.id", f"id-{i}")
    assert len(redactor.redact_batch(memory.get_finished_spans())) == 20_000
    assert len(redactor._texts) <= 4096 and len(redactor._clean) <= 4096  # bounded memory


# --- joining an application's provider -------------------------------------------------------------------------


# FluxLoop remembers the providers it joined by id: keep ours alive so a later object never reuses the id.
_KEEP_ALIVE: list[TracerProvider] = []


@pytest.fixture
def app_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """The application's own SDK provider, installed globally before FluxLoop starts, with its own exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "web-app"}))
    _KEEP_ALIVE.append(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", trace.Once())
    trace.set_tracer_provider(provider)
    yield provider, memory
    fluxloop.shutdown()
    provider.shutdown()


def _app_workload(provider: TracerProvider) -> None:
    app = provider.get_tracer("web.framework")
    with app.start_as_current_span("POST /chat"):
        with fluxloop.instrument("chat turn", user_id="u-1"):
            with app.start_as_current_span("http call to model"):
                with app.start_as_current_span("dns lookup"):
                    pass

        @fluxloop.tool
        def lookup() -> str:
            with app.start_as_current_span("cache get"):
                return "hit"

        lookup()
    with app.start_as_current_span("GET /health"):  # after FluxLoop joined the provider
        pass


def test_on_an_app_provider_fluxloop_exports_its_spans_and_what_runs_inside_them(
        app_provider: tuple[TracerProvider, InMemorySpanExporter], offline_dir: Path) -> None:
    provider, memory = app_provider
    _app_workload(provider)
    assert fluxloop.flush(timeout=10)
    names = {s.name for s in read_exported(offline_dir)}
    assert names == {"chat turn", "http call to model", "dns lookup", "execute_tool lookup", "cache get"}
    # The application's own exporter still gets everything.
    assert {"GET /health", "POST /chat"} <= {s.name for s in memory.get_finished_spans()}


def test_export_scope_all_exports_every_span_of_the_app_provider(
        app_provider: tuple[TracerProvider, InMemorySpanExporter], offline_dir: Path) -> None:
    fluxloop.configure(export_scope="all")
    provider, _ = app_provider
    _app_workload(provider)
    assert fluxloop.flush(timeout=10)
    assert {"GET /health", "POST /chat", "chat turn"} <= {s.name for s in read_exported(offline_dir)}


def test_a_configured_service_name_is_applied_to_what_fluxloop_exports(
        app_provider: tuple[TracerProvider, InMemorySpanExporter], offline_dir: Path) -> None:
    fluxloop.configure(service_name="support-agent")
    provider, memory = app_provider
    _app_workload(provider)
    assert fluxloop.flush(timeout=10)
    spans = read_exported(offline_dir)
    assert spans and {s.resource["service.name"] for s in spans} == {"support-agent"}
    assert {s.resource.attributes["service.name"] for s in memory.get_finished_spans()} == {"web-app"}


def test_export_scope_is_validated() -> None:
    with pytest.raises(ValueError, match="export_scope"):
        fluxloop.configure(export_scope="everything")


def test_the_otel_traces_exporter_entry_point_redacts_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fluxloop._pipeline import EnvConfiguredSpanExporter

    monkeypatch.setenv("FLUXLOOP_OFFLINE_DIR", str(tmp_path / "auto"))
    monkeypatch.setenv("FLUXLOOP_USE_COLLECTOR", "false")
    exporter = EnvConfiguredSpanExporter()  # as OTEL_TRACES_EXPORTER=fluxloop builds it
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("app").start_as_current_span("call") as span:
        span.set_attribute("prompt", f"key {SK}")
    provider.shutdown()
    [exported_span] = read_exported(tmp_path / "auto")
    assert exported_span.attributes["prompt"] == "key sk-***"
    assert SK not in artifact_text(tmp_path / "auto")
