"""Living with the application's own OpenTelemetry setup: share its provider, never replace it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, logging, warnings
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    app_exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(provider)
    app_tracer = trace.get_tracer("app")

    import fluxloop
    from fluxloop.testing import capture_spans
    fluxloop.configure(use_collector=False, offline_enabled=False)

    @fluxloop.tool
    def lookup(key):
        with app_tracer.start_as_current_span("app.db.query"):
            return key

    @fluxloop.agent(name="bot")
    def bot(q):
        return lookup(q)

    with capture_spans() as seen:
        with app_tracer.start_as_current_span("app.request"):
            bot("x")
        fluxloop.configure(sample_rate=1.0)  # reconfiguring must not add a second processor
        fluxloop.reset_config()
        fluxloop.configure(use_collector=False, offline_enabled=False)
        with app_tracer.start_as_current_span("app.request2"):
            bot("y")

    assert trace.get_tracer_provider() is provider
    spans = app_exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    parent = lambda s: by_id[s.parent.span_id].name if s.parent else None
    print(json.dumps({
        "app_names": [s.name for s in spans],
        "parents": {s.name: parent(s) for s in spans},
        "fluxloop_seen": seen.names,
        "processors": len(provider._active_span_processor._span_processors),
    }))
""")


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120)


def test_fluxloop_joins_the_application_provider_and_traces() -> None:
    import json

    proc = run(SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert "Overriding" not in proc.stderr
    out = json.loads(proc.stdout)
    # FluxLoop spans nest under the app's span, and the app's spans nest under FluxLoop's.
    assert out["parents"]["invoke_agent bot"] in ("app.request", "app.request2")
    assert out["parents"]["execute_tool lookup"] == "invoke_agent bot"
    assert out["parents"]["app.db.query"] == "execute_tool lookup"
    # FluxLoop's pipeline saw every span of the shared provider, twice over two configurations.
    assert out["fluxloop_seen"].count("invoke_agent bot") == 2
    assert out["fluxloop_seen"].count("app.db.query") == 2
    # The app's processor plus exactly one FluxLoop processor, whatever configure()/reset_config() did.
    assert out["processors"] == 2


def test_fluxloop_installs_its_own_provider_with_resource_when_none_exists() -> None:
    code = textwrap.dedent("""
        import fluxloop
        from opentelemetry import trace
        from fluxloop.testing import capture_spans
        fluxloop.configure(use_collector=False, offline_enabled=False, service_name="svc", environment="prod")
        @fluxloop.agent
        def f():
            with trace.get_tracer("app").start_as_current_span("inner"):
                return 1
        with capture_spans() as spans:
            f()
        res = spans.by_name("invoke_agent f").resource.attributes
        print(res["service.name"], res["deployment.environment.name"], res["telemetry.distro.name"],
              bool(res["telemetry.distro.version"]), spans.by_name("inner").parent is not None)
    """)
    proc = run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["svc", "prod", "fluxloop", "True", "True"]


def test_otel_resource_attributes_and_service_name_reach_the_resource() -> None:
    code = textwrap.dedent("""
        import fluxloop
        from fluxloop.testing import capture_spans
        fluxloop.configure(use_collector=False, offline_enabled=False)
        @fluxloop.agent
        def f(): return 1
        with capture_spans() as spans:
            f()
        res = spans[0].resource.attributes
        print(res["service.name"], res["team"], res["deployment.environment.name"])
    """)
    proc = run(code, OTEL_SERVICE_NAME="otel-svc", OTEL_RESOURCE_ATTRIBUTES="team=ai,deployment.environment.name=qa")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["otel-svc", "ai", "qa"]


def test_shared_provider_applies_sample_rate_per_trace() -> None:
    code = textwrap.dedent("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        import fluxloop
        from fluxloop.testing import capture_spans
        fluxloop.configure(use_collector=False, offline_enabled=False, sample_rate=0.5)
        @fluxloop.tool
        def child(): return 1
        @fluxloop.agent
        def parent(): return child() + child()
        with capture_spans() as spans:
            for _ in range(400):
                parent()
        roots = {s.context.trace_id for s in spans if s.name == "invoke_agent parent"}
        kids = [s for s in spans if s.name == "execute_tool child"]
        print(len(roots), len(kids), {s.context.trace_id for s in kids} == roots)
    """)
    proc = run(code)
    assert proc.returncode == 0, proc.stderr
    roots, kids, same = proc.stdout.split()
    assert 100 < int(roots) < 300 and int(kids) == 2 * int(roots) and same == "True"


def test_fluxloop_resource_hashes_once_and_like_a_plain_resource() -> None:
    from opentelemetry.sdk.resources import Resource

    from fluxloop._config import FluxLoopConfig
    from fluxloop._providers import resource_for

    resource = resource_for(FluxLoopConfig(service_name="svc"))
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain and hash(resource) == hash(plain)
    assert {resource: 1}[plain] == 1  # groups with equal resources, as the OTLP encoder does


def test_otel_traces_exporter_entry_point_uses_fluxloop_settings(tmp_path) -> None:
    code = textwrap.dedent("""
        from opentelemetry.sdk._configuration import _import_exporters
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from fluxloop_otel_exporter import iter_offline_files
        exporters, _, _ = _import_exporters(["fluxloop"], [], [])
        exporter = exporters["fluxloop"]()          # as OTel auto-configuration builds it: no arguments
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider.get_tracer("app").start_span("from-autoconfig").end()
        provider.shutdown()
        print(exporter.endpoint, len(iter_offline_files(OUT)))
    """).replace("OUT", repr(str(tmp_path / "auto")))
    proc = run(code, FLUXLOOP_COLLECTOR_URL="http://127.0.0.1:9/", FLUXLOOP_USE_COLLECTOR="false",
               FLUXLOOP_OFFLINE_DIR=str(tmp_path / "auto"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["http://127.0.0.1:9/v1/traces", "1"]
