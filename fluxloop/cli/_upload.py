"""``fluxloop upload``: send offline artifacts to the collector over OTLP/HTTP protobuf, never a line twice.

Each artifact line is one OTLP request. Consecutive lines of a file are merged into batches of at most
``--batch-size`` spans (a larger line goes alone) and POSTed gzip-compressed to ``<collector>/v1/traces`` with
the configured headers (``Authorization: Bearer <api_key>`` included). 429/502/503/504 answers and connection
errors are retried with backoff until ``--timeout`` runs out per batch; ``Retry-After`` is honoured.

Delivery state: ``<artifact>.delivered.json`` beside each artifact records, per collector endpoint, the number of
the last line delivered; it is replaced atomically (write, fsync, rename) after every batch the collector
acknowledged. A later run, or a run after an interruption, starts after that line, so every line is sent at
least once and, except in one window, exactly once: a run killed after the collector acknowledged a batch but
before its state was written sends that one batch again (the spans keep their ids).

Live files: artifacts are append-only and each line is written with one ``write``. Only complete lines are
sent; an unterminated last line (a writer mid-write, or one that stopped mid-line) is left for a later run.
A file keeps being uploaded as it grows. One upload runs at a time per folder (an ``flock`` on
``.fluxloop-upload.lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gzip
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
import requests
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from fluxloop._config import resolve_env
from fluxloop._version import __version__
from fluxloop.cli._args import int_at_least, plural, seconds, url
from fluxloop.cli._render import ProgressBar
from fluxloop_otel_exporter import iter_offline_files, read_requests, request_to_protobuf, traces_endpoint

try:
    import fcntl
except ImportError:  # not on Windows: uploads there are not guarded against a concurrent run
    fcntl = None  # type: ignore[assignment]

NAME = "upload"
HELP = "send offline artifacts to the collector over OTLP/HTTP; what was delivered is never sent again"

STATE_SUFFIX = ".delivered.json"
LOCK_NAME = ".fluxloop-upload.lock"
_STATE_VERSION = 1
_MAX_BODY_BYTES = 4 * 1024 * 1024  # merge lines up to this much protobuf per request (a bigger line goes alone)
_RETRYABLE = frozenset({429, 502, 503, 504})
_TRUNCATED = "truncated last line"  # how read_requests words an unterminated last line
_OK, _FAILED = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (f"What each collector acknowledged is recorded in <artifact>{STATE_SUFFIX}, so a second run, "
                     "or a run after an interruption, sends only what is new. Only complete lines are sent. "
                     "Exit status: 0 everything sent, 1 a batch failed or lines were unreadable, 2 usage.")
    parser.add_argument("--dir", metavar="D",
                        help="folder of offline artifacts (default: the configured offline_dir)")
    parser.add_argument("--collector-url", metavar="U", type=url,
                        help="collector base URL or full /v1/traces URL (default: the configured collector_url)")
    parser.add_argument("--batch-size", metavar="N", type=int_at_least(1),
                        help="at most N spans per request (default: the configured batch_size)")
    parser.add_argument("--timeout", metavar="S", type=seconds,
                        help="seconds per batch, retries included (default: the configured timeout)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    config = resolve_env().config
    directory = Path(args.dir or config.offline_dir)
    endpoint = traces_endpoint(args.collector_url or config.collector_url)
    files = iter_offline_files(directory)
    result = UploadResult(endpoint=endpoint, files=len(files))
    if not files:
        print(f"fluxloop upload: nothing to upload: no offline artifacts (*.jsonl) in {directory}", file=sys.stderr)
        return _finish(result, args.json)
    try:
        lock = _lock(directory)
    except OSError as error:
        print(f"fluxloop upload: error: cannot lock {directory / LOCK_NAME}: {error.strerror or error}",
              file=sys.stderr)
        result.error = f"cannot lock {directory}"
        return _finish(result, args.json)
    if lock is None:
        print(f"fluxloop upload: error: another `fluxloop upload` is running on {directory}", file=sys.stderr)
        result.error = "another upload is running"
        return _finish(result, args.json)
    uploader = Uploader(endpoint, config.export_headers, args.timeout or config.timeout,
                        args.batch_size or config.batch_size, result, sys.stderr)
    try:
        uploader.upload(files)
    except KeyboardInterrupt:
        uploader.progress_close()
        print(f"fluxloop upload: interrupted after delivering {result.spans:,} spans (recorded); "
              "run it again to send the rest", file=sys.stderr)
        raise
    finally:
        uploader.close()
        os.close(lock)  # releases the lock
    return _finish(result, args.json)


@dataclass
class UploadResult:
    """What one run did (``--json`` prints it)."""

    endpoint: str
    files: int = 0
    files_already_delivered: int = 0
    requests: int = 0
    lines: int = 0
    spans: int = 0
    malformed_lines: int = 0
    unreadable_files: int = 0
    rejected_spans: int = 0
    pending_lines: int = 0  # unterminated last lines left for a later run
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.error or self.malformed_lines or self.unreadable_files or self.rejected_spans)


def _finish(result: UploadResult, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(orjson.dumps({**result.__dict__, "ok": result.ok}).decode() + "\n")
    elif result.requests or result.lines:
        print(f"delivered {plural(result.spans, 'span')} ({plural(result.lines, 'line')}, "
              f"{plural(result.requests, 'request')}) to {result.endpoint}")
    elif result.files and not result.error:
        print(f"nothing new to upload: {result.files_already_delivered:,} of {result.files:,} files already "
              f"delivered to {result.endpoint}")
    return _OK if result.ok else _FAILED


def _lock(directory: Path) -> int | None:
    """Take the folder's upload lock: the descriptor that holds it, or None when another process holds it."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
    return fd


# --- delivery state ------------------------------------------------------------------------------------------


class StateError(Exception):
    """A state file that exists but cannot be read: its artifact is left alone rather than sent twice."""


@dataclass
class ArtifactState:
    """``<artifact>.delivered.json``: per endpoint, the last line delivered and whether the file is done."""

    path: Path
    artifact: str
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, artifact: Path) -> ArtifactState:
        path = artifact.with_name(artifact.name + STATE_SUFFIX)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path, artifact.name)
        except OSError as error:
            raise StateError(f"cannot read {path}: {error.strerror or error}") from error
        try:
            data = orjson.loads(raw)
            destinations = data["destinations"]
            if data.get("version") != _STATE_VERSION or not isinstance(destinations, dict) or not all(
                    isinstance(v, dict) and isinstance(v.get("line"), int) for v in destinations.values()):
                raise ValueError("unexpected content")
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise StateError(f"{path} is not a valid upload state ({error}); delete it to send "
                             f"{artifact.name} again from its first line") from error
        return cls(path, artifact.name, destinations)

    def of(self, endpoint: str) -> dict[str, Any]:
        return self.destinations.setdefault(endpoint, {"line": 0, "spans": 0, "complete": None})

    def save(self) -> None:
        """Replace the state file atomically, durably: write a temporary file, fsync it, rename it over."""
        data = orjson.dumps({"version": _STATE_VERSION, "artifact": self.artifact,
                             "destinations": self.destinations}, option=orjson.OPT_INDENT_2)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        with contextlib.suppress(OSError, AttributeError):  # make the rename itself durable, where possible
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _stamp(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


# --- sending -------------------------------------------------------------------------------------------------


@dataclass
class _Batch:
    bodies: list[bytes] = field(default_factory=list)
    spans: int = 0
    size: int = 0
    lines: int = 0  # lines in the batch that hold a request (malformed lines are skipped, not counted)
    first_line: int = 0
    last_line: int = 0  # the state may move up to here once the batch is delivered

    def add(self, line: int, body: bytes | None = None, spans: int = 0) -> None:
        self.first_line = self.first_line or line
        self.last_line = line
        if body is not None:
            self.bodies.append(body)
            self.spans += spans
            self.size += len(body)
            self.lines += 1


class Uploader:
    """Sends the files of one folder to one endpoint, recording each acknowledged batch in the state files."""

    def __init__(self, endpoint: str, headers: dict[str, str], timeout: float, batch_size: int,
                 result: UploadResult, err: TextIO) -> None:
        self._endpoint = endpoint
        self._headers = {"User-Agent": f"fluxloop-upload/{__version__}", **headers,
                         "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
        self._timeout = timeout
        self._batch_size = batch_size
        self._result = result
        self._err = err
        self._session = requests.Session()
        self._progress: ProgressBar | None = None
        self._lines_done = 0

    def upload(self, files: list[Path]) -> None:
        plan: list[tuple[Path, ArtifactState]] = []
        for path in files:
            try:
                state = ArtifactState.load(path)
            except StateError as error:
                self._warn(f"error: {error}")
                self._result.unreadable_files += 1
                continue
            complete = state.of(self._endpoint).get("complete")
            try:
                if complete is not None and complete == _stamp(path):
                    self._result.files_already_delivered += 1
                    continue
            except OSError:
                pass  # vanished or unreadable: read_requests reports it below
            plan.append((path, state))
        self._progress = ProgressBar(self._err, 1, "uploading")
        if self._progress.enabled:  # a total for the bar: count the complete lines not yet delivered
            total = sum(max(_count_lines(path) - state.of(self._endpoint)["line"], 0) for path, state in plan)
            self._progress = ProgressBar(self._err, total, "uploading")
        for path, state in plan:
            if not self._upload_file(path, state):
                break
        self.progress_close()

    def progress_close(self) -> None:
        if self._progress is not None:
            self._progress.close()

    def close(self) -> None:
        self._session.close()

    def _upload_file(self, path: Path, state: ArtifactState) -> bool:
        """Send the undelivered lines of ``path``; False when the run must stop (the collector failed)."""
        done = state.of(self._endpoint)
        try:
            stamp = _stamp(path)
        except OSError:
            stamp = None
        batch = _Batch()
        pending_tail = False
        for number, request, error in read_requests(path):
            if number and number <= done["line"]:
                continue
            if request is None:
                if number == 0:  # the file could not be opened
                    self._warn(f"error: {error}")
                    self._result.unreadable_files += 1
                    return True
                if error and error.startswith(_TRUNCATED):  # only ever the last line
                    pending_tail = True
                    self._result.pending_lines += 1
                    self._warn(f"note: {path}:{number}: incomplete last line (being written, or its writer "
                               "stopped mid-line): left for a later run")
                    break
                self._skip_malformed(path, number, error, batch)
                continue
            try:
                body = request_to_protobuf(request)
            except ValueError as problem:
                self._skip_malformed(path, number, str(problem), batch)
                continue
            spans = _span_count(request)
            if batch.bodies and (batch.spans + spans > self._batch_size or batch.size + len(body) > _MAX_BODY_BYTES):
                if not self._deliver(path, state, batch):
                    return False
                batch = _Batch()
            batch.add(number, body, spans)
        if batch.last_line and not self._deliver(path, state, batch):
            return False
        with contextlib.suppress(OSError):
            if not pending_tail and stamp is not None and _stamp(path) == stamp:  # nothing appended meanwhile
                done["complete"] = stamp
                state.save()
        return True

    def _skip_malformed(self, path: Path, number: int, error: str | None, batch: _Batch) -> None:
        self._warn(f"error: {path}:{number}: {error}; line skipped")
        self._result.malformed_lines += 1
        batch.add(number)  # recorded as handled once the lines before it are delivered

    def _deliver(self, path: Path, state: ArtifactState, batch: _Batch) -> bool:
        if batch.bodies:
            # Serialized protobuf messages concatenate into one message whose repeated fields are joined:
            # the bodies of several ExportTraceServiceRequests, joined, are one request with all their spans.
            problem, rejected = self._post(b"".join(batch.bodies))
            if problem is not None:
                where = f"{path}:{batch.first_line}"
                self._result.error = f"{problem} (sending {where})"
                self.progress_close()
                self._warn(f"error: {self._endpoint}: {problem}; stopped at {where}: it and the lines after it "
                           "stay for the next run")
                return False
            if rejected:
                self._result.rejected_spans += rejected
            self._result.requests += 1
        done = state.of(self._endpoint)
        done["line"] = batch.last_line
        done["spans"] = int(done.get("spans") or 0) + batch.spans
        done["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        try:
            state.save()
        except OSError as error:  # delivered but not recorded: the next run sends this batch again
            self._result.error = f"cannot write {state.path}: {error.strerror or error}"
            self._warn(f"error: {self._result.error}; stopped (the last batch will be sent again next time)")
            return False
        self._result.lines += batch.lines
        self._result.spans += batch.spans
        self._lines_done += batch.lines
        if self._progress is not None:
            self._progress.update(self._lines_done, f"{self._result.spans:,} spans sent")
        return True

    def _post(self, body: bytes) -> tuple[str | None, int]:
        """POST one request, retrying what may pass later; (None, rejected spans) or (why it failed, 0)."""
        data = gzip.compress(body, compresslevel=1)  # level 1: most of the saving for a fraction of the CPU
        deadline = time.monotonic() + self._timeout
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                response = self._session.post(self._endpoint, data=data, headers=self._headers,
                                              timeout=max(deadline - time.monotonic(), 0.01))
            except requests.RequestException as error:
                problem, retryable = _describe(error), True
            else:
                if 200 <= response.status_code < 300:
                    return None, self._rejected(response)
                snippet = " ".join(response.text[:200].split())
                problem = f"HTTP {response.status_code} {response.reason or ''}".strip() + (f": {snippet}"
                                                                                            if snippet else "")
                retryable = response.status_code in _RETRYABLE
                wait = _retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = min(0.5 * 2 ** (attempt - 1), 8.0) * random.uniform(0.8, 1.2)
            if not retryable or time.monotonic() + wait >= deadline:
                return (f"{problem} after {attempt} attempts" if attempt > 1 else problem), 0
            time.sleep(wait)  # backoff between attempts; Ctrl-C interrupts it

    def _rejected(self, response: requests.Response) -> int:
        """Spans the collector refused in a partial success (reported; resending would not help)."""
        if "protobuf" not in response.headers.get("Content-Type", "") or not response.content:
            return 0
        try:
            partial = ExportTraceServiceResponse.FromString(response.content).partial_success
        except DecodeError:
            return 0
        if partial.rejected_spans:
            self._warn(f"error: the collector rejected {partial.rejected_spans} spans: "
                       f"{partial.error_message or 'no reason given'}")
        return int(partial.rejected_spans)

    def _warn(self, message: str) -> None:
        if self._progress is not None:
            self._progress.close()
        print(f"fluxloop upload: {message}", file=self._err)


def _span_count(request: dict[str, Any]) -> int:
    return sum(len(ss.get("spans") or ()) for rs in request.get("resourceSpans") or ()
               for ss in (rs.get("scopeSpans") or ()) if isinstance(ss, dict))


def _count_lines(path: Path) -> int:
    """Complete lines in ``path``, counted in 1 MiB chunks (for the progress bar's total)."""
    count = 0
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None  # an HTTP date: use the backoff instead


def _describe(error: BaseException) -> str:
    """The innermost cause of a transport error (``Connection refused`` rather than three wrapped messages)."""
    seen: set[int] = set()
    current: BaseException | None = error
    innermost = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        innermost = current
        nested = getattr(current, "reason", None) or (current.args[0] if current.args else None)
        current = nested if isinstance(nested, BaseException) else current.__cause__ or current.__context__
    if isinstance(innermost, OSError) and innermost.strerror:
        return innermost.strerror
    return str(innermost) or type(innermost).__name__
