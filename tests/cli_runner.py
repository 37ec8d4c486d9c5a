"""Running the ``fluxloop`` command line in the test process: shared by the CLI and reliability suites."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fluxloop.cli import main


@dataclass
class Run:
    """What one command line run gave: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """Run ``fluxloop ARGV`` in this process and capture what it printed."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return Run(code, out, err)
