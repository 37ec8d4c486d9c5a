"""Backend server processes for the e2e tests: locate the executable, launch on free loopback ports, wait, stop.

Each server runs in a session of its own (``start_new_session``), so stopping it signals the whole process
group: MLflow's ``server`` command, for one, runs uvicorn as a child process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_START_TIMEOUT = 120.0
STOP_GRACE = 15.0
_POLL_INTERVAL = 0.1
# Variables of the test process that must not reach a backend: its own OTel/FluxLoop settings, and the SDK's
# interpreter paths (each backend runs from its own venv).
_PARENT_ENV_PREFIXES = ("OTEL_", "FLUXLOOP_", "PHOENIX_", "MLFLOW_")
_PARENT_ENV_NAMES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


@dataclass(frozen=True)
class BackendSpec:
    """How to find, launch and probe one backend."""

    name: str
    env_var: str
    default_executable: Path
    ports: int
    argv: Callable[[Path, Sequence[int], Path], list[str]]
    env: Callable[[Sequence[int], Path], dict[str, str]]
    health_path: str

    def executable(self, environ: Mapping[str, str]) -> Path:
        """The executable ``environ`` names, else the default; ``FileNotFoundError`` saying how to install it."""
        configured = environ.get(self.env_var)
        path = Path(configured) if configured else self.default_executable
        if not (path.is_file() and os.access(path, os.X_OK)):
            source = f"${self.env_var}" if configured else f"the default path (${self.env_var} is not set)"
            raise FileNotFoundError(
                f"{self.name} backend executable not found at {path} ({source}). "
                f"Run `make backends` to install the e2e backends, or set FLUXLOOP_E2E=0 to deselect the "
                f"end-to-end tests."
            )
        return path


@dataclass
class ServerProcess:
    """One launched backend; ``wait_ready`` before use, ``stop`` always."""

    spec: BackendSpec
    process: subprocess.Popen[bytes]
    ports: tuple[int, ...]
    workdir: Path
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    ready_after: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.ports[0]}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> None:
        """Poll the health endpoint until it answers 200; raise ``RuntimeError`` on exit or after ``timeout``."""
        if self.ready_after is not None:
            return
        deadline = time.monotonic() + timeout
        url = self.base_url + self.spec.health_path
        last_error = "no answer yet"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        self.ready_after = time.monotonic() - self.started_at
                        return
                    last_error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{self.spec.name} did not become ready at {url} within {timeout:.0f} s ({last_error}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:  # waiting on the process doubles as the poll interval and notices an early exit
                code = self.process.wait(timeout=_POLL_INTERVAL)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"{self.spec.name} exited with code {code} before it was ready; "
                               f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after ``grace`` seconds; reap the leader."""
        pgid = self.process.pid  # the leader of its own session, so its pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Children (uvicorn workers) may outlive the leader; the group id stays reserved while any member lives.
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)  # polling the group with a deadline; there is nothing to wait on
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct loopback ports that were free a moment ago (held together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def child_env(environ: Mapping[str, str], extra: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """The environment for a backend: ``environ`` minus settings meant for the SDK, HOME inside ``workdir``."""
    env = {
        key: value
        for key, value in environ.items()
        if not key.startswith(_PARENT_ENV_PREFIXES) and key not in _PARENT_ENV_NAMES
    }
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env.update({"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def launch(spec: BackendSpec, workdir: Path, environ: Mapping[str, str]) -> ServerProcess:
    """Start ``spec`` on fresh ports with all its files under ``workdir``; does not wait for readiness.

    ``environ`` is the test process's environment as it was at start-up: test fixtures may clear ``FLUXLOOP_*``
    variables (``FLUXLOOP_E2E_*`` included) before a backend is first needed.
    """
    executable = spec.executable(environ)
    workdir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(spec.ports)
    log_path = workdir / f"{spec.name}.log"
    argv = spec.argv(executable, ports, workdir)
    setpriv = shutil.which("setpriv")
    # util-linux: the server gets SIGTERM if pytest dies without running its teardown. The signal follows the
    # thread that forked, so launch only from pytest's main thread (fixtures run there).
    if setpriv:
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=child_env(environ, spec.env(ports, workdir), workdir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(spec=spec, process=process, ports=ports, workdir=workdir, log_path=log_path)


def start_timeout(environ: Mapping[str, str]) -> float:
    """Seconds a backend may take to become ready (``FLUXLOOP_E2E_START_TIMEOUT``, default 120)."""
    raw = environ.get("FLUXLOOP_E2E_START_TIMEOUT", "")
    try:
        return float(raw) if raw else DEFAULT_START_TIMEOUT
    except ValueError:
        return DEFAULT_START_TIMEOUT


PHOENIX = BackendSpec(
    name="phoenix",
    env_var="FLUXLOOP_E2E_PHOENIX",
    default_executable=REPO_ROOT / ".cache/backends/phoenix/venv/bin/phoenix",
    ports=2,
    argv=lambda exe, ports, workdir: [str(exe), "serve"],
    env=lambda ports, workdir: {
        "PHOENIX_WORKING_DIR": str(workdir / "data"),
        "PHOENIX_HOST": HOST,
        "PHOENIX_PORT": str(ports[0]),
        "PHOENIX_GRPC_PORT": str(ports[1]),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    },
    health_path="/healthz",
)

MLFLOW = BackendSpec(
    name="mlflow",
    env_var="FLUXLOOP_E2E_MLFLOW",
    default_executable=REPO_ROOT / ".cache/backends/mlflow/venv/bin/mlflow",
    ports=1,
    argv=lambda exe, ports, workdir: [
        str(exe), "server",
        "--host", HOST,
        "--port", str(ports[0]),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", str(workdir / "artifacts"),
    ],
    env=lambda ports, workdir: {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    },
    health_path="/health",
)

SPECS: dict[str, BackendSpec] = {spec.name: spec for spec in (PHOENIX, MLFLOW)}
