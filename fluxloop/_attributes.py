"""Span attribute keys and values FluxLoop writes: each defined once, here.

GenAI names follow the OpenTelemetry GenAI semantic conventions. We define them ourselves because the
Python semconv package marks its GenAI constants as incubating/deprecated.
"""

from __future__ import annotations

from typing import Final

# fluxloop.* (DESIGN §2)
OBSERVATION_TYPE: Final = "fluxloop.observation.type"
NAME: Final = "fluxloop.name"
INPUT: Final = "fluxloop.input"
OUTPUT: Final = "fluxloop.output"
METADATA_PREFIX: Final = "fluxloop.metadata."
TAGS: Final = "fluxloop.tags"
MASKED_PATHS: Final = "fluxloop.masked_paths"
INSTRUMENTATION_ERROR: Final = "fluxloop.instrumentation_error"
CANCELLED: Final = "fluxloop.cancelled"
REPLAY: Final = "fluxloop.replay"
REPLAY_SOURCE: Final = "fluxloop.replay.source"
REPLAY_ITERATION: Final = "fluxloop.replay.iteration"

USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
ERROR_TYPE: Final = "error.type"

# gen_ai.* (OpenTelemetry GenAI semantic conventions)
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"

OP_INVOKE_AGENT: Final = "invoke_agent"
OP_CHAT: Final = "chat"
OP_EXECUTE_TOOL: Final = "execute_tool"

# Observation types
TYPE_AGENT: Final = "agent"
TYPE_GENERATION: Final = "generation"
TYPE_TOOL: Final = "tool"
TYPE_SPAN: Final = "span"
TYPE_TRACE: Final = "trace"
OBSERVATION_TYPES: Final = frozenset({TYPE_AGENT, TYPE_GENERATION, TYPE_TOOL, TYPE_SPAN, TYPE_TRACE})

# Resource
SERVICE_NAME: Final = "service.name"
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment.name"
TELEMETRY_DISTRO_NAME: Final = "telemetry.distro.name"
TELEMETRY_DISTRO_VERSION: Final = "telemetry.distro.version"
DISTRO_NAME: Final = "fluxloop"

# Instrumentation scope
SCOPE_NAME: Final = "fluxloop"
