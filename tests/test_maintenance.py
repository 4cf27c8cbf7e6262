"""Maintenance on real Delta tables: fewer files, same rows, ordered days, offsets kept, vacuum
past retention only, and no lost or doubled row while a writer appends and MERGEs beside it."""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import random
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError
from polars.testing import assert_frame_equal

from spanlake.errors import ConfigError, TableError
from spanlake.ingest.trace_rollup import SpanLookup, merge_traces
from spanlake.tables import maintenance
from spanlake.tables.delta import NO_CHECKPOINT, WRITER_PROPERTIES, open_or_create
from spanlake.tables.maintenance import MaintenancePolicy, maintain
from spanlake.tables.schemas import OPEN_TRACES, SPAN_DATA, TRACE_INFO, TableSpec

DAYS = (dt.date(2025, 3, 1), dt.date(2025, 3, 2))
NOW = dt.datetime(2025, 3, 10, 12, tzinfo=dt.timezone.utc)  # every day in DAYS is cold
# Tiny sizes so a few thousand rows make many files: appends are ~18 KB; delta-rs cuts
# rewritten files at record-batch boundaries (~1,000 rows, ~68 KB here), plus a small rest.
POLICY = MaintenancePolicy(target_size=40_000, small_file_bytes=35_000, backoff_seconds=0.05)
APP = "spanlake:test:topic:0"


def _start(day: dt.date, rnd: random.Random) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(seconds=rnd.randrange(86_000))


def span_rows(spans: list[tuple[str, str, dt.datetime]], offset: int = 0) -> pa.Table:
    """span_data rows for (trace_id, span_id, start) triples; other columns are filler."""
    n = len(spans)
    cols = {c: [None] * n for c in SPAN_DATA.column_names}
    cols["trace_id"] = [s[0] for s in spans]
    cols["span_id"] = [s[1] for s in spans]
    cols["start_time"] = [s[2] for s in spans]
    cols["end_time"] = [s[2] + dt.timedelta(milliseconds=7) for s in spans]
    cols["name"] = ["chat"] * n
    cols["inputs"] = [f"question {s[1]} " * 3 for s in spans]
    cols["topic"], cols["partition"] = ["t"] * n, [0] * n
    cols["offset"] = list(range(offset, offset + n))
    cols["ingested_at"] = [NOW] * n
    cols["day"] = [s[2].date() for s in spans]
    return pa.table(cols, schema=SPAN_DATA.schema)


def random_spans(n: int, day: dt.date, rnd: random.Random) -> list[tuple[str, str, dt.datetime]]:
    return [(f"{rnd.getrandbits(128):032x}", f"{rnd.getrandbits(64):016x}", _start(day, rnd)) for _ in range(n)]


def trace_rows(traces: list[tuple[str, dt.datetime, bool]]) -> pa.Table:
    """Partial trace_info rows, one span each: (trace_id, start, is_root)."""
    n = len(traces)
    cols = {c: [None] * n for c in TRACE_INFO.column_names}
    cols["trace_id"] = [t[0] for t in traces]
    cols["request_time"] = [t[1] for t in traces]
    cols["end_time"] = [t[1] + dt.timedelta(seconds=1) for t in traces]
    cols["state"] = ["OK" if t[2] else "IN_PROGRESS" for t in traces]
    cols["root_span_id"] = [t[0][:16] if t[2] else None for t in traces]
    for c in ("span_count", "llm_call_count"):
        cols[c] = [1] * n
    cols["error_count"] = [0] * n
    cols["models"] = [["m"]] * n
    cols["tags"], cols["metadata"] = [[]] * n, [[]] * n
    cols["ingested_at"] = [NOW] * n
    cols["day"] = [t[1].date() for t in traces]
    return pa.table(cols, schema=TRACE_INFO.schema)


def create(warehouse: Path, spec: TableSpec) -> DeltaTable:
    return open_or_create(str(warehouse / spec.name), spec)


def append(table: DeltaTable | str, data: pa.Table, version: int | None = None) -> None:
    txn = CommitProperties(app_transactions=[Transaction(APP, version)]) if version is not None else None
    write_deltalake(
        table, data, mode="append", partition_by=["day"], commit_properties=txn,
        writer_properties=WRITER_PROPERTIES, post_commithook_properties=NO_CHECKPOINT,
    )  # fmt: skip


def fill_span_data(warehouse: Path, appends: int = 30, rows: int = 150, seed: int = 1) -> DeltaTable:
    table = create(warehouse, SPAN_DATA)
    rnd = random.Random(seed)
    for i in range(appends):
        append(table, span_rows(random_spans(rows, DAYS[i % 2], rnd), offset=i * rows), version=i)
    return table


def read(warehouse: Path, name: str, keys: list[str]) -> pl.DataFrame:
    return pl.read_delta(str(warehouse / name)).sort(keys)


def files_by_day(table: DeltaTable, col: str) -> dict[dt.date, list[tuple]]:
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    out: dict[dt.date, list[tuple]] = {}
    for a in actions:
        out.setdefault(a["partition.day"], []).append((a[f"min.{col}"], a[f"max.{col}"]))
    return out


def assert_ordered(table: DeltaTable, col: str, days=DAYS) -> None:
    for day, ranges in files_by_day(table, col).items():
        if day not in days:
            continue
        ranges.sort()
        for (_, hi), (lo, _) in zip(ranges, ranges[1:]):
            assert hi <= lo, f"{day}: files overlap on {col}: {ranges}"


# --- compaction and ordering ---------------------------------------------------------------


def test_compacts_and_orders_span_data_by_trace_id(tmp_path: Path) -> None:
    table = fill_span_data(tmp_path)
    before = read(tmp_path, "span_data", ["trace_id", "span_id"])
    report = maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY).table("span_data")
    table.update_incremental()
    assert report.files_before == 30
    assert 2 <= report.files_after < 30  # several target-sized files per day, so ordering is visible
    assert sorted(report.days_ordered) == list(DAYS) and report.skipped == []
    assert_ordered(table, "trace_id")
    assert_frame_equal(read(tmp_path, "span_data", ["trace_id", "span_id"]), before)
    assert len(files_by_day(table, "trace_id")[DAYS[0]]) > 1


def test_ordered_days_are_not_rewritten_again(tmp_path: Path) -> None:
    fill_span_data(tmp_path)
    maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY)
    again = maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY).table("span_data")
    assert again.files_rewritten == 0 and again.days_ordered == again.days_compacted == []


def test_a_trickle_of_late_spans_is_compacted_not_reordered(tmp_path: Path) -> None:
    table = fill_span_data(tmp_path, appends=60)
    maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY)
    rnd = random.Random(7)
    for i in range(2):  # two small late appends: far below reorder_fraction of the day
        append(table, span_rows(random_spans(5, DAYS[0], rnd), offset=10_000 + i))
    report = maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY).table("span_data")
    assert report.days_ordered == [] and report.days_compacted == [DAYS[0]]


def test_days_restricts_rewrites(tmp_path: Path) -> None:
    fill_span_data(tmp_path)
    report = maintain(str(tmp_path), tables=["span_data"], days=[DAYS[1]], now=NOW, policy=POLICY)
    assert report.table("span_data").days_ordered == [DAYS[1]]


def test_trace_info_ordered_by_request_time_on_cold_days_only(tmp_path: Path) -> None:
    table = create(tmp_path, TRACE_INFO)
    rnd = random.Random(3)
    hot = NOW.date()
    for i in range(20):
        day = (DAYS[0], hot)[i % 2]
        append(table, trace_rows([(f"{rnd.getrandbits(128):032x}", _start(day, rnd), True) for _ in range(80)]))
    before = read(tmp_path, "trace_info", ["trace_id"])
    report = maintain(str(tmp_path), tables=["trace_info"], now=NOW, policy=POLICY).table("trace_info")
    table.update_incremental()
    assert report.days_ordered == [DAYS[0]]  # the hot day is rewritten by MERGEs anyway
    assert report.days_compacted == [hot]
    assert_ordered(table, "request_time", days=[DAYS[0]])
    assert_frame_equal(read(tmp_path, "trace_info", ["trace_id"]), before)


# --- offsets, checkpoint, log cleanup ------------------------------------------------------


def test_txn_versions_survive_optimize_checkpoint_cleanup_and_vacuum(tmp_path: Path) -> None:
    table = fill_span_data(tmp_path)
    # Expire every log file at once, so the offsets must come back from the checkpoint.
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    before = table.transaction_version(APP)
    report = maintain(str(tmp_path), tables=["span_data"], retention_hours=1, now=NOW, policy=POLICY)
    version = report.table("span_data").checkpoint_version
    log = tmp_path / "span_data" / "_delta_log"
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == version
    assert (log / f"{version:020d}.checkpoint.parquet").exists()
    assert not (log / f"{0:020d}.json").exists()  # cleaned up
    fresh = DeltaTable(str(tmp_path / "span_data"))
    assert before == 29 and fresh.transaction_version(APP) == before


# --- vacuum --------------------------------------------------------------------------------


def _age_tombstones(table_dir: Path, hours: float) -> None:
    """Pretend the last rewrite happened `hours` ago (vacuum reads this time from the log)."""
    stamp = int((time.time() - hours * 3600) * 1000)
    log = table_dir / "_delta_log"
    for path in log.glob("*.json"):
        actions = [json.loads(line) for line in path.read_text().splitlines() if line]
        for action in actions:
            if "remove" in action:
                action["remove"]["deletionTimestamp"] = stamp
        path.write_text("".join(json.dumps(a) + "\n" for a in actions))
    for path in [*log.glob("*.checkpoint.parquet"), log / "_last_checkpoint"]:
        path.unlink()  # the checkpoint holds the fresh tombstones: replay the JSON instead


def _parquet_files(table_dir: Path) -> set[str]:
    return {os.path.relpath(p, table_dir) for p in glob.glob(str(table_dir / "day=*" / "*.parquet"))}


def test_vacuum_deletes_rewritten_files_only_past_retention(tmp_path: Path) -> None:
    table = fill_span_data(tmp_path)
    table_dir = tmp_path / "span_data"
    before = read(tmp_path, "span_data", ["trace_id", "span_id"])
    first = maintain(str(tmp_path), tables=["span_data"], retention_hours=1, now=NOW, policy=POLICY)
    assert first.table("span_data").vacuumed_files == 0  # rewritten moments ago: within retention
    assert len(_parquet_files(table_dir)) == 30 + first.table("span_data").files_written
    _age_tombstones(table_dir, hours=2)
    # An orphan of a crashed writer from 4 hours ago goes; one being written right now stays.
    old_orphan, new_orphan = table_dir / "day=2025-03-01" / "old.parquet", table_dir / "day=2025-03-01" / "new.parquet"
    for orphan in (old_orphan, new_orphan):
        orphan.write_bytes(b"PAR1")
    os.utime(old_orphan, (time.time() - 4 * 3600,) * 2)
    kept = maintain(str(tmp_path), tables=["span_data"], retention_hours=3, now=NOW, policy=POLICY)
    assert kept.table("span_data").vacuumed_files == 1  # the old orphan; the 2 h old tombstones stay
    assert not old_orphan.exists() and len(_parquet_files(table_dir)) == 30 + first.table("span_data").files_written + 1
    second = maintain(str(tmp_path), tables=["span_data"], retention_hours=1, now=NOW, policy=POLICY)
    table.update_incremental()
    live = {os.path.normpath(p) for p in pa.table(table.get_add_actions()).column("path").to_pylist()}
    assert second.table("span_data").vacuumed_files == 30  # every rewritten append
    assert _parquet_files(table_dir) == live | {os.path.relpath(new_orphan, table_dir)}
    new_orphan.unlink()
    assert_frame_equal(read(tmp_path, "span_data", ["trace_id", "span_id"]), before)


def test_retention_below_one_hour_is_refused(tmp_path: Path) -> None:
    fill_span_data(tmp_path, appends=4)
    with pytest.raises(ConfigError, match="retention_hours=0.5"):
        maintain(str(tmp_path), retention_hours=0.5)
    assert len(pa.table(DeltaTable(str(tmp_path / "span_data")).get_add_actions())) == 4  # nothing ran


def test_unknown_and_missing_tables(tmp_path: Path) -> None:
    with pytest.raises(TableError):
        maintain(str(tmp_path), tables=["spans"])
    report = maintain(str(tmp_path), tables=["ingest_errors"], now=NOW)
    assert "no Delta table" in report.table("ingest_errors").skipped[0]


# --- conflicts -----------------------------------------------------------------------------


def test_a_step_that_keeps_conflicting_is_skipped_not_raised(tmp_path: Path, monkeypatch) -> None:
    fill_span_data(tmp_path, appends=6)

    def always_conflicts(*args, **kwargs):
        raise CommitFailedError("Commit failed: a concurrent transaction deleted data this operation read.")

    monkeypatch.setattr(maintenance, "_rewrite", always_conflicts)
    policy = MaintenancePolicy(target_size=40_000, small_file_bytes=35_000, conflict_retries=2, backoff_seconds=0.001)
    report = maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=policy).table("span_data")
    assert report.conflicts == 2 * 3 and report.days_ordered == []
    assert len(report.skipped) == 2 and "commit conflict on all 3 attempts" in report.skipped[0]
    assert report.checkpoint_version is not None  # the other steps still ran


class Writer(threading.Thread):
    """Ingest's pattern: append spans, then MERGE each trace's partial row, offsets in each commit;
    a conflict re-reads the table and retries the same batch (skipping what is already stored)."""

    def __init__(self, warehouse: Path, batches: int) -> None:
        super().__init__(daemon=True)
        self.spans_table = create(warehouse, SPAN_DATA)
        self.traces_table = create(warehouse, TRACE_INFO)
        self.open_table = create(warehouse, OPEN_TRACES)
        # every stored span counts as held by trace_info: this writer commits them in order
        self.lookup = SpanLookup(self.spans_table, lambda found: pl.Series([True] * found.height))
        self.batches = batches
        self.spans: list[tuple[str, str, dt.datetime]] = []
        self.conflicts = {SPAN_DATA.name: 0, TRACE_INFO.name: 0}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            rnd = random.Random(11)
            previous: list[tuple[str, str, dt.datetime]] = []
            for i in range(self.batches):
                fresh = random_spans(20, DAYS[i % 2], rnd)
                # Second span of each trace of the last batch: the MERGE updates stored rows.
                followers = [(t, f"{rnd.getrandbits(64):016x}", start) for t, _, start in previous]
                batch = fresh + followers
                rows = span_rows(batch, offset=i * 100)
                self._commit(self.spans_table, i, lambda t, r=rows, i=i: append(t, r, version=i))
                partials = trace_rows([(t, s, True) for t, _, s in fresh] + [(t, s, False) for t, _, s in followers])
                txn = CommitProperties(app_transactions=[Transaction(APP, i)])
                merge = lambda t, p=partials, r=rows, txn=txn: merge_traces(t, self.open_table, self.lookup, p, r, txn)  # noqa: E731
                self._commit(self.traces_table, i, merge)
                self.spans += batch
                previous = fresh
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _commit(self, table: DeltaTable, version: int, write) -> None:
        while True:
            try:
                write(table)
                return
            except CommitFailedError:
                self.conflicts[table.metadata().name] += 1
                table.update_incremental()
                if (table.transaction_version(APP) or -1) >= version:
                    raise AssertionError("a failed commit was stored after all") from None


def test_concurrent_appends_and_merges_lose_nothing(tmp_path: Path) -> None:
    writer = Writer(tmp_path, batches=60)
    writer.start()
    reports = []

    def run() -> maintenance.MaintenanceReport:
        return maintain(str(tmp_path), tables=["span_data", "trace_info"], retention_hours=1, now=NOW, policy=POLICY)

    while writer.is_alive():
        reports.append(run())
    writer.join()
    assert writer.error is None, writer.error
    reports.append(run())

    spans = read(tmp_path, "span_data", ["trace_id", "span_id"])
    expected = pl.DataFrame({"trace_id": [s[0] for s in writer.spans], "span_id": [s[1] for s in writer.spans]})
    assert_frame_equal(spans.select("trace_id", "span_id"), expected.sort("trace_id", "span_id"))
    traces = read(tmp_path, "trace_info", ["trace_id"])
    per_trace = expected.group_by("trace_id").len("span_count").with_columns(pl.col("span_count").cast(pl.Int64))
    assert_frame_equal(traces.select("trace_id", "span_count"), per_trace.sort("trace_id"))
    for name in ("span_data", "trace_info"):
        assert DeltaTable(str(tmp_path / name)).transaction_version(APP) == 59
    rewrites = sum(r.table(n).files_rewritten for r in reports for n in ("span_data", "trace_info"))
    maint_conflicts = {n: sum(r.table(n).conflicts for r in reports) for n in ("span_data", "trace_info")}
    skipped = [s for r in reports for n in ("span_data", "trace_info") for s in r.table(n).skipped]
    print(f"\n{len(reports)} maintenance runs, {rewrites} files rewritten; maintenance conflicts {maint_conflicts}, "
          f"{len(skipped)} steps skipped; writer conflicts {writer.conflicts}")  # fmt: skip
    # Optimize and blind appends never conflict, either way round.
    assert maint_conflicts["span_data"] == 0 and writer.conflicts["span_data"] == 0
    assert rewrites > 0


# --- one run per table ---------------------------------------------------------------------


def test_a_held_lease_makes_another_run_skip_the_table(tmp_path: Path) -> None:
    fill_span_data(tmp_path, appends=10)
    other = maintenance.maintenance_lease(DeltaTable(str(tmp_path / "span_data")), "span_data", seconds=600)
    assert other.acquire()
    report = maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY).table("span_data")
    assert report.files_rewritten == 0 and "another maintenance run holds the table" in report.skipped[0]
    other.release()
    report = maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY).table("span_data")
    assert report.files_rewritten == 10 and report.skipped == []


def test_concurrent_maintenance_runs_never_double_rows(tmp_path: Path) -> None:
    # Without the lease, two optimizes of the same files both commit (delta-rs 1.6.6): rows doubled.
    fill_span_data(tmp_path)
    before = read(tmp_path, "span_data", ["trace_id", "span_id"])
    start = threading.Barrier(3)
    reports = []

    def run() -> None:
        start.wait()
        reports.append(maintain(str(tmp_path), tables=["span_data"], now=NOW, policy=POLICY).table("span_data"))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reports) == 3 and sum(r.files_rewritten for r in reports) == 30
    assert_frame_equal(read(tmp_path, "span_data", ["trace_id", "span_id"]), before)
