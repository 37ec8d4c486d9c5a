"""What the backend-facing attributes cost in bytes: per span of a typical turn, FluxLoop's attributes split into
the input/output payload, the chat messages of ``@prompt`` spans (GenAI parts schema) and the small mirrors the
UIs read (span kind, mime types, ``metadata`` JSON, ``tag.tags``, MLflow trace tags, response fields)."""

from __future__ import annotations

from typing import Any

import fluxloop
from fluxloop import _attributes as attr
from fluxloop.testing import capture_spans

_PAYLOAD = (attr.INPUT_VALUE, attr.OUTPUT_VALUE)
_MESSAGES = (attr.GEN_AI_INPUT_MESSAGES, attr.GEN_AI_OUTPUT_MESSAGES)
_MIRRORS = (attr.SPAN_KIND, attr.INPUT_MIME_TYPE, attr.OUTPUT_MIME_TYPE, attr.METADATA_JSON, attr.TAG_TAGS,
            attr.GEN_AI_CONVERSATION_ID, attr.GEN_AI_PROVIDER_NAME, attr.GEN_AI_RESPONSE_ID,
            attr.GEN_AI_RESPONSE_MODEL, attr.GEN_AI_RESPONSE_FINISH_REASONS)
MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is OpenTelemetry?"}]
RESULT = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
          "choices": [{"index": 0, "finish_reason": "stop",
                       "message": {"role": "assistant", "content": "A vendor-neutral telemetry framework. " * 8}}],
          "usage": {"prompt_tokens": 21, "completion_tokens": 64}}


def _size(key: str, value: Any) -> int:
    """Bytes of one attribute as OTLP carries it: key plus value text (arrays: their items)."""
    if isinstance(value, (list, tuple)):
        return len(key) + sum(len(str(v).encode()) for v in value)
    return len(key) + len(str(value).encode())


@fluxloop.prompt(model="gpt-4o-mini", provider="openai")
def _chat(messages: list[dict[str, str]]) -> dict[str, Any]:
    return RESULT


@fluxloop.tool(description="Search the web")
def _search(query: str) -> list[str]:
    return [f"result {i} for {query}" for i in range(3)]


@fluxloop.agent(name="assistant")
def _assistant(question: str) -> str:
    _search(question)
    return str(_chat(MESSAGES)["choices"][0]["message"]["content"])


def section() -> str:
    """A markdown table of attribute bytes per span of one turn (no timing: sizes do not depend on the machine)."""
    with capture_spans() as spans:
        with fluxloop.instrument("turn", session_id="s-1", user_id="u-1", tags=["bench"],
                                 metadata={"version": "1.0"}):
            _assistant("What is OpenTelemetry?")
    rows = ["## Attribute bytes per span (one instrument → agent → tool + prompt turn)", "",
            "| span | all attributes | input+output | chat messages | UI mirrors | other |",
            "|---|---:|---:|---:|---:|---:|"]
    for span in spans:
        found = dict(span.attributes or {})
        total = sum(_size(k, v) for k, v in found.items())
        payload = sum(_size(k, found[k]) for k in _PAYLOAD if k in found)
        messages = sum(_size(k, found[k]) for k in _MESSAGES if k in found)
        mirrors = sum(_size(k, v) for k, v in found.items()
                      if k in _MIRRORS or k.startswith(attr.MLFLOW_TRACE_TAG_PREFIX))
        rows.append(f"| {span.name} | {total} | {payload} | {messages} | {mirrors} | "
                    f"{total - payload - messages - mirrors} |")
    rows += ["", "UI mirrors = `openinference.span.kind`, mime types, `metadata` JSON, `tag.tags`, "
             "`mlflow.traceTag.*`, `gen_ai.conversation.id`/provider/response fields; payloads are stored once "
             "(`input.value`/`output.value`), chat messages are the one deliberate duplicate."]
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        fluxloop.configure(use_collector=False, offline_dir=directory)
        print(section())
        fluxloop.shutdown()
