"""Maintenance beside ingest, through the real path: `spanlake ingest` with maintenance every
second exits cleanly with exact data (it used to die with SIGSEGV when the interpreter exited
while a maintenance thread was inside delta-rs), and a maintenance run killed while holding its
lease does not lock the next run out."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from pathlib import Path

from deltalake import DeltaTable
from kafka import KafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from polars.testing import assert_frame_equal
from support import SPANLAKE, assert_exact, create_topic, ingest_env, read

from spanlake.ingest.workload import Workload
from spanlake.settings import Settings
from spanlake.tables.maintenance import LEASE_APP_ID

DAYS = 4


def produce_past_days(settings: Settings, traces: int) -> list:
    """`traces` traces spread over the last DAYS days (cold days: maintenance orders them)."""
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=51, start=dt.datetime.now(dt.UTC) - dt.timedelta(days=DAYS))
    for i in range(traces):
        workload.emit_trace(i, DAYS * 86_400_000 / traces)
    workload.shutdown()
    spans = list(memory.get_finished_spans())
    by_trace: dict[int, list] = {}
    for s in spans:
        by_trace.setdefault(s.context.trace_id, []).append(s)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    for trace_id, group in by_trace.items():
        producer.send(settings.topic, encode_spans(group).SerializeToString(), key=f"{trace_id:032x}".encode())
    producer.close()
    return spans


def test_ingest_with_maintenance_every_second_exits_cleanly(settings: Settings, tmp_path: Path) -> None:
    create_topic(settings, partitions=3)
    spans = produce_past_days(settings, 300)
    for run in range(5):  # the crash came at exit in most runs, not every run
        warehouse = settings.model_copy(update={"warehouse": str(tmp_path / f"warehouse-{run}"), "flush_spans": 300})
        env = {**ingest_env(warehouse), "SPANLAKE_MAINTENANCE_INTERVAL_SECONDS": "1", "PYTHONFAULTHANDLER": "1"}
        done = subprocess.run([SPANLAKE, "ingest", "--until-idle"], env=env, capture_output=True, text=True,
                              timeout=180)  # fmt: skip
        assert done.returncode == 0, f"run {run}: exit code {done.returncode}\n{done.stderr[-3000:]}"
        # A maintenance run was under way at exit (the case that crashed) or had finished.
        assert "stopping the maintenance run" in done.stderr or "maintenance: span_data" in done.stderr
        assert_exact(warehouse, spans)
        assert read(warehouse, "trace_info")["trace_id"].is_unique().all()


def test_a_killed_maintenance_run_does_not_lock_the_next_one_out(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    produce_past_days(settings, 120)
    ingested = subprocess.run([SPANLAKE, "ingest", "--until-idle"], env=ingest_env(settings.model_copy(
        update={"flush_spans": 40})), capture_output=True, text=True, timeout=180)  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    before = read(settings, "span_data").sort("span_id")
    span_data = f"{settings.warehouse}/span_data"

    # SIGKILL `spanlake maintain` while it holds the span_data lease (it holds it for most of its run).
    env = ingest_env(settings)
    killed = subprocess.Popen([SPANLAKE, "maintain", "--table", "span_data"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while (DeltaTable(span_data).transaction_version(LEASE_APP_ID) or 0) < time.time() * 1000:
        assert killed.poll() is None, f"maintain finished before it could be killed:\n{killed.stdout.read()}"
        assert time.monotonic() < deadline, "maintain never took its lease"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    held_until = DeltaTable(span_data).transaction_version(LEASE_APP_ID)
    assert held_until > (time.time() + 600) * 1000, "the killed run's lease should still look held"

    # The next run on this host sees the holder is gone, says so, and takes the lease over.
    started = time.monotonic()
    after = subprocess.run([SPANLAKE, "maintain"], env=env, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr[-3000:]
    assert time.monotonic() - started < 60
    assert "took over the lease of maintenance run" in after.stdout + after.stderr
    assert "skipped all" not in after.stdout
    assert (DeltaTable(span_data).transaction_version(LEASE_APP_ID) or 0) <= time.time() * 1000  # released
    assert_frame_equal(read(settings, "span_data").sort("span_id"), before)
