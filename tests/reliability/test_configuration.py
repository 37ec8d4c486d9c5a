"""Hostile input 8: configuration. Every option given a wrong type or an out-of-range value through ``configure()``
gets a ``ValueError`` naming it and changes nothing; the same through environment variables keeps import and calls
working, with one clear warning per variable."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fluxloop
from fluxloop._config import OPTIONS

from ._harness import Child, child_env, refused_url

pytestmark = pytest.mark.reliability

SECRET = "sk-live-0123456789abcdefSECRET"

# option: (wrong type..., out of range / malformed...)
BAD_VALUES: dict[str, list[Any]] = {
    "enabled": ["true", 1, None],
    "debug": ["yes", 0],
    "collector_url": [5, None, "ftp://collector", "localhost:4318", ""],
    "api_key": [12345, b"key", ""],
    "headers": ["a=b", [("a", "b")], {"Authorization": 5}],
    "sample_rate": ["0.5", True, None, 1.5, -0.1, math.nan, math.inf],
    "service_name": [5, None, "", "   "],
    "environment": [1, ""],
    "resource_attributes": ["x=y", {"a": 1}],
    "record_args": ["yes", 1],
    "recording_file": [5, ""],
    "batch_size": [5.0, "5", True, 0, -1, 10**9],
    "flush_interval": ["1", 0, -1, math.inf, 4_000],
    "max_queue_size": [1.5, "10", False, 0],
    "timeout": ["5", 0, -1, math.nan, 601],
    "use_collector": ["no", 0],
    "offline_enabled": ["yes", 1],
    "offline_dir": [5, None, ""],
    "offline_max_file_bytes": [1.5, "2048", 10],
    "probe_interval": ["1", 0, -1, math.inf],
    "forward_spool": ["yes", 1],
    "capture_input": ["false", 0],
    "capture_output": [None, "x"],
    "max_attribute_length": ["100", 64.0, 10],
    "mask_patterns": ["token", 5, [1], ["("]],
    "mask_function": [5, "f"],
    "export_scope": ["everything", 5, None],
}


def test_the_table_covers_every_option() -> None:
    assert set(BAD_VALUES) == set(OPTIONS)


@fluxloop.tool
def double(x: int) -> int:
    return 2 * x


@pytest.mark.parametrize(("option", "value"), [(o, v) for o, values in BAD_VALUES.items() for v in values],
                         ids=lambda x: repr(x)[:30])
def test_configure_rejects_a_bad_value_naming_it_and_changes_nothing(option: str, value: Any,
                                                                     offline_dir: Path) -> None:
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir), service_name="before")
    before = fluxloop.get_config()
    with pytest.raises(ValueError) as raised:
        fluxloop.configure(**{option: value})
    message = str(raised.value)
    assert repr(option) in message
    if OPTIONS[option].secret:
        assert "<hidden>" in message
    else:
        assert repr(value) in message or (isinstance(value, float) and math.isnan(value) and "nan" in message)
    assert fluxloop.get_config() == before and repr(fluxloop.get_config()) == repr(before)
    assert double(21) == 42  # and FluxLoop still works


def test_configure_is_atomic_when_one_of_several_options_is_bad(offline_dir: Path) -> None:
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir))
    before = fluxloop.get_config()
    with pytest.raises(ValueError, match="'batch_size'"):
        fluxloop.configure(sample_rate=0.5, service_name="changed", batch_size="x")
    assert fluxloop.get_config() == before
    with pytest.raises(ValueError, match="'sample_rat'"):
        fluxloop.configure(sample_rat=0.5)  # an unknown option, named
    assert fluxloop.get_config() == before


# --- the same through the environment -------------------------------------------------------------------------------

BAD_ENV = {  # (a blank variable is unset, not bad: tests/core/test_config.py)
    "FLUXLOOP_ENABLED": "maybe",
    "OTEL_SDK_DISABLED": "perhaps",
    "FLUXLOOP_DEBUG": "sometimes",
    "FLUXLOOP_COLLECTOR_URL": "ftp://nowhere",
    "FLUXLOOP_HEADERS": f"Authorization=Bearer {SECRET},broken",
    "FLUXLOOP_SAMPLE_RATE": "2",
    "OTEL_TRACES_SAMPLER": "bogus",
    "FLUXLOOP_RESOURCE_ATTRIBUTES": "garbage",
    "FLUXLOOP_RECORD_ARGS": "perhaps",
    "FLUXLOOP_BATCH_SIZE": "abc",
    "FLUXLOOP_FLUSH_INTERVAL": "0",
    "OTEL_BSP_SCHEDULE_DELAY": "soon",
    "FLUXLOOP_MAX_QUEUE_SIZE": "-5",
    "FLUXLOOP_TIMEOUT": "-1",
    "FLUXLOOP_USE_COLLECTOR": "maybe",
    "FLUXLOOP_OFFLINE_ENABLED": "maybe",
    "FLUXLOOP_OFFLINE_MAX_FILE_BYTES": "10",
    "FLUXLOOP_PROBE_INTERVAL": "0",
    "FLUXLOOP_CAPTURE_INPUT": "maybe",
    "FLUXLOOP_CAPTURE_OUTPUT": "maybe",
    "FLUXLOOP_MAX_ATTRIBUTE_LENGTH": "1",
    "FLUXLOOP_MASK_PATTERNS": "(",
    "FLUXLOOP_EXPORT_SCOPE": "everything",
}

ENV_SCRIPT = """
import json
import fluxloop  # every bad variable is reported here, once

@fluxloop.tool
def double(x):
    return 2 * x

assert double(21) == 42
flushed = fluxloop.flush(timeout=5)
fluxloop.configure(service_name="again")  # re-resolving the environment reports nothing new
assert double(1) == 2
config = fluxloop.get_config()
print("RESULT", json.dumps({"flushed": flushed, "sample_rate": config.sample_rate, "batch_size": config.batch_size,
                            "enabled": config.enabled, "max_queue_size": config.max_queue_size,
                            "timeout": config.timeout, "headers": dict(config.headers),
                            "mask_patterns": list(config.mask_patterns)}), flush=True)
"""


def test_bad_environment_values_keep_import_and_calls_working_with_one_warning_each(
        spawn: Callable[..., Child], tmp_path: Path) -> None:
    env = child_env(**BAD_ENV, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=refused_url())  # where collector_url falls back
    child = spawn(ENV_SCRIPT, env=env, cwd=tmp_path)
    result = child.expect_json("RESULT")
    assert child.wait(20) == 0, child.stderr()
    assert result == {"flushed": True, "sample_rate": 1.0, "batch_size": 512, "enabled": True,
                      "max_queue_size": 2048, "timeout": 10.0, "headers": {}, "mask_patterns": []}
    stderr = child.stderr()
    warnings = [line for line in stderr.splitlines() if "ignored for option" in line]
    for variable, value in BAD_ENV.items():
        mine = [line for line in warnings if re.search(rf"\b{variable}=", line)]
        assert len(mine) == 1, f"{variable}: {mine}"  # reported once, by name
        if variable != "FLUXLOOP_HEADERS":
            assert repr(value) in mine[0]  # with the value that was ignored
    assert len(warnings) == len(BAD_ENV)
    assert SECRET not in stderr and "<hidden>" in stderr  # a secret's bad value is never echoed


def test_a_bad_environment_value_is_reported_with_the_value_used_instead(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FLUXLOOP_SAMPLE_RATE", "2.5")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    with caplog.at_level(logging.WARNING, logger="fluxloop"):
        fluxloop.reset_config()
    assert fluxloop.get_config().sample_rate == 0.25
    [warning] = [r.getMessage() for r in caplog.records if "FLUXLOOP_SAMPLE_RATE" in r.getMessage()]
    assert "0.25" in warning
