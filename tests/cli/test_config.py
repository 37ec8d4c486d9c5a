"""``fluxloop config``: every option with its value and source; secrets never shown whole."""

from __future__ import annotations

import json

import pytest

import fluxloop
from fluxloop._config import OPTIONS

from .conftest import run_module, subprocess_env

API_KEY = "sk-live-0123456789abcdefWXYZ"
HEADER_SECRET = "hdr-secret-0123456789-tail"


def _rows(out: str) -> dict[str, tuple[str, str]]:
    lines = out.splitlines()
    assert lines[0].split() == ["OPTION", "VALUE", "SOURCE"]
    rows = {}
    for line in lines[1:]:
        name, *middle, source = line.split()
        rows[name] = (" ".join(middle), source)
    return rows


def test_lists_every_option_with_its_source(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXLOOP_SAMPLE_RATE", "0.25")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-otel")
    monkeypatch.setenv("FLUXLOOP_DEBUG", "true")
    fluxloop.configure(sample_rate=0.5)  # this process's configure() is not the command's configuration

    result = cli("config")

    assert result.code == 0 and result.err == ""
    rows = _rows(result.out)
    assert list(rows) == list(OPTIONS)
    assert rows["sample_rate"] == ("0.25", "FLUXLOOP_SAMPLE_RATE")
    assert rows["service_name"] == ("from-otel", "OTEL_SERVICE_NAME")
    assert rows["debug"] == ("true", "FLUXLOOP_DEBUG")
    assert rows["batch_size"] == ("512", "default")
    assert rows["use_collector"] == ("false", "FLUXLOOP_USE_COLLECTOR")  # set by the suite's conftest


def test_secrets_are_masked_in_text_and_json(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXLOOP_API_KEY", API_KEY)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-team=blue,x-token={HEADER_SECRET}")
    fluxloop.reset_config()

    text = cli("config")
    as_json = cli("config", "--json")

    for result in (text, as_json):
        assert result.code == 0
        assert API_KEY not in result.out + result.err
        assert HEADER_SECRET not in result.out + result.err
        assert "Authorization" not in result.out
    rows = _rows(text.out)
    assert rows["api_key"] == ("****WXYZ", "FLUXLOOP_API_KEY")
    assert rows["headers"] == ("x-team=****,x-token=****tail", "OTEL_EXPORTER_OTLP_HEADERS")
    options = json.loads(as_json.out)["options"]
    assert options["api_key"] == {"value": "****WXYZ", "source": "FLUXLOOP_API_KEY"}
    assert options["headers"] == {"value": {"x-team": "****", "x-token": "****tail"},
                                  "source": "OTEL_EXPORTER_OTLP_HEADERS"}


def test_json_shape(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXLOOP_MASK_PATTERNS", "ssn")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1")
    document = json.loads(cli("config", "--json").out)
    assert set(document) == {"options", "warnings"}
    assert list(document["options"]) == list(OPTIONS)
    assert all(set(entry) == {"value", "source"} for entry in document["options"].values())
    options = document["options"]
    assert options["mask_patterns"] == {"value": ["ssn"], "source": "FLUXLOOP_MASK_PATTERNS"}
    assert options["mask_function"] == {"value": None, "source": "default"}
    assert options["collector_url"] == {"value": "http://c:1", "source": "OTEL_EXPORTER_OTLP_ENDPOINT"}
    assert options["sample_rate"] == {"value": 1.0, "source": "default"}
    assert options["api_key"] == {"value": None, "source": "default"}
    assert document["warnings"] == []


def test_bad_environment_value_is_a_warning_not_a_crash() -> None:
    result = run_module("config", "--json", env=subprocess_env(FLUXLOOP_BATCH_SIZE="lots"))
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["options"]["batch_size"] == {"value": 512, "source": "default"}
    [warning] = document["warnings"]
    assert "FLUXLOOP_BATCH_SIZE='lots'" in warning
    assert "FLUXLOOP_BATCH_SIZE" in result.stderr


@pytest.mark.parametrize("json_output", [False, True])
def test_each_bad_environment_value_is_reported_once(json_output: bool) -> None:
    env = subprocess_env(FLUXLOOP_BATCH_SIZE="lots", FLUXLOOP_SAMPLE_RATE="often")
    result = run_module("config", *(["--json"] if json_output else []), env=env)
    assert result.returncode == 0
    assert result.stderr.count("FLUXLOOP_BATCH_SIZE='lots'") == 1
    assert result.stderr.count("FLUXLOOP_SAMPLE_RATE='often'") == 1


def test_secret_from_environment_never_reaches_a_subprocess_output() -> None:
    result = run_module("config", env=subprocess_env(FLUXLOOP_API_KEY=API_KEY, FLUXLOOP_DEBUG="true"))
    assert result.returncode == 0
    assert API_KEY not in result.stdout + result.stderr
    assert "****WXYZ" in result.stdout
