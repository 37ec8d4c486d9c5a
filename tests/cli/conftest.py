"""Fixtures for the CLI tests: offline artifacts written by the real pipeline, and running the command line."""

from __future__ import annotations

import functools

import os
import pty
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runner import Run, run_cli

import fluxloop
import fluxloop_otel_exporter

from ._agents import run_job

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``cli("traces", "--json")``: run the command line in this process; its exit code, stdout and stderr."""
    return functools.partial(run_cli, capsys)


@dataclass
class Artifacts:
    """Offline artifacts written by FluxLoop's real pipeline (use_collector=False)."""

    directory: Path
    trace_ids: list[str]  # in the order the jobs ran (oldest first)

    @property
    def files(self) -> list[Path]:
        return fluxloop_otel_exporter.iter_offline_files(self.directory)

    def span_ids(self) -> set[str]:
        return {span["spanId"] for path in self.files for _, request, _ in fluxloop_otel_exporter.read_requests(path)
                if request for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]}


def write_jobs(directory: Path, questions: list[str], **options: object) -> list[str]:
    """Run one job per question with FluxLoop writing offline files to ``directory``; their trace ids."""
    fluxloop.configure(use_collector=False, offline_dir=str(directory), service_name="cli-tests", **options)
    trace_ids = [run_job(question) for question in questions]
    assert fluxloop.flush(timeout=10)
    return trace_ids


@pytest.fixture
def artifacts(tmp_path: Path) -> Artifacts:
    """Three traces (the second with a failing tool), one OTLP request per few spans, in tmp_path/artifacts."""
    directory = tmp_path / "artifacts"
    ids = write_jobs(directory, ["weather in paris", "weather in atlantis and paris", "weather in rome"],
                     batch_size=3)
    return Artifacts(directory, ids)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m fluxloop`` in a child process: this repo importable, no stray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_")) and k != "NO_COLOR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_module(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m fluxloop ARGV`` with pipes (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "fluxloop", *argv], capture_output=True, text=True,
                          env=env or subprocess_env(), timeout=timeout, check=False)


def run_on_terminal(*argv: str, env: dict[str, str], stream: str = "stdout",
                    timeout: float = 60) -> tuple[int, str, str]:
    """``python -m fluxloop ARGV`` with ``stream`` (stdout or stderr) on a pseudo-terminal, the other on a pipe.

    Returns (exit code, what the terminal showed with CRLF turned back into LF, the piped stream).
    """
    master, slave = pty.openpty()
    on_stdout = stream == "stdout"
    process = subprocess.Popen([sys.executable, "-m", "fluxloop", *argv], stdin=subprocess.DEVNULL, env=env,
                               stdout=slave if on_stdout else subprocess.PIPE,
                               stderr=subprocess.PIPE if on_stdout else slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end of the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    pipe = process.stderr if on_stdout else process.stdout
    assert pipe is not None
    other = pipe.read()
    code = process.wait(timeout=timeout)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
    return code, b"".join(chunks).decode().replace("\r\n", "\n"), other.decode()
