"""Dead letters re-driven: `spanlake dead-letters replay` ingests again the ingest_errors rows that
kept their message's bytes, through the same DeltaSink decode and commit path as Kafka records,
exactly once, once the cause is fixed (a producer's header, a new spanlake version).

Exactly once (docs/DESIGN.md, "Replaying dead letters"):
- A replay first lists the letters it takes in `dead_letter_replays` (its plan), in one commit,
  before writing anything; a letter listed in any plan is never taken again. One replay runs at a
  time (a lease in that table's log).
- It then commits the letters as DeltaSink batches whose offsets are kept under the replay's own
  topic name, `replay/<replay_id>` (a Kafka topic cannot hold '/', so ingest's offsets are
  untouched and live ingest goes on meanwhile): each table takes only the letters above its own
  replay offset, so a crash between two table commits, resumed by the next replay (a plan without
  its `done` txn), writes each span once. Rows keep the message's real topic, partition, offset.
- A letter that fails again is a new ingest_errors row with the new reason (the sink writes it),
  which a later replay takes; the old row stays, listed in its plan.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from kafka.consumer.fetcher import ConsumerRecord

from spanlake.errors import SpanlakeError
from spanlake.ingest.masking import Masker
from spanlake.ingest.sink import Decoded, DeltaSink, storage
from spanlake.tables import scan
from spanlake.tables.delta import NO_CHECKPOINT, open_or_create, table_uri
from spanlake.tables.lease import Lease
from spanlake.tables.schemas import DEAD_LETTER_REPLAYS, INGEST_ERRORS

logger = logging.getLogger(__name__)

REPLAY_GROUP = "spanlake-replay"  # ingest_batches.group of a replay's batches
LEASE_APP_ID = "spanlake-replay-lease"
LEASE_SECONDS = 600.0
HASHED_PAYLOAD = b"[REDACTED:payload sha256="  # SPANLAKE_MASK_DEAD_LETTERS=hash kept no bytes to replay
CHUNK_LETTERS = 1000  # payloads read from ingest_errors at a time


def replay_topic(replay_id: str) -> str:
    """The name a replay's offsets are kept under: `spanlake:replay/<id>:<partition>` txns."""
    return f"replay/{replay_id}"


def done_app_id(replay_id: str) -> str:
    return f"spanlake-replay:{replay_id}:done"


@dataclass
class ReplayReport:
    replayed: int = 0  # messages whose spans were ingested
    spans: int = 0  # rows written to span_data
    failing: int = 0  # messages dead-lettered again (their new reason is in ingest_errors)
    rejected_spans: int = 0  # single spans of replayed messages rejected again
    duplicates: int = 0  # spans span_data already held
    resumed: list[str] = field(default_factory=list)  # replays a crash had left unfinished
    replay_ids: list[str] = field(default_factory=list)


def replayable(errors: pl.LazyFrame, topic: str) -> pl.LazyFrame:
    """ingest_errors rows of `topic` that kept their message's bytes (not only their hash)."""
    return errors.filter(
        (pl.col("topic") == topic) & pl.col("value").is_not_null() & ~pl.col("value").bin.starts_with(HASHED_PAYLOAD)
    )


def planned(replays: pl.LazyFrame) -> pl.LazyFrame:
    """The ingest_errors rows some replay took, by their keys."""
    return replays.select("topic", "partition", "offset", pl.col("letter_ingested_at").alias("ingested_at"))


class DeadLetterReplay:
    """Replays `topic`'s dead letters in `warehouse` (see the module docstring)."""

    def __init__(
        self,
        warehouse: str,
        *,
        topic: str,
        storage_options: Mapping[str, str] | None = None,
        masker: Masker | None = None,
        crash_at: str | None = None,
        flush_spans: int = 50_000,
        flush_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.warehouse, self.topic, self.storage_options = warehouse, topic, dict(storage_options or {})
        self.masker, self.crash_at = masker, crash_at
        self.flush_spans, self.flush_bytes = flush_spans, flush_bytes
        self.errors = scan(INGEST_ERRORS.name, warehouse=warehouse, storage_options=self.storage_options)
        uri = table_uri(warehouse, DEAD_LETTER_REPLAYS.name)
        self.replays = open_or_create(uri, DEAD_LETTER_REPLAYS, self.storage_options)

    def run(
        self,
        *,
        since: dt.datetime | None = None,
        contains: str | None = None,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> ReplayReport:
        """Finish replays a crash left unfinished, then replay the letters not replayed yet (those
        dead-lettered since `since`, whose reason contains `contains`, case-insensitive)."""
        lease = Lease(self.replays, DEAD_LETTER_REPLAYS.name, LEASE_SECONDS, LEASE_APP_ID, "dead-letter replay")
        with storage("taking the replay lease of", DEAD_LETTER_REPLAYS.name):
            if not lease.acquire():
                raise SpanlakeError(f"another dead-letter replay is running ({lease.holder()}); try again after it")
        report = ReplayReport()
        try:
            plans = [(rid, letters, True) for rid, letters in self._unfinished()]
            new = self._pending(since, contains)
            if new.height:
                plans.append((self._plan(new), new, False))
            if on_start:
                on_start(sum(letters.height for _, letters, _ in plans))
            for replay_id, letters, resumed in plans:
                (report.resumed if resumed else report.replay_ids).append(replay_id)
                self._replay(replay_id, letters, report, lease, on_progress)
        finally:
            lease.release()
        return report

    # --- plans --------------------------------------------------------------------------

    def _pending(self, since: dt.datetime | None, contains: str | None) -> pl.DataFrame:
        letters = replayable(self.errors, self.topic).join(
            planned(pl.scan_delta(self.replays)), on=["topic", "partition", "offset", "ingested_at"], how="anti"
        )
        if since is not None:
            letters = letters.filter(pl.col("ingested_at") >= since)
        if contains:
            letters = letters.filter(pl.col("error").str.to_lowercase().str.contains(contains.lower(), literal=True))
        return letters.select("topic", "partition", "offset", "ingested_at").collect()

    def _plan(self, letters: pl.DataFrame) -> str:
        """List `letters` under a new replay id, in one commit, before anything is written."""
        replay_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.timezone.utc)
        rows = letters.select(
            pl.lit(replay_id).alias("replay_id"), "topic", "partition", "offset",
            pl.col("ingested_at").alias("letter_ingested_at"), pl.lit(now).alias("planned_at"),
            pl.lit(now.date()).alias("day"),
        ).to_arrow()  # fmt: skip
        self._append(rows.cast(DEAD_LETTER_REPLAYS.schema), CommitProperties())
        return replay_id

    def _unfinished(self) -> Iterator[tuple[str, pl.DataFrame]]:
        """Plans a crash left without their `done` txn, with their letters."""
        plans = (
            pl.scan_delta(self.replays)
            .select("replay_id", "topic", "partition", "offset", pl.col("letter_ingested_at").alias("ingested_at"))
            .collect()
        )
        for replay_id in sorted(plans["replay_id"].unique()):
            if self.replays.transaction_version(done_app_id(replay_id)) is None:
                yield replay_id, plans.filter(pl.col("replay_id") == replay_id).drop("replay_id")

    def _append(self, rows: pa.Table, txn: CommitProperties) -> None:
        with storage("writing", DEAD_LETTER_REPLAYS.name):
            write_deltalake(
                self.replays, rows, mode="append", partition_by=["day"], commit_properties=txn,
                post_commithook_properties=NO_CHECKPOINT,
            )  # fmt: skip

    # --- one replay -----------------------------------------------------------------------

    def _replay(
        self,
        replay_id: str,
        letters: pl.DataFrame,
        report: ReplayReport,
        lease: Lease,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        sink = DeltaSink(
            self.warehouse, group=REPLAY_GROUP, topic=replay_topic(replay_id), storage_options=self.storage_options,
            crash_at=self.crash_at, masker=self.masker,
        )  # fmt: skip
        # One record per message (a message dead-lettered twice is one message), in offset order:
        # a table's replay offset then says which letters it holds.
        messages = letters.sort("ingested_at").unique(["partition", "offset"], keep="last").sort("partition", "offset")
        resume = sink.load_offsets(messages["partition"].unique().to_list())
        todo = messages.filter(
            pl.col("offset") >= pl.col("partition").replace_strict(
                {p: -1 if o is None else o for p, o in resume.items()}, return_dtype=pl.Int64
            )
        )  # fmt: skip
        if on_progress and letters.height > todo.height:
            on_progress(letters.height - todo.height)
        batch: list[Decoded] = []
        spans = nbytes = 0
        for records in self._records(todo):
            for decoded in sink.decode(records):
                batch.append(decoded)
                spans += len(decoded.spans)
                nbytes += len(decoded.record.value or b"")
                if spans >= self.flush_spans or nbytes >= self.flush_bytes:
                    self._commit(sink, batch, report, on_progress)
                    batch, spans, nbytes = [], 0, 0
                    if not lease.renew():
                        raise SpanlakeError("the replay lease was taken over (this replay stalled past it); run again")
        self._commit(sink, batch, report, on_progress)
        self._append(DEAD_LETTER_REPLAYS.schema.empty_table(),
                     CommitProperties(app_transactions=[Transaction(done_app_id(replay_id), 1)]))  # fmt: skip

    def _records(self, todo: pl.DataFrame) -> Iterator[list[ConsumerRecord]]:
        """The letters' messages as Kafka records, `CHUNK_LETTERS` payloads read at a time."""
        for chunk in todo.iter_slices(CHUNK_LETTERS):
            keys = chunk.select("topic", "partition", "offset", "ingested_at")
            days = keys["ingested_at"].dt.date().unique().implode()
            rows = (
                self.errors.filter(
                    pl.col("day").is_in(days) & (pl.col("topic") == self.topic)
                    & pl.col("offset").is_in(keys["offset"].unique().implode())
                )
                .select("topic", "partition", "offset", "ingested_at", "key", "value")
                .collect()
                .join(keys, on=["topic", "partition", "offset", "ingested_at"], how="semi")
                .unique(["partition", "offset"])
                .sort("partition", "offset")
            )  # fmt: skip
            yield [
                ConsumerRecord(self.topic, p, -1, o, 0, 0, key, value, [], None, -1, -1, -1)
                for p, o, key, value in rows.select("partition", "offset", "key", "value").iter_rows()
            ]

    @staticmethod
    def _commit(
        sink: DeltaSink, batch: list[Decoded], report: ReplayReport, on_progress: Callable[[int], None] | None
    ) -> None:
        if not batch:
            return
        result = sink.commit(batch)
        failing = sum(d.error is not None for d in batch)  # decode failures, and rows failures the commit found
        report.replayed += len(batch) - failing
        report.failing += failing
        report.spans += result.spans
        report.duplicates += result.duplicates
        report.rejected_spans += max(0, result.dead_letters - failing)
        if on_progress:
            on_progress(len(batch))


def summary(warehouse: str, *, topic: str, storage_options: Mapping[str, str] | None = None) -> pl.DataFrame:
    """Dead letters by state, stage and reason (numbers folded to N, so alike reasons count together):
    `pending` (a replay takes it), `replayed` (listed in a replay; one that failed again is a newer
    pending row), `no payload` (a single rejected span, or a payload kept only as its hash)."""
    errors = scan(INGEST_ERRORS.name, warehouse=warehouse, storage_options=storage_options).filter(
        pl.col("topic") == topic
    )
    options = dict(storage_options or {})
    uri = table_uri(warehouse, DEAD_LETTER_REPLAYS.name)
    taken = (
        pl.scan_delta(uri, storage_options=options or None)
        if DeltaTable.is_deltatable(uri, storage_options=options)
        else pl.LazyFrame(DEAD_LETTER_REPLAYS.schema.empty_table())  # no replay yet
    )
    keys = ["topic", "partition", "offset", "ingested_at"]
    marked = planned(taken).with_columns(replayed=pl.lit(True))
    has_payload = pl.col("value").is_not_null() & ~pl.col("value").bin.starts_with(HASHED_PAYLOAD)
    return (
        errors.join(marked, on=keys, how="left")
        .select(
            state=pl.when(pl.col("replayed")).then(pl.lit("replayed"))
            .when(has_payload).then(pl.lit("pending")).otherwise(pl.lit("no payload")),
            stage=pl.col("stage").fill_null("decode"),
            reason=pl.col("error").str.replace_all(r"0x[0-9a-f]+|\d+", "N").str.slice(0, 160),
            ingested_at=pl.col("ingested_at"),
        )
        .group_by("state", "stage", "reason")
        .agg(letters=pl.len(), first=pl.col("ingested_at").min(), last=pl.col("ingested_at").max())
        .sort(["state", "letters"], descending=[False, True])
        .collect()
    )
