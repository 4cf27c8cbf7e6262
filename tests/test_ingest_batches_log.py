"""`ingest_batches` is what throughput charts read: after a crash and a replay its rows still add
up to exactly what the other tables hold (a replayed batch used to report 0 spans)."""

from __future__ import annotations

import signal

import pytest
from support import TeeExporter, assert_exact, create_topic, ingest_subprocess, read, send_raw

from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


@pytest.mark.parametrize("crash_at", ["after_span_data", "after_ingest_errors"])
def test_a_replayed_batch_logs_its_real_counts(settings: Settings, crash_at: str) -> None:
    create_topic(settings, partitions=1)
    tee = TeeExporter(KafkaSpanExporter(settings.bootstrap_servers, settings.topic))
    Workload(tee, seed=61).run(40)
    send_raw(settings, [b"\x0a\xff\xff\xffnot protobuf"])  # one dead letter, in the last batch
    settings = settings.model_copy(update={"flush_spans": 100})

    crashed = ingest_subprocess(settings, crash_at=crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    finished = ingest_subprocess(settings)
    assert finished.returncode == 0, finished.stderr[-2000:]

    assert_exact(settings, tee.spans)
    batches = read(settings, "ingest_batches")
    messages = read(settings, "span_data")["offset"].n_unique() + 1  # + the dead letter
    assert batches["spans"].sum() == len(tee.spans)
    assert batches["messages"].sum() == messages
    assert batches["dead_letters"].sum() == read(settings, "ingest_errors").height == 1
