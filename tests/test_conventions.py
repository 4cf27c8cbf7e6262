"""ingest/conventions.py against attribute dicts shaped the way each instrumentation writes them.

Pure unit tests: no broker, no Delta. Each library gets one realistic span whose every canonical
field is asserted; the smaller parametrized tests pin the individual rules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from spanlake.ingest.conventions import Canonical, normalise, trace_tags

TOKEN_FIELDS = (
    "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "reasoning_output_tokens",
)  # fmt: skip
JSON_FIELDS = ("inputs", "outputs")  # compared as parsed JSON when the expectation is a list/dict


def assert_canonical(canon: Canonical, expected: dict[str, Any]) -> None:
    """Every canonical field, so that a new mapping cannot silently change another one."""
    assert set(expected) == set(Canonical._fields)
    for field in Canonical._fields:
        want = expected[field]
        got = getattr(canon, field)
        if field in JSON_FIELDS and isinstance(want, (list, dict)):
            assert got is not None, field
            assert json.loads(got) == want, field
        elif isinstance(want, float):
            assert got == pytest.approx(want), field
        else:
            assert got == want, field


# --- one realistic span per library -----------------------------------------------------------

GENAI_SYSTEM = json.dumps([{"type": "text", "content": "You are a support assistant. Be brief."}])
GENAI_INPUT = json.dumps([
    {"role": "user", "parts": [{"type": "text", "content": "Where is my order #4411?"}]},
])  # fmt: skip
GENAI_OUTPUT = json.dumps([
    {"role": "assistant", "parts": [{"type": "text", "content": "It ships tomorrow."}], "finish_reason": "stop"},
])  # fmt: skip

# opentelemetry-instrumentation-openai-v2 (semconv 1.37+) on a Chat Completions call to a
# reasoning model with a cache hit; content capture on.
OTEL_GENAI_OPENAI_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-5-mini",
    "gen_ai.request.max_tokens": 1024,
    "gen_ai.request.seed": 7,
    "gen_ai.response.id": "chatcmpl-CDa1xqZ3",
    "gen_ai.response.model": "gpt-5-mini-2025-08-07",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.output.type": "text",
    "gen_ai.usage.input_tokens": 2210,
    "gen_ai.usage.output_tokens": 517,
    "gen_ai.usage.cache_read.input_tokens": 1920,
    "gen_ai.usage.reasoning.output_tokens": 384,
    "gen_ai.conversation.id": "conv_5j66UpCpwteGg4YSxUnt7lPY",
    "gen_ai.system_instructions": GENAI_SYSTEM,
    "gen_ai.input.messages": GENAI_INPUT,
    "gen_ai.output.messages": GENAI_OUTPUT,
    "server.address": "api.openai.com",
    "server.port": 443,
}

# openinference-instrumentation-langchain on a ChatOpenAI call, payload values not recorded
# (no input.value / output.value), so only the flattened messages carry the conversation.
OPENINFERENCE_LANGCHAIN_LLM = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.provider": "openai",
    "llm.system": "openai",
    "llm.invocation_parameters": '{"model_name": "gpt-4o-mini", "temperature": 0.0, "_type": "openai-chat"}',
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "Answer from the context only.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.content": "What is the refund window?",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "30 days from delivery.",
    "llm.token_count.prompt": 1450,
    "llm.token_count.completion": 9,
    "llm.token_count.total": 1459,
    "llm.token_count.prompt_details.cache_read": 1280,
    "metadata": '{"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "ls_model_type": "chat", '
    '"langgraph_step": 2, "user_id": "cust-881"}',
    "session.id": "thread-42",
    "tag.tags": ["rag", "prod"],
}

# mlflow.anthropic.autolog() exported over OTLP: every value JSON-encoded, usage in one object.
MLFLOW_ANTHROPIC_CHAT = {
    "mlflow.traceRequestId": '"tr-8f4d1c0e2b6a4f0f9d3c7a5e1b2c3d4e"',
    "mlflow.spanType": '"CHAT_MODEL"',
    "mlflow.spanFunctionName": '"create"',
    "mlflow.message.format": '"anthropic"',
    "mlflow.spanInputs": '{"model": "claude-sonnet-4-5", "max_tokens": 1024, '
    '"messages": [{"role": "user", "content": "Summarise the ticket."}]}',
    "mlflow.spanOutputs": '{"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", '
    '"content": [{"type": "text", "text": "Customer wants a refund."}], "stop_reason": "end_turn"}',
    "mlflow.chat.tokenUsage": '{"input_tokens": 5210, "output_tokens": 96, "total_tokens": 5306, '
    '"cache_read_input_tokens": 4800, "cache_creation_input_tokens": 390}',
    "mlflow.llm.model": '"claude-sonnet-4-5"',
    "mlflow.llm.provider": '"anthropic"',
    "mlflow.llm.cost": '{"input_cost": 0.002856, "output_cost": 0.00144, "total_cost": 0.004296}',
}

# OpenLLMetry's OpenAI instrumentation (pre-semconv-1.37 style: flattened prompt/completion).
OPENLLMETRY_OPENAI_CHAT = {
    "llm.request.type": "chat",
    "gen_ai.system": "OpenAI",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.request.temperature": 0.7,
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-A1b2C3",
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    "llm.is_streaming": False,
    "llm.headers": "None",
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "You are a comedian.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": "Tell me a joke about OpenTelemetry",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "Why did the span break up with the trace? Too many parents.",
    "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.usage.prompt_tokens": 24,
    "gen_ai.usage.completion_tokens": 31,
    "llm.usage.total_tokens": 55,
    "gen_ai.usage.cache_read_input_tokens": 0,
    "traceloop.workflow.name": "joke_generator",
    "traceloop.association.properties.user_id": "u-7",
    "traceloop.association.properties.session_id": "chat-3",
}

# Vercel AI SDK 5 generateText, the provider call (doGenerate) span.
VERCEL_DO_GENERATE = {
    "operation.name": "ai.generateText.doGenerate support-chat",
    "ai.operationId": "ai.generateText.doGenerate",
    "ai.model.id": "gpt-4o-mini",
    "ai.model.provider": "openai.chat",
    "ai.telemetry.functionId": "support-chat",
    "ai.telemetry.metadata.userId": "user-123",
    "ai.telemetry.metadata.sessionId": "session-456",
    "ai.prompt.format": "messages",
    "ai.prompt.messages": '[{"role":"user","content":[{"type":"text","text":"Hi there"}]}]',
    "ai.response.text": "Hello! How can I help?",
    "ai.response.finishReason": "stop",
    "ai.response.id": "chatcmpl-Zz9",
    "ai.response.model": "gpt-4o-mini-2024-07-18",
    "ai.response.timestamp": "2025-11-03T10:00:00.000Z",
    "ai.usage.inputTokens": 9,
    "ai.usage.outputTokens": 7,
    "ai.usage.totalTokens": 16,
    "ai.usage.cachedInputTokens": 0,
    "ai.usage.reasoningTokens": 0,
    "gen_ai.system": "openai.chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.response.id": "chatcmpl-Zz9",
    "gen_ai.usage.input_tokens": 9,
    "gen_ai.usage.output_tokens": 7,
}

# Langfuse Python SDK v3 generation on an Anthropic call: additive buckets (input excludes cache).
LANGFUSE_GENERATION = {
    "langfuse.observation.type": "generation",
    "langfuse.observation.model.name": "claude-sonnet-4-5",
    "langfuse.observation.model.parameters": '{"max_tokens": 1024, "temperature": 0}',
    "langfuse.observation.input": '[{"role": "user", "content": "Summarise the ticket."}]',
    "langfuse.observation.output": '"Customer wants a refund."',
    "langfuse.observation.usage_details": '{"input": 20, "output": 96, "cache_read_input_tokens": 4800, '
    '"cache_creation_input_tokens": 390, "total": 5306}',
    "langfuse.observation.cost_details": '{"input": 0.00006, "output": 0.00144, "cache_read_input_tokens": 0.00144, '
    '"cache_creation_input_tokens": 0.0014625, "total": 0.0044025}',
    "langfuse.observation.metadata.step": "summarise",
    "langfuse.trace.name": "ticket-summary",
    "langfuse.environment": "production",
    "langfuse.release": "2025.11.3",
    "user.id": "agent-17",
    "session.id": "ticket-5512",
}

NO_TOKENS = dict.fromkeys(TOKEN_FIELDS)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        pytest.param(OTEL_GENAI_OPENAI_CHAT, {
            "span_type": "CHAT_MODEL", "model": "gpt-5-mini-2025-08-07", "provider": "openai",
            "input_tokens": 2210, "output_tokens": 517, "total_tokens": 2727, "cache_read_input_tokens": 1920,
            "cache_creation_input_tokens": None, "reasoning_output_tokens": 384, "provided_cost_usd": None,
            "inputs": GENAI_INPUT, "outputs": GENAI_OUTPUT, "user_id": None,
            "session_id": "conv_5j66UpCpwteGg4YSxUnt7lPY", "is_error": False, "environment": None,
        }, id="otel-genai-openai"),
        pytest.param(OPENINFERENCE_LANGCHAIN_LLM, {
            "span_type": "LLM", "model": "gpt-4o-mini-2024-07-18", "provider": "openai",
            "input_tokens": 1450, "output_tokens": 9, "total_tokens": 1459, "cache_read_input_tokens": 1280,
            "cache_creation_input_tokens": None, "reasoning_output_tokens": None, "provided_cost_usd": None,
            "inputs": [
                {"role": "system", "content": "Answer from the context only."},
                {"role": "user", "content": "What is the refund window?"},
            ],
            "outputs": [{"role": "assistant", "content": "30 days from delivery."}],
            "user_id": "cust-881", "session_id": "thread-42", "is_error": False, "environment": None,
        }, id="openinference-langchain"),
        pytest.param(MLFLOW_ANTHROPIC_CHAT, {
            "span_type": "CHAT_MODEL", "model": "claude-sonnet-4-5", "provider": "anthropic",
            "input_tokens": 5210, "output_tokens": 96, "total_tokens": 5306, "cache_read_input_tokens": 4800,
            "cache_creation_input_tokens": 390, "reasoning_output_tokens": None, "provided_cost_usd": 0.004296,
            "inputs": MLFLOW_ANTHROPIC_CHAT["mlflow.spanInputs"],
            "outputs": MLFLOW_ANTHROPIC_CHAT["mlflow.spanOutputs"],
            "user_id": None, "session_id": None, "is_error": False, "environment": None,
        }, id="mlflow-anthropic"),
        pytest.param(OPENLLMETRY_OPENAI_CHAT, {
            "span_type": "CHAT_MODEL", "model": "gpt-4o-2024-08-06", "provider": "openai",
            "input_tokens": 24, "output_tokens": 31, "total_tokens": 55, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": None, "reasoning_output_tokens": None, "provided_cost_usd": None,
            "inputs": [
                {"role": "system", "content": "You are a comedian."},
                {"role": "user", "content": "Tell me a joke about OpenTelemetry"},
            ],
            "outputs": [{
                "role": "assistant", "content": "Why did the span break up with the trace? Too many parents.",
                "finish_reason": "stop",
            }],
            "user_id": "u-7", "session_id": "chat-3", "is_error": False, "environment": None,
        }, id="openllmetry-openai"),
        pytest.param(VERCEL_DO_GENERATE, {
            "span_type": "CHAT_MODEL", "model": "gpt-4o-mini-2024-07-18", "provider": "openai",
            "input_tokens": 9, "output_tokens": 7, "total_tokens": 16, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": None, "reasoning_output_tokens": 0, "provided_cost_usd": None,
            "inputs": VERCEL_DO_GENERATE["ai.prompt.messages"], "outputs": "Hello! How can I help?",
            "user_id": "user-123", "session_id": "session-456", "is_error": False, "environment": None,
        }, id="vercel-ai-sdk"),
        pytest.param(LANGFUSE_GENERATION, {
            "span_type": "LLM", "model": "claude-sonnet-4-5", "provider": None,
            "input_tokens": 5210, "output_tokens": 96, "total_tokens": 5306, "cache_read_input_tokens": 4800,
            "cache_creation_input_tokens": 390, "reasoning_output_tokens": None, "provided_cost_usd": 0.0044025,
            "inputs": LANGFUSE_GENERATION["langfuse.observation.input"], "outputs": "Customer wants a refund.",
            "user_id": "agent-17", "session_id": "ticket-5512", "is_error": False, "environment": "production",
        }, id="langfuse"),
    ],
)  # fmt: skip
def test_library_span(attrs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert_canonical(normalise(attrs, "UNSET", ()), expected)


def test_canonical_keeps_the_fields_rows_py_reads() -> None:
    canon = normalise({}, "UNSET", ())
    assert Canonical._fields[:15] == (
        "span_type", "model", "provider", "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
        "cache_creation_input_tokens", "reasoning_output_tokens", "provided_cost_usd", "inputs", "outputs",
        "user_id", "session_id", "is_error",
    )  # fmt: skip
    assert canon.span_type == "UNKNOWN" and canon.environment is None


# --- more of each library ---------------------------------------------------------------------


def test_mlflow_root_span_decodes_json_encoded_text_and_ids() -> None:
    attrs = {
        "mlflow.traceRequestId": '"tr-0af7651916cd43dd8448eb211c80319c"',
        "mlflow.spanType": '"AGENT"',
        "mlflow.spanFunctionName": '"answer"',
        "mlflow.spanInputs": '"How do I reset my password?"',
        "mlflow.spanOutputs": '"Use the link in Settings \\u2192 Security."',
        "mlflow.traceTag.team": "support",
        "user.id": '"u-1001"',
        "session.id": "sess-77",
    }
    canon = normalise(attrs, "OK", ())
    assert canon.span_type == "AGENT"
    assert canon.inputs == "How do I reset my password?"
    assert canon.outputs == "Use the link in Settings \u2192 Security."
    assert (canon.user_id, canon.session_id) == ("u-1001", "sess-77")
    assert [getattr(canon, f) for f in TOKEN_FIELDS] == [None] * 6
    assert canon.provided_cost_usd is None


def test_mlflow_older_cached_input_tokens_key() -> None:
    attrs = {
        "mlflow.spanType": '"CHAT_MODEL"',
        "mlflow.chat.tokenUsage": '{"input_tokens": 1200, "output_tokens": 40, "total_tokens": 1240, '
        '"cached_input_tokens": 1024}',
    }
    canon = normalise(attrs, "UNSET", ())
    assert (canon.input_tokens, canon.output_tokens, canon.total_tokens, canon.cache_read_input_tokens) == (
        1200, 40, 1240, 1024,
    )  # fmt: skip


def test_openinference_input_value_wins_over_flattened_messages() -> None:
    attrs = {
        **OPENINFERENCE_LANGCHAIN_LLM,
        "input.value": '{"messages": [[{"lc": 1, "type": "constructor"}]]}',
        "input.mime_type": "application/json",
        "output.value": '{"generations": [[{"text": "30 days from delivery."}]]}',
        "output.mime_type": "application/json",
    }
    canon = normalise(attrs, "UNSET", ())
    assert canon.inputs == attrs["input.value"]
    assert canon.outputs == attrs["output.value"]


@pytest.mark.parametrize(
    ("mime", "expected"),
    [("application/json", "hello"), ("text/plain", '"hello"'), (None, '"hello"')],
)
def test_input_value_is_unquoted_only_when_declared_json(mime: str | None, expected: str) -> None:
    attrs = {"openinference.span.kind": "CHAIN", "input.value": '"hello"'}
    if mime:
        attrs["input.mime_type"] = mime
    assert normalise(attrs, "UNSET", ()).inputs == expected


def test_openinference_tool_calls_and_contents_are_reassembled() -> None:
    attrs = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.contents.0.message_content.type": "text",
        "llm.input_messages.0.message.contents.0.message_content.text": "Weather in Paris?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_9",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
    }
    canon = normalise(attrs, "UNSET", ())
    assert json.loads(canon.inputs) == [{"role": "user", "contents": [{"type": "text", "text": "Weather in Paris?"}]}]
    assert json.loads(canon.outputs) == [{
        "role": "assistant",
        "tool_calls": [{"id": "call_9", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
    }]  # fmt: skip


def test_openinference_retriever_documents_become_outputs() -> None:
    attrs = {
        "openinference.span.kind": "RETRIEVER",
        "input.value": "refund policy",
        "retrieval.documents.0.document.id": "kb-12",
        "retrieval.documents.0.document.content": "Refunds within 30 days.",
        "retrieval.documents.0.document.score": 0.83,
        "retrieval.documents.1.document.id": "kb-40",
        "retrieval.documents.1.document.content": "Shipping takes 2 days.",
        "retrieval.documents.1.document.score": 0.41,
    }
    canon = normalise(attrs, "UNSET", ())
    assert canon.span_type == "RETRIEVER"
    assert canon.inputs == "refund policy"
    assert json.loads(canon.outputs) == [
        {"id": "kb-12", "content": "Refunds within 30 days.", "score": 0.83},
        {"id": "kb-40", "content": "Shipping takes 2 days.", "score": 0.41},
    ]


def test_openllmetry_workflow_span() -> None:
    attrs = {
        "traceloop.span.kind": "workflow",
        "traceloop.entity.name": "joke_generator",
        "traceloop.workflow.name": "joke_generator",
        "traceloop.entity.path": "",
        "traceloop.entity.input": '{"args": [], "kwargs": {"topic": "OpenTelemetry"}}',
        "traceloop.entity.output": '"Why did the span break up with the trace?"',
    }
    canon = normalise(attrs, "UNSET", ())
    assert canon.span_type == "CHAIN"
    assert canon.inputs == attrs["traceloop.entity.input"]
    assert canon.outputs == "Why did the span break up with the trace?"
    assert canon.total_tokens is None


def test_genai_tool_span_uses_call_arguments_and_result() -> None:
    attrs = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call_mszuSIzqtI65i1wAUOE8w5H4",
        "gen_ai.tool.call.arguments": '{"location": "Paris"}',
        "gen_ai.tool.call.result": '{"temperature_c": 21}',
    }
    canon = normalise(attrs, "UNSET", ())
    assert (canon.span_type, canon.inputs, canon.outputs) == ("TOOL", '{"location": "Paris"}', '{"temperature_c": 21}')


def test_genai_structured_messages_are_serialised() -> None:
    """gen_ai.input.messages may arrive as an OTLP kvlist/array (decoded to Python) instead of a string."""
    messages = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    canon = normalise({"gen_ai.operation.name": "chat", "gen_ai.input.messages": messages}, "UNSET", ())
    assert json.loads(canon.inputs) == messages


def test_payload_beyond_int64_is_still_text() -> None:
    """OTLP JSON can carry an intValue orjson refuses; the payload must still become text."""
    assert normalise({"input.value": 2**70}, "UNSET", ()).inputs == str(2**70)


def test_genai_system_instructions_only_when_no_messages() -> None:
    attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.system_instructions": GENAI_SYSTEM}
    assert normalise(attrs, "UNSET", ()).inputs == GENAI_SYSTEM
    assert normalise({**attrs, "gen_ai.input.messages": GENAI_INPUT}, "UNSET", ()).inputs == GENAI_INPUT


def test_vercel_outer_span_is_orchestration_and_tool_call_is_tool() -> None:
    outer = {
        "operation.name": "ai.generateText support-chat",
        "ai.operationId": "ai.generateText",
        "ai.model.id": "gpt-4o-mini",
        "ai.model.provider": "openai.chat",
        "ai.prompt": '{"prompt": "Hi there"}',
        "ai.response.text": "Hello! How can I help?",
        "ai.usage.promptTokens": 9,
        "ai.usage.completionTokens": 7,
    }
    canon = normalise(outer, "UNSET", ())
    assert (canon.span_type, canon.provider, canon.model) == ("CHAIN", "openai", "gpt-4o-mini")
    assert (canon.input_tokens, canon.output_tokens, canon.total_tokens) == (9, 7, 16)
    assert canon.inputs == '{"prompt": "Hi there"}'
    tool = {"ai.operationId": "ai.toolCall", "ai.toolCall.name": "search", "ai.toolCall.id": "call_1",
            "ai.toolCall.args": '{"q": "spanlake"}', "ai.toolCall.result": '["hit"]'}  # fmt: skip
    canon = normalise(tool, "UNSET", ())
    assert (canon.span_type, canon.inputs, canon.outputs) == ("TOOL", '{"q": "spanlake"}', '["hit"]')


def test_vercel_span_name_fallback() -> None:
    assert normalise({}, "UNSET", (), span_name="ai.embedMany.doEmbed").span_type == "EMBEDDING"
    assert normalise({}, "UNSET", (), span_name="ai.somethingNew").span_type == "UNKNOWN"


def test_langfuse_openai_buckets_and_compat_ids() -> None:
    attrs = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "o4-mini",
        "langfuse.observation.usage_details": '{"input": 176, "input_cached_tokens": 1024, "output": 50, '
        '"output_reasoning_tokens": 128, "total": 1378}',
        "langfuse.observation.cost_details": '{"input": 0.0002, "output": 0.0008}',
        "langfuse.user.id": "u-9",
        "langfuse.session.id": "s-9",
    }
    canon = normalise(attrs, "UNSET", ())
    assert [getattr(canon, f) for f in TOKEN_FIELDS] == [1200, 178, 1378, 1024, None, 128]
    assert canon.provided_cost_usd == pytest.approx(0.001)
    assert (canon.user_id, canon.session_id) == ("u-9", "s-9")


# --- span types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"mlflow.spanType": '"RETRIEVER"'}, "RETRIEVER"),
        ({"mlflow.spanType": '"PARSER"'}, "PARSER"),
        ({"mlflow.spanType": '"MEMORY"'}, "CHAIN"),
        ({"mlflow.spanType": '"GUARDRAIL"'}, "CHAIN"),
        ({"mlflow.spanType": '"my_custom_type"', "gen_ai.operation.name": "chat"}, "CHAT_MODEL"),
        ({"openinference.span.kind": "EMBEDDING"}, "EMBEDDING"),
        ({"openinference.span.kind": "RERANKER"}, "RERANKER"),
        ({"openinference.span.kind": "GUARDRAIL"}, "CHAIN"),
        ({"openinference.span.kind": "EVALUATOR"}, "CHAIN"),
        ({"openinference.span.kind": "PROMPT"}, "CHAIN"),
        ({"openinference.span.kind": "UNKNOWN", "gen_ai.operation.name": "embeddings"}, "EMBEDDING"),
        ({"openinference.span.kind": "agent"}, "AGENT"),
        ({"gen_ai.operation.name": "text_completion"}, "LLM"),
        ({"gen_ai.operation.name": "generate_content"}, "LLM"),
        ({"gen_ai.operation.name": "retrieval"}, "RETRIEVER"),
        ({"gen_ai.operation.name": "create_agent"}, "AGENT"),
        ({"gen_ai.operation.name": "invoke_workflow"}, "CHAIN"),
        ({"gen_ai.operation.name": "something_new"}, "UNKNOWN"),
        ({"langfuse.observation.type": "embedding"}, "EMBEDDING"),
        ({"langfuse.observation.type": "guardrail"}, "CHAIN"),
        ({"langfuse.observation.type": "span"}, "UNKNOWN"),
        ({"traceloop.span.kind": "task"}, "CHAIN"),
        ({"traceloop.span.kind": "agent"}, "AGENT"),
        ({"traceloop.span.kind": "tool"}, "TOOL"),
        ({"llm.request.type": "embedding"}, "EMBEDDING"),
        ({"llm.request.type": "rerank"}, "RERANKER"),
        ({"llm.request.type": "completion"}, "LLM"),
        ({"ai.operationId": "ai.streamText.doStream"}, "CHAT_MODEL"),
        ({"ai.operationId": "ai.embed.doEmbed"}, "EMBEDDING"),
        ({"mlflow.spanType": '"TOOL"', "openinference.span.kind": "LLM"}, "TOOL"),  # MLflow wins
        ({"openinference.span.kind": "CHAIN", "gen_ai.operation.name": "chat"}, "CHAIN"),  # explicit kind wins
        ({}, "UNKNOWN"),
    ],
)
def test_span_type(attrs: dict[str, Any], expected: str) -> None:
    assert normalise(attrs, "UNSET", ()).span_type == expected


# --- model calls that report less than their attributes should --------------------------------

# mlflow.openai.autolog() on a chat completion that failed (a 429): MLflow copies the call's keyword
# arguments but the messages onto the span when it starts (JSON-encoded, as every value over OTLP),
# keeps all of them as the span's inputs, and on the exception ends the span ERROR with an
# `exception` event: no response, so no mlflow.llm.model and no usage.
MLFLOW_OPENAI_FAILED_CHAT = {
    "mlflow.traceRequestId": '"tr-5c1e0b8d8a2f4e3b9c7d6e5f4a3b2c1d"',
    "mlflow.spanType": '"CHAT_MODEL"',
    "mlflow.spanFunctionName": '"create"',
    "mlflow.spanInputs": '{"messages": [{"role": "user", "content": "Where is my order #4411?"}], '
    '"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 256}',
    "model": '"gpt-4o-mini"',
    "temperature": "0.2",
    "max_tokens": "256",
}
# mlflow.langchain.autolog() on a ChatOpenAI call that failed: the span's attributes are LangChain's
# callback kwargs (invocation_params, options, batch_size, metadata), its inputs the message batches.
MLFLOW_LANGCHAIN_FAILED_CHAT = {
    "mlflow.traceRequestId": '"tr-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"',
    "mlflow.spanType": '"CHAT_MODEL"',
    "mlflow.spanInputs": '[[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", '
    '"HumanMessage"], "kwargs": {"content": "Summarise the ticket.", "type": "human"}}]]',
    "invocation_params": '{"model": "gpt-4o-mini", "model_name": "gpt-4o-mini", "stream": false, "n": 1, '
    '"temperature": 0.0, "_type": "openai-chat", "stop": null}',
    "options": '{"stop": null}',
    "batch_size": "1",
    "metadata": '{"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "ls_model_type": "chat", '
    '"ls_temperature": 0.0}',
}
# openinference-instrumentation-openai on the same failed call: the request becomes input.value (JSON)
# and llm.invocation_parameters (the request but the messages and tools); llm.model_name and the
# token counts come from the response, which never arrived.
OPENINFERENCE_OPENAI_FAILED_CHAT = {
    "openinference.span.kind": "LLM",
    "llm.provider": "openai",
    "llm.system": "openai",
    "input.value": '{"messages": [{"role": "user", "content": "Where is my order #4411?"}], "model": "gpt-4o", '
    '"temperature": 0.1}',
    "input.mime_type": "application/json",
    "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0.1}',
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Where is my order #4411?",
}


def test_a_failed_mlflow_openai_call_records_the_requested_model() -> None:
    assert_canonical(normalise(MLFLOW_OPENAI_FAILED_CHAT, "ERROR", ("exception",)), {
        "span_type": "CHAT_MODEL", "model": "gpt-4o-mini", "provider": None, **NO_TOKENS, "provided_cost_usd": None,
        "inputs": MLFLOW_OPENAI_FAILED_CHAT["mlflow.spanInputs"], "outputs": None, "user_id": None,
        "session_id": None, "is_error": True, "environment": None,
    })  # fmt: skip


def test_a_failed_openinference_openai_call_records_the_requested_model() -> None:
    assert_canonical(normalise(OPENINFERENCE_OPENAI_FAILED_CHAT, "ERROR", ("exception",)), {
        "span_type": "LLM", "model": "gpt-4o", "provider": "openai", **NO_TOKENS, "provided_cost_usd": None,
        "inputs": OPENINFERENCE_OPENAI_FAILED_CHAT["input.value"], "outputs": None, "user_id": None,
        "session_id": None, "is_error": True, "environment": None,
    })  # fmt: skip


def without(attrs: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k not in keys}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # Each source of the requested model on its own.
        pytest.param(without(MLFLOW_OPENAI_FAILED_CHAT, "mlflow.spanInputs"), "gpt-4o-mini", id="mlflow-kwargs"),
        pytest.param(without(MLFLOW_OPENAI_FAILED_CHAT, "model"), "gpt-4o-mini", id="mlflow-json-inputs"),
        pytest.param(MLFLOW_LANGCHAIN_FAILED_CHAT, "gpt-4o-mini", id="mlflow-langchain-invocation-params"),
        pytest.param({**MLFLOW_LANGCHAIN_FAILED_CHAT, "invocation_params":
                      '{"model_id": "anthropic.claude-3-5-haiku-20241022-v1:0", "_type": "amazon_bedrock_chat"}'},
                     "anthropic.claude-3-5-haiku-20241022-v1:0", id="langchain-bedrock-model-id"),
        pytest.param(without(OPENINFERENCE_OPENAI_FAILED_CHAT, "input.value"), "gpt-4o", id="oi-invocation-params"),
        pytest.param(without(OPENINFERENCE_OPENAI_FAILED_CHAT, "llm.invocation_parameters"), "gpt-4o",
                     id="oi-json-input-value"),
        # Request parameters win over the inputs; a reported model wins over both.
        pytest.param({**MLFLOW_OPENAI_FAILED_CHAT, "model": '"gpt-4.1"'}, "gpt-4.1", id="params-before-inputs"),
        pytest.param({**OPENINFERENCE_OPENAI_FAILED_CHAT, "llm.model_name": "gpt-4o-2024-08-06"}, "gpt-4o-2024-08-06",
                     id="reported-model-wins"),
        # A text/plain input.value is the user's text, never parsed, even when it looks like JSON.
        pytest.param({**without(OPENINFERENCE_OPENAI_FAILED_CHAT, "llm.invocation_parameters"),
                      "input.mime_type": "text/plain"}, None, id="oi-text-input-not-parsed"),
        # Only model calls are asked: a chain or tool whose inputs name a model did not call it.
        pytest.param({"mlflow.spanType": '"CHAIN"', "mlflow.spanInputs": '{"model": "gpt-4o", "q": "hi"}',
                      "model": '"gpt-4o"'}, None, id="chain-not-a-call"),
        pytest.param({"openinference.span.kind": "TOOL", "llm.invocation_parameters": '{"model": "gpt-4o"}'}, None,
                     id="tool-not-a-call"),
        # Garbage in the parameters is skipped, not raised.
        pytest.param({**without(MLFLOW_OPENAI_FAILED_CHAT, "mlflow.spanInputs", "model"), "invocation_params": "{oops",
                      "llm.invocation_parameters": '{"model": {"name": "x"}}'}, None, id="garbage-params"),
    ],
)  # fmt: skip
def test_requested_model_of_a_call_without_a_response(attrs: dict[str, Any], expected: str | None) -> None:
    assert normalise(attrs, "ERROR", ("exception",)).model == expected


# mlflow.openai.autolog() on an embeddings call: the span is EMBEDDING and its outputs are the
# CreateEmbeddingResponse, whose usage is the only place the token count is.
MLFLOW_OPENAI_EMBEDDINGS = {
    "mlflow.traceRequestId": '"tr-1a2b3c4d5e6f47889900aabbccddeeff"',
    "mlflow.spanType": '"EMBEDDING"',
    "mlflow.spanFunctionName": '"create"',
    "mlflow.spanInputs": '{"input": ["refund policy", "shipping times"], "model": "text-embedding-3-small"}',
    "mlflow.spanOutputs": '{"data": [{"embedding": [0.0123, -0.0456, 0.0789], "index": 0, "object": "embedding"}, '
    '{"embedding": [0.0231, 0.0112, -0.0644], "index": 1, "object": "embedding"}], '
    '"model": "text-embedding-3-small", "object": "list", "usage": {"prompt_tokens": 6, "total_tokens": 6}}',
    "model": '"text-embedding-3-small"',
}
# mlflow.openai.autolog() of a version that does not set mlflow.chat.tokenUsage: the ChatCompletion
# in the outputs carries the answering model and the usage, cache and reasoning parts included.
MLFLOW_OPENAI_CHAT_BODY = {
    "mlflow.spanType": '"CHAT_MODEL"',
    "mlflow.spanInputs": '{"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini"}',
    "mlflow.spanOutputs": '{"id": "chatcmpl-AbC123", "object": "chat.completion", "created": 1762000000, '
    '"model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "message": {"role": "assistant", '
    '"content": "Hello!"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1350, "completion_tokens": 17, '
    '"total_tokens": 1367, "prompt_tokens_details": {"cached_tokens": 1152, "audio_tokens": 0}, '
    '"completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}, "system_fingerprint": "fp_44709d6fcb"}',
    "model": '"gpt-4o-mini"',
}


def test_mlflow_embeddings_usage_is_read_from_the_response_body() -> None:
    assert_canonical(normalise(MLFLOW_OPENAI_EMBEDDINGS, "OK", ()), {
        "span_type": "EMBEDDING", "model": "text-embedding-3-small", "provider": None,
        "input_tokens": 6, "output_tokens": None, "total_tokens": 6, "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None, "reasoning_output_tokens": None, "provided_cost_usd": None,
        "inputs": MLFLOW_OPENAI_EMBEDDINGS["mlflow.spanInputs"], "outputs": MLFLOW_OPENAI_EMBEDDINGS["mlflow.spanOutputs"],
        "user_id": None, "session_id": None, "is_error": False, "environment": None,
    })  # fmt: skip


def test_chat_completion_body_gives_the_answering_model_and_usage() -> None:
    canon = normalise(MLFLOW_OPENAI_CHAT_BODY, "OK", ())
    assert canon.model == "gpt-4o-mini-2024-07-18"  # the response's model, not the requested alias
    assert [getattr(canon, f) for f in TOKEN_FIELDS] == [1350, 17, 1367, 1152, None, 0]


def body(usage: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"mlflow.spanType": '"CHAT_MODEL"', "mlflow.spanOutputs": json.dumps({**fields, "usage": usage})}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # OpenAI Responses API: input_tokens is inclusive there (its cached part is a detail).
        pytest.param(body({"input_tokens": 36, "input_tokens_details": {"cached_tokens": 12}, "output_tokens": 87,
                           "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 123}),
                     [36, 87, 123, 12, None, 64], id="openai-responses"),
        # Anthropic Messages: input_tokens excludes the cache, whose counts sit beside it.
        pytest.param(body({"input_tokens": 20, "output_tokens": 96, "cache_read_input_tokens": 4800,
                           "cache_creation_input_tokens": 390}, model="claude-sonnet-4-5-20250929"),
                     [5210, 96, 5306, 4800, 390, None], id="anthropic-additive"),
        pytest.param(body({"input_tokens": 9000, "output_tokens": 96, "cache_read_input_tokens": 4800}),
                     [13800, 96, 13896, 4800, None, None], id="anthropic-additive-even-when-larger"),
        # LiteLLM: the same cache names beside an inclusive prompt_tokens, so nothing is added.
        pytest.param(body({"prompt_tokens": 5210, "completion_tokens": 96, "total_tokens": 5306,
                           "cache_read_input_tokens": 4800, "cache_creation_input_tokens": 390,
                           "prompt_tokens_details": {"cached_tokens": 4800}}),
                     [5210, 96, 5306, 4800, 390, None], id="litellm-inclusive"),
        # LangChain's LLMResult as MLflow's LangChain autologger stores it: llm_output.token_usage.
        pytest.param({"mlflow.spanType": '"CHAT_MODEL"', "mlflow.spanOutputs": json.dumps({
            "generations": [[{"text": "Refund approved.", "generation_info": {"finish_reason": "stop"},
                              "type": "ChatGeneration"}]],
            "llm_output": {"token_usage": {"completion_tokens": 9, "prompt_tokens": 19, "total_tokens": 28},
                           "model_name": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1"},
            "run": None, "type": "LLMResult"})}, [19, 9, 28, None, None, None], id="langchain-llm-result"),
        # OpenInference output.value declared JSON counts; undeclared it is text and is left alone.
        pytest.param({"openinference.span.kind": "EMBEDDING", "output.mime_type": "application/json",
                      "output.value": '{"usage": {"prompt_tokens": 8, "total_tokens": 8}}'},
                     [8, None, 8, None, None, None], id="oi-json-output"),
        pytest.param({"openinference.span.kind": "EMBEDDING",
                      "output.value": '{"usage": {"prompt_tokens": 8, "total_tokens": 8}}'}, [None] * 6,
                     id="oi-text-output-not-parsed"),
        # Usage attributes win over the body; a non-model span's body is not a model's response.
        pytest.param({**body({"prompt_tokens": 1, "completion_tokens": 1}),
                      "mlflow.chat.tokenUsage": '{"input_tokens": 40, "output_tokens": 2, "total_tokens": 42}'},
                     [40, 2, 42, None, None, None], id="attributes-win"),
        pytest.param({"mlflow.spanType": '"AGENT"', "mlflow.spanOutputs": json.dumps(
            {"final_output": "done", "usage": {"input_tokens": 500, "output_tokens": 50}})}, [None] * 6,
                     id="agent-body-not-read"),
        # Malformed bodies are skipped.
        pytest.param(body({"prompt_tokens": "many", "total_tokens": -1}), [None] * 6, id="garbage-counts"),
        pytest.param({"mlflow.spanType": '"CHAT_MODEL"', "mlflow.spanOutputs": '{"usage": [1, 2]'}, [None] * 6,
                     id="broken-json"),
    ],
)  # fmt: skip
def test_usage_from_the_response_body(attrs: dict[str, Any], expected: list[int | None]) -> None:
    canon = normalise(attrs, "OK", ())
    assert [getattr(canon, f) for f in TOKEN_FIELDS] == expected


def test_a_large_response_body_is_read_from_its_tail() -> None:
    """A batch of embeddings is megabytes of vectors: only the usage and model after them are decoded,
    and a key quoted inside the payload's text (escaped there) is not mistaken for them."""
    vectors = [{"embedding": [0.0123456789] * 1536, "index": i, "object": "embedding"} for i in range(20)]
    outputs = json.dumps({"data": vectors, "model": "text-embedding-3-large", "object": "list",
                          "usage": {"prompt_tokens": 412, "total_tokens": 412}})  # fmt: skip
    attrs = {**MLFLOW_OPENAI_EMBEDDINGS, "mlflow.spanOutputs": outputs, "model": '"text-embedding-3-small"'}
    assert len(outputs) > 400_000
    canon = normalise(attrs, "OK", ())
    assert (canon.model, canon.input_tokens, canon.total_tokens) == ("text-embedding-3-large", 412, 412)

    content = "Quoted log line: " + json.dumps({"usage": {"prompt_tokens": 1}, "model": "fake"}) + " x" * 20_000
    chat = json.dumps({"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                       "model": "gpt-4o-2024-08-06", "object": "chat.completion",
                       "usage": {"prompt_tokens": 90, "completion_tokens": 20_001, "total_tokens": 20_091}})  # fmt: skip
    canon = normalise({"mlflow.spanType": '"CHAT_MODEL"', "mlflow.spanOutputs": chat}, "OK", ())
    assert (canon.model, canon.input_tokens, canon.output_tokens) == ("gpt-4o-2024-08-06", 90, 20_001)

    # The tail is all that is read: a large body whose usage comes first reports none.
    early = json.dumps({"usage": {"prompt_tokens": 5, "total_tokens": 5}, "data": vectors})
    assert normalise({"mlflow.spanType": '"EMBEDDING"', "mlflow.spanOutputs": early}, "OK", ()).total_tokens is None


def test_langchain_llm_result_gives_the_answering_model() -> None:
    outputs = {"generations": [[{"text": "ok"}]], "llm_output": {"model_name": "gpt-4o-mini-2024-07-18"}}
    attrs = {**MLFLOW_LANGCHAIN_FAILED_CHAT, "mlflow.spanOutputs": json.dumps(outputs)}
    assert normalise(attrs, "OK", ()).model == "gpt-4o-mini-2024-07-18"


# A span made by hand under the README's exporter snippet: no operation name, no span kind.
HAND_MADE_MODEL_CALL = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 812,
                        "gen_ai.usage.output_tokens": 64}  # fmt: skip


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        pytest.param(HAND_MADE_MODEL_CALL, "LLM", id="genai-hand-made"),
        pytest.param({"llm.model_name": "gpt-4o", "llm.token_count.total": 90}, "LLM", id="openinference-no-kind"),
        # MLflow's default span type is UNKNOWN; a manual span with its model and usage is a call.
        pytest.param({"mlflow.spanType": '"UNKNOWN"', "mlflow.llm.model": '"claude-sonnet-4-5"',
                      "mlflow.chat.tokenUsage": '{"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}'},
                     "LLM", id="mlflow-unknown"),
        # Either alone says nothing: a model named in a config, a usage summary.
        pytest.param(without(HAND_MADE_MODEL_CALL, "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"),
                     "UNKNOWN", id="model-only"),
        pytest.param(without(HAND_MADE_MODEL_CALL, "gen_ai.request.model"), "UNKNOWN", id="usage-only"),
        pytest.param({**HAND_MADE_MODEL_CALL, "gen_ai.usage.input_tokens": "n/a", "gen_ai.usage.output_tokens": None},
                     "UNKNOWN", id="unusable-usage"),
        # A type that a convention gave is kept: orchestration that sums its children stays CHAIN.
        pytest.param({**HAND_MADE_MODEL_CALL, "openinference.span.kind": "CHAIN"}, "CHAIN", id="explicit-chain"),
        pytest.param({**HAND_MADE_MODEL_CALL, "ai.operationId": "ai.generateText"}, "CHAIN", id="vercel-outer"),
    ],
)  # fmt: skip
def test_an_untyped_span_with_a_model_and_usage_is_a_model_call(attrs: dict[str, Any], expected: str) -> None:
    assert normalise(attrs, "UNSET", ()).span_type == expected


def test_an_inferred_model_call_has_its_total() -> None:
    canon = normalise(HAND_MADE_MODEL_CALL, "UNSET", ())
    assert (canon.span_type, canon.model, canon.total_tokens) == ("LLM", "gpt-4o-mini", 876)


# --- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "events", "attrs", "expected"),
    [
        ("UNSET", (), {}, False),
        ("OK", (), {}, False),
        ("ERROR", (), {}, True),
        ("UNSET", (), {"error.type": "openai.RateLimitError"}, True),
        ("OK", (), {"error.type": "_OTHER"}, True),
        ("UNSET", ("exception",), {}, True),
        ("UNSET", ("gen_ai.content.prompt", "mlflow.chunk.item.0"), {}, False),
        ("UNSET", (), {"langfuse.observation.level": "ERROR"}, True),
        ("UNSET", (), {"langfuse.observation.level": "WARNING"}, False),
    ],
)
def test_is_error(status: str, events: tuple[str, ...], attrs: dict[str, Any], expected: bool) -> None:
    assert normalise(attrs, status, events).is_error is expected


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
        {"openinference.span.kind": "CHAIN", "input.value": "q", "output.value": "a"},
        {"mlflow.spanType": '"CHAIN"', "mlflow.spanInputs": '{"q": 1}'},
        {"traceloop.span.kind": "task", "traceloop.entity.name": "plan"},
        {"langfuse.observation.type": "span", "langfuse.observation.input": '"x"'},
        {"ai.operationId": "ai.toolCall", "ai.toolCall.name": "search"},
        {"openinference.span.kind": "LLM", "llm.token_count.prompt_details.cache_read": 10},  # details alone
    ],
)
def test_no_usage_means_none_not_zero(attrs: dict[str, Any]) -> None:
    canon = normalise(attrs, "UNSET", ())
    assert {f: getattr(canon, f) for f in TOKEN_FIELDS} == NO_TOKENS
    assert canon.provided_cost_usd is None


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # An embedding reports input only: no output, so no total either.
        ({"gen_ai.operation.name": "embeddings", "gen_ai.usage.input_tokens": 14}, [14, None, 14, None, None, None]),
        # Reported zero is a count, not "missing".
        ({"gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0}, [0, 0, 0, None, None, None]),
        # A reported total is kept even when it is not input + output (e.g. Gemini's tool-use prompt).
        ({"llm.token_count.prompt": 10, "llm.token_count.completion": 5, "llm.token_count.total": 18},
         [10, 5, 18, None, None, None]),
        # Cache writes from OpenInference and the dotted GenAI names.
        ({"llm.token_count.prompt": 3000, "llm.token_count.completion": 10,
          "llm.token_count.prompt_details.cache_write": 2500, "llm.token_count.completion_details.reasoning": 4},
         [3000, 10, 3010, None, 2500, 4]),
        ({"gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 10,
          "gen_ai.usage.cache_creation.input_tokens": 2500}, [3000, 10, 3010, None, 2500, None]),
        # Anthropic's input_tokens passed straight through (additive): cache parts are added back.
        ({"gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 10,
          "gen_ai.usage.cache_read.input_tokens": 2000, "gen_ai.usage.cache_creation.input_tokens": 100},
         [2150, 10, 2160, 2000, 100, None]),
        # ... and a total reported next to them that also left the cache out is recomputed.
        ({"mlflow.chat.tokenUsage": '{"input_tokens": 50, "output_tokens": 10, "total_tokens": 60, '
                                    '"cache_read_input_tokens": 2000}'}, [2050, 10, 2060, 2000, None, None]),
        # Gemini-style candidates count without the thoughts.
        ({"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
          "gen_ai.usage.reasoning.output_tokens": 300}, [100, 320, 420, None, None, 300]),
        # Deprecated GenAI names and string values (MLflow-style numbers).
        ({"gen_ai.usage.prompt_tokens": "12", "gen_ai.usage.completion_tokens": "3"}, [12, 3, 15, None, None, None]),
        # Vercel AI SDK 6 nested details.
        ({"ai.usage.inputTokens": 900, "ai.usage.outputTokens": 60,
          "ai.usage.inputTokenDetails.cacheReadTokens": 512, "ai.usage.inputTokenDetails.cacheWriteTokens": 128,
          "ai.usage.outputTokenDetails.reasoningTokens": 32}, [900, 60, 960, 512, 128, 32]),
        # A malformed count is treated as not reported: text, booleans, negatives, non-finite, and
        # anything beyond int64 (which would fail the whole batch's Arrow conversion).
        ({"gen_ai.usage.input_tokens": "n/a", "gen_ai.usage.output_tokens": True}, [None] * 6),
        ({"gen_ai.usage.input_tokens": 2**70, "gen_ai.usage.output_tokens": -3}, [None] * 6),
        ({"gen_ai.usage.input_tokens": float("inf"), "gen_ai.usage.output_tokens": "12"},
         [None, 12, 12, None, None, None]),
    ],
)  # fmt: skip
def test_token_rules(attrs: dict[str, Any], expected: list[int | None]) -> None:
    canon = normalise(attrs, "UNSET", ())
    assert [getattr(canon, f) for f in TOKEN_FIELDS] == expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"llm.cost.total": 0.0123}, 0.0123),
        ({"gen_ai.usage.cost": "0.5"}, 0.5),
        ({"mlflow.llm.cost": '{"input_cost": 0.25, "output_cost": 0.5}'}, 0.75),
        ({"mlflow.llm.cost": '{"input_cost": 0.25, "output_cost": 0.5, "total_cost": 0.75}'}, 0.75),
        ({"langfuse.observation.cost_details": '{"total": 0.02, "input": 0.01}'}, 0.02),
        ({"llm.cost.total": 0.1, "mlflow.llm.cost": '{"total_cost": 9.0}'}, 0.1),
        ({"mlflow.llm.cost": "not json"}, None),
        ({"llm.cost.total": float("nan")}, None),
        # A structured (kvlist) value can hold a non-finite double: skipped, not summed as None.
        ({"langfuse.observation.cost_details": {"input": float("inf"), "output": 0.5}}, 0.5),
    ],
)
def test_provided_cost(attrs: dict[str, Any], expected: float | None) -> None:
    assert normalise(attrs, "UNSET", ()).provided_cost_usd == (pytest.approx(expected) if expected else None)


# --- ids, provider, environment ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "user", "session"),
    [
        ({"user.id": "u", "langfuse.user.id": "lf", "session.id": "s", "gen_ai.conversation.id": "c"}, "u", "s"),
        ({"gen_ai.conversation.id": "c"}, None, "c"),
        ({"ai.telemetry.metadata.userId": "vu", "ai.telemetry.metadata.sessionId": "vs"}, "vu", "vs"),
        ({"enduser.id": "legacy"}, "legacy", None),
        ({"user.id": 42}, "42", None),
        ({"metadata": '{"session_id": "m-s", "user_id": "m-u"}', "session.id": "attr-s"}, "m-u", "attr-s"),
        ({"metadata": "{not json", "openinference.span.kind": "LLM"}, None, None),
    ],
)
def test_user_and_session(attrs: dict[str, Any], user: str | None, session: str | None) -> None:
    canon = normalise(attrs, "UNSET", ())
    assert (canon.user_id, canon.session_id) == (user, session)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"gen_ai.provider.name": "aws.bedrock", "gen_ai.system": "anthropic"}, "aws.bedrock"),
        ({"gen_ai.system": "Anthropic"}, "anthropic"),
        ({"llm.provider": "azure", "llm.system": "openai"}, "azure"),
        ({"mlflow.llm.provider": '"bedrock"'}, "bedrock"),
        ({"ai.operationId": "ai.generateText.doGenerate", "ai.model.provider": "anthropic.messages",
          "gen_ai.system": "anthropic.messages"}, "anthropic"),
        ({}, None),
    ],
)  # fmt: skip
def test_provider(attrs: dict[str, Any], expected: str | None) -> None:
    assert normalise(attrs, "UNSET", ()).provider == expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"langfuse.environment": "staging", "deployment.environment.name": "prod"}, "staging"),
        ({"deployment.environment.name": "prod"}, "prod"),
        ({"deployment.environment": "dev"}, "dev"),
        ({}, None),
    ],
)
def test_environment(attrs: dict[str, Any], expected: str | None) -> None:
    assert normalise(attrs, "UNSET", ()).environment == expected


# --- trace tags -------------------------------------------------------------------------------


def test_trace_tags_from_an_mlflow_root_span() -> None:
    attrs = {
        "mlflow.traceRequestId": '"tr-0af7651916cd43dd8448eb211c80319c"',
        "mlflow.spanType": '"AGENT"',
        "mlflow.spanInputs": '"How do I reset my password?"',
        "mlflow.spanOutputs": '"Use the reset link."',
        "mlflow.traceTag.team": "support",
        "mlflow.traceTag.release": '"2025.11"',
        "app.version": "2025.11.3",
        "user.id": "u-1001",
        "release": "shadowed by the trace tag",
        "temperature": 0.2,
    }
    assert trace_tags(attrs) == {
        "team": "support", "release": "2025.11", "app.version": "2025.11.3", "user.id": "u-1001",
    }  # fmt: skip


def test_trace_tags_skip_payloads_and_take_list_tags() -> None:
    attrs = {
        **OPENINFERENCE_LANGCHAIN_LLM,
        "input.value": "What is the refund window?",
        "langfuse.trace.tags": '["beta"]',
        "gen_ai.input.messages": GENAI_INPUT,
    }
    tags = trace_tags(attrs)
    assert tags["rag"] == "" and tags["prod"] == "" and tags["beta"] == ""
    assert tags["session.id"] == "thread-42"
    for key in tags:
        assert not key.startswith(("llm.input_messages.", "llm.output_messages.")), key
    assert "input.value" not in tags and "gen_ai.input.messages" not in tags
    assert "llm.invocation_parameters" not in tags


def test_trace_tags_truncate_long_values() -> None:
    assert trace_tags({"note": "x" * 5000})["note"] == "x" * 1000
