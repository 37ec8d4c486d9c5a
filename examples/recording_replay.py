"""Record real calls of the README's MessageHandler, replay them, and use the recording as a regression test.

The loop: record in staging, save the outcomes once with code you trust, then replay and compare in CI.
Runs offline (no collector; traces go to a temporary directory):

    python examples/recording_replay.py

Run it as a module (``python -m examples.recording_replay`` from the repository root) and the recording can
also be replayed from the command line, in another process:

    fluxloop replay <file> --save-outcomes      # once: <file>.outcomes.jsonl beside the recording
    fluxloop replay <file> --compare --junit report.xml   # in CI: exit 1 when any call's outcome changed
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict

import fluxloop
from fluxloop.replay import compare_file, replay_file, save_outcomes


class MessageCollector:
    """A send callback that keeps what it was sent (recorded as ``<builtin:collector.send>``)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(message)


class ErrorCollector:
    """An error callback that keeps what it was sent (recorded as ``<builtin:collector.error>``)."""

    def __init__(self) -> None:
        self.errors: list[Any] = []

    async def __call__(self, error: Any) -> None:
        self.errors.append(error)


#: How replies end. Changing it stands for changing the handler's code between two releases. (An environment
#: variable, so the copy of this module that replay imports under -m sees the change too.)
REPLY_END = "EXAMPLE_REPLY_END"


class MessageHandler:
    @fluxloop.agent(name="message_handler")
    async def handle_message(
        self,
        connection_id: str,
        data: Dict[str, Any],
        user_connection: Dict[str, Any],
        send_message_callback: Callable,
        send_error_callback: Callable,
    ) -> None:
        # Record all arguments for later replay, as in the README. (The @agent call alone would record them too;
        # this explicit record replaces that one, so each call is recorded once.)
        fluxloop.record_call_args(
            target=f"{__name__}:MessageHandler.handle_message",  # "__main__" becomes the module's name under -m
            connection_id=connection_id,
            data=data,
            user_connection=user_connection,
            send_message_callback=send_message_callback,
            send_error_callback=send_error_callback,
        )
        content = data.get("content")
        if not content:
            await send_error_callback({"connection_id": connection_id, "error": "empty message"})
            return
        await send_message_callback({"connection_id": connection_id, "user": user_connection.get("user_id"),
                                     "reply": content.upper() + os.environ.get(REPLY_END, "")})


async def serve(handler: MessageHandler) -> list[tuple[list[Any], list[Any]]]:
    """Three "real" calls, as a websocket server would make them; what each call sent, in order."""
    sent = []
    for connection_id, data in (("ws-1", {"content": "hello"}), ("ws-2", {"content": "how are you?"}),
                                ("ws-3", {"content": ""})):
        messages, errors = MessageCollector(), ErrorCollector()
        user = {"user_id": "test_user@example.com", "auth_token": "tok-not-for-recordings"}
        await handler.handle_message(connection_id, data, user, messages, errors)
        sent.append((messages.messages, errors.errors))
    return sent


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="fluxloop_example_"))
    recording = workdir / "agent_args.jsonl"

    fluxloop.reset_config()
    fluxloop.configure(use_collector=False, offline_dir=str(workdir / "traces"),
                       record_args=True, recording_file=str(recording))
    original = asyncio.run(serve(MessageHandler()))
    fluxloop.disable_recording()  # every record is already on disk

    lines = recording.read_text().splitlines()
    print(f"recorded {len(original)} calls ({len(lines)} lines: each call's automatic record, then the "
          f"handler's own, which replay uses) to {recording}:")
    for line in lines:
        print("  " + (line if len(line) <= 160 else line[:157] + "..."))

    results = replay_file(recording, all_records=True)
    print("\nreplayed:")
    same = True
    for result, (messages, errors) in zip(results, original):
        matches = result.ok and result.messages == messages and result.errors == errors
        same = same and matches
        print(f"  iteration {result.record.iteration}: {'ok' if result.ok else result.error}, "
              f"{len(result.messages)} message(s), {len(result.errors)} error(s), "
              f"masked {result.masked}, {'same as recorded' if matches else 'DIFFERENT'}")

    save_outcomes(recording)  # the baseline, beside the recording
    unchanged = compare_file(recording)
    print(f"\nsaved outcomes; compared with the same code: {unchanged.summary()}")

    os.environ[REPLY_END] = "!"  # "a new release": replies now end with "!"
    try:
        report = compare_file(recording)
    finally:
        del os.environ[REPLY_END]
    junit = workdir / "replay-report.xml"
    junit.write_bytes(report.to_junit())
    print(f"compared after the change: {report.summary()} (JUnit report: {junit})")
    for comparison in report.comparisons:
        print(f"  {comparison.status:<12} iteration {comparison.record.iteration}")
        for line in comparison.diff:
            print(f"               {line}")
    detected = not unchanged.regressed and [c.status for c in report.comparisons] == ["changed", "changed", "same"]

    fluxloop.flush(timeout=5)
    print(f"\nreplay traces (fluxloop.replay=true) written under {workdir / 'traces'}")
    if __spec__ is not None:  # run with -m: the target is importable from another process
        print(f"replay from the shell too: fluxloop replay {recording} --all")
    return 0 if same and detected and len(results) == len(original) else 1


if __name__ == "__main__":
    sys.exit(main())
