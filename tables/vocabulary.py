"""The values spanlake's columns take, for every layer: ingest writes them, query, jobs and the
dashboard filter on them. This is the one place they are spelled; docs/CONVENTIONS.md says how
each instrumentation's own vocabulary maps onto them.
"""

from __future__ import annotations

# span_data.span_type (MLflow's span types; UNKNOWN when no convention says).
SPAN_TYPES = ("LLM", "CHAT_MODEL", "EMBEDDING", "RETRIEVER", "RERANKER", "TOOL", "AGENT", "CHAIN", "PARSER", "UNKNOWN")
UNKNOWN_SPAN_TYPE = "UNKNOWN"
# Spans that call a model: trace_info counts them (llm_call_count) and sums their tokens.
MODEL_CALL_TYPES = frozenset({"LLM", "CHAT_MODEL", "EMBEDDING"})

# span_data.status_code, in OTLP's enum order (0, 1, 2), so a decoder can index it by the wire value.
STATUS_CODES = ("UNSET", "OK", "ERROR")
# trace_info.state: the root span's outcome, IN_PROGRESS until the root arrives.
TRACE_STATES = ("OK", "ERROR", "IN_PROGRESS")
