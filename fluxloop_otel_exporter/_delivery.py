"""Spool delivery: spooled lines to the collector exactly once, shared by ``fluxloop upload`` and the forwarder.

Delivery state is kept per artifact in ``<artifact>.delivered``, an append-only journal of JSON lines, one per
acknowledged batch: ``{"v": 2, "to": <endpoint id>, "keys": [<line keys>], "spans": N}`` (``"q": true`` for lines
set aside). A line's key is a hash of its content, so removing or editing lines by hand never makes a run skip an
undelivered one. Each entry is written and fsync'd after the collector acknowledged the batch; a run killed between
the two sends that one batch again (the spans keep their ids). A state of the previous format
(``<artifact>.delivered.json``, line numbers) is read once and converted.

One delivery runs at a time per folder: both the CLI and the background forwarder take an ``flock`` on
``.fluxloop-upload.lock`` in the folder first (:class:`FolderLock`), which makes the two exactly-once together.

A line the collector rejects for good (a 4xx other than 408/429; 413 for a line alone) is quarantined: copied to
``quarantine/<artifact>`` with the reason in ``quarantine/<artifact>.reasons``, recorded, counted, and delivery goes
on with the rest. A failure that may pass (no answer, 5xx, retries out of time) stops the run; the rest stays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from fluxloop_otel_exporter._http import Outcome, OtlpHttpClient, SendOutcome
from fluxloop_otel_exporter._otlp_json_proto import request_to_protobuf
from fluxloop_otel_exporter._redact import safe_reason
from fluxloop_otel_exporter._spool_format import iter_spool_files, line_key, parse_request, raw_lines, request_spans

try:
    import fcntl
except ImportError:  # not on Windows: deliveries there are not guarded against a concurrent run
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "QUARANTINE_DIR", "STATE_SUFFIX", "DeliveryReport", "FolderLock", "SpoolDelivery",
           "StateError", "endpoint_id"]

STATE_SUFFIX = ".delivered"
LEGACY_STATE_SUFFIX = ".delivered.json"
LOCK_NAME = ".fluxloop-upload.lock"
QUARANTINE_DIR = "quarantine"
MAX_BODY_BYTES = 4 * 1024 * 1024  # lines are merged up to this much protobuf per request (a bigger line goes alone)
_VERSION = 2


def endpoint_id(endpoint: str) -> str:
    """A short stable id of a traces URL (the journal never stores the URL, which may hold credentials)."""
    return hashlib.blake2b(endpoint.encode(), digest_size=8).hexdigest()


class FolderLock:
    """The folder's delivery lock (``flock`` on ``.fluxloop-upload.lock``); ``acquire`` never blocks."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True once held; False when another process (or this one) holds it. Raises OSError if it cannot open."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the flock


class StateError(Exception):
    """A state file that exists but cannot be read: its artifact is left alone rather than sent twice."""


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    endpoint: str
    files: int = 0
    files_already_delivered: int = 0
    requests: int = 0
    lines: int = 0
    spans: int = 0
    malformed_lines: int = 0
    unreadable_files: int = 0
    rejected_spans: int = 0  # refused by the collector in a partial success
    quarantined_lines: int = 0
    quarantined_spans: int = 0
    pending_lines: int = 0  # unterminated last lines left for a later run
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.error or self.malformed_lines or self.unreadable_files or self.rejected_spans
                    or self.quarantined_lines)


@dataclass
class _Journal:
    path: Path
    to: str
    done: set[str] = field(default_factory=set)
    complete: list[int] | None = None

    @classmethod
    def load(cls, artifact: Path, endpoint: str) -> _Journal:
        path = artifact.with_name(artifact.name + STATE_SUFFIX)
        journal = cls(path, endpoint_id(endpoint))
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return journal
        except OSError as error:
            raise StateError(f"cannot read {path}: {error.strerror or error}") from error
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
                if not isinstance(entry, dict) or entry.get("v") != _VERSION:
                    raise ValueError("unexpected entry")
            except (orjson.JSONDecodeError, ValueError) as error:
                raise StateError(f"{path} is not a valid upload state ({error}); delete it to send "
                                 f"{artifact.name} again from its first line") from error
            if entry.get("to") != journal.to:
                continue
            if "complete" in entry:
                journal.complete = entry["complete"]
            else:
                journal.done.update(entry.get("keys") or ())
                journal.complete = None
        return journal

    def record(self, **entry: Any) -> None:
        line = orjson.dumps({"v": _VERSION, "to": self.to, **entry,
                             "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def _legacy_line(artifact: Path, endpoint: str) -> int:
    """The last line number a state of the previous format recorded as delivered to ``endpoint`` (0: none)."""
    path = artifact.with_name(artifact.name + LEGACY_STATE_SUFFIX)
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return 0
    except (OSError, orjson.JSONDecodeError) as error:
        raise StateError(f"{path} is not a valid upload state ({error}); delete it to send "
                         f"{artifact.name} again from its first line") from error
    try:
        return int(data["destinations"][endpoint]["line"])
    except (KeyError, TypeError, ValueError):
        return 0


def _stamp(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


@dataclass(frozen=True)
class _Line:
    """A spool line on its way: where it is, its content key, its span count once converted."""

    number: int
    raw: bytes
    key: str
    spans: int = 0
    tail: bool = False  # an unterminated last line, left for a later run


def _convert(raw: bytes) -> tuple[bytes, int] | str:
    """``(protobuf body, span count)`` of one spool line, or the reason it is not a valid request."""
    try:
        request = parse_request(raw)
    except orjson.JSONDecodeError as error:
        return f"invalid JSON: {error}"
    except ValueError as problem:
        return str(problem)
    try:
        body = request_to_protobuf(request)
    except ValueError as problem:
        return str(problem)
    return body, sum(1 for _ in request_spans(request))


def _in_progress(raw: bytes) -> bool:
    """Whether an unterminated last line looks like one still being written (or cut short by its writer)."""
    try:
        parse_request(raw)
    except orjson.JSONDecodeError:
        return True
    except ValueError:
        return False
    return True


@dataclass
class _Batch:
    lines: list[_Line] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    spans: int = 0
    size: int = 0


class SpoolDelivery:
    """Sends the undelivered complete lines of a folder's artifacts to ``client``'s endpoint (caller holds the lock).

    ``warn`` receives each problem (already free of credentials); ``progress(lines, spans)`` is called after each
    acknowledged batch; ``pace(spans)`` after each request may wait (the forwarder's rate bound) and returns False
    to stop the run early.
    """

    def __init__(self, directory: Path, client: OtlpHttpClient, *, timeout: float, batch_size: int,
                 warn: Callable[[str], None], progress: Callable[[int, int], None] | None = None,
                 pace: Callable[[int], bool] | None = None) -> None:
        self.directory = directory
        self.client = client
        self.timeout = timeout
        self.batch_size = batch_size
        self.warn = warn
        self.progress = progress
        self.pace = pace
        self.report = DeliveryReport(endpoint=client.url_shown)
        self._stopped = False

    def pending_files(self) -> list[tuple[Path, _Journal]]:
        """The artifacts with something new for this endpoint, with their journals."""
        files = iter_spool_files(self.directory)
        self.report.files = len(files)
        plan = []
        for path in files:
            try:
                journal = _Journal.load(path, self.client.url)
            except StateError as error:
                self.warn(f"error: {error}")
                self.report.unreadable_files += 1
                continue
            with contextlib.suppress(OSError):
                if journal.complete is not None and journal.complete == _stamp(path):
                    self.report.files_already_delivered += 1
                    continue
            plan.append((path, journal))
        return plan

    def run(self, plan: list[tuple[Path, _Journal]] | None = None) -> DeliveryReport:
        for path, journal in self.pending_files() if plan is None else plan:
            if not self._deliver_file(path, journal):
                break
        return self.report

    # -- one file ---------------------------------------------------------------------------------------------
    def _deliver_file(self, path: Path, journal: _Journal) -> bool:
        """Send the new lines of ``path``; False when the run must stop."""
        try:
            stamp: list[int] | None = _stamp(path)
            legacy = _legacy_line(path, self.client.url)
        except StateError as error:
            self.warn(f"error: {error}")
            self.report.unreadable_files += 1
            return True
        except OSError:
            stamp, legacy = None, 0
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as error:
            self.warn(f"error: cannot open {path}: {error.strerror or error}")
            self.report.unreadable_files += 1
            return True
        batch = _Batch()
        pending_tail = False
        migrated: list[str] = []
        with handle:
            for line in self._new_lines(handle, journal, legacy, migrated):
                if line.tail:
                    pending_tail = True
                    self.report.pending_lines += 1
                    self.warn(f"note: {path}:{line.number}: incomplete last line (being written, or its writer "
                              "stopped mid-line): left for a later run")
                    break
                converted = _convert(line.raw)
                if not isinstance(converted, tuple):
                    self.warn(f"error: {path}:{line.number}: {converted}; line skipped")
                    self.report.malformed_lines += 1
                    self._record(journal, [line], spans=0, quarantined=False)
                    continue
                body, spans = converted
                line = dataclasses.replace(line, spans=spans)
                if batch.lines and (batch.spans + spans > self.batch_size or batch.size + len(body) > MAX_BODY_BYTES):
                    if not self._deliver(path, journal, batch):
                        return False
                    batch = _Batch()
                batch.lines.append(line)
                batch.bodies.append(body)
                batch.spans += spans
                batch.size += len(body)
        if migrated:
            journal.record(keys=migrated, spans=0, migrated=True)
        if batch.lines and not self._deliver(path, journal, batch):
            return False
        with contextlib.suppress(OSError):
            if not pending_tail and stamp is not None and _stamp(path) == stamp:  # nothing appended meanwhile
                journal.record(complete=stamp)
                journal.complete = stamp
        return not self._stopped

    @staticmethod
    def _new_lines(handle: BinaryIO, journal: _Journal, legacy: int,
                   migrated: list[str]) -> Iterator[_Line]:
        """The lines to send, in order, then an unterminated tail if any. Lines already delivered are left out
        before they are parsed: a file read again (growing, or after a stop) costs a hash per old line."""
        for number, raw, complete in raw_lines(handle):
            if not complete and _in_progress(raw):
                yield _Line(number, raw, "", tail=True)
                return
            key = line_key(raw)
            if key in journal.done:
                continue
            if number <= legacy:  # delivered according to the previous state format
                migrated.append(key)
                journal.done.add(key)
                continue
            yield _Line(number, raw, key)

    def _deliver(self, path: Path, journal: _Journal, batch: _Batch) -> bool:
        # Serialized protobuf messages concatenate into one message whose repeated fields are joined: the bodies
        # of several ExportTraceServiceRequests, joined, are one request with all their spans.
        result = self.client.send(b"".join(batch.bodies), self.timeout)
        if result.outcome is Outcome.DELIVERED:
            self._delivered(journal, batch.lines, batch.spans, result)
        elif result.outcome in (Outcome.REJECTED, Outcome.TOO_LARGE) and len(batch.lines) > 1:
            # Which line the collector refuses is unknown: each goes alone, and only those refused alone are set aside.
            for line, body in zip(batch.lines, batch.bodies):
                single = self.client.send(body, self.timeout)
                if not self._settle_single(path, journal, line, single):
                    return False
        elif not self._settle_single(path, journal, batch.lines[0], result):
            return False
        if self.pace is not None and not self.pace(batch.spans):
            self._stopped = True
            return False
        return True

    def _settle_single(self, path: Path, journal: _Journal, line: _Line, result: SendOutcome) -> bool:
        if result.outcome is Outcome.DELIVERED:
            self._delivered(journal, [line], line.spans, result)
            return True
        if result.outcome in (Outcome.REJECTED, Outcome.TOO_LARGE):
            self._quarantine(path, journal, line, result.reason)
            return True
        where = f"{path}:{line.number}"
        self.report.error = f"{result.reason} (sending {where})"
        self.warn(f"error: {self.client.url_shown}: {result.reason}; stopped at {where}: it and the lines after it "
                  "stay for the next run")
        return False

    def _delivered(self, journal: _Journal, lines: list[_Line], spans: int, result: SendOutcome) -> None:
        try:
            self._record(journal, lines, spans=spans, quarantined=False)
        except OSError as error:  # delivered but not recorded: the next run sends this batch again
            self.report.error = f"cannot write {journal.path}: {error.strerror or error}"
            self.warn(f"error: {self.report.error} (the last batch will be sent again next time)")
            self._stopped = True
            return
        self.report.requests += 1
        self.report.lines += len(lines)
        self.report.spans += spans
        self.report.rejected_spans += self._partially_rejected(result.body)
        if self.progress is not None:
            self.progress(self.report.lines, self.report.spans)

    def _record(self, journal: _Journal, lines: list[_Line], *, spans: int, quarantined: bool) -> None:
        keys = [line.key for line in lines]
        journal.record(keys=keys, spans=spans, **({"q": True} if quarantined else {}))
        journal.done.update(keys)

    def _quarantine(self, path: Path, journal: _Journal, line: _Line, reason: str) -> None:
        folder = self.directory / QUARANTINE_DIR
        folder.mkdir(exist_ok=True)
        with open(folder / path.name, "ab") as handle:
            handle.write(line.raw + b"\n")
        with open(folder / f"{path.name}.reasons", "ab") as handle:
            handle.write(orjson.dumps({"line": line.number, "key": line.key, "reason": reason}) + b"\n")
        self._record(journal, [line], spans=0, quarantined=True)
        spans = line.spans
        self.report.quarantined_lines += 1
        self.report.quarantined_spans += spans
        self.warn(f"error: {path}:{line.number}: the collector refused it ({reason}); {spans} spans set aside in "
                  f"{folder / path.name}; going on with the rest")

    def _partially_rejected(self, body: bytes) -> int:
        """Spans the collector refused in a partial success (reported; resending would not help)."""
        if not body:
            return 0
        try:
            partial = ExportTraceServiceResponse.FromString(body).partial_success
        except DecodeError:
            return 0
        if partial.rejected_spans:
            self.warn(f"error: the collector rejected {partial.rejected_spans} spans: "
                      f"{safe_reason(partial.error_message) or 'no reason given'}")
        return int(partial.rejected_spans)
