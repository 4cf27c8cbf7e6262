"""Delta helpers shared by every writer: table creation, writer settings and Kafka offsets
kept as Delta `txn` actions (one app id per topic/partition, the offset as version).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, Transaction, WriterProperties
from deltalake.exceptions import TableNotFoundError

from spanlake.errors import TableError
from spanlake.tables.schemas import TABLES, TableSpec

# One codec for every operation: delta-rs otherwise picks a different one per operation.
CODEC = {"compression": "ZSTD", "compression_level": 3}
WRITER_PROPERTIES = WriterProperties(**CODEC)


def writer_properties(spec: TableSpec, *, row_group_rows: int | None = None) -> WriterProperties:
    """The codec with the table's row-group size: every writer of a table uses this."""
    return WriterProperties(**CODEC, max_row_group_size=row_group_rows or spec.row_group_rows)

# Checkpoints are written by maintenance, off the ingest hot path.
NO_CHECKPOINT = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


def check_warehouse(warehouse: str) -> None:
    """Refuse to create tables in a directory that is not a spanlake warehouse.

    A warehouse is a directory that is missing or empty (dotfiles aside), holds a spanlake
    table, or holds nothing but folders named like spanlake tables (a first run that died
    while creating them). Anything else is someone else's data: tables created beside it
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
    if all(name in TABLES for name in entries):
        return
    if any(name in TABLES and DeltaTable.is_deltatable(str(root / name)) for name in entries):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise TableError(
        f"{warehouse} is not a spanlake warehouse: it holds {shown} and no spanlake table; "
        "point SPANLAKE_WAREHOUSE (--warehouse) at an empty or new directory"
    )


def open_or_create(uri: str, spec: TableSpec, storage_options: Mapping[str, str] | None = None) -> DeltaTable:
    """Open the table at `uri`, creating it empty with the spec's schema when it does not exist."""
    options = dict(storage_options or {})
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return DeltaTable.create(
            uri,
            schema=spec.schema,
            partition_by=list(spec.partition_by),
            name=spec.name,
            mode="ignore",  # another process may create it at the same moment
            storage_options=options,
            configuration={"delta.appendOnly": "false"},
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
