"""Faults while ingesting: SIGKILL at random moments, SIGTERM mid-stream, and the broker
stopped for 30 s while producing and ingesting. Afterwards, exact counts."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import assert_exact, create_topic, ingest, span_count, start_ingest, wait_for

from spanlake.broker import free_port, start_broker, stop_broker
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


def workload_messages(traces: int, seed: int) -> tuple[list[bytes], list]:
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=seed)
    for i in range(traces):
        workload.emit_trace(i, 100)
    workload.shutdown()
    spans = list(memory.get_finished_spans())
    by_trace: dict[int, list] = {}
    for s in spans:
        by_trace.setdefault(s.context.trace_id, []).append(s)
    return [encode_spans(group).SerializeToString() for group in by_trace.values()], spans


def produce(settings: Settings, messages: list[bytes], *, pause_every: int = 0, pause: float = 0.0) -> None:
    # retries plus a long delivery timeout: a broker outage delays messages, it does not lose them
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5, retries=1000,
                             delivery_timeout_ms=180_000, request_timeout_ms=10_000)  # fmt: skip
    for i, m in enumerate(messages):
        producer.send(settings.topic, m, key=str(i).encode())
        if pause_every and i % pause_every == pause_every - 1:
            time.sleep(pause)
    producer.flush(timeout=240)
    producer.close()


def test_sigkill_at_random_moments_then_restart(settings: Settings, tmp_path: Path) -> None:
    messages, spans = workload_messages(400, seed=31)
    create_topic(settings, partitions=3)
    settings = settings.model_copy(update={"flush_spans": 150})
    producer = threading.Thread(target=produce, args=(settings, messages), kwargs={"pause_every": 40, "pause": 0.2})
    producer.start()
    rng = random.Random(8)
    for round_ in range(4):  # kill wherever the loop happens to be: polling, decoding, committing
        process = start_ingest(settings, tmp_path / f"ingest-{round_}.log")
        time.sleep(rng.uniform(1.5, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    producer.join()
    ingest(settings)
    assert_exact(settings, spans)


def test_sigterm_finishes_the_batch_and_exits_cleanly(settings: Settings, tmp_path: Path) -> None:
    messages, spans = workload_messages(150, seed=32)
    create_topic(settings, partitions=2)
    process = start_ingest(settings.model_copy(update={"flush_seconds": 30.0}), tmp_path / "ingest.log")
    produce(settings, messages)
    time.sleep(3)  # buffered, not yet flushed (flush_seconds=30)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    assert_exact(settings, spans)  # the buffered batch was committed on the way out


@pytest.mark.slow
def test_broker_down_for_30_seconds_while_producing_and_ingesting(tmp_path: Path, kafka_cache_dir: Path) -> None:
    port = free_port()
    broker = start_broker(port=port, data_dir=tmp_path / "kafka", cache_dir=kafka_cache_dir)
    settings = Settings(warehouse=str(tmp_path / "wh"), bootstrap_servers=broker.bootstrap_servers,
                        topic="outage", group="outage", flush_seconds=0.5, session_timeout_ms=6000)  # fmt: skip
    messages, spans = workload_messages(500, seed=33)
    create_topic(settings, partitions=3)
    process = start_ingest(settings, tmp_path / "ingest.log")
    try:
        producer = threading.Thread(target=produce, args=(settings, messages), kwargs={"pause_every": 25, "pause": 0.3})
        producer.start()
        wait_for(lambda: span_count(settings) > 0, 60, "the first spans")
        stop_broker(data_dir=tmp_path / "kafka")
        time.sleep(30)
        start_broker(port=port, data_dir=tmp_path / "kafka", cache_dir=kafka_cache_dir)
        producer.join()
        wait_for(lambda: span_count(settings) >= len(spans), 180, "every span after the outage")
        time.sleep(2)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        stop_broker(data_dir=tmp_path / "kafka")
    assert code == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    assert_exact(settings, spans)
