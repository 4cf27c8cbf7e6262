"""Evaluation datasets: named sets of records (`inputs`, and optionally `expectations`,
`outputs` and the trace a record came from), each a Delta table under the warehouse
(`<warehouse>/datasets/<name>`) whose table versions are the dataset's versions.

    from spanlake.jobs import datasets
    ds = datasets.create("refund-questions", [{"inputs": {"question": "Can I get a refund?"},
                                               "expectations": {"expected_facts": ["30 days"]}}])
    ds = datasets.merge_records("refund-questions", search_traces("tags.topic = 'refund'"))  # version 1
    evaluate(data=datasets.load("refund-questions", version=0), scorers=[...])

A record's id is a hash of its inputs, so merging a record with the same inputs replaces it
(new expectations for a known question) instead of adding a second one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from spanlake.errors import SpanlakeError
from spanlake.jobs.loading import StoredBatch
from spanlake.query.search import TracePage, warehouse_location
from spanlake.tables.delta import DATASETS_DIR, NO_CHECKPOINT, WRITER_PROPERTIES, check_warehouse
from spanlake.tables.schemas import TIMESTAMP

SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),  # sha256 of the inputs' JSON, 32 hex characters
        pa.field("inputs", pa.string(), nullable=False),  # JSON of the record's inputs (a dict, or a string)
        pa.field("expectations", pa.string()),  # JSON object {name: value}
        pa.field("outputs", pa.string()),  # JSON, when the record holds a known output
        pa.field("source_trace_id", pa.string()),  # the trace the record was made from
        pa.field("created_at", TIMESTAMP, nullable=False),
    ]
)
RECORD_KEYS = {"inputs", "expectations", "outputs", "trace_id"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class DatasetError(SpanlakeError):
    """A dataset does not exist, exists already, or was given records it cannot hold."""


@dataclass(frozen=True)
class Dataset:
    """One version of a dataset: `records` holds inputs / expectations / outputs as JSON strings."""

    name: str
    version: int
    records: pl.DataFrame

    def to_rows(self) -> list[dict[str, Any]]:
        """The records as evaluate() takes them: parsed `inputs`, `expectations`, `outputs`, `trace_id`."""
        rows = []
        for r in self.records.iter_rows(named=True):
            row = {"inputs": json.loads(r["inputs"]), "expectations": _loads(r["expectations"]) or {}}
            if r["outputs"] is not None:
                row["outputs"] = json.loads(r["outputs"])
            if r["source_trace_id"] is not None:
                row["trace_id"] = r["source_trace_id"]
            rows.append(row)
        return rows

    def __len__(self) -> int:
        return self.records.height


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dataset_uri(warehouse: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DatasetError(
            f"dataset name {name!r} must be 1-128 letters, digits, '_', '.' or '-' (starting alphanumeric)"
        )
    return f"{warehouse.rstrip('/')}/{DATASETS_DIR}/{name}"


def create(
    name: str,
    records: Iterable[Mapping[str, Any]] | pl.DataFrame | TracePage,
    *,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> Dataset:
    """A new dataset (version 0) of `records`: dicts or a DataFrame with an `inputs` column, or a
    search result (trace_info rows), whose root spans' inputs and outputs and whose expectation
    assessments become the records."""
    warehouse, options = warehouse_location(warehouse, storage_options)
    uri = dataset_uri(warehouse, name)
    if DeltaTable.is_deltatable(uri, storage_options=options or None):
        raise DatasetError(f"dataset {name!r} exists already in {warehouse}; add to it with datasets.merge_records")
    frame = _records(records, warehouse, options)
    check_warehouse(warehouse)
    write_deltalake(uri, frame.to_arrow().cast(SCHEMA), mode="error", name=name, storage_options=options or None,
                    writer_properties=WRITER_PROPERTIES, post_commithook_properties=NO_CHECKPOINT)  # fmt: skip
    return load(name, warehouse=warehouse, storage_options=options)


def merge_records(
    name: str,
    records: Iterable[Mapping[str, Any]] | pl.DataFrame | TracePage,
    *,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> Dataset:
    """The dataset's next version: its records plus `records`, a record with the same inputs replaced."""
    warehouse, options = warehouse_location(warehouse, storage_options)
    current = load(name, warehouse=warehouse, storage_options=options)
    new = _records(records, warehouse, options)
    merged = pl.concat([current.records, new]).unique("record_id", keep="last", maintain_order=True)
    table = DeltaTable(dataset_uri(warehouse, name), storage_options=options or None)
    write_deltalake(table, merged.to_arrow().cast(SCHEMA), mode="overwrite", writer_properties=WRITER_PROPERTIES,
                    post_commithook_properties=NO_CHECKPOINT)  # fmt: skip
    return load(name, warehouse=warehouse, storage_options=options)


def load(
    name: str,
    version: int | None = None,
    *,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> Dataset:
    """A dataset as it is now, or as it was at `version`."""
    warehouse, options = warehouse_location(warehouse, storage_options)
    uri = dataset_uri(warehouse, name)
    try:
        table = DeltaTable(uri, version=version, storage_options=options or None)
    except TableNotFoundError:
        raise DatasetError(f"no dataset {name!r} in {warehouse}; make it with datasets.create") from None
    except Exception as exc:  # a version that does not exist (or was vacuumed away)
        raise DatasetError(f"dataset {name!r} has no readable version {version} in {warehouse}: {exc}") from None
    return Dataset(name, table.version(), pl.DataFrame(pl.scan_delta(table).collect()))


def _records(
    records: Iterable[Mapping[str, Any]] | pl.DataFrame | TracePage, warehouse: str, options: Mapping[str, str]
) -> pl.DataFrame:
    if isinstance(records, TracePage):
        records = records.frame
    if isinstance(records, pl.DataFrame):
        if "inputs" not in records.columns and "trace_id" in records.columns:
            return _from_traces(records, warehouse, options)
        rows: Sequence[Mapping[str, Any]] = records.to_dicts()
    else:
        rows = list(records)
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, Mapping) or "inputs" not in row or row["inputs"] is None:
            raise DatasetError(f"record {i} needs `inputs` (a dict of the app's arguments, or a string): {row!r:.200}")
        unknown = sorted(set(row) - RECORD_KEYS)
        if unknown:
            raise DatasetError(
                f"record {i} has unknown key {unknown[0]!r}; a record holds {', '.join(sorted(RECORD_KEYS))}"
            )
        expectations = row.get("expectations")
        if expectations is not None and not isinstance(expectations, Mapping):
            raise DatasetError(f"record {i}: expectations must be a dict of {{name: value}}, got {expectations!r:.200}")
        out.append(_row(row["inputs"], expectations, row.get("outputs"), row.get("trace_id"), now, i))
    if not out:
        raise DatasetError("a dataset needs at least one record")
    return pl.DataFrame(out, schema=pl.Schema(SCHEMA))


def _row(inputs: Any, expectations: Any, outputs: Any, trace_id: str | None, now: dt.datetime, i: int) -> dict:
    try:
        text = json.dumps(inputs, sort_keys=True)
        return {
            "record_id": hashlib.sha256(text.encode()).hexdigest()[:32], "inputs": text,
            "expectations": json.dumps(dict(expectations), sort_keys=True) if expectations else None,
            "outputs": None if outputs is None else json.dumps(outputs, sort_keys=True),
            "source_trace_id": trace_id, "created_at": now,
        }  # fmt: skip
    except TypeError as exc:
        raise DatasetError(f"record {i} is not JSON-serialisable: {exc}") from None


def _from_traces(traces: pl.DataFrame, warehouse: str, options: Mapping[str, str]) -> pl.DataFrame:
    """Records from stored traces: their root span's inputs and outputs, their latest expectations
    (what a scorer of those traces would get)."""
    batch = StoredBatch(traces.unique("trace_id", keep="first", maintain_order=True), warehouse, options)
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    found = zip(batch.trace_ids, batch.inputs(), batch.outputs(), batch.expectations(), strict=True)
    for i, (tid, inputs, outputs, expectations) in enumerate(found, 1):
        if inputs is not None:  # a root without inputs is no record to evaluate an app on
            out.append(_row(inputs, expectations, outputs, tid, now, i))
    if not out:
        raise DatasetError(f"none of the {traces.height} traces has a root span with inputs in {warehouse}")
    return pl.DataFrame(out, schema=pl.Schema(SCHEMA))
