"""Every code block of the original SDK README runs as written (with stub LLM/search objects), and does what it says.

The only blocks not executed are the two "Best Practices" fragments that use ``...`` as a parameter list
(``def main_handler(...)``), which is not valid Python in any SDK; the test asserts exactly that.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import types
from pathlib import Path
from typing import Any

import pytest

import fluxloop
from fluxloop.testing import capture_spans
from fluxloop.replay import load_records, select_records

# The original README lives beside the repository (../shared/seed), not in it: a plain clone has no copy.
SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "fluxloop-sdk-README.md"
pytestmark = pytest.mark.skipif(not SEED.is_file(), reason=f"needs ../shared/seed/{SEED.name} beside the repository")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", SEED.read_text(encoding="utf-8"), flags=re.S) if SEED.is_file() else []
PYTHON = [code for lang, code in BLOCKS if lang == "python"]


def _compiles(code: str) -> bool:
    try:
        compile(code, "block", "exec")
    except SyntaxError:
        return False
    return True


RUNNABLE = [code for code in PYTHON if _compiles(code)]


class _LLM:
    def generate(self, query: str) -> str:
        return f"answer to {query}"

    async def async_generate(self, prompt: str) -> str:
        return f"async answer to {prompt}"


class _Search:
    def search(self, query: str) -> list:
        return [f"result for {query}"]


class _Agent:
    @fluxloop.agent(name="my_agent")
    def process(self, data: Any) -> str:
        return f"processed {data}"


async def _async_operation(query: str) -> str:
    return query.upper()


def _namespace(tmp_path: Path) -> dict[str, Any]:
    return {"llm": _LLM(), "search_engine": _Search(), "my_agent": _Agent(), "input_data": {"q": 1},
            "response": "a response", "results": ["r"], "async_operation": _async_operation,
            "user": types.SimpleNamespace(is_premium=False), "long_query": "SELECT 1", "items": [1, 2],
            "process_item": lambda item: item, "__name__": "seed_readme",
            # Later blocks are fragments that rely on the README's earlier `import fluxloop` / `import os`.
            "fluxloop": fluxloop, "os": __import__("os")}


def _rewrite_paths(code: str, tmp_path: Path) -> str:
    return code.replace("/tmp/", f"{tmp_path}/")


def _run(code: str, ns: dict[str, Any]) -> None:
    exec(compile(code, str(SEED), "exec"), ns)


def test_blocks_were_found() -> None:
    assert len(PYTHON) >= 15


def test_only_the_ellipsis_fragments_are_not_python() -> None:
    invalid = [code for code in PYTHON if not _compiles(code)]
    assert len(invalid) == 2 and len(RUNNABLE) == len(PYTHON) - 2
    assert all("(...)" in code for code in invalid)


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_block_runs(index: int, tmp_path: Path) -> None:
    code = RUNNABLE[index]
    fluxloop.reset_config()
    ns = _namespace(tmp_path)
    with capture_spans() as spans:
        # Fragments such as "Metadata Guidelines" run inside an `instrument()` block, as their `ctx` implies.
        with fluxloop.instrument("readme-block") as ctx:
            ns["ctx"] = ctx
            _run(_rewrite_paths(code, tmp_path), ns)
        # Call what the block defined, as its prose says users would.
        for name, value in list(ns.items()):
            if name.startswith("test_") and callable(value):
                value(tmp_path)
            elif inspect.iscoroutinefunction(value):
                params = inspect.signature(value).parameters
                asyncio.run(value(*["x"] * len(params)))
            elif isinstance(value, types.FunctionType) and getattr(value, "__wrapped__", None):
                params = inspect.signature(value).parameters
                value(*["x"] * len(params))
    assert fluxloop.flush(timeout=10)
    for span in spans:  # every span FluxLoop made follows the contract
        if "fluxloop.observation.type" in span.attributes:
            assert span.attributes["fluxloop.name"]


def test_basic_tracing_block_produces_the_trace(tmp_path: Path) -> None:
    ns = _namespace(tmp_path)
    fluxloop.reset_config()
    _run(PYTHON[0], ns)
    fluxloop.configure(use_collector=False)  # the block points at a collector this test does not run
    with capture_spans() as spans:
        assert ns["process_request"]("hi") == "answer to hi"
        assert ns["web_search"]("hi") == ["result for hi"]
    agent = spans.by_name("invoke_agent MyAgent")
    prompt = spans.by_name("chat gpt-4o-mini")
    assert prompt.parent.span_id == agent.context.span_id
    assert spans.by_name("execute_tool web_search").attributes["gen_ai.tool.description"] == "Search the web"
    assert fluxloop.get_config().api_key == "your-api-key"


def test_recording_block_writes_the_documented_line(tmp_path: Path) -> None:
    ns = _namespace(tmp_path)
    code = next(c for c in PYTHON if "class MessageHandler" in c)
    _run(_rewrite_paths(code, tmp_path), ns)

    class Collector:
        def __init__(self) -> None:
            self.messages: list = []

        def __call__(self, message: Any) -> None:
            self.messages.append(message)

    class Errors:
        def __init__(self) -> None:
            self.errors: list = []

        def __call__(self, error: Any) -> None:
            self.errors.append(error)

    handler = ns["MessageHandler"]()
    asyncio.run(handler.handle_message("ws-123", {"content": "test"}, {"auth_token": "secret-tok"}, Collector(),
                                       Errors()))
    # No flush: the lines are on disk when the call returns. The automatic record (span start) comes first, the
    # handler's own record last; replay takes the handler's record in place of the automatic one.
    lines = (tmp_path / "agent_args.jsonl").read_text().splitlines()
    assert len(lines) == 2
    [replayable] = select_records(load_records(tmp_path / "agent_args.jsonl"), all_records=True)
    assert replayable.line == 2
    record = json.loads(lines[-1])
    assert record["_version"] == "1" and record["iteration"] == 0
    assert record["target"] == "examples.message_handler:MessageHandler.handle_message"
    assert record["kwargs"]["connection_id"] == "ws-123"
    assert record["kwargs"]["data"] == {"content": "test"}
    assert record["kwargs"]["user_connection"] == {"auth_token": "***"}
    assert record["kwargs"]["send_message_callback"] == "<builtin:collector.send>"
    assert record["kwargs"]["send_error_callback"] == "<builtin:collector.error>"
    assert "secret-tok" not in lines[0]


def test_context_manager_block(tmp_path: Path) -> None:
    ns = _namespace(tmp_path)
    code = next(c for c in PYTHON if 'instrument("my_workflow")' in c)
    with capture_spans() as spans:
        _run(code, ns)
    root = spans.by_name("my_workflow")
    child = spans.by_name("invoke_agent my_agent")
    assert child.parent.span_id == root.context.span_id
    assert child.attributes["fluxloop.tags"] == ("production",)
    assert child.attributes["user.id"] == "user-123"
    assert child.attributes["fluxloop.metadata.user_tier"] == "premium"


def test_metadata_guidelines_never_store_the_password(tmp_path: Path) -> None:
    code = next(c for c in PYTHON if 'add_metadata("password"' in c)
    with capture_spans() as spans:
        with fluxloop.instrument("guidelines") as ctx:
            _run(code, {**_namespace(tmp_path), "ctx": ctx})
    attrs = spans.by_name("guidelines").attributes
    assert attrs["fluxloop.metadata.password"] == "***"
    assert attrs["fluxloop.metadata.user_tier"] == "premium"


def test_environment_block_is_understood(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_block = next(code for lang, code in BLOCKS if lang == "bash" and "FLUXLOOP_ENABLED" in code)
    for name, value in re.findall(r"export (\w+)=(\S+)", env_block):
        monkeypatch.setenv(name, value.replace("/tmp/", f"{tmp_path}/"))
    fluxloop.reset_config()
    config = fluxloop.get_config()
    assert (config.batch_size, config.flush_interval, config.max_queue_size, config.timeout) == (10, 5.0, 1000, 10.0)
    assert (config.service_name, config.environment, config.offline_dir) == ("my-service", "production",
                                                                             "./fluxloop_artifacts")
