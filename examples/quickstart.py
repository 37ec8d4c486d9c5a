"""Quick start: a small travel agent (fake LLM, two tools) traced by FluxLoop, no network and no API key.

With nothing configured, FluxLoop tries the collector at http://localhost:8000; when nobody listens there it
writes the spans to ./fluxloop_artifacts (OTLP/JSON lines) after one warning. `make demo` then shows the trace
with the `fluxloop` command.
"""

from __future__ import annotations

import ast
import operator
import sys

import fluxloop

WEATHER = {"paris": "light rain, 14°C", "lisbon": "sunny, 22°C"}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@fluxloop.tool(description="Look up today's weather for a city")
def get_weather(city: str) -> str:
    return WEATHER.get(city.lower(), "unknown")


@fluxloop.tool(description="Evaluate an arithmetic expression")
def calculator(expression: str) -> float:
    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported expression: {expression!r}")
    return ev(ast.parse(expression, mode="eval").body)


@fluxloop.prompt(model="fake-gpt-4o-mini")
def plan(question: str) -> dict:
    """A stand-in for an LLM call: decides which tools to use, and reports token usage like OpenAI does."""
    steps = [("get_weather", city) for city in WEATHER if city in question.lower()]
    if "budget" in question.lower():
        steps.append(("calculator", "3 * 120 + 2 * 45"))
    return {"steps": steps, "usage": {"prompt_tokens": 42 + len(question) // 4, "completion_tokens": 17}}


@fluxloop.prompt(model="fake-gpt-4o-mini")
def summarize(question: str, facts: dict) -> dict:
    text = "; ".join(f"{k}: {v}" for k, v in facts.items())
    return {"content": f"Here is what I found. {text}", "usage": {"prompt_tokens": 80, "completion_tokens": 25}}


@fluxloop.agent(name="TravelAssistant", metadata={"version": "1.0"})
def travel_assistant(question: str) -> str:
    tools = {"get_weather": get_weather, "calculator": calculator}
    facts = {}
    for tool_name, argument in plan(question)["steps"]:
        facts[f"{tool_name}({argument})"] = tools[tool_name](argument)
    try:
        calculator("budget / nights")  # the fake LLM sometimes asks for nonsense: the tool span shows the error
    except ValueError:
        pass
    return summarize(question, facts)["content"]


def main() -> int:
    fluxloop.configure(service_name="quickstart-demo", environment="demo")
    with fluxloop.instrument("trip-planning", session_id="demo-session", user_id="demo-user") as ctx:
        ctx.add_tag("demo")
        answer = travel_assistant("Weather in Paris and Lisbon, and my budget for 3 nights?")
    print(answer)
    delivered = fluxloop.flush(timeout=15)
    stats = fluxloop.get_stats()
    where = fluxloop.get_config().offline_dir if stats["spooled"] or not fluxloop.get_config().use_collector \
        else fluxloop.get_config().collector_url
    print(f"trace {ctx.trace_id}: {stats['exported']} span(s) exported, {stats['spooled']} spooled -> {where}",
          file=sys.stderr)
    return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
