"""Every table's schema, in one place: a TableSpec per table (name, Arrow schema, partitions).

Ingest writes these schemas, jobs and the dashboard select from them, and tests check every
live table against its spec. Column docs here are the source of the README's schema tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from spanlake.tables.vocabulary import MODEL_CALL_TYPES, SPAN_TYPES, STATUS_CODES

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRING_MAP = pa.map_(pa.string(), pa.string())


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    nullable: bool = True


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    partition_by: tuple[str, ...] = ("day",)
    version: int = 1
    # Parquet row groups this small let readers skip most of a sorted day by statistics, and
    # decode little to read one row back (bench/QUERY_RESULTS.md measured 8k-16k vs 64k rows).
    row_group_rows: int = 16_384
    # delta.targetFileSize: the size at which writers (MERGE included) start a new file; None
    # leaves delta-rs' default (100 MB).
    target_file_bytes: int | None = None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> Column:
    return Column(name, type_, doc, nullable)


def _or(values: tuple[str, ...]) -> str:
    """("UNSET", "OK", "ERROR") -> "UNSET, OK or ERROR": column docs name the vocabulary, never copy it."""
    return f"{', '.join(values[:-1])} or {values[-1]}"


_MODEL_CALLS = tuple(t for t in SPAN_TYPES if t in MODEL_CALL_TYPES)  # in SPAN_TYPES' order, for the docs


KAFKA_COLUMNS = (
    _c("topic", pa.string(), "Kafka topic the message came from.", False),
    _c("partition", pa.int32(), "Kafka partition.", False),
    _c("offset", pa.int64(), "Kafka offset of the message.", False),
)

SPAN_DATA = TableSpec(
    name="span_data",
    columns=(
        _c("trace_id", pa.string(), "32 lowercase hex characters.", False),
        _c("span_id", pa.string(), "16 lowercase hex characters.", False),
        _c("parent_span_id", pa.string(), "Parent's span id; null for a root span."),
        _c("name", pa.string(), "Span name.", False),
        _c("span_kind", pa.string(), "OTel kind: INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER, UNSPECIFIED."),
        _c("span_type", pa.string(), f"{', '.join(SPAN_TYPES)}."),
        _c("start_time", TIMESTAMP, "Span start, UTC, microseconds.", False),
        _c("end_time", TIMESTAMP, "Span end, UTC, microseconds."),
        _c("duration_ms", pa.float64(), "end_time - start_time in milliseconds."),
        _c(
            "status_code",
            pa.string(),
            f"{_or(STATUS_CODES)} (ERROR also when error.type or an exception event is set).",
        ),
        _c("status_message", pa.string(), "Status description."),
        _c("service_name", pa.string(), "Resource attribute service.name."),
        _c("model", pa.string(), "Model name (response model when reported, else request model)."),
        _c("provider", pa.string(), "Model provider (openai, anthropic, ...)."),
        _c("input_tokens", pa.int64(), "Input tokens, inclusive of cached tokens; null when not reported."),
        _c("output_tokens", pa.int64(), "Output tokens, inclusive of reasoning tokens; null when not reported."),
        _c("total_tokens", pa.int64(), "Total tokens as reported, else input + output."),
        _c("cache_read_input_tokens", pa.int64(), "Part of input_tokens read from a prompt cache."),
        _c("cache_creation_input_tokens", pa.int64(), "Part of input_tokens written to a prompt cache."),
        _c("reasoning_output_tokens", pa.int64(), "Part of output_tokens spent on reasoning."),
        _c("provided_cost_usd", pa.float64(), "Cost the instrumentation itself reported, if any."),
        _c("inputs", pa.string(), "Full span input (text or JSON)."),
        _c("outputs", pa.string(), "Full span output (text or JSON)."),
        _c("attributes", pa.string(), "Every span attribute as a JSON object, typed values kept."),
        _c("resource_attributes", pa.string(), "Every resource attribute as a JSON object."),
        _c(
            "events",
            pa.string(),
            "Span events as a JSON array of {name, time_unix_nano, attributes} (OTLP names; time in ns).",
        ),
        *KAFKA_COLUMNS,
        _c("ingested_at", TIMESTAMP, "When spanlake committed the row.", False),
        _c("day", pa.date32(), "UTC date of start_time (partition column).", False),
    ),
)

TRACE_INFO = TableSpec(
    name="trace_info",
    columns=(
        _c("trace_id", pa.string(), "32 lowercase hex characters; one row per trace.", False),
        _c("request_time", TIMESTAMP, "Earliest span start seen (the root's start once it arrived).", False),
        _c("end_time", TIMESTAMP, "Latest span end seen."),
        _c("duration_ms", pa.float64(), "end_time - request_time in milliseconds."),
        _c("state", pa.string(), "OK or ERROR (the root span's status); IN_PROGRESS until the root arrives.", False),
        _c("root_span_id", pa.string(), "Span id of the root span, once it arrived."),
        _c("root_span_name", pa.string(), "Name of the root span."),
        _c("service_name", pa.string(), "service.name of the root span (else of any span)."),
        _c("environment", pa.string(), "deployment.environment(.name) resource attribute."),
        _c("user_id", pa.string(), "User id from the conventions' user attributes."),
        _c("session_id", pa.string(), "Session / conversation id."),
        _c("span_count", pa.int64(), "Spans stored for the trace.", False),
        _c("error_count", pa.int64(), "Spans with status ERROR.", False),
        _c("llm_call_count", pa.int64(), f"Spans of type {_or(_MODEL_CALLS)}.", False),
        _c("input_tokens", pa.int64(), "Sum of input tokens over model-call spans; null when none reported."),
        _c("output_tokens", pa.int64(), "Sum of output tokens over model-call spans."),
        _c("total_tokens", pa.int64(), "Sum of total tokens over model-call spans."),
        _c("models", pa.list_(pa.string()), "Distinct models called in the trace."),
        _c("request_preview", pa.string(), "The root span's input, at most 1,000 characters."),
        _c("response_preview", pa.string(), "The root span's output, at most 1,000 characters."),
        _c("tags", STRING_MAP, "The trace's tags: string attributes of the root span (mlflow.traceTag.* unwrapped)."),
        _c("metadata", STRING_MAP, "Resource attributes and trace-level keys (user, session, environment)."),
        _c("ingested_at", TIMESTAMP, "When spanlake last changed the row.", False),
        _c("day", pa.date32(), "UTC date of request_time (partition column).", False),
    ),
    row_group_rows=8_192,  # narrow rows, read back one page at a time
    # A MERGE rewrites every file holding a row it updates, together with its new rows, as one
    # output: unbounded, the file holding the latest rows would grow into the whole day and be
    # rewritten by every batch. Small files keep a batch's rewrite small (docs/DESIGN.md).
    target_file_bytes=1 << 20,
)

OPEN_TRACES = TableSpec(
    name="open_traces",
    columns=(
        _c("trace_id", pa.string(), "A trace whose trace_info row has no root span yet (IN_PROGRESS).", False),
        _c("request_time", TIMESTAMP, "That row's request_time: where ingest finds it when more spans arrive.", False),
        _c("day", pa.date32(), "That row's day (partition column).", False),
    ),
)

INGEST_ERRORS = TableSpec(
    name="ingest_errors",
    columns=(
        *KAFKA_COLUMNS,
        _c("key", pa.binary(), "Kafka message key."),
        _c("value", pa.binary(), "The raw message bytes, as received."),
        _c("error", pa.string(), "What was wrong and where, for a person to act on.", False),
        _c("trace_id", pa.string(), "Set when a single span was rejected from an otherwise good message."),
        _c("span_id", pa.string(), "Set when a single span was rejected."),
        _c("ingested_at", TIMESTAMP, "When the dead letter was committed.", False),
        _c("day", pa.date32(), "UTC date of ingested_at (partition column).", False),
        # New columns go last: that is where schema evolution puts them in a live table.
        _c("stage", pa.string(), "Where it failed: decode (the message), span (one span), rows (building its rows)."),
    ),
)

DEAD_LETTER_REPLAYS = TableSpec(
    name="dead_letter_replays",
    columns=(
        _c("replay_id", pa.string(), "The `spanlake dead-letters replay` run that took the dead letter (32 hex).", False),
        *KAFKA_COLUMNS,
        _c("letter_ingested_at", TIMESTAMP, "ingested_at of the ingest_errors row replayed (with the offset: which one).",
           False),
        _c("planned_at", TIMESTAMP, "When the replay listed it, before writing anything.", False),
        _c("day", pa.date32(), "UTC date of planned_at (partition column).", False),
    ),
)

OFFSET_RANGE = pa.struct([("partition", pa.int32()), ("first_offset", pa.int64()), ("last_offset", pa.int64())])

INGEST_BATCHES = TableSpec(
    name="ingest_batches",
    columns=(
        _c("batch_id", pa.string(), "Unique id of the micro-batch.", False),
        _c("committed_at", TIMESTAMP, "When the batch's last table commit finished.", False),
        _c("group", pa.string(), "Consumer group of the ingest process.", False),
        _c("topic", pa.string(), "Kafka topic.", False),
        _c("offsets", pa.list_(OFFSET_RANGE), "Per partition, the first and last offset of the batch."),
        _c("messages", pa.int64(), "Kafka messages in the batch.", False),
        _c("spans", pa.int64(), "Spans written to span_data.", False),
        _c("duplicate_spans", pa.int64(), "Spans dropped because span_data already held them.", False),
        _c("bytes", pa.int64(), "Message bytes in the batch.", False),
        _c("dead_letters", pa.int64(), "Rows written to ingest_errors.", False),
        _c("consumer_lag", pa.int64(), "Messages behind the partitions' high watermarks after the batch."),
        _c("duration_ms", pa.float64(), "Time from the first table commit's start to the last one's end."),
        _c("day", pa.date32(), "UTC date of committed_at (partition column).", False),
    ),
)

ASSESSMENTS = TableSpec(
    name="assessments",
    columns=(
        _c("assessment_id", pa.string(), "Unique id (32 hex characters).", False),
        _c("trace_id", pa.string(), "The trace assessed.", False),
        _c("span_id", pa.string(), "The span assessed, for span-level results (a retriever span, say)."),
        _c("name", pa.string(), "Assessment name: the scorer's name unless it named its Feedback.", False),
        _c("kind", pa.string(), "feedback (a verdict about the trace) or expectation (ground truth).", False),
        _c(
            "value_type",
            pa.string(),
            "Which value column holds the value: bool, number, string or json; null on error.",
        ),
        _c("value_bool", pa.bool_(), "The value when it is a bool."),
        _c("value_number", pa.float64(), "The value when it is an int or float."),
        _c("value_string", pa.string(), "The value when it is a string (yes/no verdicts included)."),
        _c("value_json", pa.string(), "The value as JSON when it is a list or dict."),
        _c("rationale", pa.string(), "Why: the judge's or reviewer's explanation."),
        _c("metadata", STRING_MAP, "Free-form string metadata."),
        _c("source_type", pa.string(), "Who produced it: CODE, LLM_JUDGE or HUMAN.", False),
        _c("source_id", pa.string(), "Which scorer, judge model or reviewer."),
        _c("scorer_version", pa.string(), "Hash of the scorer's definition (code or judge prompt and model)."),
        _c("run_id", pa.string(), "The evaluation or job run that wrote it; null for logged feedback."),
        _c("error_code", pa.string(), "Set when scoring failed (SCORER_ERROR, SCORER_TIMEOUT, BUDGET_EXCEEDED, ...)."),
        _c("error_message", pa.string(), "What went wrong, when error_code is set."),
        _c("judge_input_tokens", pa.int64(), "Prompt tokens the LLM judge spent on this result."),
        _c("judge_output_tokens", pa.int64(), "Completion tokens the LLM judge spent on this result."),
        _c("judge_model", pa.string(), "The judge model that produced it."),
        _c("overrides", pa.string(), "assessment_id of the result this one replaces (a human override)."),
        _c("created_at", TIMESTAMP, "When it was written.", False),
        _c("day", pa.date32(), "UTC date of created_at (partition column).", False),
    ),
)

JOB_RUNS = TableSpec(
    name="job_runs",
    columns=(
        _c("run_id", pa.string(), "Unique id of the run (assessments.run_id of what it wrote).", False),
        _c("job", pa.string(), "Which job: scorers, evaluate, cost, ...", False),
        _c("started_at", TIMESTAMP, "When the run started.", False),
        _c("ended_at", TIMESTAMP, "When it ended."),
        _c("status", pa.string(), "OK or ERROR.", False),
        _c("rows_read", pa.int64(), "Rows (traces) the run read."),
        _c("rows_written", pa.int64(), "Rows the run wrote."),
        _c("watermark", pa.string(), "Where the next run starts, as the job states it (JSON)."),
        _c("error", pa.string(), "Why the run failed, when status is ERROR."),
        _c("day", pa.date32(), "UTC date of started_at (partition column).", False),
    ),
)

# The token split of the cost tables: the five parts add up to input_tokens + output_tokens.
TOKEN_SPLIT = (
    _c("uncached_input_tokens", pa.int64(), "Input tokens neither read from nor written to a prompt cache."),
    _c("cache_read_tokens", pa.int64(), "Input tokens read from a prompt cache (cached input)."),
    _c("cache_creation_tokens", pa.int64(), "Input tokens written to a prompt cache."),
    _c("non_reasoning_output_tokens", pa.int64(), "Output tokens other than reasoning."),
    _c("reasoning_tokens", pa.int64(), "Output tokens spent on reasoning."),
)

SPAN_COSTS = TableSpec(
    name="span_costs",
    columns=(
        _c("trace_id", pa.string(), "The span's trace.", False),
        _c("span_id", pa.string(), "A model-call span whose tokens count (spanlake.tables.tokens' rule).", False),
        _c("start_time", TIMESTAMP, "The span's start: it pays the price in force then.", False),
        _c("service", pa.string(), "The span's service.name."),
        _c("environment", pa.string(), "The trace's environment (trace_info)."),
        _c("provider", pa.string(), "Model provider as the span reports it."),
        _c("model", pa.string(), "Model as the span reports it."),
        _c("user_id", pa.string(), "The trace's user (trace_info)."),
        *TOKEN_SPLIT,
        _c("cost_usd", pa.float64(), "Cost in USD; null when unpriced (never a silent zero)."),
        _c("cost_source", pa.string(), "reported (the instrumentation's cost wins) or computed; null when unpriced."),
        _c("price_source", pa.string(), "genai-prices==<version> or override:<sha256[:12]> of the prices file."),
        _c("price_date", pa.date32(), "When the price used took effect (null for an undated price)."),
        _c("unpriced_reason", pa.string(), "Why there is no cost (unknown model, no token counts, ...)."),
        _c("day", pa.date32(), "UTC date of start_time (partition column).", False),
    ),
)

TRACE_COSTS = TableSpec(
    name="trace_costs",
    columns=(
        _c("trace_id", pa.string(), "One row per trace with a model-call span whose tokens count.", False),
        _c("request_time", TIMESTAMP, "The trace's request_time (trace_info).", False),
        _c("cost_usd", pa.float64(), "Sum of its priced spans' cost in USD; null when none is priced."),
        _c("priced_spans", pa.int64(), "Spans with a cost.", False),
        _c("unpriced_spans", pa.int64(), "Spans without one (see span_costs.unpriced_reason).", False),
        _c("input_tokens", pa.int64(), "Input tokens of its counted spans (inclusive, as trace_info counts them)."),
        _c("output_tokens", pa.int64(), "Output tokens of its counted spans (inclusive of reasoning)."),
        _c("day", pa.date32(), "UTC date of request_time (partition column).", False),
    ),
)

COST_ROLLUPS = TableSpec(
    name="cost_rollups",
    columns=(
        _c("window", pa.string(), "hour or day.", False),
        _c("window_start", TIMESTAMP, "Start of the window, UTC.", False),
        _c("kind", pa.string(), "app (model-call spans) or judge (LLM judges' assessments).", False),
        _c("service", pa.string(), "service.name (null for judge spend)."),
        _c("environment", pa.string(), "Environment (null for judge spend)."),
        _c("provider", pa.string(), "Model provider (null for judge spend)."),
        _c("model", pa.string(), "Model, or the judge model."),
        _c("user_id", pa.string(), "User (null for judge spend)."),
        *TOKEN_SPLIT,
        _c("cost_usd", pa.float64(), "Sum of the priced rows' cost in USD; null when none is priced."),
        _c("spans", pa.int64(), "Rows summed: model-call spans, or judge results.", False),
        _c("unpriced_spans", pa.int64(), "Of those, rows without a cost.", False),
        _c("day", pa.date32(), "UTC date of window_start (partition column).", False),
    ),
)

ALERTS = TableSpec(
    name="alerts",
    columns=(
        _c("alert_id", pa.string(), "Unique id of the transition (32 hex characters).", False),
        _c("rule", pa.string(), "The monitor rule's name (jobs config `[[monitors]]`).", False),
        _c("metric", pa.string(), "What the rule measures: cost_usd, error_rate, latency_p95_ms, ...", False),
        _c("scope", pa.string(), "Which group the value is for: `service=support-bot`, `user_id=u1`, or `all`.", False),
        _c("window", pa.string(), "The rolling window the value covers, as written in the rule (1h, 1d, ...).", False),
        _c("window_start", TIMESTAMP, "Start of the window the value was computed over.", False),
        _c("window_end", TIMESTAMP, "End of that window (the evaluation time).", False),
        _c("observed", pa.float64(), "The value the monitor computed (null when the window held no data)."),
        _c("threshold", pa.float64(), "The rule's threshold.", False),
        _c("comparison", pa.string(), "How observed is compared with threshold to fire: > or <.", False),
        _c("state", pa.string(), "FIRING or RESOLVED: the state entered by this transition.", False),
        _c("since", TIMESTAMP, "When the state began (this transition's evaluation time).", False),
        _c("notified", pa.bool_(), "Whether the webhook accepted the notification (null: no webhook)."),
        _c("run_id", pa.string(), "The monitors job run that recorded it (job_runs.run_id).", False),
        _c("day", pa.date32(), "UTC date of since (partition column).", False),
    ),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        SPAN_DATA,
        TRACE_INFO,
        OPEN_TRACES,
        INGEST_ERRORS,
        DEAD_LETTER_REPLAYS,
        INGEST_BATCHES,
        ASSESSMENTS,
        JOB_RUNS,
        SPAN_COSTS,
        TRACE_COSTS,
        COST_ROLLUPS,
        ALERTS,
    )  # fmt: skip
}


def spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        from spanlake.errors import TableError

        raise TableError(f"unknown table {name!r}; tables are: {', '.join(sorted(TABLES))}") from None


def markdown() -> str:
    """The README's schema section, generated from the specs (tests keep the two equal)."""
    out = []
    for spec in TABLES.values():
        out += [f"### `{spec.name}`", "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.type} | {c.doc} |" for c in spec.columns]
        out.append("")
    return "\n".join(out)
