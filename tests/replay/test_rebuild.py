"""Rebuilding recorded arguments: markers become collectors and stubs, masked values are reported."""

from __future__ import annotations

import asyncio

from fluxloop._serialize import to_jsonable
from fluxloop.replay import CallableStub, ErrorCollector, MessageCollector, rebuild_kwargs


def test_collector_markers_become_collectors() -> None:
    call = rebuild_kwargs({"send": "<builtin:collector.send>", "err": "<builtin:collector.error>", "n": 1})
    assert isinstance(call.kwargs["send"], MessageCollector)
    assert isinstance(call.kwargs["err"], ErrorCollector)
    call.kwargs["send"]("hello")
    call.kwargs["send"]("a", "b", flag=True)
    call.kwargs["err"]({"error": "x"})
    assert call.messages.messages == ["hello", {"args": ["a", "b"], "kwargs": {"flag": True}}]
    assert call.errors.errors == [{"error": "x"}]
    assert call.kwargs["n"] == 1 and call.masked == [] and call.stubs == {}


def test_rebuilt_callables_can_be_awaited_or_not() -> None:
    call = rebuild_kwargs({"send": "<builtin:collector.send>", "hook": "<callable:on_event>"})

    async def target() -> None:
        assert await call.kwargs["send"]("awaited") is None
        call.kwargs["send"]("not awaited")
        assert await call.kwargs["hook"](1) is None

    asyncio.run(target())
    call.kwargs["hook"](2, k="v")
    assert call.messages.messages == ["awaited", "not awaited"]
    assert call.stubs["hook"].calls == [{"args": [1], "kwargs": {}}, {"args": [2], "kwargs": {"k": "v"}}]


def test_markers_at_any_depth_share_one_collector_per_replay() -> None:
    call = rebuild_kwargs({"callbacks": {"send": "<builtin:collector.send>", "more": ["<builtin:collector.send>",
                                                                                      "<callable:f>"]},
                           "send": "<builtin:collector.send>", "tool": "<builtin:llm.complete>"})
    assert call.kwargs["callbacks"]["send"] is call.kwargs["send"] is call.kwargs["callbacks"]["more"][0]
    assert isinstance(call.kwargs["callbacks"]["more"][1], CallableStub)
    assert set(call.stubs) == {"callbacks.more[1]", "tool"}
    assert call.stubs["tool"].__name__ == "llm.complete"


def test_masked_values_are_reported_and_passed_as_they_are() -> None:
    call = rebuild_kwargs({"auth_token": "***", "user": {"password": "***", "name": "n"}, "items": [{"key": "***"}]})
    assert call.masked == ["auth_token", "user.password", "items[0].key"]
    assert call.kwargs["user"] == {"password": "***", "name": "n"}


def test_rebuilt_callables_record_again_as_the_same_markers() -> None:
    call = rebuild_kwargs({"send": "<builtin:collector.send>", "err": "<builtin:collector.error>",
                           "cb": "<callable:custom_fn>"})
    assert to_jsonable(call.kwargs)[0] == {"send": "<builtin:collector.send>", "err": "<builtin:collector.error>",
                                           "cb": "<callable:custom_fn>"}
