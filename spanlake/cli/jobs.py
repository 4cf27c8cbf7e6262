"""`spanlake jobs run [scorers|costs|monitors|all]`: the batch jobs, once or every N seconds."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spanlake.cli.options import spanlake_command, warehouse_flag, with_settings
from spanlake.settings import Settings

if TYPE_CHECKING:
    from spanlake.jobs.production import PassReport


@click.group()
def jobs() -> None:
    """Batch jobs over the warehouse: production scoring, cost tables and monitors."""


@jobs.command()
@click.argument("job", type=click.Choice(["scorers", "costs", "monitors", "all"]), default="all")
@click.option("--every", type=click.FloatRange(min=0, min_open=True), help="Run again every SECONDS (until Ctrl-C).")
@click.option(
    "--backfill", is_flag=True, help="Score past traces (request_time from --since) for the scorers as they are now."
)
@click.option(
    "--reprice", is_flag=True, help="Re-price costs from --since on with the current prices (and SPANLAKE_PRICES_FILE)."
)
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d"]), help="With --backfill or --reprice: the first day (UTC) to redo."
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Jobs config file: registered scorers and monitor rules [env SPANLAKE_SCORERS_FILE].",
)
@with_settings("warehouse")
def run(settings: Settings, job: str, every: float | None, backfill: bool, reprice: bool,
        since: dt.datetime | None, config: Path | None) -> None:  # fmt: skip
    """Run JOB once (scorers, costs, monitors, or all three in that order), or every SECONDS with --every."""
    if (backfill or reprice) != (since is not None) or (backfill and reprice):
        raise click.UsageError("--since goes with one of --backfill or --reprice: --backfill --since 2025-06-01")
    if (backfill or reprice) and every:
        raise click.UsageError("--backfill and --reprice are one pass; leave out --every")
    if backfill and job in ("costs", "monitors") or reprice and job in ("scorers", "monitors"):
        raise click.UsageError(f"--{'backfill' if backfill else 'reprice'} does not apply to the {job} job")
    path = config or settings.scorers_file
    day = since.date() if since else None
    passes: list[Callable[[], str]] = []
    if job in ("scorers", "all"):
        passes.append(_unless_unconfigured(job, lambda: _scorers_pass(settings, path, day if backfill else None)))
    if job in ("costs", "all"):
        passes.append(lambda: costs_pass(settings, day if reprice else None))
    if job in ("monitors", "all"):
        passes.append(_unless_unconfigured(job, lambda: monitors_pass(settings, path)))
    if every is None:
        for one in passes:
            click.echo(one())
        return
    # SIGINT / SIGTERM end the loop once the pass under way is done: it never leaves a lease held.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        for one in passes:
            try:
                click.echo(one())
            except Exception as exc:  # recorded in job_runs; the next pass may succeed
                click.echo(f"spanlake: error: {_one_line(exc)} (next pass in {every:g}s)", err=True)
        stop.wait(every)
    click.echo("stopped", err=True)


def _scorers_pass(settings: Settings, path: Path, since: dt.date | None) -> str:
    report = run_scorers_pass(settings, path, since)
    skipped = [s.skipped for s in report.scorers if s.skipped]
    scored = sum(s.scored for s in report.scorers)
    what = f"backfill since {since}" if since else "scorers"
    line = (
        f"{what}: {len(report.scorers)} scorers scored {scored} traces and wrote {report.rows_written} assessments "
        f"into {settings.warehouse} (job run {report.run_id})"
    )
    if skipped:
        line += f"; skipped {len(skipped)}: {'; '.join(skipped)}"
    return (
        line + f'; search them: {spanlake_command()} traces search "{example_filter(report)}"{warehouse_flag(settings)}'
    )


def costs_pass(settings: Settings, since: dt.date | None) -> str:
    from spanlake.jobs.costs import run_costs
    from spanlake.jobs.prices import PriceList

    done = run_costs(warehouse=settings.warehouse, storage_options=settings.storage_options, reprice_since=since,
                     prices=PriceList.from_settings(settings))  # fmt: skip
    what = f"costs re-priced since {since}" if since else "costs"
    return (
        f"{what}: read {done.spans_read} spans, wrote {done.rows_written} rows and {done.windows_recomputed} "
        f"rollup windows into {settings.warehouse}"
    )


def _unless_unconfigured(job: str, one: Callable[[], str]) -> Callable[[], str]:
    """For `all`, a job the config registers nothing for says so in one line instead of failing."""
    from spanlake.errors import NothingConfigured

    def run() -> str:
        try:
            return one()
        except NothingConfigured as exc:
            if job != "all":
                raise
            return f"skipped: {exc}"

    return run


def monitors_pass(settings: Settings, path: Path) -> str:
    """One evaluation of the monitor rules in `path`, as a line saying what happened and how to look."""
    from spanlake.jobs.monitors import run_monitors
    from spanlake.tables.delta import table_uri

    done = run_monitors(path, warehouse=settings.warehouse, storage_options=settings.storage_options,
                        webhook_url=settings.alert_webhook_url)  # fmt: skip
    if done.skipped:
        return f"monitors: {done.rules} rules not evaluated: {done.skipped}"
    fired = sum(t["state"] == "FIRING" for t in done.transitions)
    redelivered = f", {done.redelivered} earlier notifications delivered" if done.redelivered else ""
    alerts = table_uri(settings.warehouse, "alerts")
    return (
        f"monitors: {done.rules} rules over {done.scopes} scopes: {len(done.transitions)} transitions "
        f"({fired} firing, {len(done.transitions) - fired} resolved){redelivered}, {done.firing} firing now "
        f"(job run {done.run_id}); look: {sys.executable} -c \"import polars as pl; "
        f"print(pl.read_delta('{alerts}').sort('since').tail(10))\""
    )


def run_scorers_pass(settings: Settings, path: Path, since: dt.date | None) -> PassReport:
    """One pass of the scorers registered in `path`, with a progress bar per scorer on a terminal."""
    from spanlake.jobs.production import run_scorers

    with _Progress() as progress:
        return run_scorers(path, warehouse=settings.warehouse, storage_options=settings.storage_options,
                           backfill_since=since, on_progress=progress)  # fmt: skip


def example_filter(report: PassReport) -> str:
    """A search for what the pass found: the first scorer's positive verdicts."""
    name = report.scorers[0].name if report.scorers else "SCORER"
    return f"feedback.{name} = 'yes'"


def _one_line(exc: Exception) -> str:
    from spanlake.jobs.job_runs import one_line

    return one_line(exc)


class _Progress:
    """A progress bar per scorer on stderr, when stderr is a terminal."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.name: str | None = None
        self.shown = 0

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def __call__(self, name: str, done: int, total: int) -> None:
        if not sys.stderr.isatty() or total == 0:
            return
        if name != self.name:
            self._close()
            self.name, self.shown = name, 0
            self.bar = click.progressbar(length=total, label=f"scoring {name}", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
