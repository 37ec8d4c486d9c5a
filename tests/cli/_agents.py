"""A small traced agent (real FluxLoop decorators) whose spans the CLI tests read back from offline artifacts."""

from __future__ import annotations

from typing import Any

import fluxloop

CITIES = ("paris", "rome", "atlantis")


@fluxloop.tool(description="Look up the weather")
def weather(city: str) -> str:
    if city == "atlantis":
        raise LookupError(f"no such city: {city}")
    return {"paris": "rain"}.get(city, "sun")


@fluxloop.prompt(model="gpt-test")
def plan(question: str) -> dict[str, Any]:
    return {"cities": [word for word in question.split() if word in CITIES],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7}}


@fluxloop.agent(name="Planner")
def planner(question: str) -> str:
    answers = []
    for city in plan(question)["cities"]:
        try:
            answers.append(weather(city))
        except LookupError:
            answers.append("?")
    return ", ".join(answers)


def run_job(question: str, *, name: str = "job", user: str = "u-1", tag: str = "test") -> str:
    """One trace: ``name`` (instrument) > Planner agent > plan (chat) + one weather tool call per city.

    Returns the trace id (32 hex digits).
    """
    with fluxloop.instrument(name, session_id="s-1", user_id=user) as ctx:
        ctx.add_tag(tag)
        planner(question)
    return ctx.trace_id
