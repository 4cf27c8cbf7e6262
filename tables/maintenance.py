"""Table maintenance: compaction, ordering, vacuum, checkpoints and log cleanup for every table.

This module owns the physical layout of the warehouse after ingest has written it: which days are
rewritten, in which order, and when old files and log entries go. `spanlake maintain` runs it; the
ingest service may run it on a schedule. It runs beside ingest without losing work:

- optimize commits have dataChange=false and do not conflict with ingest's blind appends;
- they do conflict with trace_info MERGEs (delta-rs' optimize reads the whole table), so each
  rewrite is retried a few times with backoff and then skipped with a reason in the report;
  a conflict never raises out of `maintain`;
- Kafka offsets live in the log as txn actions; optimize, vacuum and checkpoints keep them;
- two maintenance runs on one table would double its rows (see Lease), so a run holds a lease.

The rule for which days are rewritten is in `plan_days` and docs/MAINTENANCE.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
from deltalake import DeltaTable, WriterProperties
from deltalake.exceptions import DeltaError

from spanlake.errors import ConfigError
from spanlake.tables.delta import NO_CHECKPOINT, is_commit_conflict, table_uri, writer_properties
from spanlake.tables.lease import Lease
from spanlake.tables.schemas import TABLES, spec

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Readers and result paging pin a table version; their files must outlive any query.
MIN_RETENTION_HOURS = 1.0
# Column each table's files are ordered by within a day (ingest_errors: compaction only).
SORT_COLUMNS: dict[str, str] = {"span_data": "trace_id", "trace_info": "request_time"}
# Tables whose recent days ingest keeps reading or rewriting: trace_info's by every MERGE (so
# ordering them is wasted work that widens the window for a commit conflict), span_data's by
# the duplicate-span lookup, which prunes fresh files by start_time (ordering by trace_id would
# make every file of the day span the whole day). Their days are ordered once they cool down.
HOT_TABLES = frozenset({"trace_info", "span_data"})
# txn app id of the maintenance lease (ingest's app ids are "spanlake:<topic>:<partition>").
LEASE_APP_ID = "spanlake-maintenance-lease"
# Commits read back to find the last maintenance: reading a log's whole history costs one file
# per commit, and ingest commits every batch, so a status looks this far back and no further.
HISTORY_LOOKBACK = 1000


def maintenance_lease(table: DeltaTable, name: str, seconds: float) -> Lease:
    """delta-rs does not detect two concurrent optimizes that remove the same files: both commit
    and the day's rows are doubled. So a run holds this lease on the table while it rewrites."""
    return Lease(table, name, seconds, app_id=LEASE_APP_ID, holder_kind="maintenance run")


@dataclass(frozen=True)
class MaintenancePolicy:
    """Knobs of a maintenance run (all sizes in bytes)."""

    target_size: int = 128 * 1024 * 1024  # size of rewritten files
    small_file_bytes: int = 32 * 1024 * 1024  # below this a file counts as "small" (fresh ingest output)
    reorder_fraction: float = 0.25  # re-order a day when small files hold at least this share of it
    hot_days: int = 1  # HOT_TABLES days >= today - hot_days are compacted but not ordered
    conflict_retries: int = 4  # attempts after the first, per rewrite, on a commit conflict
    backoff_seconds: float = 0.5  # first wait; doubles per attempt, with jitter
    full_vacuum: bool = True  # also delete orphaned files (crashed writers, dropped tombstones)
    lease_seconds: float = 3600.0  # a run killed on another host blocks others at most this long


@dataclass
class TableReport:
    """What one run did to one table."""

    table: str
    files_before: int = 0
    files_after: int = 0
    files_rewritten: int = 0  # removed by compaction/ordering
    files_written: int = 0  # added by compaction/ordering
    days_ordered: list[dt.date] = field(default_factory=list)
    days_compacted: list[dt.date] = field(default_factory=list)
    conflicts: int = 0  # commit conflicts met (each one retried or skipped)
    checkpoint_version: int | None = None
    vacuumed_files: int = 0
    duration_s: float = 0.0
    skipped: list[str] = field(default_factory=list)  # "step: reason"

    def line(self) -> str:
        """One line for the CLI, plus one per skipped step."""
        checkpoint = "no checkpoint" if self.checkpoint_version is None else f"checkpoint v{self.checkpoint_version}"
        text = (
            f"{self.table}: files {self.files_before} -> {self.files_after} "
            f"(rewrote {self.files_rewritten} into {self.files_written}; ordered {len(self.days_ordered)} days, "
            f"compacted {len(self.days_compacted)}), {checkpoint}, "
            f"vacuumed {self.vacuumed_files}, {self.conflicts} conflicts, {self.duration_s:.1f}s"
        )
        return text + "".join(f"\n  skipped {s}" for s in self.skipped)


@dataclass
class MaintenanceReport:
    started_at: dt.datetime
    tables: list[TableReport] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return sum(t.duration_s for t in self.tables)

    def table(self, name: str) -> TableReport:
        return next(t for t in self.tables if t.table == name)

    def lines(self) -> list[str]:
        return [t.line() for t in self.tables]


@dataclass(frozen=True)
class DayLayout:
    """A day partition's files, from the log's add actions only (no data file is read)."""

    day: dt.date
    files: int
    bytes: int
    small_files: int
    small_bytes: int
    ordered: bool  # files' [min, max] ranges of the sort column do not overlap


@dataclass(frozen=True)
class TableStatus:
    """A table's size and last maintenance, from its log alone (for the dashboard's health page)."""

    table: str
    version: int
    files: int
    bytes: int
    last_optimize: dt.datetime | None  # None: none in the last `lookback` commits
    last_vacuum: dt.datetime | None
    lookback: int = HISTORY_LOOKBACK


def table_status(table: DeltaTable, name: str, *, lookback: int = HISTORY_LOOKBACK) -> TableStatus:
    """Files and bytes of the table's current version, and its newest OPTIMIZE and VACUUM commits."""
    layouts = day_layouts(table, None, 0).values()
    newest: dict[str, dt.datetime] = {}
    for commit in table.history(lookback):  # newest first
        operation = str(commit.get("operation") or "").split(" ")[0]  # "VACUUM END" -> VACUUM
        if operation in ("OPTIMIZE", "VACUUM") and operation not in newest:
            newest[operation] = dt.datetime.fromtimestamp(commit["timestamp"] / 1000, dt.timezone.utc)
    return TableStatus(
        name, table.version(), sum(d.files for d in layouts), sum(d.bytes for d in layouts),
        newest.get("OPTIMIZE"), newest.get("VACUUM"), lookback,
    )  # fmt: skip


def maintain(
    warehouse: str,
    *,
    storage_options: Mapping[str, str] | None = None,
    retention_hours: float = 168,
    tables: Sequence[str] | None = None,
    days: Sequence[dt.date] | None = None,
    now: dt.datetime | None = None,
    policy: MaintenancePolicy | None = None,
) -> MaintenanceReport:
    """Compact and order recent days, vacuum, checkpoint and clean the log of each table.

    `days` restricts rewrites to those days (default: every day the rule picks); `now` (UTC)
    decides which trace_info days are still hot. Raises ConfigError for a retention below
    one hour and TableError for an unknown table; a commit conflict only lands in the report.
    """
    if retention_hours < MIN_RETENTION_HOURS:
        raise ConfigError(
            f"retention_hours={retention_hours} is below {MIN_RETENTION_HOURS:g}: readers and paged "
            "queries pin table versions whose files vacuum would delete"
        )
    names = [spec(n).name for n in (tables if tables is not None else TABLES)]
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.astimezone(dt.timezone.utc).date() if now.tzinfo else now.date()  # days are UTC dates
    policy = policy or MaintenancePolicy()
    options = dict(storage_options or {})
    report = MaintenanceReport(started_at=now)
    for name in names:
        uri = table_uri(warehouse, name)
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            if tables is not None:  # asked for by name: say so; otherwise a job's table not made yet
                report.tables.append(TableReport(name, skipped=[f"all: no Delta table at {uri}"]))
            continue
        table = DeltaTable(uri, storage_options=options)
        report.tables.append(maintain_table(table, name, retention_hours, days, today, policy))
    return report


def maintain_table(
    table: DeltaTable,
    name: str,
    retention_hours: float,
    days: Sequence[dt.date] | None,
    today: dt.date,
    policy: MaintenancePolicy,
) -> TableReport:
    """Run every step on one table under its lease, in the order that keeps vacuum correct."""
    started = time.monotonic()
    report = TableReport(name)
    lease = maintenance_lease(table, name, policy.lease_seconds)
    acquired = _retrying("lease", lease.acquire, report, policy)  # None: skipped after conflicts
    if not acquired:
        if acquired is False:
            report.skipped.append(f"all: another maintenance run holds the table's lease ({lease.holder()})")
        report.files_before = report.files_after = sum(d.files for d in day_layouts(table, None, 0).values())
        report.duration_s = time.monotonic() - started
        return report
    try:
        _rewrite_days(table, report, days, today, lease, policy)
        # Vacuum before the checkpoint: a checkpoint drops tombstones older than the table's
        # deletedFileRetentionDuration, and a lite vacuum would then never delete those files.
        vacuumed = _retrying("vacuum", lambda: _vacuum(table, retention_hours, policy), report, policy)
        report.vacuumed_files = len(vacuumed or [])
        table.update_incremental()
        table.create_checkpoint()  # a checkpoint is not a commit: it cannot conflict
        report.checkpoint_version = table.version()
        table.cleanup_metadata()  # expired log files only (delta.logRetentionDuration, 30 days)
    finally:
        _retrying("release lease", lease.release, report, policy)  # else it simply expires
    report.files_after = sum(d.files for d in day_layouts(table, None, policy.small_file_bytes).values())
    report.duration_s = time.monotonic() - started
    logger.debug("maintenance %s", report.line())  # callers print the report: once, not twice
    return report


def _rewrite_days(
    table: DeltaTable,
    report: TableReport,
    days: Sequence[dt.date] | None,
    today: dt.date,
    lease: Lease,
    policy: MaintenancePolicy,
) -> None:
    sort_col = SORT_COLUMNS.get(report.table)
    layouts = day_layouts(table, sort_col, policy.small_file_bytes)
    report.files_before = sum(d.files for d in layouts.values())
    hot = today - dt.timedelta(days=policy.hot_days) if report.table in HOT_TABLES else None
    order, compact = plan_days(layouts, sorted_by=sort_col, hot_from=hot, days=days, policy=policy)
    steps = [(d, sort_col) for d in order] + [(d, None) for d in compact]
    for day, z_order_by in steps:
        step = f"order {day} by {z_order_by}" if z_order_by else f"compact {day}"
        if not _retrying("renew lease", lease.renew, report, policy):
            report.skipped.append(f"{step} and later rewrites: lost the lease to another maintenance run")
            return
        props = writer_properties(spec(report.table))
        run = lambda d=day, z=z_order_by, p=props: _rewrite(table, d, policy, z, p)  # noqa: E731
        metrics = _retrying(step, run, report, policy)
        if _count(report, metrics):
            (report.days_ordered if z_order_by else report.days_compacted).append(day)


def day_layouts(table: DeltaTable, sort_col: str | None, small_file_bytes: int) -> dict[dt.date, DayLayout]:
    """Per-day file statistics from the add actions in the log."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}
    cols = ["partition.day", "size_bytes"]
    if sort_col is not None:
        cols += [f"min.{sort_col}", f"max.{sort_col}"]
    # A column without statistics is absent: its files count as unordered.
    values = [actions.column(c).to_pylist() if c in actions.column_names else [None] * actions.num_rows for c in cols]
    by_day: dict[dt.date, list[tuple[Any, ...]]] = {}
    for row in zip(*values):
        by_day.setdefault(row[0], []).append(row[1:])
    return {day: _layout(day, files, small_file_bytes) for day, files in by_day.items()}


def _layout(day: dt.date, files: list[tuple[Any, ...]], small_file_bytes: int) -> DayLayout:
    small = [f[0] for f in files if f[0] < small_file_bytes]
    ranges = [(f[1], f[2]) for f in files if len(f) == 3]
    return DayLayout(day, len(files), sum(f[0] for f in files), len(small), sum(small), _disjoint(ranges))


def _disjoint(ranges: list[tuple[Any, Any]]) -> bool:
    if any(lo is None or hi is None for lo, hi in ranges):
        return False  # no statistics: cannot tell, so treat the day as unordered
    ranges.sort()
    # Equal boundaries still let a lookup skip all but two files, so they count as ordered.
    return all(prev_hi <= lo for (_, prev_hi), (lo, _) in zip(ranges, ranges[1:]))


def plan_days(
    layouts: Mapping[dt.date, DayLayout],
    *,
    sorted_by: str | None,
    hot_from: dt.date | None,
    days: Sequence[dt.date] | None,
    policy: MaintenancePolicy,
) -> tuple[list[dt.date], list[dt.date]]:
    """(days to order, days to compact only), from the log's statistics alone.

    A day is ordered when its files overlap on the sort column (an ordered day has disjoint
    ranges, so it is never rewritten again) and small, freshly ingested files hold at least
    `reorder_fraction` of its bytes: a trickle of late spans into a large ordered day does not
    rewrite the whole day. Otherwise a day with two or more small files is compacted.
    """
    wanted = set(days) if days is not None else None
    order: list[dt.date] = []
    compact: list[dt.date] = []
    for day, d in sorted(layouts.items()):
        if wanted is not None and day not in wanted:
            continue
        can_order = sorted_by is not None and (hot_from is None or day < hot_from)
        if can_order and d.files > 1 and not d.ordered and d.small_bytes >= policy.reorder_fraction * d.bytes:
            order.append(day)
        elif d.small_files > 1:
            compact.append(day)
    return order, compact


def _rewrite(
    table: DeltaTable, day: dt.date, policy: MaintenancePolicy, z_order_by: str | None, props: WriterProperties
) -> dict[str, Any]:
    """One day, one commit: z-order on a single column (a sort), or a plain compaction."""
    table.update_incremental()  # start from the newest version: a shorter window for conflicts
    args: dict[str, Any] = dict(
        partition_filters=[("day", "=", day.isoformat())],
        target_size=policy.target_size,
        writer_properties=props,
        post_commithook_properties=NO_CHECKPOINT,
    )
    if z_order_by is None:
        return table.optimize.compact(**args)
    return table.optimize.z_order([z_order_by], **args)


def _vacuum(table: DeltaTable, retention_hours: float, policy: MaintenancePolicy) -> list[str]:
    table.update_incremental()
    return table.vacuum(
        retention_hours=math.ceil(retention_hours),  # delta-rs takes whole hours: round towards keeping
        dry_run=False,
        enforce_retention_duration=False,
        full=policy.full_vacuum,
        post_commithook_properties=NO_CHECKPOINT,
    )


def _count(report: TableReport, metrics: dict[str, Any] | None) -> bool:
    if metrics is None:
        return False
    report.files_rewritten += int(metrics.get("numFilesRemoved", 0))
    report.files_written += int(metrics.get("numFilesAdded", 0))
    return True


def _retrying(step: str, run: Callable[[], T], report: TableReport, policy: MaintenancePolicy) -> T | None:
    """`run()`, retried on commit conflicts with jittered exponential backoff; None when skipped."""
    attempts = policy.conflict_retries + 1
    reason = ""
    for attempt in range(attempts):
        try:
            return run()
        except DeltaError as exc:
            if not is_commit_conflict(exc):
                raise
            report.conflicts += 1
            reason = str(exc).splitlines()[0]
            logger.info(
                "maintenance %s %s: conflict (attempt %d/%d): %s", report.table, step, attempt + 1, attempts, reason
            )
        if attempt + 1 < attempts:
            # Jitter keeps us from retrying in lockstep with a writer's flush interval.
            time.sleep(policy.backoff_seconds * 2**attempt * random.uniform(0.5, 1.5))
    report.skipped.append(f"{step}: commit conflict on all {attempts} attempts ({reason})")
    return None
