"""Tools of the reliability suite: collectors on 127.0.0.1, spans read back from disk and from the wire, children.

Everything here is real: HTTP servers on loopback sockets (the exporter tests' :class:`OtlpSink`), OTLP/JSON files
read with FluxLoop's own reader, and Python child processes whose output is read with a deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter._otlp_sink import OtlpSink

import fluxloop
from fluxloop_otel_exporter._spool_format import iter_spool_files, read_lines

__all__ = [
    "REPO",
    "Child",
    "Forks",
    "LateCollector",
    "OtlpSink",
    "Span",
    "StatsSince",
    "assert_each_once",
    "child_env",
    "delivered_spans",
    "offline_spans",
    "pace",
    "refused_url",
    "strict_json",
]

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
# Slack for the few wall-clock bounds that are the point (exit within timeout + 1 s): how late a process or thread
# may run on a loaded 2-core machine (two busy loops and other suites beside it), so a slow machine never fails them.
LOADED_MARGIN = 3.0


# --- spans read back --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One span as it left the process (from an offline file or a request the sink received)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    attributes: dict[str, Any] = field(hash=False, compare=False)
    status_code: int = 0
    status_message: str = ""
    events: tuple[dict[str, Any], ...] = field(default=(), hash=False, compare=False)


def offline_spans(directory: str | os.PathLike[str]) -> list[Span]:
    """Every span in the ``.jsonl`` artifacts of ``directory`` (the spool format's typed reader); a line that is
    not a whole request fails the test."""
    spans = []
    for path in iter_spool_files(directory):
        for line in read_lines(path):
            assert line.error is None, f"{path}:{line.number}: {line.error}"
            for s in line.spans():
                spans.append(Span(s.trace_id, s.span_id, s.parent_span_id, s.name, s.attributes, s.status_code,
                                  s.status_message,
                                  tuple({"name": e["name"], "attributes": e["attributes"]} for e in s.events)))
    return spans


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def delivered_spans(sink: OtlpSink) -> list[Span]:
    """Every span of every request the sink accepted (answered 200), in arrival order, duplicates included."""
    spans = []
    for attempt in sink.delivered():
        for rs in attempt.request.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(Span(
                        s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex() or None, s.name,
                        {kv.key: _pb_value(kv.value) for kv in s.attributes}, s.status.code, s.status.message,
                        tuple({"name": e.name, "attributes": {kv.key: _pb_value(kv.value) for kv in e.attributes}}
                              for e in s.events),
                    ))
    return spans


def assert_each_once(spans: Iterable[Span]) -> dict[str, Span]:
    """The spans by id, asserting that no span id occurs twice."""
    spans = list(spans)
    twice = [sid for sid, n in Counter(s.span_id for s in spans).items() if n > 1]
    assert not twice, f"{len(twice)} span(s) seen more than once, e.g. {twice[:3]}"
    return {s.span_id: s for s in spans}


def strict_json(text: str | bytes) -> Any:
    """Parse ``text`` as standard JSON: NaN, Infinity and other non-standard constants fail."""

    def reject(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


# --- collectors ---------------------------------------------------------------------------------------------------


def refused_url() -> str:
    """A loopback URL whose port refuses connections (bound, then closed: nothing listens)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


class LateCollector:
    """An OTLP sink whose port refuses connections until :meth:`up` starts the server on that same port.

    The collector that was down and comes back at the same address, as a restarted collector does.
    """

    def __init__(self) -> None:
        self.sink = OtlpSink()
        self.port: int = self.sink.server.server_address[1]
        self._server_class = type(self.sink.server)
        self._handler = self.sink.server.RequestHandlerClass
        self.sink.close()  # nothing listens now: connections are refused
        self.is_up = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        server = self._server_class(("127.0.0.1", self.port), self._handler)
        self.sink.server = server
        self.sink.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                            daemon=True)
        self.sink.thread.start()
        self.is_up = True

    def close(self) -> None:
        if self.is_up:
            self.is_up = False
            self.sink.close()


# --- child processes ----------------------------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment a child gets: no FLUXLOOP_/OTEL_ settings from outside, this repo and tests importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXLOOP_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS)])
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


class Child:
    """A Python child process running ``script``; stdout is read line by line with deadlines, stderr goes to a file.

    It runs in its own process group, so :meth:`kill` also ends any process it forked.
    """

    def __init__(self, script: str, args: list[str], env: dict[str, str], cwd: Path, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 (closed in kill/wait)
        self.process = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=cwd,
                                        start_new_session=True)
        self._buffer = b""
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """The next stdout line starting with ``prefix`` (without it); AssertionError after ``timeout`` seconds."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {prefix!r} line within {timeout} s; stdout {self.lines[-5:]}; "
                                     f"stderr:\n{self.stderr()[-3000:]}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"child exited (code {self.process.wait(5)}) before {prefix!r}; "
                                         f"stdout {self.lines[-5:]}; stderr:\n{self.stderr()[-3000:]}")
                self._buffer += chunk

    def expect_json(self, prefix: str, timeout: float = 30.0) -> Any:
        return json.loads(self.expect(prefix, timeout))

    def wait(self, timeout: float) -> int:
        """The exit code (negative: killed by that signal); AssertionError when it runs past ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"child still running after {timeout} s; stderr:\n{self.stderr()[-3000:]}") \
                from None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """Kill the child and everything in its process group (idempotent); close the pipes."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self._stderr.close()


class StatsSince:
    """``fluxloop.get_stats()`` counted from this object's creation (the counters run since process start)."""

    def __init__(self) -> None:
        self.base = fluxloop.get_stats()

    def __call__(self) -> dict[str, int]:
        now = fluxloop.get_stats()
        return {key: value if key == "queued" else value - self.base.get(key, 0) for key, value in now.items()}


_PACE_CATCH_UP = 0.01  # seconds of calls a late producer may make up in a burst


def pace(rate: float, count: int, work: Callable[[int], Any]) -> float:
    """Call ``work(i)`` ``count`` times at ``rate`` calls per second at most (sleeping only to pace); the elapsed
    time. A producer that fell behind (a busy machine did not run it) goes on at ``rate`` from where it is, making
    up at most ``_PACE_CATCH_UP`` seconds of calls: an unbounded catch-up burst would outrun any export worker and
    make a test depend on how busy the machine was."""
    start = time.monotonic()
    interval = 1.0 / rate
    due = start
    for i in range(count):
        work(i)
        due += interval
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif due < now - _PACE_CATCH_UP:
            due = now - _PACE_CATCH_UP
    return time.monotonic() - start


class Forks:
    """Children made with ``os.fork`` from this (pytest) process: each runs a body, then leaves with ``os._exit``
    (0 when the body returned True), never back into pytest. Leaving the ``with`` block kills any child still
    running, so a deadlocked child never outlives its test."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def __enter__(self) -> Forks:
        return self

    def fork(self, body: Callable[[], bool]) -> int:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if body() else 2
            finally:
                os._exit(code)
        self.pids.append(pid)
        return pid

    def wait_all(self, timeout: float) -> list[int]:
        """Exit codes, in fork order; AssertionError naming the children still running after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        codes: dict[int, int] = {}
        while len(codes) < len(self.pids):
            for pid in self.pids:
                if pid not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[pid] = os.waitstatus_to_exitcode(status)
            if len(codes) < len(self.pids):
                if time.monotonic() > deadline:
                    hung = [pid for pid in self.pids if pid not in codes]
                    total, self.pids = len(self.pids), hung  # the hung ones are killed on leaving the with block
                    raise AssertionError(f"{len(hung)} of {total} forked children still running after "
                                         f"{timeout} s (deadlock)")
                time.sleep(0.01)
        order, self.pids = self.pids, []
        return [codes[pid] for pid in order]

    def __exit__(self, *exc: object) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pids = []
