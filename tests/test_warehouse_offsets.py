"""The warehouse, not the consumer group, decides what it holds: a second group pointed at the
same warehouse (a renamed group, a second deployment) continues from the warehouse's offsets,
one after the other or both at once, and never stores a span twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, Transaction, write_deltalake
from support import SPANLAKE, TeeExporter, assert_exact, create_topic, ingest_env, ingest_subprocess, read

from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.sink import SINK_TABLES, DeltaSink
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings
from spanlake.tables.delta import legacy_offset_app_id, open_or_create


def produce(settings: Settings, traces: int, seed: int) -> list:
    tee = TeeExporter(KafkaSpanExporter(settings.bootstrap_servers, settings.topic))
    Workload(tee, seed=seed).run(traces)
    return tee.spans


def totals(settings: Settings) -> dict[str, int]:
    """What doubles when a warehouse stores spans twice."""
    traces = read(settings, "trace_info")
    assert traces["trace_id"].is_unique().all()
    return traces.select(pl.col("span_count").sum(), pl.col("total_tokens").sum(), pl.len()).row(0, named=True)


def group(settings: Settings, name: str) -> Settings:
    return settings.model_copy(update={"group": name, "flush_spans": 150})


def test_a_second_group_continues_from_the_warehouse_in_both_directions(settings: Settings) -> None:
    create_topic(settings, partitions=2)
    spans = produce(settings, 60, seed=41)
    first = ingest_subprocess(group(settings, "a"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert_exact(settings, spans)
    before = totals(settings)

    # A renamed group with nothing new on the topic: nothing to store.
    renamed = ingest_subprocess(group(settings, "b"))
    assert renamed.returncode == 0, renamed.stderr[-2000:]
    assert "ingested 0 spans" in renamed.stdout
    assert_exact(settings, spans)
    assert totals(settings) == before

    # New spans go to whichever group runs next, and the old group resumes after group b's
    # offsets, not after what it committed to Kafka itself.
    spans += produce(settings, 40, seed=42)
    assert ingest_subprocess(group(settings, "b")).returncode == 0
    spans += produce(settings, 40, seed=43)
    again = ingest_subprocess(group(settings, "a"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert_exact(settings, spans)
    assert totals(settings)["len"] == 140


def test_two_groups_at_once_never_store_a_span_twice(settings: Settings, tmp_path: Path) -> None:
    create_topic(settings, partitions=3)
    spans = produce(settings, 150, seed=44)
    logs = {name: tmp_path / f"ingest-{name}.log" for name in ("a", "b")}
    processes = [
        subprocess.Popen([SPANLAKE, "ingest", "--until-idle"], env=ingest_env(group(settings, name)),
                         stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        for name, log in logs.items()
    ]
    codes = [p.wait(timeout=240) for p in processes]
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs.values()]
    assert_exact(settings, spans)
    by_trace: dict[int, int] = {}
    for s in spans:
        if s.attributes.get("gen_ai.operation.name") in ("chat", "embeddings"):
            usage = [s.attributes.get(f"gen_ai.usage.{k}_tokens", 0) for k in ("input", "output")]
            by_trace[s.context.trace_id] = by_trace.get(s.context.trace_id, 0) + sum(usage)
    assert totals(settings)["total_tokens"] == sum(by_trace.values())
    batches = read(settings, "ingest_batches")
    assert batches["spans"].sum() == len(spans)  # each span is logged by the one batch that stored it


def test_a_warehouse_written_with_per_group_offsets_keeps_its_place(tmp_path: Path) -> None:
    # Older warehouses record offsets as spanlake:<group>:<topic>:<partition>.
    for spec in SINK_TABLES:
        table = open_or_create(str(tmp_path / spec.name), spec)
        txn = CommitProperties(app_transactions=[Transaction(legacy_offset_app_id("g", "t", 0), 41)])
        write_deltalake(table, spec.schema.empty_table(), mode="append", partition_by=["day"], commit_properties=txn)
    assert DeltaSink(str(tmp_path), group="g", topic="t").load_offsets([0, 1]) == {0: 42, 1: None}
