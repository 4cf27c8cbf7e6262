"""The one function that maps a span's attributes onto spanlake's canonical columns
(`normalise`), and the trace's tags (`trace_tags`). The keys each instrumentation writes, and
which one wins, are named constants in attribute_keys.py; docs/CONVENTIONS.md is the table.

This runs once per span on the ingest hot path, so it does dictionary lookups first and decodes
JSON only when a cheap presence check says the result is needed. The full attribute dict is
stored elsewhere untouched; nothing here has to be lossless.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import orjson

from spanlake.ingest.attribute_keys import (
    CACHE_CREATION_KEYS,
    CACHE_READ_KEYS,
    COST_KEYS,
    ENVIRONMENT_KEYS,
    FLATTENED_INPUTS,
    FLATTENED_OUTPUTS,
    INFERRED_MODEL_CALL_TYPE,
    INPUT_KEYS,
    INPUT_TOKEN_KEYS,
    JSON_PAYLOAD_KEYS,
    LIST_TAG_KEYS,
    METADATA_SESSION_KEYS,
    METADATA_USER_KEYS,
    MODEL_KEYS,
    OUTPUT_KEYS,
    OUTPUT_TOKEN_KEYS,
    PAYLOAD_KEYS,
    PROVIDER_KEYS,
    REASONING_KEYS,
    REQUEST_MODEL_PARAMETERS,
    REQUEST_PARAMETER_KEYS,
    SESSION_KEYS,
    SPAN_TYPE_SOURCES,
    TAG_MAX_CHARS,
    TAG_SKIP_PREFIXES,
    TOTAL_TOKEN_KEYS,
    USER_KEYS,
    VERCEL_SPAN_TYPES,
    Common,
    Langfuse,
    MLflow,
    OpenInference,
    ResponseBody,
    VercelAI,
)
from spanlake.tables.vocabulary import MODEL_CALL_TYPES, UNKNOWN_SPAN_TYPE

# --- one pass over the attributes -----------------------------------------------------------

# Looking every key tuple up one key at a time costs ~80 dict lookups per span whatever the span
# holds. Instead normalise walks the span's own attributes once: _INDEX maps each key of each
# tuple above to (slot, rank in its tuple), and the walk keeps the best-ranked non-empty value
# per slot. The tuples stay the one statement of preference; the index is derived from them.
# The flattened-list hints are slots too; the rank of the hint found names the list's prefix.
FLATTENED_INPUT_HINTS = tuple(hint for _, hints in FLATTENED_INPUTS for hint in hints)
FLATTENED_OUTPUT_HINTS = tuple(hint for _, hints in FLATTENED_OUTPUTS for hint in hints)
_INPUT_HINT_PREFIXES = tuple(prefix for prefix, hints in FLATTENED_INPUTS for _ in hints)
_OUTPUT_HINT_PREFIXES = tuple(prefix for prefix, hints in FLATTENED_OUTPUTS for _ in hints)
_SLOT_KEYS: tuple[tuple[str, ...], ...] = (
    MODEL_KEYS, PROVIDER_KEYS, INPUT_TOKEN_KEYS, OUTPUT_TOKEN_KEYS, TOTAL_TOKEN_KEYS, CACHE_READ_KEYS,
    CACHE_CREATION_KEYS, REASONING_KEYS, COST_KEYS, INPUT_KEYS, OUTPUT_KEYS, USER_KEYS, SESSION_KEYS,
    ENVIRONMENT_KEYS, FLATTENED_INPUT_HINTS, FLATTENED_OUTPUT_HINTS, tuple(key for key, _ in SPAN_TYPE_SOURCES),
)  # fmt: skip
(
    _MODEL, _PROVIDER, _INPUT_TOKENS, _OUTPUT_TOKENS, _TOTAL_TOKENS, _CACHE_READ, _CACHE_CREATION, _REASONING,
    _COST, _INPUTS, _OUTPUTS, _USER, _SESSION, _ENVIRONMENT, _FLAT_INPUTS, _FLAT_OUTPUTS, _SPAN_TYPE,
) = range(17)  # fmt: skip
_N_SLOTS = len(_SLOT_KEYS)
_ABSENT = len(max(_SLOT_KEYS, key=len))  # a rank worse than any real one


def _build_index() -> dict[str, tuple[int, int]]:
    index: dict[str, tuple[int, int]] = {}
    for slot, keys in enumerate(_SLOT_KEYS):
        for rank, key in enumerate(keys):
            if key in index:
                raise ValueError(f"attribute {key!r} is listed for two canonical fields")
            index[key] = (slot, rank)
    return index


_INDEX = _build_index()
_INDEXED = _INDEX.keys()


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
    environment: str | None = None  # from span attributes; None -> use the resource's


# --- value helpers --------------------------------------------------------------------------


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first key present with a non-empty value."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


_MAX_COUNT = 2**63 - 1  # the columns are int64: anything outside would fail the whole batch's Arrow build


def _as_int(value: Any) -> int | None:
    """A token count: an int in 0..2**63-1 (numbers given as strings or floats are parsed), else None."""
    if type(value) is not int:  # the common case skips all of this; bool is not int here, on purpose
        if value is None or isinstance(value, bool):
            return None
        try:
            value = int(value)
        except (TypeError, ValueError, OverflowError):
            try:
                value = int(float(value))  # "12.0", "1e3"
            except (TypeError, ValueError, OverflowError):
                return None
    return value if 0 <= value <= _MAX_COUNT else None


def _as_float(value: Any) -> float | None:
    """A USD amount: a finite float, else None (a NaN would poison every sum it enters)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits (OTLP JSON can carry one): the slow, general way
        return json.dumps(value, default=str)


def _unquote(text: str) -> str:
    """'"hello"' (a JSON string literal, as MLflow writes every value) -> 'hello'; else unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if isinstance(decoded, str):
            return decoded
    return text


def _label(value: Any) -> str | None:
    """A short text field (model, provider, ids): JSON-string-unwrapped text, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return _unquote(value) if value[:1] == '"' else value  # _unwrap, inlined: this runs ~5 times a span
    return _as_text(value)


def _unwrap(text: str) -> str:
    return _unquote(text) if text[:1] == '"' else text


def _json_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if isinstance(decoded, str) and decoded[:1] == "{":  # doubly encoded
            return _json_object(decoded)
        return decoded if isinstance(decoded, dict) else None
    return None


# --- the canonical fields -------------------------------------------------------------------


def _collect(attrs: dict[str, Any]) -> tuple[list[int], list[Any]]:
    """(rank, value) per slot: the best-ranked non-empty value of the span's indexed attributes."""
    ranks = [_ABSENT] * _N_SLOTS
    values: list[Any] = [None] * _N_SLOTS
    for key in _INDEXED & attrs.keys():  # the set intersection runs in C; order does not matter
        value = attrs[key]
        if value is not None and value != "":
            slot, rank = _INDEX[key]
            if rank < ranks[slot]:
                ranks[slot] = rank
                values[slot] = value
    return ranks, values


def _span_type(attrs: dict[str, Any], rank: int, value: Any, span_name: str) -> str:
    """The preferred source's type; when it says nothing usable ("UNKNOWN", a custom MLflow
    type), the next sources in SPAN_TYPE_SOURCES are asked in turn."""
    if value is not None:
        span_type = _mapped(SPAN_TYPE_SOURCES[rank][1], value)
        if span_type is not None:
            return span_type
        for key, mapping in SPAN_TYPE_SOURCES[rank + 1 :]:
            span_type = _mapped(mapping, attrs.get(key))
            if span_type is not None:
                return span_type
    if span_name.startswith("ai."):  # Vercel AI SDK without ai.operationId
        return VERCEL_SPAN_TYPES.get(span_name.lower(), UNKNOWN_SPAN_TYPE)
    return UNKNOWN_SPAN_TYPE


def _mapped(mapping: dict[str, str], value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return mapping.get((_unquote(value) if value[:1] == '"' else value).lower())


def _provider(attrs: dict[str, Any], value: Any) -> str | None:
    # A Vercel span's gen_ai.system is its "<provider>.<api>" id: cut it to the provider.
    if VercelAI.OPERATION_ID in attrs:
        vercel = _label(attrs.get(VercelAI.MODEL_PROVIDER))
        if vercel:
            return vercel.split(".", 1)[0].lower()
    provider = _label(value)
    return provider.lower() if provider else None  # OpenLLMetry writes "OpenAI", semconv "openai"


Usage = tuple[int | None, int | None, int | None, int | None, int | None, int | None]
NO_USAGE: Usage = (None, None, None, None, None, None)


def _usage(attrs: dict[str, Any], values: list[Any]) -> Usage:
    """(input, output, total, cache_read, cache_creation, reasoning), input/output inclusive."""
    input_tokens = _as_int(values[_INPUT_TOKENS])
    output_tokens = _as_int(values[_OUTPUT_TOKENS])
    total_tokens = _as_int(values[_TOTAL_TOKENS])
    if input_tokens is not None or output_tokens is not None or total_tokens is not None:
        usage = (
            input_tokens, output_tokens, total_tokens, _as_int(values[_CACHE_READ]),
            _as_int(values[_CACHE_CREATION]), _as_int(values[_REASONING]),
        )  # fmt: skip
    elif MLflow.CHAT_USAGE in attrs:
        usage = _mlflow_usage(attrs[MLflow.CHAT_USAGE])
    elif Langfuse.USAGE_DETAILS in attrs:
        usage = _langfuse_usage(attrs[Langfuse.USAGE_DETAILS])
    else:
        return NO_USAGE
    return _inclusive(*usage)


def _mlflow_usage(raw: Any) -> Usage:
    usage = _json_object(raw)
    if not usage:
        return NO_USAGE
    cache_read = next((usage[k] for k in MLflow.USAGE_CACHE_READ if k in usage), None)
    return (
        _as_int(usage.get(MLflow.USAGE_INPUT)), _as_int(usage.get(MLflow.USAGE_OUTPUT)),
        _as_int(usage.get(MLflow.USAGE_TOTAL)), _as_int(cache_read),
        _as_int(usage.get(MLflow.USAGE_CACHE_CREATION)), None,
    )  # fmt: skip


def _langfuse_usage(raw: Any) -> Usage:
    """Langfuse buckets are additive, so inclusive input = every input-side bucket summed (input,
    cache reads and writes, audio, ...), and inclusive output = every output-side bucket."""
    usage = _json_object(raw)
    if not usage:
        return NO_USAGE
    input_tokens = output_tokens = total_tokens = None
    for key, value in usage.items():
        count = _as_int(value) if isinstance(value, (int, float)) else None  # nested details: skip
        if count is None:
            continue
        if key in Langfuse.TOTAL:
            total_tokens = count
        elif "input" in key or "prompt" in key or key.startswith("cache"):
            input_tokens = (input_tokens or 0) + count
        elif "output" in key or "completion" in key or "reasoning" in key:
            output_tokens = (output_tokens or 0) + count

    def pick(keys: tuple[str, ...]) -> int | None:
        return next((_as_int(usage[k]) for k in keys if k in usage), None)

    return (
        input_tokens, output_tokens, total_tokens, pick(Langfuse.CACHE_READ), pick(Langfuse.CACHE_CREATION),
        pick(Langfuse.REASONING),
    )  # fmt: skip


def _body_usage(usage: dict[str, Any]) -> Usage:
    """A response body's usage object (OpenAI, Anthropic, LangChain's token_usage), parts included."""
    input_key = next((k for k in ResponseBody.INPUT_TOKENS if k in usage), None)
    input_tokens = _as_int(usage[input_key]) if input_key is not None else None
    output_tokens = _as_int(next((usage[k] for k in ResponseBody.OUTPUT_TOKENS if k in usage), None))
    cache_read = _as_int(usage.get(ResponseBody.CACHE_READ_INPUT_TOKENS))
    cache_creation = _as_int(usage.get(ResponseBody.CACHE_CREATION_INPUT_TOKENS))
    if input_key == ResponseBody.ANTHROPIC_INPUT_TOKENS and input_tokens is not None:
        # Anthropic's own shape: its input_tokens leave the cache out, whatever the sizes say.
        input_tokens += (cache_read or 0) + (cache_creation or 0)
    if cache_read is None:
        cache_read = _detail(usage, ResponseBody.INPUT_DETAILS, ResponseBody.CACHED_TOKENS)
    reasoning = _detail(usage, ResponseBody.OUTPUT_DETAILS, ResponseBody.REASONING_TOKENS)
    return (
        input_tokens, output_tokens, _as_int(usage.get(ResponseBody.TOTAL_TOKENS)), cache_read, cache_creation,
        reasoning,
    )  # fmt: skip


def _detail(usage: dict[str, Any], parents: tuple[str, ...], key: str) -> int | None:
    for parent in parents:
        details = usage.get(parent)
        if isinstance(details, dict) and key in details:
            return _as_int(details[key])
    return None


def _inclusive(
    input_tokens: int | None, output_tokens: int | None, total_tokens: int | None,
    cache_read: int | None, cache_creation: int | None, reasoning: int | None,
) -> Usage:  # fmt: skip
    """Inclusive counts, whatever the convention claimed. An inclusive input can never be smaller
    than its cached parts, so when it is, the instrumentation reported additive buckets (Anthropic's
    input_tokens passed through unchanged, Bedrock, AI SDK <= 5): add the parts back. Same for
    reasoning (Gemini's candidates count excludes thoughts)."""
    additive = False
    cached = (cache_read or 0) + (cache_creation or 0)
    if input_tokens is not None and cached > input_tokens:
        input_tokens += cached
        additive = True
    if output_tokens is not None and reasoning is not None and reasoning > output_tokens:
        output_tokens += reasoning
        additive = True
    if input_tokens is not None or output_tokens is not None:
        # An embedding call reports input only: its total is that input, not unknown.
        both = (input_tokens or 0) + (output_tokens or 0)
        # A total reported next to additive buckets left the cached part out as well.
        if total_tokens is None or (additive and total_tokens < both):
            total_tokens = both
    # _as_int again only to range-check the sums against int64.
    return _as_int(input_tokens), _as_int(output_tokens), _as_int(total_tokens), cache_read, cache_creation, reasoning


def _cost(attrs: dict[str, Any], value: Any) -> float | None:
    if value is not None:  # a plain USD number (COST_KEYS)
        return _as_float(value)
    if MLflow.LLM_COST in attrs:
        cost = _json_object(attrs[MLflow.LLM_COST])
        if cost:
            if MLflow.COST_TOTAL in cost:
                return _as_float(cost[MLflow.COST_TOTAL])
            parts = [_as_float(cost.get(k)) for k in MLflow.COST_PARTS]
            return sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None
    if Langfuse.COST_DETAILS in attrs:
        cost = _json_object(attrs[Langfuse.COST_DETAILS])
        if cost:
            if "total" in cost:
                return _as_float(cost["total"])
            # _as_float drops what is not finite (a structured OTLP value can hold inf): never sum a None.
            parts = [_as_float(v) for v in cost.values() if isinstance(v, (int, float))]
            finite = [p for p in parts if p is not None]
            return sum(finite) if finite else None
    return None


def _payload(attrs: dict[str, Any], key: str, value: Any, value_key: str, mime_key: str) -> str | None:
    """The chosen payload as text. Text stays text; a JSON string literal is unwrapped only where
    the SDK is known to JSON-encode (or declares application/json), so '"hello"' from MLflow
    becomes hello but a user's quoted text in a text/plain input.value is kept as written."""
    if value is None:
        return None
    if not isinstance(value, str):
        return _as_text(value)
    if value[:1] == '"' and _declared_json(attrs, key, value_key, mime_key):
        return _unquote(value)
    return value


def _declared_json(attrs: dict[str, Any], key: str, value_key: str, mime_key: str) -> bool:
    """Whether the payload under key is JSON by contract: its SDK always JSON-encodes it, or
    OpenInference declared application/json for it."""
    return key in JSON_PAYLOAD_KEYS or (key == value_key and attrs.get(mime_key) == OpenInference.JSON_MIME_TYPE)


# --- model calls that report less than their attributes should ------------------------------


def _json_object_payload(attrs: dict[str, Any], key: str, text: str, value_key: str, mime_key: str) -> bool:
    """Whether the chosen payload is a JSON object by contract (its SDK's, or a declared mime type)."""
    return text[:1] == "{" and _declared_json(attrs, key, value_key, mime_key)


# A chat completion is a few KB; an embeddings response is ~30 KB per 1536-d vector (~50 us to
# decode), a batch of them megabytes (milliseconds): too much per span for two small fields.
_BODY_DECODE_MAX_CHARS = 8_192
_BODY_TAIL_CHARS = 4_096
_DECODER = json.JSONDecoder()


def _response_fields(text: str) -> tuple[str | None, dict[str, Any] | None]:
    """(model, usage object) of a provider response body given as JSON text."""
    if len(text) <= _BODY_DECODE_MAX_CHARS:
        body = _json_object(text)
        if not body:
            return None, None
        inner = body.get(ResponseBody.LLM_OUTPUT)  # LangChain's LLMResult nests the provider's fields
        if isinstance(inner, dict):
            body = inner
        model = next((v for k in ResponseBody.MODEL if isinstance(v := body.get(k), str) and v), None)
        usage = next((v for k in ResponseBody.USAGE if isinstance(v := body.get(k), dict)), None)
        return model, usage
    # Too large to decode: providers write the usage (and OpenAI the model) after the payload, so
    # the last such members in the text's tail are the top-level ones; only those are decoded.
    start = len(text) - _BODY_TAIL_CHARS
    model = next((v for k in ResponseBody.MODEL if (v := _last_member(text, k, start, str))), None)
    usage = next((v for k in ResponseBody.USAGE if (v := _last_member(text, k, start, dict))), None)
    return model, usage


def _last_member(text: str, key: str, start: int, kind: type) -> Any:
    """The value of the last `"key": value` member at or after `start` whose value is a `kind`,
    decoded on its own. A key inside a JSON string cannot match: its quotes are escaped there."""
    needle = f'"{key}"'
    end = len(text)
    while (at := text.rfind(needle, start, end)) != -1:
        end = at
        i = at + len(needle)
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text) or text[i] != ":":
            continue  # the key's name as a value, not a member
        i += 1
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        try:
            value, _ = _DECODER.raw_decode(text, i)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, kind) and value:
            return value
    return None


def _request_model(attrs: dict[str, Any]) -> str | None:
    """The model a call asked for, from its request parameters."""
    for key in REQUEST_PARAMETER_KEYS:
        if key in attrs:
            params = _json_object(attrs[key])
            if params and (model := _model_param(params)):
                return model
    model = attrs.get(MLflow.REQUEST_MODEL)
    if isinstance(model, str) and model:
        return _unwrap(model)
    return None


def _model_param(params: dict[str, Any]) -> str | None:
    """The first model name among a request's parameters (names only: an object there is a client)."""
    for key in REQUEST_MODEL_PARAMETERS:
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _from_payloads(
    attrs: dict[str, Any], model: str | None, usage: Usage, ranks: list[int], inputs: str | None,
    outputs: str | None,
) -> tuple[str | None, Usage]:  # fmt: skip
    """A model call missing its model or usage: the response body in its outputs (the model that
    answered, the usage it reported), then, for the model, what the request asked for. Failed
    calls have no response: their request parameters are all that name the model."""
    # outputs/inputs not None means ranks[_OUTPUTS]/ranks[_INPUTS] name the key they came from.
    if outputs is not None and _json_object_payload(attrs, OUTPUT_KEYS[ranks[_OUTPUTS]], outputs,
                                                    OpenInference.OUTPUT_VALUE, OpenInference.OUTPUT_MIME_TYPE):
        body_model, body_usage = _response_fields(outputs)
        if model is None:
            model = body_model
        if body_usage and usage[2] is None:
            usage = _inclusive(*_body_usage(body_usage))
    if model is None:
        model = _request_model(attrs)
    if model is None and inputs is not None and _json_object_payload(attrs, INPUT_KEYS[ranks[_INPUTS]], inputs,
                                                                     OpenInference.INPUT_VALUE,
                                                                     OpenInference.INPUT_MIME_TYPE):  # fmt: skip
        request = _json_object(inputs)  # the request itself, as MLflow and OpenInference record it
        model = _model_param(request) if request else None
    return model, usage


# After an index, OpenInference nests each item under a wrapper ("0.message.role"): dropped.
_WRAPPERS = frozenset({"message", "message_content", "tool_call", "document"})


def _unflatten(attrs: dict[str, Any], prefix: str) -> str | None:
    """The list flattened under prefix, as JSON: llm.input_messages.0.message.role = "user",
    llm.input_messages.0.message.content = "hi" -> '[{"role":"user","content":"hi"}]'."""
    n = len(prefix)
    items: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, path = key[n:].partition(".")
        if not index.isdigit() or not path:
            continue
        item = items.setdefault(int(index), {})
        wrapper, _, rest = path.partition(".")
        if rest and wrapper in _WRAPPERS:
            path = rest
        if "." in path:  # deeper: message.tool_calls.0.tool_call.function.name, message.contents.0...
            _set_path(item, path.split("."), value)
        else:  # the common case: role, content, id, score, finish_reason
            item[path] = value
    if not items:
        return None
    return _as_text([_listify(items[i]) for i in sorted(items)])


def _set_path(node: dict[Any, Any], parts: list[str], value: Any) -> None:
    keys: list[Any] = []
    after_index = False
    for part in parts:
        if part.isdigit():
            keys.append(int(part))
            after_index = True
        elif after_index and part in _WRAPPERS:
            after_index = False
        else:
            keys.append(part)
            after_index = False
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            return  # a value already sits where this path wants a branch: keep the value
        node = child
    if not isinstance(node.get(keys[-1]), dict):
        node[keys[-1]] = value


def _listify(node: Any) -> Any:
    """Nested dicts keyed by list indexes -> lists (only deep paths build those)."""
    if not isinstance(node, dict):
        return node
    if node and all(type(k) is int for k in node):
        return [_listify(node[k]) for k in sorted(node)]
    return {str(k): _listify(v) for k, v in node.items()}


def _ids_from_metadata(
    attrs: dict[str, Any], user_id: str | None, session_id: str | None
) -> tuple[str | None, str | None]:
    """OpenInference puts LangChain's run metadata in one JSON string; decode it only when it can
    hold what is missing (a substring test costs far less than the decode)."""
    raw = attrs.get(OpenInference.METADATA)
    if not isinstance(raw, str) or ("user" not in raw and "session" not in raw and "conversation" not in raw):
        return user_id, session_id
    metadata = _json_object(raw)
    if metadata:
        if user_id is None:
            user_id = _label(_first(metadata, METADATA_USER_KEYS))
        if session_id is None:
            session_id = _label(_first(metadata, METADATA_SESSION_KEYS))
    return user_id, session_id


def normalise(
    attrs: dict[str, Any], status_code: str, event_names: tuple[str, ...], span_name: str = ""
) -> Canonical:
    """Canonical columns of one span from its attributes (which are kept in full elsewhere).

    span_name is optional: it only helps Vercel AI SDK spans that lack ai.operationId.
    """
    ranks, values = _collect(attrs)
    usage = _usage(attrs, values)
    inputs = values[_INPUTS]
    if inputs is not None:
        inputs = _payload(attrs, INPUT_KEYS[ranks[_INPUTS]], inputs, OpenInference.INPUT_VALUE,
                          OpenInference.INPUT_MIME_TYPE)  # fmt: skip
    outputs = values[_OUTPUTS]
    if outputs is not None:
        outputs = _payload(attrs, OUTPUT_KEYS[ranks[_OUTPUTS]], outputs, OpenInference.OUTPUT_VALUE,
                           OpenInference.OUTPUT_MIME_TYPE)  # fmt: skip
    model = _label(values[_MODEL])
    span_type = _span_type(attrs, ranks[_SPAN_TYPE], values[_SPAN_TYPE], span_name)
    # usage[2] (total) is set whenever any count is (see _inclusive): the cheapest "reports usage".
    if span_type in MODEL_CALL_TYPES:
        if model is None or usage[2] is None:  # rare: failed calls, MLflow embeddings
            model, usage = _from_payloads(attrs, model, usage, ranks, inputs, outputs)
    elif model is not None and usage[2] is not None and span_type == UNKNOWN_SPAN_TYPE:
        span_type = INFERRED_MODEL_CALL_TYPE
    if inputs is None and values[_FLAT_INPUTS] is not None:
        inputs = _unflatten(attrs, _INPUT_HINT_PREFIXES[ranks[_FLAT_INPUTS]])
    if outputs is None and values[_FLAT_OUTPUTS] is not None:
        outputs = _unflatten(attrs, _OUTPUT_HINT_PREFIXES[ranks[_FLAT_OUTPUTS]])
    input_tokens, output_tokens, total_tokens, cache_read, cache_creation, reasoning = usage
    user_id = _label(values[_USER])
    session_id = _label(values[_SESSION])
    if (user_id is None or session_id is None) and OpenInference.METADATA in attrs:
        user_id, session_id = _ids_from_metadata(attrs, user_id, session_id)
    is_error = (
        status_code == "ERROR"
        or Common.ERROR_TYPE in attrs
        or Common.EXCEPTION_EVENT in event_names
        or attrs.get(Langfuse.OBSERVATION_LEVEL) == "ERROR"
    )
    # Positional: building a NamedTuple from keywords costs more than the rest of this function.
    return Canonical(
        span_type,
        model,
        _provider(attrs, values[_PROVIDER]),  # provider
        input_tokens,
        output_tokens,
        total_tokens,
        cache_read,  # cache_read_input_tokens
        cache_creation,  # cache_creation_input_tokens
        reasoning,  # reasoning_output_tokens
        _cost(attrs, values[_COST]),  # provided_cost_usd
        inputs,
        outputs,
        user_id,
        session_id,
        is_error,
        _label(values[_ENVIRONMENT]),  # environment
    )


def trace_tags(attrs: dict[str, Any]) -> dict[str, str]:
    """The trace's tags from its root span: its string attributes, mlflow.traceTag.<key> unwrapped
    (and winning over a plain attribute of the same name), each entry of OpenInference tag.tags and
    Langfuse langfuse.trace.tags as a tag with an empty value. Payloads, flattened messages and
    MLflow's per-span internals (JSON-encoded mlflow.* values) are not labels and are skipped."""
    tags: dict[str, str] = {}
    for key, value in attrs.items():
        if key.startswith(MLflow.TRACE_TAG_PREFIX):
            if isinstance(value, str):
                tags[key[len(MLflow.TRACE_TAG_PREFIX) :]] = _unquote(value)[:TAG_MAX_CHARS]
        elif key in LIST_TAG_KEYS:
            if isinstance(value, str) and value[:1] == "[":
                try:
                    value = orjson.loads(value)
                except orjson.JSONDecodeError:
                    pass
            for tag in value if isinstance(value, list) else (value,):
                if isinstance(tag, str) and tag:
                    tags.setdefault(tag[:TAG_MAX_CHARS], "")
        elif isinstance(value, str) and key not in PAYLOAD_KEYS and not key.startswith(TAG_SKIP_PREFIXES):
            tags.setdefault(key, _unwrap(value)[:TAG_MAX_CHARS])
    return tags
