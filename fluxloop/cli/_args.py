"""Argument types and small wording helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from urllib.parse import urlparse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type accepting integers >= ``minimum``."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return number
    return parse


def seconds(value: str) -> float:
    """An argparse type for a duration in (0, 3600] seconds."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], got {value!r}")
    return number


def url(value: str) -> str:
    """An argparse type for an http:// or https:// URL."""
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {value!r}")
    return value.strip()


def plural(n: int, word: str) -> str:
    """``3 spans``, ``1 span``, ``12,000 traces``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
