"""The one typed settings object, read from SPANLAKE_* environment variables.

Configuration flows one way: environment -> Settings (built at an entry point, flags
override) -> plain arguments. Nothing below an entry point reads os.environ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from spanlake.encoding import Encoding

# How a dead letter's payload is masked: as UTF-8 text (undecodable bytes kept), or replaced by its sha256 and length.
DeadLetterMasking = Literal["mask", "hash"]


class Settings(BaseSettings):
    # validate_by_name: fields with an alias (the OpenAI client's variables) still take their own name as an argument.
    model_config = SettingsConfigDict(env_prefix="SPANLAKE_", extra="ignore", validate_by_name=True)

    warehouse: str = Field("./spanlake-data", description="Warehouse root: a local path or an s3:// URI.")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs/object-store options as JSON, e.g. "
        '{"AWS_ENDPOINT_URL": "http://localhost:9000", "aws_conditional_put": "etag"}.',
    )
    bootstrap_servers: str = Field("localhost:9092", description="Kafka bootstrap servers, comma separated.")
    connect_timeout_seconds: float = Field(
        5, gt=0, description="How long ingest waits for the Kafka broker to answer at start-up before giving up."
    )
    topic: str = Field("otlp_spans", description="Topic of OTLP trace requests (the Collector's default).")
    group: str = Field("spanlake-ingest", description="Consumer group of the ingest service.")
    encoding: Encoding = Field("otlp_proto", description="Encoding assumed when a message has no content-type header.")
    flush_spans: int = Field(50_000, gt=0, description="Flush a micro-batch at this many spans ...")
    flush_bytes: int = Field(32 * 1024 * 1024, gt=0, description="... or this many message bytes ...")
    flush_seconds: float = Field(1.0, gt=0, description="... or when its oldest message is this old.")
    mask: bool = Field(
        False, description="Mask e-mails, phone and card numbers, API keys in every text column before writing."
    )
    mask_rules: list[dict[str, str]] = Field(
        default_factory=list, description='Extra masking rules as JSON: [{"name", "pattern", "replacement"}].'
    )
    mask_dead_letters: DeadLetterMasking = Field(
        "mask",
        description="With mask on, a dead letter's payload (ingest_errors.value) is masked as text (`mask`) "
        "or kept only as its sha256 and length (`hash`).",
    )
    maintenance_interval_seconds: float = Field(
        900, ge=0, description="Run table maintenance this often inside `spanlake ingest` (0: never)."
    )
    retention_hours: float = Field(168, ge=1, description="Vacuum keeps files readers may still need this long.")
    session_timeout_ms: int = Field(
        10_000, ge=6_000, description="Consumer-group session timeout: how soon a crashed ingest process's partitions move."
    )
    storage_max_failures: int = Field(
        20, ge=1, description="Ingest retries a failed storage read or write (backoff 0.5 s doubling to 30 s) and "
        "exits after this many failures in a row (20: about 7 minutes of outage).",
    )
    fail_writes: str = Field(
        "", pattern=r"^$|^[a-z_]+:[0-9]+$",
        description="Fault tests only: `<table>:<n>`, the first n writes of that table fail with OSError (disk full).",
    )
    crash_at: Literal[
        "", "before_commit", "after_span_data", "after_trace_info", "after_open_traces", "after_ingest_errors",
        "after_delta_commit", "after_offset_commit",
    ] = Field(  # keep in step with spanlake.ingest.faults.CRASH_POINTS
        "", description="Fault tests only: SIGKILL the ingest process at this point of a batch."
    )
    prices_file: Path | None = Field(
        None,
        description="TOML file of private or negotiated prices (USD per million tokens), layered over genai-prices.",
    )
    scorers_file: Path = Field(
        Path("spanlake-scorers.toml"),
        description="The jobs config: registered scorers and monitor rules (TOML, or YAML when it ends in .yaml/.yml).",
    )
    alert_webhook_url: str | None = Field(
        None, pattern=r"^https?://",
        description="Where `spanlake jobs run monitors` POSTs each alert transition as JSON (Slack-compatible `text`).",
    )  # fmt: skip
    cache_dir: Path = Field(Path.home() / ".cache" / "spanlake", description="Where fetched Kafka jars are kept.")

    # The OTLP/HTTP gateway (spanlake gateway)
    gateway_max_body_bytes: int = Field(
        20 * 1024 * 1024, gt=0, description="Largest request body the gateway takes, counted after decompression (413 past it)."
    )
    gateway_send_timeout_seconds: float = Field(
        5, gt=0, description="How long the gateway waits for Kafka to acknowledge a request's spans before a 503."
    )
    gateway_retry_after_seconds: int = Field(
        2, ge=1, le=5, description="Retry-After of the gateway's 503 while Kafka is unavailable (OTel clients wait 10 s at most)."
    )

    # LLM judges (spanlake.jobs.judges): any OpenAI-compatible chat-completions endpoint. The OpenAI
    # client's own variables count when the SPANLAKE_ ones are unset (aliases skip the prefix).
    judge_base_url: str = Field(
        "https://api.openai.com/v1",
        validation_alias=AliasChoices("SPANLAKE_JUDGE_BASE_URL", "OPENAI_BASE_URL"),
        description="Chat-completions endpoint root of the LLM judges ({base}/chat/completions).",
    )
    judge_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SPANLAKE_JUDGE_API_KEY", "OPENAI_API_KEY"),
        description="Bearer key of the judge endpoint; a secret: never logged, written or shown.",
    )
    judge_model: str = Field("gpt-4o-mini", description="Judge model, unless a judge names its own.")
    judge_concurrency: int = Field(
        8, gt=0, description="Judge calls in flight at once, over all judges of a process (8 stays inside a "
        "low rate-limit tier; a local or self-hosted endpoint takes 64).",
    )  # fmt: skip
    judge_timeout_seconds: float = Field(60, gt=0, description="How long one judge request may take.")
    judge_max_retries: int = Field(
        6, ge=0, description="Retries of a judge request after a 429, a 5xx or a connection error (with backoff)."
    )
    judge_budget_tokens: int | None = Field(
        None, gt=0, description="Stop calling judges once a run has spent this many tokens (prompt + completion)."
    )
    judge_budget_usd: float | None = Field(
        None, gt=0, description="Stop calling judges once a run has spent this many USD (each call priced by "
        "genai-prices and prices_file, as the cost job prices judge spend).",
    )  # fmt: skip
    judge_input_usd_per_mtok: float | None = Field(
        None, ge=0, description="Override: the judge model's price per 1M prompt tokens (set with the output one)."
    )
    judge_output_usd_per_mtok: float | None = Field(
        None, ge=0, description="Override: the judge model's price per 1M completion tokens (set with the input one)."
    )
    judge_cache: bool = Field(True, description="Keep judge verdicts so a re-run pays nothing twice.")
    judge_cache_path: Path | None = Field(
        None, description="SQLite file of kept verdicts (default: <cache_dir>/judge_cache.sqlite)."
    )
