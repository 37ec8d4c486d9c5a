"""The ``fluxloop`` command line: a thin ``argparse`` front over subcommand modules listed in :data:`COMMANDS`.

A subcommand is a module with ``NAME`` (str), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. To add one, write ``fluxloop/cli/_<name>.py`` and list it in :data:`COMMANDS`.
Exit codes: 0 success, 1 failure (including bad input such as a missing file), 2 command-line usage error.
Results go to stdout, diagnostics to stderr.

Example::

    $ fluxloop replay /tmp/agent_args.jsonl --all
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from fluxloop._version import __version__
from fluxloop.cli import _config, _replay, _traces, _upload

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

#: The subcommands, in the order ``fluxloop --help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (_config, _traces, _upload, _replay)


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``fluxloop`` and every registered subcommand."""
    parser = argparse.ArgumentParser(prog="fluxloop", description="FluxLoop: trace, inspect and replay AI agents.")
    parser.add_argument("--version", action="version", version=f"fluxloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub_parser = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help/--version (0) or a usage error (2); argparse already printed why
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "run", None) is None:
        parser.print_usage(sys.stderr)
        print("fluxloop: error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("fluxloop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fluxloop replay ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
