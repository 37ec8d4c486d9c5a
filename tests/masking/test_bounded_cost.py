"""Bounded work on the calling thread: the secret scanner never sees more than ``max_attribute_length`` plus a
small margin of a value, and exception message, stack trace and status are bounded like attributes.

No timing here (the 4 MB case is timed in ``benchmarks/``): the tests check the work itself is bounded."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fluxloop
from fluxloop import _attributes as attr
from fluxloop._masking import SCAN_MARGIN, Masker

from .conftest import Exported

LIMIT = 4096
BIG = base64.b64encode(os.urandom(3 * 1024 * 1024)).decode()  # 4 MB of base64, as an image argument would be


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The length of every text the secret scanner was given (on any thread)."""
    lengths: list[int] = []
    original = Masker.mask_text

    def spy(self: Masker, text: str) -> str:
        lengths.append(len(text))
        return original(self, text)

    monkeypatch.setattr(Masker, "mask_text", spy)
    yield lengths


def test_a_huge_argument_is_scanned_and_copied_only_up_to_the_bound(
        scanned: list[int], exported: Callable[[], list[Exported]]) -> None:
    fluxloop.configure(max_attribute_length=LIMIT)

    @fluxloop.tool
    def describe(image_b64: str, note: str) -> str:
        return image_b64

    assert describe(BIG, note="password: hunter2hunter2") is BIG
    calling_thread = list(scanned)
    assert calling_thread and max(calling_thread) <= LIMIT + SCAN_MARGIN
    [span] = exported()
    assert max(scanned) <= LIMIT + SCAN_MARGIN  # the export stage scans what was cut, not the original
    for key in (attr.INPUT_VALUE, attr.OUTPUT_VALUE):
        assert len(span.attributes[key]) <= LIMIT
    assert "truncated" in span.attributes[attr.INPUT_VALUE] and "hunter2hunter2" not in span.attributes[attr.INPUT_VALUE]


def test_huge_bytes_are_represented_from_a_bounded_slice(scanned: list[int],
                                                         exported: Callable[[], list[Exported]]) -> None:
    fluxloop.configure(max_attribute_length=LIMIT)

    @fluxloop.tool
    def upload(blob: bytes) -> int:
        return len(blob)

    upload(b"\x89PNG" + os.urandom(8 * 1024 * 1024))
    assert max(scanned) <= LIMIT + SCAN_MARGIN
    [span] = exported()
    assert len(span.attributes[attr.INPUT_VALUE]) <= LIMIT


def test_exception_message_stack_and_status_are_bounded(scanned: list[int], exported: Callable[[], list[Exported]],
                                                        offline_dir: Path) -> None:
    fluxloop.configure(max_attribute_length=LIMIT)

    @fluxloop.tool
    def parse() -> None:
        raise ValueError("bad payload: " + "A" * (3 * 1024 * 1024) + " Bearer abcdefghijklmnop")

    with pytest.raises(ValueError) as caught:
        parse()
    assert len(str(caught.value)) > 3 * 1024 * 1024  # the user's exception is untouched
    assert max(scanned) <= LIMIT + SCAN_MARGIN
    [span] = exported()
    [event] = span.events
    bound = LIMIT + len("...[truncated 9999999 chars]")
    assert len(span.status_message) <= bound
    assert span.status_message.startswith("bad payload: AAAA") and "truncated" in span.status_message
    assert len(event["attributes"]["exception.message"]) <= bound
    assert len(event["attributes"]["exception.stacktrace"]) <= bound
    assert event["attributes"]["exception.stacktrace"].startswith("Traceback (most recent call last):")
    assert sum(p.stat().st_size for p in offline_dir.rglob("*") if p.is_file()) < 8 * LIMIT  # not a 9 MB span


def test_metadata_strings_are_bounded_and_masked_before_the_cut(scanned: list[int],
                                                                 exported: Callable[[], list[Exported]]) -> None:
    fluxloop.configure(max_attribute_length=LIMIT)
    with fluxloop.instrument("ingest") as ctx:
        straddling = "sk-live-" + "Z" * 60  # starts before the cut, ends after it
        ctx.add_metadata("document", "x" * (LIMIT - 200) + " Bearer abcdefghijklmnopqrstuvwxyz " + "y" * 140
                         + f" {straddling} " + BIG)
    assert max(scanned) <= LIMIT + SCAN_MARGIN
    [span] = exported()
    shown = span.attributes[attr.METADATA_PREFIX + "document"]
    assert len(shown) <= LIMIT + 40 and "truncated" in shown and "Bearer ***" in shown
    assert "abcdefghijklmnop" not in shown and "ZZZZ" not in shown
    assert span.attributes[attr.MASKED_PATHS] == ["metadata.document"]
