"""Configuration: precedence, OTEL fallbacks, validation that names the option, atomic changes, masking."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import fluxloop
from fluxloop._config import OPTIONS, resolve_env


def test_defaults_when_nothing_is_set() -> None:
    config = fluxloop.get_config()
    assert config.enabled is True
    assert config.collector_url == "http://localhost:8000"
    assert config.sample_rate == 1.0
    assert config.record_args is False


def test_precedence_configure_over_fluxloop_over_otel_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-otel")
    fluxloop.reset_config()
    assert fluxloop.get_config().service_name == "from-otel"
    monkeypatch.setenv("FLUXLOOP_SERVICE_NAME", "from-fluxloop")
    fluxloop.reset_config()
    assert fluxloop.get_config().service_name == "from-fluxloop"
    fluxloop.configure(service_name="from-configure")
    assert fluxloop.get_config().service_name == "from-configure"
    fluxloop.reset_config()
    assert fluxloop.get_config().service_name == "from-fluxloop"


@pytest.mark.parametrize(("env", "option", "expected"), [
    ({"OTEL_SDK_DISABLED": "true"}, "enabled", False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "collector_url", "http://collector:4318"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/v1/traces"},
     "collector_url", "http://b:2/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "x-a=1,x-b=two%20words"}, "headers", {"x-a": "1", "x-b": "two words"}),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "x-a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-t=2"}, "headers", {"x-t": "2"}),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, "sample_rate", 0.25),
    ({"OTEL_TRACES_SAMPLER": "always_off"}, "sample_rate", 0.0),
    ({"OTEL_BSP_SCHEDULE_DELAY": "250"}, "flush_interval", 0.25),
    ({"OTEL_BSP_MAX_QUEUE_SIZE": "99"}, "max_queue_size", 99),
    ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "7"}, "batch_size", 7),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc,deployment.environment.name=prod,team=ai"}, "service_name", "svc"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc,deployment.environment.name=prod,team=ai"}, "environment", "prod"),
    ({"FLUXLOOP_SAMPLE_RATE": "0.5", "OTEL_TRACES_SAMPLER": "always_off"}, "sample_rate", 0.5),
])
def test_otel_fallbacks(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], option: str, expected: object) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fluxloop.reset_config()
    value = getattr(fluxloop.get_config(), option)
    assert (dict(value) if option == "headers" else value) == expected


def test_every_seed_env_var_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    env = {
        "FLUXLOOP_ENABLED": "true", "FLUXLOOP_DEBUG": "false", "FLUXLOOP_COLLECTOR_URL": "http://c:9000",
        "FLUXLOOP_API_KEY": "k-123", "FLUXLOOP_RECORD_ARGS": "false",
        "FLUXLOOP_RECORDING_FILE": str(tmp_path / "r.jsonl"), "FLUXLOOP_SAMPLE_RATE": "0.3",
        "FLUXLOOP_BATCH_SIZE": "11", "FLUXLOOP_FLUSH_INTERVAL": "2.5", "FLUXLOOP_MAX_QUEUE_SIZE": "1001",
        "FLUXLOOP_TIMEOUT": "3", "FLUXLOOP_SERVICE_NAME": "svc", "FLUXLOOP_ENVIRONMENT": "staging",
        "FLUXLOOP_USE_COLLECTOR": "false", "FLUXLOOP_OFFLINE_ENABLED": "true",
        "FLUXLOOP_OFFLINE_DIR": str(tmp_path / "arts"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fluxloop.reset_config()
    c = fluxloop.get_config()
    assert (c.enabled, c.debug, c.collector_url, c.api_key, c.record_args) == (True, False, "http://c:9000",
                                                                                "k-123", False)
    assert c.recording_file == str(tmp_path / "r.jsonl")
    assert (c.sample_rate, c.batch_size, c.flush_interval, c.max_queue_size, c.timeout) == (0.3, 11, 2.5, 1001, 3.0)
    assert (c.service_name, c.environment, c.use_collector, c.offline_enabled) == ("svc", "staging", False, True)
    assert c.offline_dir == str(tmp_path / "arts")


@pytest.mark.parametrize(("options", "named"), [
    ({"foo": 1}, "'foo'"),
    ({"sample_rate": 2}, "'sample_rate'"),
    ({"sample_rate": -0.1}, "'sample_rate'"),
    ({"batch_size": "x"}, "'batch_size'"),
    ({"batch_size": 0}, "'batch_size'"),
    ({"batch_size": True}, "'batch_size'"),
    ({"enabled": "yes"}, "'enabled'"),
    ({"flush_interval": 0}, "'flush_interval'"),
    ({"timeout": float("nan")}, "'timeout'"),
    ({"max_queue_size": 2.5}, "'max_queue_size'"),
    ({"collector_url": "localhost:8000"}, "'collector_url'"),
    ({"headers": {"a": 1}}, "'headers'"),
    ({"mask_patterns": ["("]}, "'mask_patterns'"),
    ({"service_name": ""}, "'service_name'"),
])
def test_bad_configure_raises_naming_option_and_changes_nothing(options: dict, named: str) -> None:
    fluxloop.configure(service_name="before", sample_rate=0.5)
    before = fluxloop.get_config()
    with pytest.raises(ValueError) as info:
        fluxloop.configure(**{"offline_max_file_bytes": 4096, **options})
    assert named in str(info.value)
    value = next(iter(options.values()))
    if named not in ("'foo'", "'headers'"):  # headers may hold secrets: their values are never echoed
        assert repr(value) in str(info.value)
    assert fluxloop.get_config() == before  # atomic: offline_max_file_bytes did not land either


def test_configure_calls_add_up() -> None:
    fluxloop.configure(service_name="a")
    fluxloop.configure(sample_rate=0.2)
    config = fluxloop.get_config()
    assert (config.service_name, config.sample_rate) == ("a", 0.2)


def test_bad_env_value_warns_once_per_reset_and_uses_default(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FLUXLOOP_SAMPLE_RATE", "abc")
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        fluxloop.reset_config()
        fluxloop.configure(service_name="a")
        fluxloop.configure(service_name="b")
        assert fluxloop.get_config().sample_rate == 1.0
        first = [r.getMessage() for r in caplog.records if "'abc'" in r.getMessage()]
        # reset_config() forgets what was reported (the memo is runtime state): the same value warns again.
        fluxloop.reset_config()
        second = [r.getMessage() for r in caplog.records if "'abc'" in r.getMessage()]
    assert len(first) == 1
    assert "FLUXLOOP_SAMPLE_RATE" in first[0] and "sample_rate" in first[0]
    assert len(second) == 2


def test_bad_env_value_never_breaks_import_or_calls() -> None:
    code = ("import fluxloop\n"
            "@fluxloop.agent\n"
            "def f(x): return x * 2\n"
            "assert f(21) == 42\n"
            "print(fluxloop.get_config().sample_rate, fluxloop.get_config().batch_size)\n")
    env = {"FLUXLOOP_SAMPLE_RATE": "abc", "FLUXLOOP_BATCH_SIZE": "-5", "FLUXLOOP_USE_COLLECTOR": "maybe",
           "FLUXLOOP_OFFLINE_ENABLED": "false", "PATH": os.environ.get("PATH", ""),
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1.0", "512"]
    assert "FLUXLOOP_SAMPLE_RATE='abc'" in proc.stderr
    assert "FLUXLOOP_BATCH_SIZE='-5'" in proc.stderr
    assert proc.stderr.count("FLUXLOOP_SAMPLE_RATE") == 1


def test_api_key_is_masked_in_repr_and_str() -> None:
    fluxloop.configure(api_key="sk-verysecretvalue-123456", headers={"x-api-key": "hdr-secret-value-000"})
    config = fluxloop.get_config()
    for text in (repr(config), str(config), f"{config}"):
        assert "sk-verysecretvalue" not in text
        assert "hdr-secret-value" not in text
    assert config.api_key == "sk-verysecretvalue-123456"
    assert config.export_headers["Authorization"] == "Bearer sk-verysecretvalue-123456"


def test_bad_api_key_type_error_does_not_echo_it() -> None:
    with pytest.raises(ValueError) as info:
        fluxloop.configure(api_key=12345678901234)
    assert "api_key" in str(info.value) and "12345678901234" not in str(info.value)


def test_config_is_immutable() -> None:
    with pytest.raises(AttributeError):
        fluxloop.get_config().sample_rate = 0.5  # type: ignore[misc]


def test_every_option_has_a_caster_and_a_default() -> None:
    defaults = fluxloop.FluxLoopConfig()
    for name in OPTIONS:
        assert hasattr(defaults, name), name


# -- the option table is the one definition ---------------------------------------------------------------------
def test_config_fields_defaults_and_table_agree() -> None:
    from dataclasses import fields

    defaults = fluxloop.FluxLoopConfig()
    assert [f.name for f in fields(fluxloop.FluxLoopConfig)] == list(OPTIONS)
    for name, option in OPTIONS.items():
        assert getattr(defaults, name) == option.default, name
        assert option.doc and option.affects, name


def test_readme_option_table_is_generated_from_the_table() -> None:
    from pathlib import Path

    from fluxloop._options import options_markdown

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert options_markdown() in readme, "regenerate the README table: python -m fluxloop._options"


def test_bad_sampler_arg_is_reported_under_its_own_name(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "half")
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        fluxloop.reset_config()
    [message] = [r.getMessage() for r in caplog.records if "sample_rate" in r.getMessage()]
    assert "OTEL_TRACES_SAMPLER_ARG='half'" in message
    assert "OTEL_TRACES_SAMPLER=" not in message and "traceidratio" not in message
    assert fluxloop.get_config().sample_rate == 1.0


def test_bad_sampler_name_is_reported_under_its_name(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        fluxloop.reset_config()
    [message] = [r.getMessage() for r in caplog.records if "sample_rate" in r.getMessage()]
    assert "OTEL_TRACES_SAMPLER='sometimes'" in message and "unsupported sampler" in message


# A value different from the default for every option, to see what a change of it rebuilds.
_CHANGED = {
    "enabled": False, "debug": True, "collector_url": "http://other:1", "api_key": "k", "headers": {"x": "y"},
    "sample_rate": 0.5, "service_name": "svc", "environment": "prod", "resource_attributes": {"team": "ai"},
    "record_args": False, "recording_file": None, "batch_size": 7, "flush_interval": 1.0, "max_queue_size": 99,
    "timeout": 3.0, "use_collector": True, "offline_enabled": False, "offline_dir": "elsewhere",
    "offline_max_file_bytes": 4096, "probe_interval": 2.0, "forward_spool": False, "capture_input": False,
    "capture_output": False, "max_attribute_length": 100, "mask_patterns": ["ssn"], "mask_function": repr,
    "export_scope": "all",
}
# (record_args/recording_file are the recording component's: tests/recording covers them.)


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if n not in ("record_args", "recording_file")])
def test_configure_rebuilds_what_the_table_says_an_option_affects(name: str, tmp_path) -> None:
    from fluxloop import _runtime
    from fluxloop._options import PIPELINE

    fluxloop.configure(offline_dir=str(tmp_path), use_collector=False)
    runtime = _runtime.RUNTIME
    before = runtime.switch.pipeline
    assert getattr(fluxloop.get_config(), name) != OPTIONS[name].cast(_CHANGED[name], False)
    fluxloop.configure(**{name: _CHANGED[name]})
    assert getattr(fluxloop.get_config(), name) == OPTIONS[name].cast(_CHANGED[name], False)
    rebuilt = runtime.switch.pipeline is not before
    assert rebuilt == (PIPELINE in OPTIONS[name].affects), name
    # Every option reaches the snapshot decorated calls read.
    assert getattr(_runtime.STATE.config, name) == getattr(fluxloop.get_config(), name)


def test_a_blank_fluxloop_variable_is_unset_not_false() -> None:
    # A blank value from a Compose file or Helm chart must not switch tracing or export off.
    resolved = resolve_env({"FLUXLOOP_ENABLED": "", "FLUXLOOP_USE_COLLECTOR": "  ", "FLUXLOOP_SAMPLE_RATE": "",
                            "OTEL_SERVICE_NAME": "svc", "FLUXLOOP_SERVICE_NAME": ""})
    assert resolved.config.enabled is True and resolved.config.use_collector is True
    assert resolved.config.sample_rate == 1.0 and resolved.config.service_name == "svc"
    assert resolved.warnings == ()
    assert resolved.sources["service_name"] == "OTEL_SERVICE_NAME"
