"""A failing storage (a full disk, an object store's 503) does not stop ingest: the run loop
retries with capped exponential backoff, one line per failure, re-reading the batch from the
warehouse's offsets, so the data ends complete and exactly once; after too many failures in a row
it exits 1 with one line, and the next run finishes the job. (SPANLAKE_FAIL_WRITES makes the
first n writes of a table raise OSError ENOSPC, through the real sink.)"""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition
from support import TeeExporter, assert_exact, create_topic, ingest_subprocess, read

from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.service import SpanIngestor
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


def produce(settings: Settings, traces: int, seed: int) -> TeeExporter:
    tee = TeeExporter(KafkaSpanExporter(settings.bootstrap_servers, settings.topic))
    Workload(tee, seed=seed).run(traces)
    return tee


@pytest.mark.parametrize("table", ["trace_info", "ingest_batches"])
def test_storage_failures_mid_batch_are_retried_exactly_once(settings: Settings, table: str) -> None:
    """The batch fails after span_data (and, for ingest_batches, every other table) committed it:
    the retry re-reads it from the warehouse's offsets and each table takes only what it lacks."""
    create_topic(settings, partitions=2)
    tee = produce(settings, 60, seed=71)
    settings = settings.model_copy(update={"flush_spans": 150})

    done = ingest_subprocess(settings, env={"SPANLAKE_FAIL_WRITES": f"{table}:2"})

    assert done.returncode == 0, done.stderr[-3000:]
    failures = [line for line in done.stderr.splitlines() if "No space left on device" in line]
    assert len(failures) == 2, done.stderr[-3000:]
    assert all(f"writing {table} failed: OSError: [Errno 28]" in line for line in failures)
    assert "next attempt in 0.5 s (failure 1 of 20 in a row)" in failures[0]
    assert "next attempt in 1 s (failure 2 of 20 in a row)" in failures[1]
    assert_exact(settings, tee.spans)
    batches = read(settings, "ingest_batches")
    assert batches.height > 2  # several batches, the failed one among them
    assert batches["spans"].sum() == len(tee.spans)


def test_storage_failing_too_long_exits_1_then_the_next_run_completes(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    tee = produce(settings, 30, seed=72)

    gave_up = ingest_subprocess(
        settings, env={"SPANLAKE_FAIL_WRITES": "span_data:5", "SPANLAKE_STORAGE_MAX_FAILURES": "3"}
    )

    assert gave_up.returncode == 1, gave_up.stderr[-3000:]
    last = gave_up.stderr.strip().splitlines()[-1]
    assert "writing span_data failed: OSError: [Errno 28]" in last and "giving up after 3 storage failures" in last
    assert "Traceback" not in gave_up.stderr
    assert read(settings, "span_data").is_empty()

    finished = ingest_subprocess(settings)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert_exact(settings, tee.spans)


def test_lag_is_unknown_while_a_position_is_being_reset(settings: Settings) -> None:
    """position() is None between a seek to the beginning and the offset lookup that resolves it."""
    create_topic(settings, partitions=1)
    produce(settings, 5, seed=73)
    ingestor = SpanIngestor(settings)
    try:
        tp = TopicPartition(settings.topic, 0)
        ingestor.consumer.assign([tp])
        deadline = time.monotonic() + 30
        while ingestor.consumer.highwater(tp) is None:  # a fetch tells the high watermark
            assert time.monotonic() < deadline, "no fetch within 30 s"
            ingestor.consumer.poll(timeout_ms=200)
        assert ingestor.lag() == 0  # everything fetched was handed over, nothing buffered
        ingestor.consumer.seek_to_beginning(tp)
        assert ingestor.consumer.position(tp, timeout_ms=0) is None
        assert ingestor.lag() is None
    finally:
        ingestor.consumer.close(autocommit=False)
