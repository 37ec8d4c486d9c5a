"""``fluxloop upload``: send offline artifacts to the collector over OTLP/HTTP protobuf, never a line twice.

Each artifact line is one OTLP request. Consecutive lines of a file are merged into batches of at most
``--batch-size`` spans (a larger line goes alone) and POSTed gzip-compressed to ``<collector>/v1/traces`` with
the configured headers (``Authorization: Bearer <api_key>`` included), by FluxLoop's OTLP/HTTP client: 429/502/
503/504 answers, resets and timeouts are retried with backoff until ``--timeout`` runs out per batch;
``Retry-After`` (seconds or a date) is honoured.

Delivery state and locking are those of the spool delivery (:mod:`fluxloop_otel_exporter._delivery`), which the
background forwarder shares: ``<artifact>.delivered`` records, per collector, the content keys of the lines it
acknowledged; one delivery runs at a time per folder (an ``flock`` on ``.fluxloop-upload.lock``). A line the
collector refuses for good is set aside in ``quarantine/`` with its reason, counted, and the upload goes on. Only
complete lines are sent; an unterminated last line (a writer mid-write) is left for a later run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from fluxloop._config import resolve_env
from fluxloop._version import __version__
from fluxloop.cli._args import int_at_least, plural, seconds, url
from fluxloop.cli._render import ProgressBar
from fluxloop_otel_exporter import traces_endpoint
from fluxloop_otel_exporter._delivery import (
    LOCK_NAME,
    QUARANTINE_DIR,
    STATE_SUFFIX,
    DeliveryReport,
    FolderLock,
    SpoolDelivery,
)
from fluxloop_otel_exporter._http import OtlpHttpClient
from fluxloop_otel_exporter._redact import redact_url

__all__ = ["LOCK_NAME", "STATE_SUFFIX", "add_arguments", "run"]

NAME = "upload"
HELP = "send offline artifacts to the collector over OTLP/HTTP; what was delivered is never sent again"

_OK, _FAILED = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (f"What each collector acknowledged is recorded in <artifact>{STATE_SUFFIX}, so a second run, "
                     "or a run after an interruption, sends only what is new. Only complete lines are sent. A line "
                     f"the collector refuses for good is set aside in {QUARANTINE_DIR}/ and the upload goes on. "
                     "Exit status: 0 everything sent, 1 a batch failed, lines were unreadable or set aside, 2 usage.")
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
    headers = {"User-Agent": f"fluxloop-upload/{__version__}", **config.export_headers}
    client = OtlpHttpClient(endpoint, headers=headers, compression="gzip")
    progress: list[ProgressBar] = []

    def warn(message: str) -> None:
        for bar in progress:
            bar.close()
        print(f"fluxloop upload: {message}", file=sys.stderr)

    def advance(lines: int, spans: int) -> None:
        for bar in progress:
            bar.update(lines, f"{spans:,} spans sent")

    delivery = SpoolDelivery(directory, client, timeout=args.timeout or config.timeout,
                             batch_size=args.batch_size or config.batch_size, warn=warn, progress=advance)
    result = delivery.report
    lock = FolderLock(directory)
    if not directory.is_dir() or not any(directory.glob("*.jsonl")):
        print(f"fluxloop upload: nothing to upload: no offline artifacts (*.jsonl) in {directory}", file=sys.stderr)
        return _finish(result, args.json)
    try:
        held = lock.acquire()
    except OSError as error:
        print(f"fluxloop upload: error: cannot lock {directory / LOCK_NAME}: {error.strerror or error}",
              file=sys.stderr)
        result.error = f"cannot lock {directory}"
        return _finish(result, args.json)
    if not held:
        print(f"fluxloop upload: error: another `fluxloop upload` is running on {directory} (or a process is "
              "forwarding its spool there); try again when it is done", file=sys.stderr)
        result.error = "another upload is running"
        return _finish(result, args.json)
    try:
        plan = delivery.pending_files()
        bar = ProgressBar(sys.stderr, 1, "uploading")
        if bar.enabled:  # a total for the bar: the complete lines of the files with something new
            bar = ProgressBar(sys.stderr, sum(_count_lines(path) for path, _ in plan), "uploading")
        progress.append(bar)
        delivery.run(plan)
        bar.close()
    except KeyboardInterrupt:
        for bar in progress:
            bar.close()
        print(f"fluxloop upload: interrupted after delivering {result.spans:,} spans (recorded); "
              "run it again to send the rest", file=sys.stderr)
        raise
    finally:
        client.close()
        lock.release()
    return _finish(result, args.json)


def _finish(result: DeliveryReport, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(orjson.dumps({**result.__dict__, "ok": result.ok}).decode() + "\n")
    elif result.requests or result.lines:
        print(f"delivered {plural(result.spans, 'span')} ({plural(result.lines, 'line')}, "
              f"{plural(result.requests, 'request')}) to {redact_url(result.endpoint)}")
        if result.quarantined_lines:
            print(f"set aside {plural(result.quarantined_lines, 'line')} ({plural(result.quarantined_spans, 'span')}) "
                  f"the collector refused: see {QUARANTINE_DIR}/")
    elif result.files and not result.error:
        print(f"nothing new to upload: {result.files_already_delivered:,} of {result.files:,} files already "
              f"delivered to {redact_url(result.endpoint)}")
    return _OK if result.ok else _FAILED


def _count_lines(path: Path) -> int:
    """Complete lines in ``path``, counted in 1 MiB chunks (for the progress bar's total)."""
    count = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                count += chunk.count(b"\n")
    except OSError:
        pass
    return count
