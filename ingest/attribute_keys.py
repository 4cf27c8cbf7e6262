"""The attribute keys each instrumentation library writes, as named constants: one class per
library, then the key tuples that say which key wins when several are present (first =
preferred), and the span-type maps. `conventions.py` turns them into canonical columns;
docs/CONVENTIONS.md is the same map as a table.

Sources: OpenTelemetry GenAI semantic conventions (current and deprecated names), OpenInference
(Arize), MLflow 3 tracing exported over OTLP, OpenLLMetry (Traceloop), Langfuse and the Vercel AI
SDK.
"""

from __future__ import annotations

from spanlake.tables.tokens import MODEL_CALL_TYPES  # noqa: F401  (the rule's vocabulary lives in tables)


# --- the conventions ------------------------------------------------------------------------


class GenAI:
    """OpenTelemetry GenAI semantic conventions (gen_ai.*)."""

    OPERATION_NAME = "gen_ai.operation.name"
    PROVIDER_NAME = "gen_ai.provider.name"
    SYSTEM = "gen_ai.system"  # deprecated alias of provider.name; OpenLLMetry and Vercel still write it
    REQUEST_MODEL = "gen_ai.request.model"
    RESPONSE_MODEL = "gen_ai.response.model"
    # Usage. input includes cache reads and cache writes, output includes reasoning (inclusive).
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
    CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
    REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
    PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # deprecated
    COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"  # deprecated
    # Spellings from before the dotted names (OpenLLMetry still writes them).
    CACHE_READ_INPUT_TOKENS_OLD = "gen_ai.usage.cache_read_input_tokens"
    CACHE_CREATION_INPUT_TOKENS_OLD = "gen_ai.usage.cache_creation_input_tokens"
    REASONING_TOKENS_OLD = "gen_ai.usage.reasoning_tokens"
    TOTAL_TOKENS = "gen_ai.usage.total_tokens"  # not semconv, but some SDKs write it
    COST = "gen_ai.usage.cost"  # not semconv either: a USD number some gateways add
    # Content (opt-in in the semconv). Messages are JSON arrays, as strings or structured values.
    INPUT_MESSAGES = "gen_ai.input.messages"
    OUTPUT_MESSAGES = "gen_ai.output.messages"
    SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
    PROMPT = "gen_ai.prompt"  # deprecated
    COMPLETION = "gen_ai.completion"  # deprecated
    # OpenLLMetry (older) flattens messages: gen_ai.prompt.0.role, gen_ai.completion.0.content, ...
    PROMPT_PREFIX = "gen_ai.prompt."
    COMPLETION_PREFIX = "gen_ai.completion."
    TOOL_NAME = "gen_ai.tool.name"
    TOOL_TYPE = "gen_ai.tool.type"
    TOOL_DESCRIPTION = "gen_ai.tool.description"
    TOOL_DEFINITIONS = "gen_ai.tool.definitions"
    TOOL_CALL_ID = "gen_ai.tool.call.id"
    TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
    TOOL_CALL_RESULT = "gen_ai.tool.call.result"
    AGENT_ID = "gen_ai.agent.id"
    AGENT_NAME = "gen_ai.agent.name"
    AGENT_DESCRIPTION = "gen_ai.agent.description"
    DATA_SOURCE_ID = "gen_ai.data_source.id"
    CONVERSATION_ID = "gen_ai.conversation.id"


class OpenInference:
    """Arize OpenInference (Phoenix, LangChain/LlamaIndex/OpenAI instrumentors, ...)."""

    SPAN_KIND = "openinference.span.kind"
    MODEL_NAME = "llm.model_name"
    REQUEST_MODEL_NAME = "llm.request.model_name"
    RESPONSE_MODEL_NAME = "llm.response.model_name"
    EMBEDDING_MODEL_NAME = "embedding.model_name"
    RERANKER_MODEL_NAME = "reranker.model_name"
    PROVIDER = "llm.provider"  # who hosts the model (openai, azure, aws, ...)
    SYSTEM = "llm.system"  # whose API it is (openai, anthropic, ...)
    INVOCATION_PARAMETERS = "llm.invocation_parameters"
    TOOLS = "llm.tools"
    # Usage, inclusive like GenAI: prompt includes cache read/write, completion includes reasoning.
    PROMPT_TOKENS = "llm.token_count.prompt"
    COMPLETION_TOKENS = "llm.token_count.completion"
    TOTAL_TOKENS = "llm.token_count.total"
    CACHE_READ_TOKENS = "llm.token_count.prompt_details.cache_read"
    CACHE_WRITE_TOKENS = "llm.token_count.prompt_details.cache_write"
    REASONING_TOKENS = "llm.token_count.completion_details.reasoning"
    COST_TOTAL = "llm.cost.total"  # USD
    INPUT_VALUE = "input.value"
    INPUT_MIME_TYPE = "input.mime_type"
    OUTPUT_VALUE = "output.value"
    OUTPUT_MIME_TYPE = "output.mime_type"
    JSON_MIME_TYPE = "application/json"
    # Flattened lists: llm.input_messages.0.message.role, retrieval.documents.3.document.content, ...
    INPUT_MESSAGES_PREFIX = "llm.input_messages."
    OUTPUT_MESSAGES_PREFIX = "llm.output_messages."
    RETRIEVAL_DOCUMENTS_PREFIX = "retrieval.documents."
    SESSION_ID = "session.id"
    USER_ID = "user.id"
    METADATA = "metadata"  # a JSON object as a string
    TAGS = "tag.tags"  # a list of strings


class MLflow:
    """MLflow 3 tracing. Over OTLP every span attribute value is JSON-encoded ("\\"LLM\\"", "20");
    the trace tags (mlflow.traceTag.*) are plain strings, and so may user.id/session.id be, which it
    copies onto the root span: both spellings are read."""

    SPAN_TYPE = "mlflow.spanType"
    SPAN_INPUTS = "mlflow.spanInputs"
    SPAN_OUTPUTS = "mlflow.spanOutputs"
    TRACE_REQUEST_ID = "mlflow.traceRequestId"
    MODEL = "mlflow.llm.model"
    PROVIDER = "mlflow.llm.provider"
    # {"input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens"?,
    #  "cache_creation_input_tokens"?}; input is inclusive since MLflow normalises Anthropic/Bedrock.
    CHAT_USAGE = "mlflow.chat.tokenUsage"
    USAGE_INPUT = "input_tokens"
    USAGE_OUTPUT = "output_tokens"
    USAGE_TOTAL = "total_tokens"
    USAGE_CACHE_READ = ("cache_read_input_tokens", "cached_input_tokens")  # second: an earlier name
    USAGE_CACHE_CREATION = "cache_creation_input_tokens"
    # {"input_cost", "output_cost", "total_cost"} in USD, computed by MLflow from token usage.
    LLM_COST = "mlflow.llm.cost"
    COST_TOTAL = "total_cost"
    COST_PARTS = ("input_cost", "output_cost")
    TRACE_TAG_PREFIX = "mlflow.traceTag."
    TRACE_USER = "mlflow.trace.user"  # trace metadata keys MLflow users filter on
    TRACE_SESSION = "mlflow.trace.session"


class OpenLLMetry:
    """Traceloop OpenLLMetry (traceloop.*, llm.*; its model spans use gen_ai.*)."""

    SPAN_KIND = "traceloop.span.kind"  # workflow, task, agent, tool
    WORKFLOW_NAME = "traceloop.workflow.name"
    ENTITY_NAME = "traceloop.entity.name"
    ENTITY_INPUT = "traceloop.entity.input"  # JSON
    ENTITY_OUTPUT = "traceloop.entity.output"  # JSON
    REQUEST_TYPE = "llm.request.type"  # chat, completion, embedding, rerank
    TOTAL_TOKENS = "llm.usage.total_tokens"
    ASSOCIATION_PREFIX = "traceloop.association.properties."
    USER_ID = "traceloop.association.properties.user_id"
    SESSION_ID = "traceloop.association.properties.session_id"


class Langfuse:
    """Langfuse SDK v3+ OTel attributes. Its usage buckets are ADDITIVE: "input" excludes cached
    tokens, "output" excludes reasoning, and "total" is the sum of all buckets."""

    OBSERVATION_TYPE = "langfuse.observation.type"
    OBSERVATION_LEVEL = "langfuse.observation.level"  # DEBUG, DEFAULT, WARNING, ERROR
    OBSERVATION_INPUT = "langfuse.observation.input"  # JSON
    OBSERVATION_OUTPUT = "langfuse.observation.output"  # JSON
    MODEL = "langfuse.observation.model.name"
    USAGE_DETAILS = "langfuse.observation.usage_details"  # JSON object of token buckets
    COST_DETAILS = "langfuse.observation.cost_details"  # JSON object of USD buckets, "total" among them
    TRACE_NAME = "langfuse.trace.name"
    TRACE_INPUT = "langfuse.trace.input"
    TRACE_OUTPUT = "langfuse.trace.output"
    TRACE_TAGS = "langfuse.trace.tags"  # a list of strings
    USER_ID = "langfuse.user.id"  # current SDKs write user.id / session.id; these are the old names
    SESSION_ID = "langfuse.session.id"
    ENVIRONMENT = "langfuse.environment"
    TOTAL = ("total", "total_tokens")
    CACHE_READ = ("input_cached_tokens", "cache_read_input_tokens", "input_cache_read", "cached_tokens")
    CACHE_CREATION = ("cache_creation_input_tokens", "input_cache_creation", "cache_write_input_tokens",
                      "input_cache_write")  # fmt: skip
    REASONING = ("output_reasoning_tokens", "output_reasoning", "reasoning_tokens", "reasoning")


class VercelAI:
    """Vercel AI SDK telemetry (ai.*). Its doGenerate/doStream spans also carry gen_ai.*."""

    OPERATION_ID = "ai.operationId"  # ai.generateText, ai.generateText.doGenerate, ai.toolCall, ...
    MODEL_ID = "ai.model.id"
    MODEL_PROVIDER = "ai.model.provider"  # "<provider>.<api>", e.g. openai.chat, anthropic.messages
    RESPONSE_MODEL = "ai.response.model"
    PROMPT = "ai.prompt"  # JSON {system?, prompt?, messages?} on the outer span
    PROMPT_MESSAGES = "ai.prompt.messages"  # JSON messages on doGenerate/doStream
    RESPONSE_TEXT = "ai.response.text"
    RESPONSE_OBJECT = "ai.response.object"
    RESPONSE_TOOL_CALLS = "ai.response.toolCalls"
    TOOL_CALL_ARGS = "ai.toolCall.args"
    TOOL_CALL_RESULT = "ai.toolCall.result"
    EMBED_VALUE = "ai.value"
    EMBED_VALUES = "ai.values"
    # v4 wrote promptTokens/completionTokens; v5 inputTokens/outputTokens and the details; v6 nests
    # the details. inputTokens includes cached tokens (cachedInputTokens is the cached part).
    PROMPT_TOKENS = "ai.usage.promptTokens"
    COMPLETION_TOKENS = "ai.usage.completionTokens"
    INPUT_TOKENS = "ai.usage.inputTokens"
    OUTPUT_TOKENS = "ai.usage.outputTokens"
    TOTAL_TOKENS = "ai.usage.totalTokens"
    EMBED_TOKENS = "ai.usage.tokens"
    CACHED_INPUT_TOKENS = "ai.usage.cachedInputTokens"
    CACHE_READ_TOKENS = "ai.usage.inputTokenDetails.cacheReadTokens"
    CACHE_WRITE_TOKENS = "ai.usage.inputTokenDetails.cacheWriteTokens"
    REASONING_TOKENS = "ai.usage.reasoningTokens"
    REASONING_TOKENS_V6 = "ai.usage.outputTokenDetails.reasoningTokens"
    USER_ID = "ai.telemetry.metadata.userId"
    SESSION_ID = "ai.telemetry.metadata.sessionId"


class Common:
    """General OpenTelemetry attributes."""

    USER_ID = "user.id"
    SESSION_ID = "session.id"
    ENDUSER_ID = "enduser.id"  # deprecated in favour of user.id
    SERVICE_NAME = "service.name"
    ENVIRONMENT = ("deployment.environment.name", "deployment.environment")
    ERROR_TYPE = "error.type"
    EXCEPTION_EVENT = "exception"


# --- span types -----------------------------------------------------------------------------

SPAN_TYPES = ("LLM", "CHAT_MODEL", "EMBEDDING", "RETRIEVER", "RERANKER", "TOOL", "AGENT", "CHAIN", "PARSER", "UNKNOWN")

# Every mapping is keyed by the lower-cased source value. Values that say nothing ("unknown",
# Langfuse "span"/"event") are left out, so the next convention in SPAN_TYPE_SOURCES decides.
# Checks (guardrail, evaluator) and orchestration (workflow, task, memory) become CHAIN: they wrap
# other work, usually a child model call that carries the tokens; a model-call type would count
# that call twice in trace_info, and TOOL means a function the model chose to call.
_COMPOSITE = {"workflow": "CHAIN", "task": "CHAIN", "memory": "CHAIN", "guardrail": "CHAIN",
              "evaluator": "CHAIN"}  # fmt: skip
MLFLOW_SPAN_TYPES = {t.lower(): t for t in SPAN_TYPES if t != "UNKNOWN"} | _COMPOSITE
OPENINFERENCE_SPAN_TYPES = {
    "llm": "LLM", "embedding": "EMBEDDING", "retriever": "RETRIEVER", "reranker": "RERANKER",
    "tool": "TOOL", "agent": "AGENT", "chain": "CHAIN", "prompt": "CHAIN", **_COMPOSITE,
}  # fmt: skip
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
LANGFUSE_SPAN_TYPES = {
    "generation": "LLM", "embedding": "EMBEDDING", "retriever": "RETRIEVER", "tool": "TOOL",
    "agent": "AGENT", "chain": "CHAIN", **_COMPOSITE,
}  # fmt: skip
TRACELOOP_SPAN_TYPES = {"workflow": "CHAIN", "task": "CHAIN", "agent": "AGENT", "tool": "TOOL"}
REQUEST_TYPE_SPAN_TYPES = {"chat": "CHAT_MODEL", "completion": "LLM", "embedding": "EMBEDDING", "rerank": "RERANKER"}
# The outer ai.generateText/streamText/... span sums the usage of its doGenerate steps: it is the
# orchestration (CHAIN), the doGenerate/doStream children are the model calls.
VERCEL_SPAN_TYPES = {
    "ai.generatetext": "CHAIN", "ai.streamtext": "CHAIN", "ai.generateobject": "CHAIN",
    "ai.streamobject": "CHAIN", "ai.embed": "CHAIN", "ai.embedmany": "CHAIN",
    "ai.generatetext.dogenerate": "CHAT_MODEL", "ai.streamtext.dostream": "CHAT_MODEL",
    "ai.generateobject.dogenerate": "CHAT_MODEL", "ai.streamobject.dostream": "CHAT_MODEL",
    "ai.embed.doembed": "EMBEDDING", "ai.embedmany.doembed": "EMBEDDING", "ai.toolcall": "TOOL",
}  # fmt: skip
# In preference order: an explicit span kind beats an operation name beats a request type.
SPAN_TYPE_SOURCES = (
    (MLflow.SPAN_TYPE, MLFLOW_SPAN_TYPES),
    (OpenInference.SPAN_KIND, OPENINFERENCE_SPAN_TYPES),
    (GenAI.OPERATION_NAME, OPERATION_SPAN_TYPES),
    (Langfuse.OBSERVATION_TYPE, LANGFUSE_SPAN_TYPES),
    (OpenLLMetry.SPAN_KIND, TRACELOOP_SPAN_TYPES),
    (OpenLLMetry.REQUEST_TYPE, REQUEST_TYPE_SPAN_TYPES),
    (VercelAI.OPERATION_ID, VERCEL_SPAN_TYPES),
)

# --- which key wins -------------------------------------------------------------------------

# Response model before request model (the model that actually answered).
MODEL_KEYS = (
    GenAI.RESPONSE_MODEL, OpenInference.RESPONSE_MODEL_NAME, GenAI.REQUEST_MODEL, OpenInference.MODEL_NAME,
    OpenInference.REQUEST_MODEL_NAME, MLflow.MODEL, Langfuse.MODEL, VercelAI.RESPONSE_MODEL, VercelAI.MODEL_ID,
    OpenInference.EMBEDDING_MODEL_NAME, OpenInference.RERANKER_MODEL_NAME,
)  # fmt: skip
PROVIDER_KEYS = (
    GenAI.PROVIDER_NAME, OpenInference.PROVIDER, GenAI.SYSTEM, OpenInference.SYSTEM, MLflow.PROVIDER,
    VercelAI.MODEL_PROVIDER,
)  # fmt: skip
INPUT_TOKEN_KEYS = (
    GenAI.INPUT_TOKENS, GenAI.PROMPT_TOKENS, OpenInference.PROMPT_TOKENS, VercelAI.INPUT_TOKENS,
    VercelAI.PROMPT_TOKENS, VercelAI.EMBED_TOKENS,
)  # fmt: skip
OUTPUT_TOKEN_KEYS = (
    GenAI.OUTPUT_TOKENS, GenAI.COMPLETION_TOKENS, OpenInference.COMPLETION_TOKENS, VercelAI.OUTPUT_TOKENS,
    VercelAI.COMPLETION_TOKENS,
)  # fmt: skip
TOTAL_TOKEN_KEYS = (OpenInference.TOTAL_TOKENS, OpenLLMetry.TOTAL_TOKENS, VercelAI.TOTAL_TOKENS, GenAI.TOTAL_TOKENS)
CACHE_READ_KEYS = (
    GenAI.CACHE_READ_INPUT_TOKENS, GenAI.CACHE_READ_INPUT_TOKENS_OLD, OpenInference.CACHE_READ_TOKENS,
    VercelAI.CACHE_READ_TOKENS, VercelAI.CACHED_INPUT_TOKENS,
)  # fmt: skip
CACHE_CREATION_KEYS = (
    GenAI.CACHE_CREATION_INPUT_TOKENS, GenAI.CACHE_CREATION_INPUT_TOKENS_OLD, OpenInference.CACHE_WRITE_TOKENS,
    VercelAI.CACHE_WRITE_TOKENS,
)  # fmt: skip
REASONING_KEYS = (
    GenAI.REASONING_OUTPUT_TOKENS, GenAI.REASONING_TOKENS_OLD, OpenInference.REASONING_TOKENS,
    VercelAI.REASONING_TOKENS_V6, VercelAI.REASONING_TOKENS,
)  # fmt: skip
COST_KEYS = (OpenInference.COST_TOTAL, GenAI.COST)  # then MLflow.LLM_COST, Langfuse.COST_DETAILS (JSON)
# A span's own payload first, then the trace-level copies Langfuse puts on the root span.
INPUT_KEYS = (
    MLflow.SPAN_INPUTS, OpenInference.INPUT_VALUE, OpenLLMetry.ENTITY_INPUT, Langfuse.OBSERVATION_INPUT,
    GenAI.INPUT_MESSAGES, GenAI.TOOL_CALL_ARGUMENTS, GenAI.PROMPT, VercelAI.PROMPT_MESSAGES, VercelAI.PROMPT,
    VercelAI.TOOL_CALL_ARGS, VercelAI.EMBED_VALUE, VercelAI.EMBED_VALUES, Langfuse.TRACE_INPUT,
    GenAI.SYSTEM_INSTRUCTIONS,
)  # fmt: skip
OUTPUT_KEYS = (
    MLflow.SPAN_OUTPUTS, OpenInference.OUTPUT_VALUE, OpenLLMetry.ENTITY_OUTPUT, Langfuse.OBSERVATION_OUTPUT,
    GenAI.OUTPUT_MESSAGES, GenAI.TOOL_CALL_RESULT, GenAI.COMPLETION, VercelAI.RESPONSE_TEXT,
    VercelAI.RESPONSE_OBJECT, VercelAI.RESPONSE_TOOL_CALLS, VercelAI.TOOL_CALL_RESULT, Langfuse.TRACE_OUTPUT,
)  # fmt: skip
# Flattened lists, reassembled only when none of the keys above is present, in preference order.
# Each with the keys its item 0 always has (a role, content or id): when none of those is present
# there is no list, and the scan over all attribute keys for the prefix is skipped.
FLATTENED_INPUTS = (
    (OpenInference.INPUT_MESSAGES_PREFIX, ("llm.input_messages.0.message.role",
                                           "llm.input_messages.0.message.content")),
    (GenAI.PROMPT_PREFIX, ("gen_ai.prompt.0.role", "gen_ai.prompt.0.content")),
)  # fmt: skip
FLATTENED_OUTPUTS = (
    (OpenInference.OUTPUT_MESSAGES_PREFIX, ("llm.output_messages.0.message.role",
                                            "llm.output_messages.0.message.content")),
    (GenAI.COMPLETION_PREFIX, ("gen_ai.completion.0.role", "gen_ai.completion.0.content")),
    (OpenInference.RETRIEVAL_DOCUMENTS_PREFIX, ("retrieval.documents.0.document.id",
                                                "retrieval.documents.0.document.content")),
)  # fmt: skip
FLATTENED_PREFIXES = tuple(prefix for prefix, _ in FLATTENED_INPUTS + FLATTENED_OUTPUTS)
# Payloads their SDKs always JSON-encode: a JSON string literal there ("\"hello\"") means text.
JSON_PAYLOAD_KEYS = frozenset({
    MLflow.SPAN_INPUTS, MLflow.SPAN_OUTPUTS, OpenLLMetry.ENTITY_INPUT, OpenLLMetry.ENTITY_OUTPUT,
    Langfuse.OBSERVATION_INPUT, Langfuse.OBSERVATION_OUTPUT, Langfuse.TRACE_INPUT, Langfuse.TRACE_OUTPUT,
})  # fmt: skip
USER_KEYS = (Common.USER_ID, Langfuse.USER_ID, VercelAI.USER_ID, OpenLLMetry.USER_ID, Common.ENDUSER_ID)
SESSION_KEYS = (
    Common.SESSION_ID, GenAI.CONVERSATION_ID, Langfuse.SESSION_ID, VercelAI.SESSION_ID, OpenLLMetry.SESSION_ID,
)  # fmt: skip
# Keys looked up inside OpenInference's `metadata` JSON when no attribute names the user/session.
METADATA_USER_KEYS = ("user_id", "userId")
METADATA_SESSION_KEYS = ("session_id", "sessionId", "conversation_id")
# A span-level environment overrides the resource's deployment.environment(.name).
ENVIRONMENT_KEYS = (Langfuse.ENVIRONMENT, *Common.ENVIRONMENT)

# Never copied into the trace's tags: payloads and per-span internals are not labels.
PAYLOAD_KEYS = frozenset(INPUT_KEYS + OUTPUT_KEYS) | {
    OpenInference.INVOCATION_PARAMETERS, OpenInference.TOOLS, GenAI.TOOL_DEFINITIONS, Langfuse.USAGE_DETAILS,
    Langfuse.COST_DETAILS,
}  # fmt: skip
TAG_SKIP_PREFIXES = (*FLATTENED_PREFIXES, "mlflow.", "langfuse.observation.", "llm.tools.")
LIST_TAG_KEYS = (OpenInference.TAGS, Langfuse.TRACE_TAGS)
TAG_MAX_CHARS = 1000
