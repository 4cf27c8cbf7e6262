"""Delta helpers shared by every writer: table creation, writer settings and Kafka offsets
kept as Delta `txn` actions (one app id per group/topic/partition, the offset as version).
"""

from __future__ import annotations

from collections.abc import Mapping

from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, Transaction, WriterProperties
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from spanlake.tables.schemas import TableSpec

# One codec for every operation: delta-rs otherwise picks a different one per operation.
CODEC = {"compression": "ZSTD", "compression_level": 3}
WRITER_PROPERTIES = WriterProperties(**CODEC)


def writer_properties(spec: TableSpec, *, row_group_rows: int | None = None) -> WriterProperties:
    """The codec with the table's row-group size: every writer of a table uses this."""
    return WriterProperties(**CODEC, max_row_group_size=row_group_rows or spec.row_group_rows)

# Checkpoints are written by maintenance, off the ingest hot path.
NO_CHECKPOINT = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


def table_properties(spec: TableSpec) -> dict[str, str]:
    """The Delta table properties a spec asks for."""
    properties = {"delta.appendOnly": "false"}
    if spec.target_file_bytes:
        properties["delta.targetFileSize"] = str(spec.target_file_bytes)
    return properties


def open_or_create(uri: str, spec: TableSpec, storage_options: Mapping[str, str] | None = None) -> DeltaTable:
    """Open the table at `uri`, creating it empty with the spec's schema when it does not exist;
    a table created before its spec asked for a property gets it set."""
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
    missing = {k: v for k, v in table_properties(spec).items() if table.metadata().configuration.get(k) != v}
    if missing:
        try:
            table.alter.set_table_properties(missing)
        except (CommitFailedError, DeltaError):  # another process set them at the same moment
            table.update_incremental()
    return table


def offset_app_id(group: str, topic: str, partition: int) -> str:
    return f"spanlake:{group}:{topic}:{partition}"


def stored_offset(table: DeltaTable, group: str, topic: str, partition: int) -> int | None:
    """Last Kafka offset the table holds for this partition (None: nothing yet)."""
    return table.transaction_version(offset_app_id(group, topic, partition))


def offset_commit(group: str, topic: str, last_offsets: Mapping[int, int]) -> CommitProperties:
    """Commit properties that record `last_offsets` ({partition: last offset}) with the data."""
    txns = [Transaction(offset_app_id(group, topic, p), o) for p, o in sorted(last_offsets.items())]
    return CommitProperties(app_transactions=txns)
