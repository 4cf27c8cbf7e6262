"""Attribute conventions of the instrumentation libraries, as named constants, and the one
function that maps a span's attributes onto spanlake's canonical columns.

Sources: OpenTelemetry GenAI semantic conventions, OpenInference, MLflow 3 tracing,
OpenLLMetry. The order of each key tuple is the order of preference.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson


class GenAI:
    OPERATION_NAME = "gen_ai.operation.name"
    PROVIDER_NAME = "gen_ai.provider.name"
    SYSTEM = "gen_ai.system"  # deprecated alias of provider.name
    REQUEST_MODEL = "gen_ai.request.model"
    RESPONSE_MODEL = "gen_ai.response.model"
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # deprecated
    COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"  # deprecated
    INPUT_MESSAGES = "gen_ai.input.messages"
    OUTPUT_MESSAGES = "gen_ai.output.messages"
    PROMPT = "gen_ai.prompt"  # deprecated
    COMPLETION = "gen_ai.completion"  # deprecated
    CONVERSATION_ID = "gen_ai.conversation.id"


class OpenInference:
    SPAN_KIND = "openinference.span.kind"
    MODEL_NAME = "llm.model_name"
    PROVIDER = "llm.provider"
    INPUT_VALUE = "input.value"
    OUTPUT_VALUE = "output.value"
    PROMPT_TOKENS = "llm.token_count.prompt"
    COMPLETION_TOKENS = "llm.token_count.completion"
    TOTAL_TOKENS = "llm.token_count.total"


class MLflow:
    SPAN_TYPE = "mlflow.spanType"
    SPAN_INPUTS = "mlflow.spanInputs"
    SPAN_OUTPUTS = "mlflow.spanOutputs"
    TRACE_TAG_PREFIX = "mlflow.traceTag."
    TRACE_USER = "mlflow.trace.user"  # metadata keys MLflow users filter on
    TRACE_SESSION = "mlflow.trace.session"


class Common:
    USER_ID = "user.id"
    SESSION_ID = "session.id"
    SERVICE_NAME = "service.name"
    ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
    ERROR_TYPE = "error.type"
    EXCEPTION_EVENT = "exception"


SPAN_TYPES = ("LLM", "CHAT_MODEL", "EMBEDDING", "RETRIEVER", "RERANKER", "TOOL", "AGENT", "CHAIN", "PARSER", "UNKNOWN")
MODEL_CALL_TYPES = frozenset({"LLM", "CHAT_MODEL", "EMBEDDING"})

# gen_ai.operation.name -> span_type
OPERATION_SPAN_TYPES = {
    "chat": "CHAT_MODEL",
    "text_completion": "LLM",
    "generate_content": "LLM",
    "embeddings": "EMBEDDING",
    "retrieval": "RETRIEVER",
    "execute_tool": "TOOL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
    "invoke_workflow": "CHAIN",
}

MODEL_KEYS = (GenAI.RESPONSE_MODEL, GenAI.REQUEST_MODEL, OpenInference.MODEL_NAME)
PROVIDER_KEYS = (GenAI.PROVIDER_NAME, GenAI.SYSTEM, OpenInference.PROVIDER)
INPUT_TOKEN_KEYS = (GenAI.INPUT_TOKENS, GenAI.PROMPT_TOKENS, OpenInference.PROMPT_TOKENS)
OUTPUT_TOKEN_KEYS = (GenAI.OUTPUT_TOKENS, GenAI.COMPLETION_TOKENS, OpenInference.COMPLETION_TOKENS)
TOTAL_TOKEN_KEYS = (OpenInference.TOTAL_TOKENS,)
INPUT_KEYS = (MLflow.SPAN_INPUTS, OpenInference.INPUT_VALUE, GenAI.INPUT_MESSAGES, GenAI.PROMPT)
OUTPUT_KEYS = (MLflow.SPAN_OUTPUTS, OpenInference.OUTPUT_VALUE, GenAI.OUTPUT_MESSAGES, GenAI.COMPLETION)
USER_KEYS = (Common.USER_ID,)
SESSION_KEYS = (Common.SESSION_ID, GenAI.CONVERSATION_ID)
# Payload keys are never copied into the trace's tags: they are inputs/outputs, not labels.
PAYLOAD_KEYS = frozenset(INPUT_KEYS + OUTPUT_KEYS)


class Canonical(NamedTuple):
    span_type: str
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cache_read_input_tokens: int | None
    cache_creation_input_tokens: int | None
    reasoning_output_tokens: int | None
    provided_cost_usd: float | None
    inputs: str | None
    outputs: str | None
    user_id: str | None
    session_id: str | None
    is_error: bool


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def _span_type(attrs: dict[str, Any]) -> str:
    mlflow_type = attrs.get(MLflow.SPAN_TYPE)
    if isinstance(mlflow_type, str) and mlflow_type.upper() in SPAN_TYPES:
        return mlflow_type.upper()
    oi_kind = attrs.get(OpenInference.SPAN_KIND)
    if isinstance(oi_kind, str) and oi_kind.upper() in SPAN_TYPES:
        return oi_kind.upper()
    operation = attrs.get(GenAI.OPERATION_NAME)
    if isinstance(operation, str):
        return OPERATION_SPAN_TYPES.get(operation, "UNKNOWN")
    return "UNKNOWN"


def normalise(attrs: dict[str, Any], status_code: str, event_names: tuple[str, ...]) -> Canonical:
    """Canonical columns of one span from its attributes (which are kept in full elsewhere)."""
    input_tokens = _as_int(_first(attrs, INPUT_TOKEN_KEYS))
    output_tokens = _as_int(_first(attrs, OUTPUT_TOKEN_KEYS))
    total_tokens = _as_int(_first(attrs, TOTAL_TOKEN_KEYS))
    if total_tokens is None and input_tokens is not None and output_tokens is not None:
        total_tokens = input_tokens + output_tokens
    is_error = (
        status_code == "ERROR" or Common.ERROR_TYPE in attrs or Common.EXCEPTION_EVENT in event_names
    )
    return Canonical(
        span_type=_span_type(attrs),
        model=_as_text(_first(attrs, MODEL_KEYS)),
        provider=_as_text(_first(attrs, PROVIDER_KEYS)),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        cache_read_input_tokens=None,
        cache_creation_input_tokens=None,
        reasoning_output_tokens=None,
        provided_cost_usd=None,
        inputs=_as_text(_first(attrs, INPUT_KEYS)),
        outputs=_as_text(_first(attrs, OUTPUT_KEYS)),
        user_id=_as_text(_first(attrs, USER_KEYS)),
        session_id=_as_text(_first(attrs, SESSION_KEYS)),
        is_error=is_error,
    )


def trace_tags(attrs: dict[str, Any]) -> dict[str, str]:
    """The trace's tags from its root span: string attributes, mlflow.traceTag.<key> unwrapped."""
    tags: dict[str, str] = {}
    for key, value in attrs.items():
        if not isinstance(value, str) or key in PAYLOAD_KEYS:
            continue
        if key.startswith(MLflow.TRACE_TAG_PREFIX):
            key = key[len(MLflow.TRACE_TAG_PREFIX) :]
        tags[key] = value[:1000]
    return tags
