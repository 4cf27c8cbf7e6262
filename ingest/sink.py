"""DeltaSink: commits a micro-batch of Kafka records to the tables, exactly once.

Invariants (see docs/DESIGN.md):
- Each table records, in the same Delta commit as its rows, the last Kafka offset it holds
  per partition (a `txn` action). Delta, not Kafka, is the truth about what was ingested.
- Before writing, each table's stored offsets must equal what this process last wrote or
  loaded. If they moved, another writer owns the partition now: CommitConflict, the caller
  resets and re-seeks. The commit itself uses the same handle, so delta-rs also rejects a
  race between that check and the commit.
- A table only takes the records above its own stored offset, so after a crash between two
  table commits the replayed records land in the table that missed them and nowhere else;
  and a table's offset never moves backwards.
- A span span_data already holds from another message is a duplicate and is dropped.
- A message that cannot become rows, for whatever reason (decode, conventions, row building,
  Arrow conversion), is a dead letter with its stage, and the batch goes on; every row is built
  before the first commit. Only storage failures (StorageError) and lost races (CommitConflict)
  leave commit(); the caller re-reads from the warehouse's offsets after either.
Each batch writes span_data, trace_info (MERGE), open_traces (trace_info's index of rows waiting
for their root), ingest_errors and ingest_batches in that order.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from kafka.consumer.fetcher import ConsumerRecord

from spanlake.errors import CommitConflict, SpanlakeError, StorageError
from spanlake.ingest.batch_log import batch_log_row
from spanlake.ingest.dead_letters import DeadLetters, Stage, describe
from spanlake.ingest.encodings import encoding_of
from spanlake.ingest.faults import WriteFaults, crash_if
from spanlake.ingest.masking import Masker
from spanlake.ingest.otlp import Span, SpanReject, decode
from spanlake.ingest.rows import SpanRows, span_data_only
from spanlake.ingest.trace_rollup import SpanLookup, all_open, held_rows, merge_traces, open_changes, write_open
from spanlake.tables.delta import (
    NO_CHECKPOINT,
    check_warehouse,
    is_commit_conflict,
    offset_commit,
    open_or_create,
    stored_offset,
    table_uri,
    writer_properties,
)  # fmt: skip
from spanlake.tables.schemas import (
    INGEST_BATCHES,
    INGEST_ERRORS,
    OPEN_TRACES,
    SPAN_DATA,
    TABLES,
    TRACE_INFO,
    TableSpec,
)  # fmt: skip

logger = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 8
SINK_TABLES: tuple[TableSpec, ...] = (SPAN_DATA, TRACE_INFO, OPEN_TRACES, INGEST_ERRORS, INGEST_BATCHES)


@dataclass
class Decoded:
    record: ConsumerRecord
    spans: list[Span]
    rejects: list[SpanReject]
    error: str | None
    stage: Stage | None = None  # where `error` arose


@dataclass
class BatchResult:
    messages: int
    spans: int
    dead_letters: int
    duplicates: int = 0


class DeltaSink:
    def __init__(
        self,
        warehouse: str,
        *,
        group: str,
        topic: str,
        storage_options: Mapping[str, str] | None = None,
        crash_at: str | None = None,
        masker: Masker | None = None,
        fail_writes: str = "",
    ) -> None:
        self.masker = masker
        self.faults = WriteFaults(fail_writes)
        self.group = group
        self.topic = topic
        self.crash_at = crash_at
        check_warehouse(warehouse)
        self.tables: dict[str, DeltaTable] = {
            spec.name: open_or_create(table_uri(warehouse, spec.name), spec, storage_options)
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
            with storage("reading the offsets of", name):
                table.update_incremental()
            for p in partitions:
                stored = self._stored(table, p)
                self.expected[name][p] = -1 if stored is None else stored
        self._adopt_open_traces(partitions)
        for p in partitions:
            lowest = min(self.expected[name][p] for name in self.tables)
            highest = max(self.expected[name][p] for name in self.tables)
            resume[p] = None if highest == -1 else lowest + 1
        return resume

    def _adopt_open_traces(self, partitions: list[int]) -> None:
        """open_traces holds nothing of a partition trace_info holds (a warehouse written before
        open_traces existed, or a crash between the two first commits): list every IN_PROGRESS
        row once, with trace_info's offsets, instead of re-reading the topic from its beginning."""
        held = {p: self.expected[TRACE_INFO.name][p] for p in partitions}
        adopt = {p: o for p, o in held.items() if o >= 0 and self.expected[OPEN_TRACES.name][p] < 0}
        if adopt:
            trace_info = self.tables[TRACE_INFO.name]
            self._step(OPEN_TRACES.name, adopt, "", lambda txn: self._write_open(all_open(trace_info), txn))

    def holds_all_before(self, ends: Mapping[int, int]) -> bool:
        """True when every table holds every offset below `ends` ({partition: end offset})."""
        for name, table in self.tables.items():
            with storage("reading the offsets of", name):
                table.update_incremental()
            for p, end in ends.items():
                stored = self._stored(table, p)
                if end > 0 and (stored is None or stored + 1 < end):
                    return False
        return True

    def _stored(self, table: DeltaTable, partition: int) -> int | None:
        # The warehouse's offsets, whatever group wrote them (this group's legacy id as fallback).
        return stored_offset(table, self.topic, partition, legacy_group=self.group)

    def forget(self, partitions: Iterable[int]) -> None:
        for offsets in self.expected.values():
            for p in partitions:
                offsets.pop(p, None)

    def _holds(self, name: str, last_offsets: Mapping[int, int]) -> bool:
        """Refresh the table; True if it already holds this batch (a retried commit landed).
        Raises CommitConflict when another writer moved its offsets for our partitions."""
        table = self.tables[name]
        table.update_incremental()
        stored = {p: self._stored(table, p) for p in last_offsets}
        stored = {p: -1 if o is None else o for p, o in stored.items()}
        if stored == dict(last_offsets):
            return True
        for p, offset in stored.items():
            if offset != self.expected[name].get(p):
                raise CommitConflict(
                    f"{name}: partition {p} offset moved to {offset} (expected {self.expected[name].get(p)}): "
                    "another ingest process wrote it"
                )
        return False

    def _step(
        self, name: str, last_offsets: Mapping[int, int], crash_point: str, write: Callable[[CommitProperties], None]
    ) -> None:
        """One table's commit. A commit that lost a race to another writer of the same files
        (trace_info MERGEs of other processes, maintenance) is retried on a fresh snapshot.

        Offsets only move forward: a table already past part of the batch (after a crash
        between two table commits) keeps its higher offset, and one that holds all of it is
        not written at all. Delta would accept a lower offset and re-read what it holds."""
        expected = self.expected[name]
        target = {p: max(o, expected.get(p, -1)) for p, o in last_offsets.items()}
        if any(target[p] != expected.get(p, -1) for p in target):
            self._write_with_retries(name, target, write)
            expected.update(target)
        crash_if(crash_point, self.crash_at)

    def _write_with_retries(
        self, name: str, target: Mapping[int, int], write: Callable[[CommitProperties], None]
    ) -> None:
        txn = offset_commit(self.topic, target)
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            with storage("writing", name):
                if self._holds(name, target):
                    break
                try:
                    self.faults.check(name)
                    write(txn)
                    break
                except DeltaError as exc:  # CommitFailedError is one
                    if not is_commit_conflict(exc):
                        raise
                    if attempt == MAX_COMMIT_ATTEMPTS - 1:
                        raise CommitConflict(f"{name}: Delta commit lost a race {attempt + 1} times: {exc}") from exc
                    logger.info("%s: commit conflict (%s), retrying", name, type(exc).__name__)
            time.sleep(min(0.05 * 2**attempt, 2.0) * random.uniform(0.5, 1.5))

    # --- the batch ----------------------------------------------------------------------

    def decode(self, records: list[ConsumerRecord]) -> list[Decoded]:
        out = []
        for r in records:
            try:
                spans, rejects = decode(r.value, encoding_of(r.headers, r.value))
            except Exception as exc:  # a DecodeError, or a decoder bug: this message's problem, not the batch's
                out.append(Decoded(r, [], [], str(exc) if isinstance(exc, SpanlakeError) else describe(exc), "decode"))
                continue
            if self.masker is not None:  # before anything is written anywhere
                self.masker.mask_spans(spans)
            out.append(Decoded(r, spans, rejects, None))
        return out

    def commit(self, decoded: list[Decoded], *, lag: int | None = None) -> BatchResult:
        """Write the batch to every table (each skipping what it already holds)."""
        started = time.monotonic()
        last_offsets: dict[int, int] = {}
        for r in (d.record for d in decoded):
            last_offsets[r.partition] = max(r.offset, last_offsets.get(r.partition, -1))
        now = dt.datetime.now(dt.timezone.utc)
        result = BatchResult(messages=len(decoded), spans=0, dead_letters=0)

        span_fresh = self._fresh(SPAN_DATA.name, decoded)
        trace_fresh = self._fresh(TRACE_INFO.name, decoded)
        # Every row is built before the first commit: a message that cannot become rows is a
        # dead letter, never a failure between two table commits that every restart repeats.
        spans, result.duplicates, partials = self._build(span_fresh, now)
        trace_spans = spans
        if not _same(trace_fresh, span_fresh):  # only after a crash between the two commits
            trace_spans, _, partials = self._build(trace_fresh, now)
        self._step(SPAN_DATA.name, last_offsets, "after_span_data",
                   lambda txn: self._append(SPAN_DATA.name, span_data_only(spans), txn))  # fmt: skip
        result.spans = spans.num_rows

        merged: list[pl.DataFrame | None] = []  # the rows as this call's MERGE left them, once it landed
        write_traces = lambda txn: merged.append(self._merge_traces(partials, trace_spans, txn))  # noqa: E731
        self._step(TRACE_INFO.name, last_offsets, "after_trace_info", write_traces)

        open_fresh = self._fresh(OPEN_TRACES.name, decoded)
        if not _same(open_fresh, trace_fresh):  # only after a crash between the two commits
            _, _, partials = self._build(open_fresh, now)
            merged = []
        known = merged[-1] if merged else None
        write_open_traces = lambda txn: self._reconcile_open(partials, known, txn)  # noqa: E731
        self._step(OPEN_TRACES.name, last_offsets, "after_open_traces", write_open_traces)

        letters = self._dead_letters(self._fresh(INGEST_ERRORS.name, decoded))
        self._step(INGEST_ERRORS.name, last_offsets, "after_ingest_errors",
                   lambda txn: self._append(INGEST_ERRORS.name, letters.table(now), txn))  # fmt: skip
        result.dead_letters = len(letters)

        # The log row counts what the batch's records brought, also when an earlier attempt
        # already stored them (a replay after a crash skips the span_data and ingest_errors steps).
        logged = self._fresh(INGEST_BATCHES.name, decoded)
        counts = replace(result, messages=len(logged)) if _same(logged, span_fresh) else self._counts(logged, now)
        log = batch_log_row(self.group, self.topic, logged, counts, lag, time.monotonic() - started)
        self._step(INGEST_BATCHES.name, last_offsets, "after_delta_commit",
                   lambda txn: self._append(INGEST_BATCHES.name, log, txn))  # fmt: skip
        return result

    def _merge_traces(self, partials: pa.Table | None, spans: pa.Table, txn: CommitProperties) -> pl.DataFrame | None:
        if partials is None:  # no spans: still record the offsets, so a restart does not re-read them
            self._append(TRACE_INFO.name, TRACE_INFO.schema.empty_table(), txn)
            return None
        trace_info = self.tables[TRACE_INFO.name]

        def counted(found: pl.DataFrame) -> pl.Series:
            # A stored span trace_info's snapshot holds: its message is at or below that
            # partition's offset there (span_data commits first, so it may hold more).
            held = {p: self._stored(trace_info, p) for p in found["partition"].unique()}
            limit = pl.col("partition").replace_strict({p: -1 if o is None else o for p, o in held.items()})
            return found.select((pl.col("topic") != self.topic) | (pl.col("offset") <= limit)).to_series()

        lookup = SpanLookup(self.tables[SPAN_DATA.name], counted)
        return merge_traces(trace_info, self.tables[OPEN_TRACES.name], lookup, partials, spans, txn)

    def _reconcile_open(self, partials: pa.Table | None, merged: pl.DataFrame | None, txn: CommitProperties) -> None:
        """open_traces follows the rows the MERGE just left (`merged`); only a replay, whose MERGE
        an earlier attempt made, reads them back from trace_info."""
        if partials is None:
            self._write_open(None, txn)
            return
        open_table = self.tables[OPEN_TRACES.name]
        rows = merged if merged is not None else held_rows(open_table, self.tables[TRACE_INFO.name], partials)
        self._write_open(open_changes(open_table, rows), txn)

    def _write_open(self, changes: pl.DataFrame | None, txn: CommitProperties) -> None:
        if changes is None or changes.is_empty():  # a MERGE of nothing commits nothing: the offsets alone
            self._append(OPEN_TRACES.name, OPEN_TRACES.schema.empty_table(), txn)
        else:
            write_open(self.tables[OPEN_TRACES.name], changes, txn)

    def _counts(self, decoded: list[Decoded], now: dt.datetime) -> BatchResult:
        """What these records put into the tables, whichever attempt wrote them."""
        spans, duplicates, _ = self._build(decoded, now)  # the rows stage as the commit built it
        return BatchResult(len(decoded), spans.num_rows, len(self._dead_letters(decoded)), duplicates)

    def _append(self, name: str, data: pa.Table, txn: CommitProperties) -> None:
        spec = TABLES[name]
        write_deltalake(
            self.tables[name], data, mode="append", partition_by=list(spec.partition_by), commit_properties=txn,
            writer_properties=writer_properties(spec), post_commithook_properties=NO_CHECKPOINT,
        )  # fmt: skip

    def _without_stored(self, spans: pa.Table) -> tuple[pa.Table, int]:
        """Drop spans that are repeated in the batch or that span_data holds from another
        message (a producer retry or a duplicate send): the same span is stored once.

        A span's copy has its start time, so only span_data files whose start_time range
        covers the batch's are read. Rows of the batch's own messages are not duplicates: they
        are what a crash between two table commits left in span_data."""
        if not spans.num_rows:
            return spans, 0
        frame = pl.DataFrame(spans.select(["trace_id", "span_id", "start_time", "partition", "offset"]))
        first = frame.with_row_index("row").unique(["trace_id", "span_id"], keep="first")["row"]
        lo, hi = frame["start_time"].min(), frame["start_time"].max()
        stored = (
            pl.scan_delta(self.tables[SPAN_DATA.name])
            .filter(
                pl.col("day").is_in(frame["start_time"].dt.date().unique().implode())
                & pl.col("start_time").is_between(lo, hi)
                & pl.col("trace_id").is_in(frame["trace_id"].unique().implode())
            )
            .select("trace_id", "span_id", pl.col("partition").alias("p"), pl.col("offset").alias("o"))
            .collect()
        )
        keep = frame.with_row_index("row").filter(pl.col("row").is_in(first.implode()))
        if stored.height:
            copies = keep.join(stored, on=["trace_id", "span_id"]).filter(
                (pl.col("p") != pl.col("partition")) | (pl.col("o") != pl.col("offset"))
            )
            keep = keep.join(copies.select("row"), on="row", how="anti")
        rows = keep["row"].sort()
        if rows.len() == spans.num_rows:
            return spans, 0
        return spans.take(rows.to_arrow()), spans.num_rows - rows.len()

    def _build(self, fresh: list[Decoded], now: dt.datetime) -> tuple[pa.Table, int, pa.Table | None]:
        """The span_data rows of `fresh` without duplicates, how many were dropped, and their
        partial trace_info rows (None without spans). The batch is built at once (the fast
        path); only if that fails is each message built alone, those that fail become dead
        letters, and the rest is built again."""
        try:
            return self._build_all(fresh, now)
        except _RowsFailed:
            self._isolate(fresh, now)
        try:
            return self._build_all(fresh, now)
        except _RowsFailed as failed:  # every message builds alone but not together: a bug, say where
            raise failed.cause from None

    def _build_all(self, fresh: list[Decoded], now: dt.datetime) -> tuple[pa.Table, int, pa.Table | None]:
        try:
            rows = self._span_rows(fresh)
            table = rows.table(now)
        except Exception as exc:
            raise _RowsFailed(exc) from exc
        with storage("reading", SPAN_DATA.name):  # the stored copies of the batch's spans
            spans, duplicates = self._without_stored(table)
        try:
            return spans, duplicates, rows.trace_table(spans, now) if spans.num_rows else None
        except Exception as exc:
            raise _RowsFailed(exc) from exc

    @staticmethod
    def _isolate(fresh: list[Decoded], now: dt.datetime) -> None:
        """Builds each message's rows alone; one that fails becomes a dead letter (stage rows)."""
        for d in fresh:
            r, rows, span = d.record, SpanRows(), None
            try:
                for span in d.spans:
                    rows.add(span, r.topic, r.partition, r.offset)
                span = None
                rows.trace_table(rows.table(now), now)
            except Exception as exc:
                where = "" if span is None else f"span {span.name!r} ({span.span_id}): "
                d.spans, d.error, d.stage = [], where + describe(exc), "rows"
                logger.warning("%s:%d@%d is a dead letter: %s", r.topic, r.partition, r.offset, d.error)

    def _fresh(self, name: str, decoded: list[Decoded]) -> list[Decoded]:
        expected = self.expected[name]
        return [d for d in decoded if d.record.offset > expected.get(d.record.partition, -1)]

    @staticmethod
    def _span_rows(decoded: list[Decoded]) -> SpanRows:
        rows = SpanRows()
        for d in decoded:
            r = d.record
            for span in d.spans:
                rows.add(span, r.topic, r.partition, r.offset)
        return rows

    def _dead_letters(self, decoded: list[Decoded]) -> DeadLetters:
        letters = DeadLetters(self.masker)
        for d in decoded:
            r = d.record
            where = {"topic": r.topic, "partition": r.partition, "offset": r.offset, "key": r.key}
            if d.error is not None:
                letters.add(**where, value=r.value, error=d.error, stage=d.stage or "decode")
            for reject in d.rejects:
                letters.add(**where, value=None, error=reject.error, stage="span", trace_id=reject.trace_id,
                            span_id=reject.span_id)  # fmt: skip
        return letters


@contextmanager
def storage(action: str, table: str) -> Iterator[None]:
    """An OSError or DeltaError here is the storage's (a full disk, an object store's 503):
    a StorageError naming what failed, for the run loop to retry."""
    try:
        yield
    except (OSError, DeltaError) as exc:
        raise StorageError(f"{action} {table} failed: {describe(exc)}") from exc


class _RowsFailed(Exception):
    """Building a batch's rows failed somewhere: time to find out which message it was."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _same(a: list[Decoded], b: list[Decoded]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))

