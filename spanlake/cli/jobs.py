"""`spanlake jobs run [scorers|all]`: the batch jobs, once or every N seconds."""

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
    """Batch jobs over the warehouse: production scoring (and, next, cost roll-ups)."""


@jobs.command()
@click.argument("job", type=click.Choice(["scorers", "all"]), default="all")
@click.option("--every", type=click.FloatRange(min=0, min_open=True), help="Run again every SECONDS (until Ctrl-C).")
@click.option(
    "--backfill", is_flag=True, help="Score past traces (request_time from --since) for the scorers as they are now."
)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="With --backfill: the first day (UTC) to score.")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Registered scorers file [env SPANLAKE_SCORERS_FILE].",
)
@with_settings("warehouse")
def run(settings: Settings, job: str, every: float | None, backfill: bool, since: dt.datetime | None,
        config: Path | None) -> None:  # fmt: skip
    """Run JOB once (scorers, or all jobs), or every SECONDS with --every."""
    if backfill != (since is not None):
        raise click.UsageError("--backfill and --since go together: --backfill --since 2025-06-01")
    if backfill and every:
        raise click.UsageError("--backfill is one pass; leave out --every")
    path = config or settings.scorers_file
    # `all` is every job that exists: today the scorers.
    passes: list[Callable[[], str]] = [lambda: _scorers_pass(settings, path, since.date() if since else None)]
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
