"""Delta helpers shared by every writer: table location, creation and schema migration, writer
settings, the commit-conflict test, and Kafka offsets kept as Delta `txn` actions (one app id
per topic/partition, the offset as version).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, Transaction, WriterProperties
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.schema import Field

from spanlake.errors import TableError
from spanlake.tables.schemas import TABLES, TableSpec, spec

# One codec for every operation: delta-rs otherwise picks a different one per operation.
CODEC: Final = "ZSTD"
CODEC_LEVEL: Final = 3
WRITER_PROPERTIES = WriterProperties(compression=CODEC, compression_level=CODEC_LEVEL)

# Checkpoints are written by maintenance, off the ingest hot path.
NO_CHECKPOINT = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


def table_uri(warehouse: str, name: str) -> str:
    """Where table `name` lives in `warehouse` (a path or an object-store URI)."""
    return f"{warehouse.rstrip('/')}/{spec(name).name}"


def writer_properties(spec: TableSpec, *, row_group_rows: int | None = None) -> WriterProperties:
    """The codec with the table's row-group size: every writer of a table uses this."""
    return WriterProperties(
        compression=CODEC, compression_level=CODEC_LEVEL, max_row_group_size=row_group_rows or spec.row_group_rows
    )


def is_commit_conflict(exc: Exception) -> bool:
    """A commit that lost a race to another writer (retry on a fresh snapshot), as opposed to a
    real failure. delta-rs reports some races as plain DeltaErrors, hence the message test."""
    return isinstance(exc, CommitFailedError) or any(w in str(exc).lower() for w in ("conflict", "concurrent"))


def table_properties(spec: TableSpec) -> dict[str, str]:
    """The Delta table properties a spec asks for."""
    properties = {"delta.appendOnly": "false"}
    if spec.target_file_bytes:
        properties["delta.targetFileSize"] = str(spec.target_file_bytes)
    return properties


# Entries of a warehouse that are not tables: evaluation datasets (spanlake.jobs.datasets).
DATASETS_DIR: Final = "datasets"


def check_warehouse(warehouse: str) -> None:
    """Refuse to create tables in a directory that is not a spanlake warehouse.

    A warehouse is a directory that is missing or empty (dotfiles aside), holds a spanlake
    table, or holds nothing but folders named like spanlake tables or `datasets` (a first run
    that died while creating them). Anything else is someone else's data: tables created beside it
    would mix the two. Object stores (s3://, ...) are not checked: listing a prefix there is
    neither cheap nor portable."""
    if "://" in warehouse and not warehouse.startswith("file://"):
        return
    root = Path(warehouse.removeprefix("file://"))
    if not root.exists():
        return
    if not root.is_dir():
        raise TableError(f"warehouse {warehouse} is a file, not a directory; point SPANLAKE_WAREHOUSE elsewhere")
    entries = sorted(e.name for e in root.iterdir() if not e.name.startswith("."))
    if all(name in TABLES or name == DATASETS_DIR for name in entries):
        return
    if any(name in TABLES and DeltaTable.is_deltatable(str(root / name)) for name in entries):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise TableError(
        f"{warehouse} is not a spanlake warehouse: it holds {shown} and no spanlake table; "
        "point SPANLAKE_WAREHOUSE (--warehouse) at an empty or new directory"
    )


def open_or_create(uri: str, spec: TableSpec, storage_options: Mapping[str, str] | None = None) -> DeltaTable:
    """The table at `uri`, checked against (and migrated to) its spec and its table properties;
    created empty when missing."""
    options = dict(storage_options or {})
    try:
        table = DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return DeltaTable.create(
            uri,
            schema=spec.schema,
            partition_by=list(spec.partition_by),
            name=spec.name,
            mode="ignore",  # another process may create it at the same moment
            storage_options=options,
            configuration=table_properties(spec),
        )
    migrate(table, spec, uri)
    missing = {k: v for k, v in table_properties(spec).items() if table.metadata().configuration.get(k) != v}
    if missing:
        try:
            table.alter.set_table_properties(missing)
        except DeltaError:  # another process set them at the same moment
            table.update_incremental()
    return table


def _same_type(live: pa.DataType, wanted: pa.DataType) -> bool:
    # Delta has one string and one binary type; list/map child names differ between writers.
    if pa.types.is_large_string(live):
        live = pa.string()
    if pa.types.is_large_binary(live):
        live = pa.binary()
    return live.equals(wanted) or str(live) == str(wanted)


def schema_changes(live: pa.Schema, spec: TableSpec) -> tuple[list[pa.Field], list[str]]:
    """(nullable spec columns the live table lacks, differences that cannot be migrated)."""
    wanted = spec.schema
    problems = [f"column {name!r} is not in the spec" for name in live.names if name not in wanted.names]
    missing = []
    for field in wanted:
        if field.name not in live.names:
            if field.nullable:
                missing.append(field)
            else:
                problems.append(f"required column {field.name!r} is missing")
        elif not _same_type(live.field(field.name).type, field.type):
            problems.append(f"column {field.name!r} is {live.field(field.name).type}, the spec says {field.type}")
    return missing, problems


def migrate(table: DeltaTable, spec: TableSpec, uri: str) -> None:
    """Bring a live table to its spec: nullable columns the spec added are added (old rows read
    them as null); any other difference is a TableError, never a silent rewrite."""
    live = pa.schema(table.schema().to_arrow())
    missing, problems = schema_changes(live, spec)
    if problems:
        raise TableError(
            f"table {spec.name!r} at {uri} does not match spanlake's schema v{spec.version}: {'; '.join(problems)}"
        )
    if missing:
        try:
            _add_columns(table, spec, missing)
        except DeltaError:  # another process migrated it first: fine if nothing is missing now
            table.update_incremental()
            if schema_changes(pa.schema(table.schema().to_arrow()), spec) != ([], []):
                raise


def _add_columns(table: DeltaTable, spec: TableSpec, missing: list[pa.Field]) -> None:
    table.alter.add_columns(
        [Field.from_arrow(f) for f in missing],
        commit_properties=CommitProperties(custom_metadata={"spanlake.schema_version": str(spec.version)}),
        post_commithook_properties=NO_CHECKPOINT,
    )


def offset_app_id(topic: str, partition: int) -> str:
    # No consumer group in the id: the warehouse, not the group, decides what it holds, so a
    # renamed group or a second deployment continues from here instead of storing it all again.
    return f"spanlake:{topic}:{partition}"


def legacy_offset_app_id(group: str, topic: str, partition: int) -> str:
    """The per-group id older warehouses carry (cannot collide: a topic name cannot hold ':')."""
    return f"spanlake:{group}:{topic}:{partition}"


def stored_offset(table: DeltaTable, topic: str, partition: int, *, legacy_group: str | None = None) -> int | None:
    """Last Kafka offset the table holds for this partition (None: nothing yet).

    `legacy_group`: read that group's per-group id when the table has no shared one yet, so an
    existing warehouse keeps its place; its first commit from now on records the shared id."""
    stored = table.transaction_version(offset_app_id(topic, partition))
    if stored is None and legacy_group is not None:
        stored = table.transaction_version(legacy_offset_app_id(legacy_group, topic, partition))
    return stored


def offset_commit(topic: str, last_offsets: Mapping[int, int]) -> CommitProperties:
    """Commit properties that record `last_offsets` ({partition: last offset}) with the data."""
    txns = [Transaction(offset_app_id(topic, p), o) for p, o in sorted(last_offsets.items())]
    return CommitProperties(app_transactions=txns)


def partition_days(table: DeltaTable) -> set[dt.date]:
    """The `day` partitions that hold data files in the table's snapshot (from the log)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if "partition.day" not in actions.column_names:
        return set()
    return {d for d in actions.column("partition.day").to_pylist() if d is not None}


def files_added_since(
    table: DeltaTable, version: int, storage_options: Mapping[str, str] | None = None
) -> list[str] | None:
    """URIs of the data files of `table`'s snapshot that version `version`'s snapshot lacks: every
    row committed after `version` is in one of them (a rewrite, such as a compaction, adds back
    rows that were there before too). None when `version` can no longer be loaded (its log
    entries were cleaned up): the caller then has to read everything."""
    try:
        then = DeltaTable(table.table_uri, version=version, storage_options=dict(storage_options or {}) or None)
    except DeltaError:
        return None
    before = set(then.get_add_actions(flatten=True).column("path").to_pylist())
    root = table.table_uri.rstrip("/")
    return [
        p if "://" in p else f"{root}/{unquote(p)}"
        for p in sorted(set(table.get_add_actions(flatten=True).column("path").to_pylist()) - before)
    ]
