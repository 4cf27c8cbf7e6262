"""The ingest service: a consumer-group member that reads micro-batches and commits them to
Delta through DeltaSink, then (only then) commits the Kafka offsets.

The run loop is the one place that decides what happens on trouble: a bad message is a dead
letter (DeltaSink), a lost commit race resets the partitions to what Delta holds and
re-reads; an unreachable broker and a failing storage are retried with backoff (a storage
failure then re-reads from what Delta holds, as after a lost race, and gives up after
`storage_max_failures` in a row); anything else stops the service with a clear error.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from spanlake.errors import CommitConflict, SpanlakeError, StorageError
from spanlake.ingest.faults import crash_if
from spanlake.ingest.maintenance_schedule import MaintenanceSchedule
from spanlake.ingest.masking import Masker
from spanlake.ingest.sink import BatchResult, Decoded, DeltaSink
from spanlake.settings import Settings

logger = logging.getLogger(__name__)

STORAGE_BACKOFF_SECONDS = (0.5, 30.0)  # first wait, cap


@dataclass
class IngestStats:
    batches: int = 0
    messages: int = 0
    spans: int = 0
    dead_letters: int = 0
    resets: int = 0


class _Rebalance(ConsumerRebalanceListener):
    """Records what the group coordinator decided; the run loop acts on it (`apply_rebalance`).

    kafka-python calls these on its IO thread, where blocking (reading Delta logs to find
    where to resume) would stall heartbeats and fetches, so they only note the change."""

    def __init__(self, ingestor: SpanIngestor) -> None:
        self.ingestor = ingestor

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.ingestor.note_rebalance("revoked", revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.ingestor.note_rebalance("assigned", assigned)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.ingestor.note_rebalance("revoked", lost)


class SpanIngestor:
    """Reads `settings.topic` in group `settings.group` into the warehouse."""

    def __init__(
        self,
        settings: Settings,
        *,
        until_idle: bool = False,
        on_batch: Callable[[BatchResult, IngestStats], None] | None = None,
        crash_at: str | None = None,
    ) -> None:
        self.settings = settings
        self.until_idle = until_idle
        self.on_batch = on_batch
        self.stats = IngestStats()
        self.stop_requested = threading.Event()
        self.crash_at = crash_at
        self.kafka_errors = 0  # consecutive failed polls
        self.storage_failures = 0  # storage failures since the last committed batch
        self.storage_reset_due = False  # a storage failure lost buffered records: re-read from Delta
        # Kafka first: a wrong address or topic must fail fast and leave no tables behind.
        if "encoding" in settings.model_fields_set:
            logger.warning("SPANLAKE_ENCODING is no longer used: each message's encoding is detected from its "
                           "content-type header, else from its bytes")  # fmt: skip
        self.consumer = connect(settings)
        try:
            self.sink = DeltaSink(
                settings.warehouse,
                group=settings.group,
                topic=settings.topic,
                storage_options=settings.storage_options,
                crash_at=crash_at,
                masker=Masker.from_settings(settings.mask, settings.mask_rules, settings.mask_dead_letters),
                fail_writes=settings.fail_writes,
            )
        except BaseException:
            self.consumer.close(autocommit=False)
            raise
        self.maintenance = MaintenanceSchedule(settings) if settings.maintenance_interval_seconds else None
        self.buffer: list[Decoded] = []  # touched by the run loop's thread only
        self.rebalances: list[tuple[str, set[TopicPartition]]] = []  # noted on kafka-python's IO thread
        self.rebalance_lock = threading.Lock()
        self.buffer_spans = 0
        self.buffer_bytes = 0
        self.buffer_started = 0.0

    # --- rebalances ---------------------------------------------------------------------

    def note_rebalance(self, kind: Literal["revoked", "assigned"], partitions: set[TopicPartition]) -> None:
        """Called on kafka-python's IO thread: queue the change for the run loop.

        New partitions are not paused until the loop has sought them, though the assigning poll
        fetches data the seek then throws away: with a pause here a resumed partition was once never
        fetched again (a 180 s hang in tests; kafka-python 3.0.12 parks the parsed records of a
        partition paused mid-fetch and restores them only when its in-line slot is None)."""
        with self.rebalance_lock:
            self.rebalances.append((kind, set(partitions)))

    def apply_rebalance(self) -> set[int]:
        """A step of the run loop: act on the changes noted since the last call, in order.
        Returns the partitions that were just positioned; records of theirs that the same
        poll returned were fetched from wherever Kafka had them, not from what Delta holds."""
        with self.rebalance_lock:
            changes, self.rebalances = self.rebalances, []
        positioned: set[int] = set()
        for kind, partitions in changes:
            if kind == "revoked":
                self.drop(partitions)
                positioned -= {tp.partition for tp in partitions}
            else:
                # A later rebalance may already have taken some of them away again.
                owned = partitions & self.consumer.assignment()
                self.seek_to_stored(owned)
                positioned |= {tp.partition for tp in owned}
        return positioned

    def drop(self, partitions: set[TopicPartition]) -> None:
        """Forget buffered records of these partitions; whoever reads them next re-reads them."""
        gone = {tp.partition for tp in partitions}
        self.buffer = [d for d in self.buffer if d.record.partition not in gone]
        self.buffer_spans = sum(len(d.spans) for d in self.buffer)
        self.buffer_bytes = sum(len(d.record.value or b"") for d in self.buffer)
        self.sink.forget(gone)

    def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        """Resume each partition right after the lowest offset any table holds."""
        # Whatever is buffered for them was read from a position Delta did not choose.
        self.drop(partitions)
        resume = self.sink.load_offsets(tp.partition for tp in partitions)
        for tp in partitions:
            offset = resume[tp.partition]
            # Delta is the truth: a partition no table holds anything of is read from its start,
            # whatever the group committed (and whatever this process had already fetched).
            try:
                if offset is None:
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, offset)
            except (ValueError, KeyError):  # revoked meanwhile (kafka-python: "Unassigned partition"): noted next
                continue
            logger.info("assigned %s:%d, resuming at %s", tp.topic, tp.partition, offset or "its beginning")

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> IngestStats:
        previous = self._install_signal_handlers()
        # A buffered batch is a million small acyclic objects (span dicts): the cyclic GC would
        # traverse them again and again as they pile up (measured: decode 10x slower). Collect
        # between batches instead, when the buffer has just been freed.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        gc.freeze()  # start-up objects (modules, classes) are never garbage: skip them for good
        self.consumer.subscribe([self.settings.topic], listener=_Rebalance(self))
        try:
            while not self.stop_requested.is_set():
                try:
                    if self.storage_reset_due:
                        self.reset_to_stored()
                    got = self.poll()
                    if self.should_flush():
                        self.flush()
                    if self.maintenance:
                        self.maintenance.start_if_due()
                    if self.until_idle and not got and self.is_caught_up():
                        break
                except KafkaError as exc:  # the broker is away: keep what is buffered, retry
                    self.wait_for_broker(exc)
                except StorageError as exc:  # whatever was buffered is read again from Delta's offsets
                    self.wait_for_storage(exc)
            self.flush()
        finally:
            if self.maintenance:
                self.maintenance.stop()
            if gc_was_enabled:
                gc.enable()
            self.consumer.close(autocommit=False)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.stats

    def poll(self) -> int:
        batches = self.consumer.poll(timeout_ms=200, max_records=5000)
        self.kafka_errors = 0
        positioned = self.apply_rebalance()
        count = 0
        for tp, records in batches.items():
            if tp.partition in positioned:
                continue  # fetched before the seek to what Delta holds: it is read again from there
            decoded = self.sink.decode(records)  # decoding here lets the batch be sized in spans
            if not self.buffer:
                self.buffer_started = time.monotonic()
            self.buffer.extend(decoded)
            self.buffer_spans += sum(len(d.spans) for d in decoded)
            self.buffer_bytes += sum(len(r.value or b"") for r in records)
            count += len(records)
        return count

    def should_flush(self) -> bool:
        if not self.buffer:
            return False
        return (
            self.buffer_spans >= self.settings.flush_spans
            or self.buffer_bytes >= self.settings.flush_bytes
            or time.monotonic() - self.buffer_started >= self.settings.flush_seconds
        )

    def flush(self) -> None:
        """Commit everything buffered, in batches of at most flush_spans spans / flush_bytes."""
        while self.buffer:
            batch = self.take_batch()
            crash_if("before_commit", self.crash_at)
            try:
                result = self.sink.commit(batch, lag=self.lag())
            except CommitConflict as exc:
                logger.warning("%s; re-reading from what Delta holds", exc)
                self.stats.resets += 1
                self.seek_to_stored(self.consumer.assignment())
                return
            self.storage_failures = 0
            self.after_commit(batch, result)
            del batch
            # young generations after each batch (cheap); everything now and then, for cycles
            # that reached the old generation
            gc.collect(2 if self.stats.batches % 50 == 0 else 1)

    def take_batch(self) -> list[Decoded]:
        spans = nbytes = taken = 0
        for d in self.buffer:
            spans += len(d.spans)
            nbytes += len(d.record.value or b"")
            taken += 1
            if spans >= self.settings.flush_spans or nbytes >= self.settings.flush_bytes:
                break
        batch, self.buffer = self.buffer[:taken], self.buffer[taken:]
        self.buffer_spans -= spans
        self.buffer_bytes -= nbytes
        self.buffer_started = time.monotonic()
        return batch

    def after_commit(self, batch: list[Decoded], result: BatchResult) -> None:
        self.commit_offsets(batch)
        crash_if("after_offset_commit", self.crash_at)
        self.stats.batches += 1
        self.stats.messages += result.messages
        self.stats.spans += result.spans
        self.stats.dead_letters += result.dead_letters
        if self.on_batch:
            self.on_batch(result, self.stats)

    def commit_offsets(self, batch: list[Decoded]) -> None:
        """Kafka offsets follow Delta: they only serve lag monitoring and a fresh group's start."""
        last: dict[TopicPartition, int] = {}
        for r in (d.record for d in batch):
            tp = TopicPartition(r.topic, r.partition)
            last[tp] = max(r.offset, last.get(tp, -1))
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o + 1, "", -1) for tp, o in last.items()})
        except KafkaError as exc:  # harmless: Delta holds the offsets that matter
            logger.warning("Kafka offset commit failed (Delta already holds the batch): %s", exc)

    def wait_for_storage(self, exc: StorageError) -> None:
        """A table read or write failed: wait (capped exponential backoff), then re-read every
        partition from what Delta holds (`reset_to_stored`), or give up after too many in a row."""
        self.storage_failures += 1
        # What is buffered now follows records a failed commit may not have stored: committing it
        # (even at shutdown) would skip them. Drop it all; it is read again from Delta's offsets.
        self.buffer, self.buffer_spans, self.buffer_bytes = [], 0, 0
        self.storage_reset_due = True
        limit = self.settings.storage_max_failures
        if self.storage_failures >= limit:
            raise StorageError(f"{exc}; giving up after {limit} storage failures in a row "
                               "(SPANLAKE_STORAGE_MAX_FAILURES); nothing was lost: the next run re-reads it") from exc  # fmt: skip
        first, cap = STORAGE_BACKOFF_SECONDS
        delay = min(first * 2 ** (self.storage_failures - 1), cap)
        logger.warning("%s; next attempt in %g s (failure %d of %d in a row)", exc, delay, self.storage_failures, limit)
        self.stop_requested.wait(delay)

    def reset_to_stored(self) -> None:
        """After a storage failure: resume every owned partition from what Delta holds."""
        self.seek_to_stored(self.consumer.assignment())
        self.storage_reset_due = False

    def wait_for_broker(self, exc: KafkaError) -> None:
        self.kafka_errors += 1
        if self.kafka_errors in (1, 10) or self.kafka_errors % 100 == 0:
            logger.warning("Kafka unavailable (%s: %s); retrying, nothing is lost", type(exc).__name__, exc)
        self.stop_requested.wait(min(0.2 * self.kafka_errors, 2.0))

    def lag(self) -> int | None:
        """Messages behind the high watermarks, from the last fetch (no broker round trip)."""
        total = 0
        try:
            for tp in self.consumer.assignment():
                high = self.consumer.highwater(tp)
                position = self.consumer.position(tp, timeout_ms=0)
                if high is None or position is None:  # not fetched yet, or just sought: unknown
                    return None
                total += max(0, high - position)
        except KafkaError:
            return None
        return total + len(self.buffer)

    def is_caught_up(self) -> bool:
        """The warehouse holds the whole topic as of now: every partition, whoever ingested it.
        (Not just this process's partitions: a SIGKILLed group member holds its partitions
        until its session times out, and a batch run must not stop short of them.)"""
        if self.buffer or self.rebalances:
            return False
        partitions = self.consumer.partitions_for_topic(self.settings.topic) or set()
        ends = self.consumer.end_offsets([TopicPartition(self.settings.topic, p) for p in partitions])
        return self.sink.holds_all_before({tp.partition: end for tp, end in ends.items()})

    def _install_signal_handlers(self) -> dict[signal.Signals, Any]:
        """SIGINT/SIGTERM finish the current batch, then stop; returns the handlers replaced."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: self.stop_requested.set())
        return previous


def connect(settings: Settings) -> KafkaConsumer:
    """A consumer of `settings.topic`, once the broker answered and the topic exists; else one
    clear error within `connect_timeout_seconds`, having created nothing."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            group_id=settings.group,
            client_id=f"spanlake-ingest-{settings.group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Brokers auto-create a topic that a metadata request names (their default), so a typo
            # in --topic would create it and "ingest" nothing, successfully. kafka-python 3.0.12
            # does not forward this flag to its metadata requests: the existence check below,
            # made before subscribing, is what keeps the typo from creating anything.
            allow_auto_create_topics=False,
            bootstrap_timeout_ms=int(settings.connect_timeout_seconds * 1000),
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            max_poll_records=5000,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.session_timeout_ms // 4,
        )
    except KafkaError:
        raise SpanlakeError(
            f"cannot reach Kafka at {settings.bootstrap_servers} within {settings.connect_timeout_seconds:g}s: "
            "is the broker running, and is that its address? (SPANLAKE_BOOTSTRAP_SERVERS, "
            "SPANLAKE_CONNECT_TIMEOUT_SECONDS)"
        ) from None
    try:
        exists = bool(consumer.partitions_for_topic(settings.topic))  # an empty set when it does not exist
    except KafkaError as exc:
        consumer.close(autocommit=False)
        raise SpanlakeError(f"cannot read topic metadata from Kafka at {settings.bootstrap_servers}: {exc}") from None
    if not exists:
        consumer.close(autocommit=False)
        raise SpanlakeError(
            f"topic {settings.topic!r} does not exist on {settings.bootstrap_servers}; nothing was created "
            "(check SPANLAKE_TOPIC / --topic, or create it: `spanlake generate` does)"
        )
    return consumer
