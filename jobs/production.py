"""Production scoring: one pass of the registered scorers over the traces that completed since
their last pass (`spanlake jobs run scorers`).

Per registered scorer version, a pass
1. takes that version's lease on `assessments` (tables.lease): a second job process skips the
   scorer instead of scoring the same traces;
2. reads its watermark, the highest trace_info `ingested_at` it has read (txn
   `spanlake-job:scorers:<version>` in the assessments log, microseconds). A trace's row is
   re-stamped when its root arrives, so a trace that completed late comes after the watermark
   however old it is: there is no look-back window. The pass re-reads `WATERMARK_LAG` before the
   watermark, since ingest stamps a row before its commit lands;
3. selects the completed traces (OK or ERROR) stamped after that, matching the scorer's filter
   and sample (jobs.sampling), minus every trace this version already has an assessment for:
   the anti-join, not the watermark, is what makes a re-run score nothing twice;
4. scores them in chunks in ingested_at order, each chunk's assessments written in one commit
   that also records the watermark reached, and releases the lease.

A new scorer version starts from its name's last watermark (txn
`spanlake-job:scorers-name:<name>`, without the lag): a changed scorer scores traces from here on, and
`backfill` (`--backfill --since DATE`) applies it to past traces (request_time from `since`),
leaving the watermark alone. A scorer never seen before scores every completed trace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction

from spanlake.errors import SpanlakeError
from spanlake.jobs.assessments import write_assessments
from spanlake.jobs.job_runs import JobRun, one_line
from spanlake.jobs.registry import RegisteredScorer, load_registry
from spanlake.jobs.runner import score_traces
from spanlake.jobs.sampling import in_sample
from spanlake.query import scan_traces
from spanlake.tables.delta import check_warehouse, is_commit_conflict, open_or_create, table_uri
from spanlake.tables.lease import Lease
from spanlake.tables.schemas import ASSESSMENTS

JOB = "scorers"
WATERMARK_LAG = dt.timedelta(minutes=10)  # ingest's commit retries, with backoff, stay well within this
LEASE_SECONDS = 900.0  # renewed between chunks; a holder killed on another host blocks this long
CHUNK_TRACES = 10_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

Progress = Callable[[str, int, int], None]  # (scorer name, traces scored, traces to score)


def watermark_app_id(version: str) -> str:
    return f"spanlake-job:{JOB}:{version}"


def name_app_id(name: str) -> str:
    return f"spanlake-job:{JOB}-name:{name}"


def lease_app_id(version: str) -> str:
    return f"spanlake-job:{JOB}:{version}:lease"


@dataclass
class ScorerPass:
    """What one pass did for one scorer."""

    name: str
    version: str
    read: int = 0  # candidate traces read (before sampling and the anti-join)
    scored: int = 0
    written: int = 0
    watermark: dt.datetime | None = None
    skipped: str | None = None  # why it did nothing (another process holds its lease)


@dataclass
class PassReport:
    run_id: str
    scorers: list[ScorerPass] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(s.read for s in self.scorers)

    @property
    def rows_written(self) -> int:
        return sum(s.written for s in self.scorers)


def run_scorers(
    registered: Sequence[RegisteredScorer] | Path,
    *,
    warehouse: str,
    storage_options: Mapping[str, str] | None = None,
    backfill_since: dt.date | dt.datetime | None = None,
    on_progress: Progress | None = None,
) -> PassReport:
    """One pass of every registered scorer (or of those `registered` in a scorers file); its
    job_runs row records it, with the error if it failed."""
    run = JobRun(JOB)
    report = PassReport(run.run_id)
    try:
        check_warehouse(warehouse)
        if isinstance(registered, Path):
            registered = load_registry(registered)
        for reg in registered:
            done = _score_one(reg, run.run_id, warehouse, storage_options, backfill_since, on_progress)
            report.scorers.append(done)
            run.rows_read, run.rows_written = report.rows_read, report.rows_written
            run.watermark[reg.name] = {
                "version": reg.version, "ingested_at": done.watermark.isoformat() if done.watermark else None,
                "scored": done.scored, "written": done.written, **({"skipped": done.skipped} if done.skipped else {}),
                **({"backfill_since": str(backfill_since)} if backfill_since else {}),
            }  # fmt: skip
    except Exception as exc:
        run.record(warehouse=warehouse, storage_options=storage_options, error=one_line(exc))
        raise
    run.record(warehouse=warehouse, storage_options=storage_options)
    return report


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def _time(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _score_one(
    reg: RegisteredScorer, run_id: str, warehouse: str, storage_options: Mapping[str, str] | None,
    backfill_since: dt.date | dt.datetime | None, on_progress: Progress | None,
) -> ScorerPass:  # fmt: skip
    done = ScorerPass(reg.name, reg.version)
    table = open_or_create(table_uri(warehouse, ASSESSMENTS.name), ASSESSMENTS, storage_options)
    lease = Lease(table, ASSESSMENTS.name, LEASE_SECONDS, app_id=lease_app_id(reg.version), holder_kind="scoring job")
    try:
        acquired = lease.acquire()
    except Exception as exc:
        if not is_commit_conflict(exc):
            raise
        acquired = False  # another process took it in the same instant
    if not acquired:
        done.skipped = f"another job process is scoring {reg.name!r} ({lease.holder()})"
        return done
    reached = None  # set only when the pass got through: a failed one keeps its chunks' watermarks
    try:
        reached = _score_leased(
            reg, run_id, warehouse, storage_options, backfill_since, on_progress, table, lease, done
        )
    finally:
        lease.release(_watermark_txns(reg, reached) if reached else ())
    done.watermark = reached
    return done


def _watermark_txns(reg: RegisteredScorer, watermark: dt.datetime) -> list[Transaction]:
    us = _us(watermark)
    return [Transaction(watermark_app_id(reg.version), us), Transaction(name_app_id(reg.name), us)]


def _score_leased(
    reg: RegisteredScorer, run_id: str, warehouse: str, storage_options: Mapping[str, str] | None,
    backfill_since: dt.date | dt.datetime | None, on_progress: Progress | None, table: DeltaTable, lease: Lease,
    done: ScorerPass,
) -> dt.datetime | None:  # fmt: skip
    """Score what is due; returns the watermark reached (None for a backfill or nothing read ever)."""
    stored = table.transaction_version(watermark_app_id(reg.version))
    lag = WATERMARK_LAG
    if stored is None:
        # A changed scorer continues from its name's watermark, without the lag: the traces just
        # before it are its predecessor's (a backfill gives them to this version).
        stored, lag = table.transaction_version(name_app_id(reg.name)), dt.timedelta(0)
    traces = scan_traces(
        reg.filter, start_time=backfill_since, warehouse=warehouse, storage_options=storage_options
    ).filter(pl.col("state") != "IN_PROGRESS")
    if backfill_since is None and stored is not None:
        traces = traces.filter(pl.col("ingested_at") > pl.lit(_time(stored) - lag))
    candidates = traces.collect()
    done.read = candidates.height
    marks: list[dt.datetime] = [] if stored is None else [_time(stored)]
    if candidates.height:
        marks.append(candidates["ingested_at"].max())
    todo = candidates.filter(in_sample(candidates["trace_id"], reg.sample_rate))
    todo = todo.join(_scored(reg, warehouse, storage_options), on="trace_id", how="anti").sort("ingested_at")
    if on_progress:
        on_progress(reg.name, 0, todo.height)
    for start in range(0, todo.height, CHUNK_TRACES):
        chunk = todo.slice(start, CHUNK_TRACES)
        progress = (lambda n, base=done.scored: on_progress(reg.name, base + n, todo.height)) if on_progress else None
        results = score_traces(chunk, [reg.scorer], warehouse=warehouse, storage_options=storage_options,
                               on_progress=progress)  # fmt: skip
        if not lease.renew():
            raise SpanlakeError(f"scorer {reg.name!r}: another job process took over its lease ({lease.holder()}); "
                                "this pass stopped before writing")  # fmt: skip
        reached: dt.datetime = chunk["ingested_at"].max()
        txns = _watermark_txns(reg, reached) if backfill_since is None else []
        if results.height:
            done.written += write_assessments(
                results, run_id=run_id, warehouse=warehouse, storage_options=storage_options,
                commit_properties=CommitProperties(app_transactions=txns) if txns else None,
            )  # fmt: skip
        done.scored += chunk.height
        if on_progress:
            on_progress(reg.name, done.scored, todo.height)
    return max(marks) if marks and backfill_since is None else None


def _scored(reg: RegisteredScorer, warehouse: str, storage_options: Mapping[str, str] | None) -> pl.DataFrame:
    """The traces this scorer version already has a result for (any run, any result)."""
    table = DeltaTable(table_uri(warehouse, ASSESSMENTS.name), storage_options=dict(storage_options or {}) or None)
    return pl.scan_delta(table).filter(pl.col("scorer_version") == reg.version).select("trace_id").unique().collect()
