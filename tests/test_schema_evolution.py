"""Live tables against their specs: a spec that adds nullable columns migrates a warehouse
written with the previous schema (and ingest keeps writing into it); anything else is refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from support import TeeExporter, create_topic, ingest, read

from spanlake.errors import TableError
from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings
from spanlake.tables.delta import open_or_create, table_uri
from spanlake.tables.schemas import SPAN_DATA, TABLES, TableSpec

# What an earlier spanlake lacked: nullable columns of every table (the spec added them since).
ADDED_SINCE = {
    "span_data": ("events", "provided_cost_usd"),
    "trace_info": ("models", "metadata"),
    "ingest_errors": ("span_id",),
    "ingest_batches": ("consumer_lag",),
}


def previous(spec: TableSpec) -> TableSpec:
    dropped = ADDED_SINCE.get(spec.name, ())  # a table added since is simply created
    assert all(spec.schema.field(c).nullable for c in dropped)
    return dataclasses.replace(spec, columns=tuple(c for c in spec.columns if c.name not in dropped), version=0)


def old_warehouse(root: Path) -> str:
    """A warehouse as the previous schema wrote it, with one span already stored."""
    warehouse = str(root / "warehouse")
    for spec in TABLES.values():
        open_or_create(table_uri(warehouse, spec.name), previous(spec))
    now = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
    old_span = {
        "trace_id": "a" * 32, "span_id": "b" * 16, "name": "old span", "start_time": now, "end_time": now,
        "topic": "old", "partition": 0, "offset": 0, "ingested_at": now, "day": now.date(),
    }  # fmt: skip
    write_deltalake(
        table_uri(warehouse, "span_data"), pa.Table.from_pylist([old_span], schema=previous(SPAN_DATA).schema),
        mode="append", partition_by=["day"],
    )  # fmt: skip
    return warehouse


def test_opening_an_older_table_adds_the_new_nullable_columns(tmp_path: Path) -> None:
    warehouse = old_warehouse(tmp_path)
    for spec in TABLES.values():
        table = open_or_create(table_uri(warehouse, spec.name), spec)
        # added columns come last: Delta appends them (readers select by name)
        assert sorted(pa.schema(table.schema().to_arrow()).names) == sorted(spec.schema.names)
    old = pl.read_delta(table_uri(warehouse, "span_data"))
    assert old["name"].to_list() == ["old span"]
    assert old["events"].to_list() == [None] and old["provided_cost_usd"].to_list() == [None]


def test_a_column_of_another_type_is_refused_in_one_line(tmp_path: Path) -> None:
    uri = str(tmp_path / "span_data")
    wrong = [dataclasses.replace(c, type=pa.int64()) if c.name == "duration_ms" else c for c in SPAN_DATA.columns]
    open_or_create(uri, dataclasses.replace(SPAN_DATA, columns=tuple(wrong)))
    with pytest.raises(TableError, match=r"column 'duration_ms' is int64, the spec says double") as err:
        open_or_create(uri, SPAN_DATA)
    assert "\n" not in str(err.value)


def test_a_column_the_spec_does_not_know_is_refused(tmp_path: Path) -> None:
    uri = str(tmp_path / "span_data")
    extra = dataclasses.replace(SPAN_DATA, columns=(*SPAN_DATA.columns, dataclasses.replace(SPAN_DATA.columns[3], name="mystery")))
    open_or_create(uri, extra)
    with pytest.raises(TableError, match=r"column 'mystery' is not in the spec"):
        open_or_create(uri, SPAN_DATA)
    assert DeltaTable(uri).version() == 0  # nothing was rewritten


@pytest.mark.slow
def test_ingest_keeps_writing_into_a_warehouse_of_the_previous_schema(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"warehouse": old_warehouse(tmp_path)})
    create_topic(settings, partitions=2)
    tee = TeeExporter(KafkaSpanExporter(settings.bootstrap_servers, settings.topic))
    Workload(tee, seed=3).run(200)
    tee.force_flush()
    ingest(settings)
    for spec in TABLES.values():
        assert sorted(read(settings, spec.name).columns) == sorted(spec.schema.names)
    spans = read(settings, "span_data").filter(pl.col("topic") == settings.topic)
    events = [json.loads(e) for e in spans["events"].drop_nulls()]
    assert events, "the added column is written from now on"
    assert all(set(e) == {"name", "time_unix_nano", "attributes"} for es in events for e in es)  # the spec's shape
    assert read(settings, "span_data").height == len(tee.spans) + 1  # the old row is still there
    traces = read(settings, "trace_info")
    assert traces["models"].is_not_null().all() and traces.height == len({s.context.trace_id for s in tee.spans})
