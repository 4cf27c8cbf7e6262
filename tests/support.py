"""Helpers shared by the end-to-end tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from kafka import KafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from spanlake.ingest.producer import ensure_topic
from spanlake.ingest.service import IngestStats, SpanIngestor
from spanlake.settings import Settings
from spanlake.tables import scan


class TeeExporter(SpanExporter):
    """Sends spans to Kafka and keeps a copy, so a test knows exactly what was produced."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return self.inner.export(spans)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


def create_topic(settings: Settings, partitions: int) -> None:
    assert ensure_topic(settings.bootstrap_servers, settings.topic, partitions=partitions)


def ingest(settings: Settings) -> IngestStats:
    return SpanIngestor(settings, until_idle=True).run()


def send_raw(settings: Settings, values: Sequence[bytes], *, partition: int = 0, headers=None) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_request_size=16 * 1024 * 1024)
    for value in values:
        producer.send(settings.topic, value=value, partition=partition, headers=headers or []).get(timeout=30)
    producer.close()


def ingest_env(settings: Settings, *, crash_at: str = "") -> dict[str, str]:
    """The environment that makes a `spanlake ingest` process use these settings."""
    return {
        **os.environ,
        "SPANLAKE_WAREHOUSE": settings.warehouse,
        "SPANLAKE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SPANLAKE_TOPIC": settings.topic,
        "SPANLAKE_GROUP": settings.group,
        "SPANLAKE_FLUSH_SPANS": str(settings.flush_spans),
        "SPANLAKE_FLUSH_SECONDS": str(settings.flush_seconds),
        "SPANLAKE_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "SPANLAKE_CRASH_AT": crash_at,
    }


SPANLAKE = str(Path(sys.executable).parent / "spanlake")


def ingest_subprocess(
    settings: Settings, *, crash_at: str = "", timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `spanlake ingest --until-idle` as its own process (so it can be SIGKILLed); `env`: more variables."""
    return subprocess.run(
        [SPANLAKE, "ingest", "--until-idle"], env={**ingest_env(settings, crash_at=crash_at), **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def start_ingest(settings: Settings, log: Path) -> subprocess.Popen:
    """A long-running `spanlake ingest` (until SIGTERM), its output in `log`."""
    return subprocess.Popen(
        [SPANLAKE, "ingest"], env=ingest_env(settings), stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def span_count(settings: Settings) -> int:
    try:
        return read(settings, "span_data").height
    except Exception:  # the table may not exist yet
        return 0


def assert_exact(settings: Settings, spans: list) -> None:
    """span_data holds exactly `spans` (SDK spans), trace_info exactly one row per trace with its
    count, and open_traces no trace (every trace here has its root)."""
    stored = read(settings, "span_data")
    assert stored.height == len(spans)
    assert sorted(stored["span_id"]) == sorted(f"{s.context.span_id:016x}" for s in spans)
    traces = read(settings, "trace_info")
    expected: dict[str, int] = {}
    for s in spans:
        key = f"{s.context.trace_id:032x}"
        expected[key] = expected.get(key, 0) + 1
    repeated = traces.filter(pl.col("trace_id").is_duplicated())["trace_id"].unique().to_list()
    assert not repeated, f"{len(repeated)} traces have more than one trace_info row, e.g. {repeated[:3]}"
    assert dict(zip(traces["trace_id"], traces["span_count"], strict=True)) == expected
    assert read(settings, "open_traces").is_empty()


def read(settings: Settings, table: str) -> pl.DataFrame:
    return scan(table, warehouse=settings.warehouse).collect()
