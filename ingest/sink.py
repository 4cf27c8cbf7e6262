"""DeltaSink: commits a micro-batch of Kafka records to the tables, exactly once.

Invariants (see docs/DESIGN.md):
- Each table records, in the same Delta commit as its rows, the last Kafka offset it holds
  per partition (a `txn` action). Delta, not Kafka, is the truth about what was ingested.
- Before writing, each table's stored offsets must equal what this process last wrote or
  loaded. If they moved, another writer owns the partition now: CommitConflict, the caller
  resets and re-seeks. The commit itself uses the same handle, so delta-rs also rejects a
  race between that check and the commit.
- A table only takes the records above its own stored offset, so after a crash between two
  table commits the replayed records land in the table that missed them and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from kafka.consumer.fetcher import ConsumerRecord

from spanlake.errors import CommitConflict, DecodeError
from spanlake.ingest.dead_letters import DeadLetters
from spanlake.ingest.otlp import Encoding, Span, SpanReject, decode, encoding_of
from spanlake.ingest.rows import SpanRows
from spanlake.ingest.trace_rollup import merge_traces
from spanlake.tables.delta import NO_CHECKPOINT, WRITER_PROPERTIES, offset_commit, open_or_create, stored_offset
from spanlake.tables.schemas import INGEST_ERRORS, SPAN_DATA, TRACE_INFO, TableSpec

logger = logging.getLogger(__name__)

SINK_TABLES: tuple[TableSpec, ...] = (SPAN_DATA, TRACE_INFO, INGEST_ERRORS)
# Deliberate crash points, for the fault tests only (Settings.crash_at).
CRASH_POINTS = ("after_span_data", "after_trace_info", "after_delta_commit")


@dataclass
class Decoded:
    record: ConsumerRecord
    spans: list[Span]
    rejects: list[SpanReject]
    error: str | None


@dataclass
class BatchResult:
    messages: int
    spans: int
    dead_letters: int


class DeltaSink:
    def __init__(
        self,
        warehouse: str,
        *,
        group: str,
        topic: str,
        encoding: Encoding = "otlp_proto",
        storage_options: Mapping[str, str] | None = None,
        crash_at: str | None = None,
    ) -> None:
        self.group = group
        self.topic = topic
        self.encoding: Encoding = encoding
        self.crash_at = crash_at
        self.tables: dict[str, DeltaTable] = {
            spec.name: open_or_create(f"{warehouse.rstrip('/')}/{spec.name}", spec, storage_options)
            for spec in SINK_TABLES
        }
        # table -> partition -> last offset this process believes the table holds (-1: none)
        self.expected: dict[str, dict[int, int]] = {name: {} for name in self.tables}

    # --- offsets ------------------------------------------------------------------------

    def load_offsets(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """Read each table's stored offsets for `partitions`; returns where to resume reading
        ({partition: next offset}, None when no table holds anything of that partition)."""
        partitions = list(partitions)
        resume: dict[int, int | None] = {}
        for name, table in self.tables.items():
            table.update_incremental()
            for p in partitions:
                stored = stored_offset(table, self.group, self.topic, p)
                self.expected[name][p] = -1 if stored is None else stored
        for p in partitions:
            lowest = min(self.expected[name][p] for name in self.tables)
            highest = max(self.expected[name][p] for name in self.tables)
            resume[p] = None if highest == -1 else lowest + 1
        return resume

    def forget(self, partitions: Iterable[int]) -> None:
        for offsets in self.expected.values():
            for p in partitions:
                offsets.pop(p, None)

    def _check_offsets(self, name: str, last_offsets: Mapping[int, int]) -> None:
        table = self.tables[name]
        table.update_incremental()
        for p in last_offsets:
            stored = stored_offset(table, self.group, self.topic, p)
            stored = -1 if stored is None else stored
            if stored != self.expected[name].get(p):
                raise CommitConflict(
                    f"{name}: partition {p} offset moved to {stored} (expected {self.expected[name].get(p)}): "
                    "another ingest process wrote it"
                )

    # --- the batch ----------------------------------------------------------------------

    def decode(self, records: list[ConsumerRecord]) -> list[Decoded]:
        out = []
        for r in records:
            try:
                spans, rejects = decode(r.value, encoding_of(r.headers, self.encoding))
                out.append(Decoded(r, spans, rejects, None))
            except DecodeError as exc:
                out.append(Decoded(r, [], [], str(exc)))
        return out

    def commit(self, decoded: list[Decoded]) -> BatchResult:
        """Write the batch to every table (each skipping what it already holds)."""
        last_offsets: dict[int, int] = {}
        for r in (d.record for d in decoded):
            last_offsets[r.partition] = max(r.offset, last_offsets.get(r.partition, -1))
        now = dt.datetime.now(dt.timezone.utc)
        txn = offset_commit(self.group, self.topic, last_offsets)
        result = BatchResult(messages=len(decoded), spans=0, dead_letters=0)
        try:
            self._check_offsets(SPAN_DATA.name, last_offsets)
            span_fresh = self._fresh(SPAN_DATA.name, decoded)
            rows = self._span_rows(span_fresh)
            spans = rows.span_table(now)
            write_deltalake(
                self.tables[SPAN_DATA.name], spans, mode="append", partition_by=["day"],
                commit_properties=txn, writer_properties=WRITER_PROPERTIES, post_commithook_properties=NO_CHECKPOINT,
            )  # fmt: skip
            result.spans = len(rows)
            self._committed(SPAN_DATA.name, last_offsets, "after_span_data")

            self._check_offsets(TRACE_INFO.name, last_offsets)
            trace_fresh = self._fresh(TRACE_INFO.name, decoded)
            if not _same(trace_fresh, span_fresh):  # only after a crash between the two commits
                rows = self._span_rows(trace_fresh)
                spans = rows.span_table(now)
            table = self.tables[TRACE_INFO.name]
            if len(rows):
                merge_traces(table, rows.trace_table(spans, now), txn)
            else:  # no spans: still record the offsets, so a restart does not re-read them
                write_deltalake(table, TRACE_INFO.schema.empty_table(), mode="append", commit_properties=txn)
            self._committed(TRACE_INFO.name, last_offsets, "after_trace_info")

            self._check_offsets(INGEST_ERRORS.name, last_offsets)
            letters = self._dead_letters(self._fresh(INGEST_ERRORS.name, decoded))
            write_deltalake(
                self.tables[INGEST_ERRORS.name], letters.table(now), mode="append", partition_by=["day"],
                commit_properties=txn, writer_properties=WRITER_PROPERTIES, post_commithook_properties=NO_CHECKPOINT,
            )  # fmt: skip
            result.dead_letters = len(letters)
            self._committed(INGEST_ERRORS.name, last_offsets, "after_delta_commit")
        except (CommitFailedError, DeltaError) as exc:
            if isinstance(exc, CommitFailedError) or "conflict" in str(exc).lower():
                raise CommitConflict(f"Delta commit lost a race: {exc}") from exc
            raise
        return result

    def _fresh(self, name: str, decoded: list[Decoded]) -> list[Decoded]:
        expected = self.expected[name]
        return [d for d in decoded if d.record.offset > expected.get(d.record.partition, -1)]

    def _committed(self, name: str, last_offsets: Mapping[int, int], point: str) -> None:
        self.expected[name].update(last_offsets)
        if self.crash_at == point:
            logger.warning("crash_at=%s: killing this process on purpose", point)
            os.kill(os.getpid(), signal.SIGKILL)

    @staticmethod
    def _span_rows(decoded: list[Decoded]) -> SpanRows:
        rows = SpanRows()
        for d in decoded:
            r = d.record
            for span in d.spans:
                rows.add(span, r.topic, r.partition, r.offset)
        return rows

    @staticmethod
    def _dead_letters(decoded: list[Decoded]) -> DeadLetters:
        letters = DeadLetters()
        for d in decoded:
            r = d.record
            where = {"topic": r.topic, "partition": r.partition, "offset": r.offset, "key": r.key}
            if d.error is not None:
                letters.add(**where, value=r.value, error=d.error)
            for reject in d.rejects:
                letters.add(**where, value=None, error=reject.error, trace_id=reject.trace_id, span_id=reject.span_id)
        return letters


def _same(a: list[Decoded], b: list[Decoded]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))
