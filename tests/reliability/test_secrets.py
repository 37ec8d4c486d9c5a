"""Secrets 10-11. The API key never appears in logs (debug on), reprs, ``get_config()``, ``fluxloop config``, artifacts
or recordings. Sensitive keys are masked in span input, output and metadata and in recordings, nested in mappings,
lists, dataclasses and pydantic models; user patterns and a mask function apply; masked paths are noted on the
span, never values; bearer tokens and ``sk-`` keys in free text are masked."""

from __future__ import annotations

import dataclasses
import logging
import pprint
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

import fluxloop
from fluxloop.cli import main

from ._harness import Child, OtlpSink, Span, child_env, delivered_spans, offline_spans, refused_url, strict_json

pytestmark = pytest.mark.reliability


def _secret(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


def _files_text(*folders: Path) -> str:
    """Everything written under ``folders`` (artifacts, recordings, upload state), as text."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for folder in folders if folder.exists()
                     for p in sorted(folder.rglob("*")) if p.is_file())


def _attribute_text(spans: list[Span]) -> str:
    return "\n".join(f"{s.name} {s.status_message} {s.attributes!r} {s.events!r}" for s in spans)


# --- 10. the API key -----------------------------------------------------------------------------------------------

API_KEY = "sk-proj-" + uuid.uuid4().hex + uuid.uuid4().hex  # looks like a real key; unique to this run
HEADER_SECRET = _secret("hdr")

WORKLOAD = """
import sys
import fluxloop

@fluxloop.agent(name="Keyed")
def keyed(question, api_key, settings):
    return {"answer": question.upper(), "auth": api_key}

for i in range(20):
    keyed(f"q{i}", api_key=sys.argv[1], settings={"Authorization": "Bearer " + sys.argv[1], "note": sys.argv[1]})
assert fluxloop.flush(timeout=10)
fluxloop.configure(collector_url=sys.argv[2])  # a collector that refuses: the unreachable path logs too
keyed("after", api_key=sys.argv[1], settings={})
fluxloop.shutdown()
print("config", fluxloop.get_config(), repr(fluxloop.get_config()), flush=True)
"""


def test_api_key_never_in_debug_logs_output_artifacts_or_recordings(spawn: Callable[..., Child], sink: OtlpSink,
                                                                    tmp_path: Path) -> None:
    spool, recording = tmp_path / "spool", tmp_path / "rec" / "args.jsonl"
    sink.script.append(401)  # one rejected batch: the failure path logs as well
    env = child_env(FLUXLOOP_API_KEY=API_KEY, FLUXLOOP_DEBUG="true", FLUXLOOP_HEADERS=f"X-Tenant-Token={HEADER_SECRET}",
                    FLUXLOOP_COLLECTOR_URL=sink.url, FLUXLOOP_OFFLINE_DIR=str(spool), FLUXLOOP_RECORD_ARGS="true",
                    FLUXLOOP_RECORDING_FILE=str(recording), FLUXLOOP_BATCH_SIZE="5", FLUXLOOP_TIMEOUT="3")
    child = spawn(WORKLOAD, API_KEY, refused_url(), env=env)
    assert child.wait(60) == 0, child.stderr()
    printed = "\n".join(child.lines) + child.process.stdout.read().decode() + child.stderr()
    assert "config FluxLoopConfig(" in printed
    assert "fluxloop:" in printed  # debug logging did say things
    assert API_KEY not in printed and HEADER_SECRET not in printed
    assert API_KEY not in _files_text(spool, recording.parent) and HEADER_SECRET not in _files_text(spool)
    assert len(strict_json(recording.read_bytes().splitlines()[0])["kwargs"]) == 3  # recorded, masked
    # ...while the collector does get it, as the credential it is.
    assert {a.headers["authorization"] for a in sink.attempts} == {f"Bearer {API_KEY}"}
    assert {a.headers["x-tenant-token"] for a in sink.attempts} == {HEADER_SECRET}
    assert API_KEY not in _attribute_text(delivered_spans(sink))


def test_api_key_never_in_reprs_get_config_or_error_messages(sink: OtlpSink, offline_dir: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        fluxloop.configure(api_key=API_KEY, headers={"Authorization": f"Bearer {HEADER_SECRET}"}, debug=True,
                           use_collector=True, collector_url=sink.url, offline_dir=str(offline_dir))
        config = fluxloop.get_config()
        shown = [repr(config), str(config), f"{config}", f"{config!r}", pprint.pformat(config),
                 pprint.pformat({"config": config}), repr(fluxloop.get_stats())]
        for bad in ({"api_key": 12345}, {"headers": {"Authorization": 5}}, {"api_key": ""}):
            with pytest.raises(ValueError) as raised:
                fluxloop.configure(**bad)
            shown.append(str(raised.value))
        fluxloop.trace(name="probe")(lambda: None)()
        assert fluxloop.flush(timeout=10)
        fluxloop.shutdown()
    shown.append(caplog.text)
    for text in shown:
        assert API_KEY not in text and HEADER_SECRET not in text
    assert config.api_key == API_KEY  # the value itself is there for those who ask for it


@pytest.mark.parametrize("how", ["environment", "configure"])
@pytest.mark.parametrize("form", [[], ["--json"]])
def test_fluxloop_config_output_masks_the_key(how: str, form: list[str], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    if how == "environment":
        monkeypatch.setenv("FLUXLOOP_API_KEY", API_KEY)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-api-key={HEADER_SECRET}")
        fluxloop.reset_config()
    else:
        fluxloop.configure(api_key=API_KEY, headers={"x-api-key": HEADER_SECRET})
    capsys.readouterr()
    assert main(["config", *form]) == 0
    out, err = capsys.readouterr()
    assert "api_key" in out
    assert API_KEY not in out + err and HEADER_SECRET not in out + err


def test_fluxloop_config_in_a_subprocess_with_debug_on(spawn: Callable[..., Child]) -> None:
    env = child_env(FLUXLOOP_API_KEY=API_KEY, FLUXLOOP_DEBUG="true", FLUXLOOP_HEADERS=f"x-api-key={HEADER_SECRET}")
    child = spawn("import sys; from fluxloop.cli import main; sys.exit(main(['config']))", env=env)
    assert child.wait(30) == 0, child.stderr()
    printed = child.process.stdout.read().decode() + child.stderr()
    assert "api_key" in printed and "FLUXLOOP_API_KEY" in printed
    assert API_KEY not in printed and HEADER_SECRET not in printed


@pytest.mark.parametrize("variable", ["FLUXLOOP_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"])
def test_a_malformed_secret_headers_variable_is_never_echoed(spawn: Callable[..., Child], variable: str) -> None:
    env = child_env(**{variable: f"Authorization: Bearer {API_KEY}"})
    child = spawn("import sys; from fluxloop.cli import main; sys.exit(main(['config']))", env=env)
    assert child.wait(30) == 0, child.stderr()
    printed = child.process.stdout.read().decode() + child.stderr()
    assert variable in printed  # reported...
    assert API_KEY not in printed  # ...without the key


# --- 11. masking of span input, output, metadata and recordings ----------------------------------------------------

S = {name: _secret(name) for name in ("password", "refresh", "apikey", "credential", "db", "model", "sauce", "auth",
                                      "deploy", "client", "upstream", "conf", "out_db", "kw_token", "tags")}
BEARER = "eyJhbGciOiJIUzI1NiJ9" + uuid.uuid4().hex
SK = "sk-" + uuid.uuid4().hex + "abcdefgh"


@dataclasses.dataclass
class DbConfig:
    host: str
    password: str


class ApiSettings(pydantic.BaseModel):
    endpoint: str
    api_key: str
    nested: dict[str, Any]


@fluxloop.agent(name="Masked", metadata={"deploy_token": S["deploy"], "settings": {"client_secret": S["client"]}})
def masked_agent(config: dict, items: list, db: DbConfig, api: ApiSettings, note: str, **extra: Any) -> dict:
    return {"session": {"auth": S["auth"]}, "note": note, "db": DbConfig("out", S["out_db"])}


def _call_masked_agent() -> None:
    with fluxloop.instrument("job") as ctx:
        ctx.add_metadata("upstream_auth", S["upstream"])
        ctx.add_metadata("conf", {"password": S["conf"]})
        masked_agent(
            {"user": "bob", "Password": S["password"], "nested": {"deep": {"refresh_token": S["refresh"]}}},
            [{"name": "a", "apiKey": S["apikey"]}, ["x", {"Credential": S["credential"]}]],
            DbConfig("db.local", S["db"]),
            ApiSettings(endpoint="https://api", api_key=S["model"], nested={"secret_sauce": S["sauce"]}),
            f"calling with Authorization: Bearer {BEARER} and key {SK}",
            session_token=S["kw_token"],
        )


EXPECTED_PATHS = {"input.config.Password", "input.config.nested.deep.refresh_token", "input.items[0].apiKey",
                  "input.items[1][1].Credential", "input.db.password", "input.api.api_key",
                  "input.api.nested.secret_sauce", "input.session_token", "output.session.auth", "output.db.password"}


def test_sensitive_keys_and_token_text_are_masked_everywhere_and_paths_are_noted(
        tmp_path: Path, offline_dir: Path, sink: OtlpSink) -> None:
    recording = tmp_path / "args.jsonl"
    fluxloop.configure(use_collector=True, collector_url=sink.url, offline_dir=str(offline_dir), record_args=True,
                       recording_file=str(recording))
    _call_masked_agent()
    fluxloop.configure(use_collector=False)  # the same call again, through the offline files
    _call_masked_agent()
    assert fluxloop.flush(timeout=10)
    wire, disk = delivered_spans(sink), offline_spans(offline_dir)
    secrets = [*S.values(), BEARER, SK]
    for text in (_attribute_text(wire), _attribute_text(disk), _files_text(offline_dir, tmp_path)):
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"leaked: {leaked}"
    for spans in (wire, disk):
        agent = next(s for s in spans if s.name == "invoke_agent Masked")
        job = next(s for s in spans if s.name == "job")
        arguments = strict_json(agent.attributes["input.value"])
        assert arguments["config"] == {"user": "bob", "Password": "***", "nested": {"deep": {"refresh_token": "***"}}}
        assert arguments["items"] == [{"name": "a", "apiKey": "***"}, ["x", {"Credential": "***"}]]
        assert arguments["db"] == {"host": "db.local", "password": "***"}
        assert arguments["api"] == {"endpoint": "https://api", "api_key": "***", "nested": {"secret_sauce": "***"}}
        assert arguments["note"] == "calling with Authorization: Bearer *** and key sk-***"
        assert strict_json(agent.attributes["output.value"])["session"] == {"auth": "***"}
        paths = set(agent.attributes["fluxloop.masked_paths"])
        assert EXPECTED_PATHS <= paths  # (metadata paths: test_masked_metadata_is_noted_by_path)
        assert all(p.startswith(("input.", "output.", "metadata.")) for p in paths)
        for span in (agent, job):
            assert span.attributes["fluxloop.metadata.upstream_auth"] == "***"
            assert strict_json(span.attributes["fluxloop.metadata.conf"]) == {"password": "***"}
        assert agent.attributes["fluxloop.metadata.deploy_token"] == "***"
        assert strict_json(agent.attributes["fluxloop.metadata.settings"]) == {"client_secret": "***"}
    records = [strict_json(line) for line in recording.read_bytes().splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["kwargs"]["config"]["Password"] == "***"
        assert record["kwargs"]["api"]["nested"] == {"secret_sauce": "***"}
        assert record["kwargs"]["note"] == "calling with Authorization: Bearer *** and key sk-***"


def test_user_patterns_and_mask_function_apply_to_spans_and_recordings(tmp_path: Path, offline_dir: Path) -> None:
    recording = tmp_path / "args.jsonl"
    ssn, iban, token = _secret("ssn"), _secret("iban"), _secret("token")

    def hide(key: str, value: Any) -> str:
        return f"<{key} hidden>"

    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir), record_args=True,
                       recording_file=str(recording), mask_patterns=[r"^ssn$", r"iban"], mask_function=hide)

    @fluxloop.agent(name="Custom")
    def custom(customer: dict, ssn_note: str) -> dict:
        return {"ssn": customer["ssn"]}

    custom({"ssn": ssn, "customer_IBAN": iban, "token": token, "name": "Ann"}, "ssn is not a key here")
    assert fluxloop.flush(timeout=10)
    [span] = offline_spans(offline_dir)
    arguments = strict_json(span.attributes["input.value"])
    expected = {"ssn": "<ssn hidden>", "customer_IBAN": "<customer_IBAN hidden>", "token": "<token hidden>",
                "name": "Ann"}
    assert arguments["customer"] == expected
    assert arguments["ssn_note"] == "ssn is not a key here"  # ^ssn$ matches the key "ssn" only
    assert strict_json(span.attributes["output.value"]) == {"ssn": "<ssn hidden>"}
    assert set(span.attributes["fluxloop.masked_paths"]) == {"input.customer.ssn", "input.customer.customer_IBAN",
                                                            "input.customer.token", "output.ssn"}
    [record] = [strict_json(line) for line in recording.read_bytes().splitlines()]
    assert record["kwargs"]["customer"] == expected
    text = _files_text(offline_dir, tmp_path)
    assert ssn not in text and iban not in text and token not in text


def test_a_mask_function_that_raises_falls_back_to_stars(offline_dir: Path) -> None:
    secret = _secret("pw")

    def broken(key: str, value: Any) -> Any:
        raise RuntimeError(f"cannot mask {value}")

    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir), mask_function=broken)

    @fluxloop.tool
    def login(password: str) -> bool:
        return True

    assert login(secret) is True
    assert fluxloop.flush(timeout=10)
    [span] = offline_spans(offline_dir)
    assert strict_json(span.attributes["input.value"]) == {"password": "***"}
    assert secret not in _files_text(offline_dir)


def test_token_text_in_an_exception_message_is_masked(offline_dir: Path) -> None:
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir))

    @fluxloop.tool
    def call_upstream() -> None:
        raise PermissionError(f"401 from upstream for Authorization: Bearer {BEARER} (key {SK})")

    with pytest.raises(PermissionError):
        call_upstream()
    assert fluxloop.flush(timeout=10)
    [span] = offline_spans(offline_dir)
    assert span.status_code == 2 and span.events  # the error is recorded...
    text = _attribute_text([span]) + _files_text(offline_dir)
    assert BEARER not in text and SK not in text  # ...without the secrets in it


def test_masked_metadata_is_noted_by_path(offline_dir: Path) -> None:
    fluxloop.configure(use_collector=False, offline_dir=str(offline_dir))
    with fluxloop.instrument("job") as ctx:
        ctx.add_metadata("conf", {"password": _secret("pw")})
        ctx.add_metadata("upstream_auth", _secret("auth"))
    assert fluxloop.flush(timeout=10)
    [span] = offline_spans(offline_dir)
    assert {"metadata.conf.password", "metadata.upstream_auth"} <= set(span.attributes.get("fluxloop.masked_paths",
                                                                                           ()))
