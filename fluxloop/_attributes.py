"""Span attribute keys and values FluxLoop writes: each defined once, here.

GenAI names follow the OpenTelemetry GenAI semantic conventions. We define them ourselves because the
Python semconv package marks its GenAI constants as incubating/deprecated.
"""

from __future__ import annotations

from typing import Final

# fluxloop.* (DESIGN §2)
OBSERVATION_TYPE: Final = "fluxloop.observation.type"
NAME: Final = "fluxloop.name"
METADATA_PREFIX: Final = "fluxloop.metadata."
TAGS: Final = "fluxloop.tags"
MASKED_PATHS: Final = "fluxloop.masked_paths"
INSTRUMENTATION_ERROR: Final = "fluxloop.instrumentation_error"
CANCELLED: Final = "fluxloop.cancelled"
REPLAY: Final = "fluxloop.replay"
REPLAY_SOURCE: Final = "fluxloop.replay.source"
REPLAY_ITERATION: Final = "fluxloop.replay.iteration"
#: Seconds from the call to a stream's first chunk.
TIME_TO_FIRST_CHUNK: Final = "fluxloop.stream.time_to_first_chunk"

# Input/output, span kind, metadata and tags under the keys Phoenix and MLflow read (OpenInference names)
INPUT_VALUE: Final = "input.value"
INPUT_MIME_TYPE: Final = "input.mime_type"
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME_TYPE: Final = "output.mime_type"
MIME_JSON: Final = "application/json"
MIME_TEXT: Final = "text/plain"
SPAN_KIND: Final = "openinference.span.kind"
KIND_AGENT: Final = "AGENT"
KIND_LLM: Final = "LLM"
KIND_TOOL: Final = "TOOL"
KIND_CHAIN: Final = "CHAIN"
METADATA_JSON: Final = "metadata"
TAG_TAGS: Final = "tag.tags"
#: MLflow turns ``mlflow.traceTag.<key>`` attributes of a trace's root span into trace tags.
MLFLOW_TRACE_TAG_PREFIX: Final = "mlflow.traceTag."

USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
ERROR_TYPE: Final = "error.type"

# gen_ai.* (OpenTelemetry GenAI semantic conventions)
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_PREFIX: Final = "gen_ai.usage."
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
#: Token counts FluxLoop moved off a ``@prompt`` span because a child span (the client's own
#: instrumentation) already reports them: kept for reading, not summed by backends.
FLUXLOOP_USAGE_PREFIX: Final = "fluxloop.usage."

OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CHAT: Final = "chat"
OP_EXECUTE_TOOL: Final = "execute_tool"

# Observation types
TYPE_AGENT: Final = "agent"
TYPE_GENERATION: Final = "generation"
TYPE_TOOL: Final = "tool"
TYPE_SPAN: Final = "span"
TYPE_TRACE: Final = "trace"
#: The OpenInference span kind of each observation type.
SPAN_KINDS: Final = {TYPE_AGENT: KIND_AGENT, TYPE_GENERATION: KIND_LLM, TYPE_TOOL: KIND_TOOL,
                     TYPE_SPAN: KIND_CHAIN, TYPE_TRACE: KIND_CHAIN}
OBSERVATION_TYPES: Final = frozenset({TYPE_AGENT, TYPE_GENERATION, TYPE_TOOL, TYPE_SPAN, TYPE_TRACE})

# Resource
SERVICE_NAME: Final = "service.name"
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment.name"
TELEMETRY_DISTRO_NAME: Final = "telemetry.distro.name"
TELEMETRY_DISTRO_VERSION: Final = "telemetry.distro.version"
DISTRO_NAME: Final = "fluxloop"

# Instrumentation scope
SCOPE_NAME: Final = "fluxloop"
