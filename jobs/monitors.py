"""The monitors job (`spanlake jobs run monitors`): the `[[monitors]]` rules of the jobs config
(jobs.monitor_rules) evaluated at one time `now`, their transitions written to `alerts` and sent to
a webhook (jobs.webhook).

A run
1. takes the monitors lease on `alerts` (tables.lease): a second process at the same moment skips
   the run and says who holds it, so every transition is recorded (and notified) once;
2. reads the current state of every (rule, scope): its newest alerts row;
3. observes every rule over [now - window, now) (jobs.monitor_metrics: one read per source table);
4. decides transitions: a breach (observed past the threshold, on at least min_count rows) of a
   scope not FIRING enters FIRING; a FIRING scope without a breach enters RESOLVED, including one
   that is gone from the data (observed null). Nothing else is written: no repeated notification
   while a state holds;
5. POSTs each transition to its webhook (the rule's `webhook`, else `webhook_url`), and retries
   every earlier notification that failed (notified false) in the last RETRY_FOR, oldest first;
6. writes the new rows and the retried rows' notified = true in one Delta commit (a MERGE on
   alert_id), then releases the lease; a job_runs row records the run.

Delivery is at least once: a crash between a POST and the commit sends it again next run (the
payload's alert_id lets a receiver drop the copy); otherwise a delivered notification is never
sent twice, since its row says so before the lease is released.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

from spanlake.errors import ConfigError, SpanlakeError
from spanlake.jobs.job_runs import JobRun, one_line, utcnow
from spanlake.jobs.monitor_metrics import observe
from spanlake.jobs.monitor_rules import MonitorRule, load_monitors
from spanlake.jobs.webhook import deliver, payload
from spanlake.tables.delta import NO_CHECKPOINT, check_warehouse, is_commit_conflict, open_or_create, table_uri
from spanlake.tables.lease import Lease
from spanlake.tables.schemas import ALERTS

JOB = "monitors"
LEASE_APP_ID = f"spanlake-job:{JOB}:lease"
LEASE_SECONDS = 300.0  # a run takes seconds; a holder killed on another host blocks this long
RETRY_FOR = dt.timedelta(days=1)  # undelivered notifications older than this are given up (notified stays false)
FIRING, RESOLVED = "FIRING", "RESOLVED"


@dataclass
class MonitorRun:
    """What one run did."""

    run_id: str
    rules: int
    now: dt.datetime
    scopes: int = 0  # (rule, scope) pairs evaluated
    transitions: list[dict[str, Any]] = field(default_factory=list)  # the alerts rows written
    firing: int = 0  # (rule, scope) pairs FIRING after the run
    redelivered: int = 0  # earlier notifications delivered now
    rows_read: int = 0
    skipped: str | None = None  # why nothing was evaluated (another process holds the lease)


def run_monitors(
    rules: Sequence[MonitorRule] | Path,
    *,
    warehouse: str,
    storage_options: Mapping[str, str] | None = None,
    webhook_url: str | None = None,
    now: dt.datetime | None = None,
) -> MonitorRun:
    """Evaluate the rules (or those of a jobs config file) at `now` (default: the current time)."""
    job = JobRun(JOB)
    if now is not None and now.tzinfo is None:
        raise ConfigError("run_monitors: now= must be timezone-aware (UTC)")
    now = (now or utcnow()).astimezone(dt.timezone.utc)
    try:
        check_warehouse(warehouse)
        if isinstance(rules, Path):
            rules = load_monitors(rules)
        run = MonitorRun(job.run_id, len(rules), now)
        table = open_or_create(table_uri(warehouse, ALERTS.name), ALERTS, storage_options)
        lease = Lease(table, ALERTS.name, LEASE_SECONDS, app_id=LEASE_APP_ID, holder_kind="monitors job")
        if _acquire(lease):
            try:
                _evaluate(run, rules, table, lease, warehouse, storage_options, webhook_url)
            finally:
                lease.release()
        else:
            run.skipped = f"another monitors run holds the lease ({lease.holder()})"
        job.rows_read, job.rows_written = run.rows_read, len(run.transitions)
        job.watermark = {"now": now.isoformat(), "rules": run.rules, "scopes": run.scopes, "firing": run.firing,
                         "transitions": len(run.transitions), "redelivered": run.redelivered,
                         **({"skipped": run.skipped} if run.skipped else {})}  # fmt: skip
    except Exception as exc:
        job.record(warehouse=warehouse, storage_options=storage_options, error=one_line(exc))
        raise
    job.record(warehouse=warehouse, storage_options=storage_options)
    return run


def _acquire(lease: Lease) -> bool:
    try:
        return lease.acquire()
    except Exception as exc:
        if not is_commit_conflict(exc):
            raise
        return False  # another process took it in the same instant


def _evaluate(
    run: MonitorRun, rules: Sequence[MonitorRule], table: DeltaTable, lease: Lease, warehouse: str,
    storage_options: Mapping[str, str] | None, webhook_url: str | None,
) -> None:  # fmt: skip
    history = pl.scan_delta(table).collect()  # transitions only: small, and read after the lease commit
    observed, run.rows_read = observe(rules, run.now, warehouse, storage_options)
    run.scopes = observed.height
    new = _transitions(rules, _current(history), observed, run)
    urls = {r.name: r.webhook or webhook_url for r in rules}
    redelivered = _redeliver(history, run.now, urls, webhook_url)
    for row in new:
        url = urls[row["rule"]]
        row["notified"] = None if url is None else deliver(url, payload(row))
    run.transitions, run.redelivered = new, len(redelivered)
    if not new and not redelivered:
        return
    if not lease.renew():
        raise SpanlakeError(f"monitors: another process took over the lease ({lease.holder()}); nothing recorded")
    _commit(table, new, redelivered)


def _current(history: pl.DataFrame) -> pl.DataFrame:
    """(rule, scope, state): each pair's newest alerts row."""
    return (
        history.sort("since", "alert_id").group_by("rule", "scope").agg(pl.col("state").last())
        if history.height
        else pl.DataFrame(schema={"rule": pl.String, "scope": pl.String, "state": pl.String})
    )


def _transitions(
    rules: Sequence[MonitorRule], current: pl.DataFrame, observed: pl.DataFrame, run: MonitorRun
) -> list[dict[str, Any]]:
    by_name = {r.name: r for r in rules}
    firing = current.filter(pl.col("state") == FIRING, pl.col("rule").is_in(list(by_name)))
    both = observed.join(firing, on=["rule", "scope"], how="full", coalesce=True)
    out: list[dict[str, Any]] = []
    for row in both.iter_rows(named=True):
        rule = by_name[row["rule"]]
        value = row["observed"]
        rows = row["rows"] or 0
        breach = value is not None and rows >= rule.min_count and (
            value > rule.threshold if rule.comparison == ">" else value < rule.threshold
        )
        was_firing = row["state"] == FIRING
        run.firing += breach
        if breach == was_firing:
            continue
        start = run.now - dt.timedelta(seconds=rule.seconds)
        out.append({
            "alert_id": uuid.uuid4().hex, "rule": rule.name, "metric": rule.metric, "scope": row["scope"],
            "window": rule.window, "window_start": start, "window_end": run.now, "observed": value,
            "threshold": rule.threshold, "comparison": rule.comparison, "state": FIRING if breach else RESOLVED,
            "since": run.now, "notified": None, "run_id": run.run_id, "day": run.now.date(),
        })  # fmt: skip
    return sorted(out, key=lambda r: (r["rule"], r["scope"]))


def _redeliver(
    history: pl.DataFrame, now: dt.datetime, urls: Mapping[str, str | None], default: str | None
) -> list[dict[str, Any]]:
    """Earlier rows whose notification failed, delivered now: those that got through."""
    failed = history.filter(pl.col("notified").not_(), pl.col("since") >= pl.lit(now - RETRY_FOR)).sort("since")
    done = []
    for row in failed.iter_rows(named=True):
        url = urls.get(row["rule"], default)  # a rule since removed from the config: the default webhook
        if url is not None and deliver(url, payload(row)):
            done.append({**row, "notified": True})
    return done


def _commit(table: DeltaTable, new: list[dict[str, Any]], redelivered: list[dict[str, Any]]) -> None:
    """New transitions and the redelivered rows' notified flag: one commit."""
    import pyarrow as pa

    rows = pa.Table.from_pylist([*new, *redelivered], schema=ALERTS.schema)
    days = sorted({str(r["day"]) for r in [*new, *redelivered]})
    (
        table.merge(
            rows, predicate=f"t.day IN ({', '.join(repr(d) for d in days)}) AND t.alert_id = s.alert_id",
            source_alias="s", target_alias="t", post_commithook_properties=NO_CHECKPOINT,
        )  # fmt: skip
        .when_matched_update({"notified": "s.notified"})
        .when_not_matched_insert_all()
        .execute()
    )
