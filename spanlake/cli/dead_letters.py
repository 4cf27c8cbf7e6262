"""`spanlake dead-letters list|replay`: what ingest could not take, and taking it once the cause is fixed."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from typing import TYPE_CHECKING

import click

from spanlake.cli.options import spanlake_command, warehouse_flag, with_settings
from spanlake.settings import Settings

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar


class Moment(click.ParamType):
    """A UTC date or timestamp: 2026-01-31, 2026-01-31T12:00, 2026-01-31 12:00:00+02:00."""

    name = "DATE|TIMESTAMP"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date or timestamp (2026-01-31 or 2026-01-31T12:00:00)", param, ctx)
        return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


@click.group("dead-letters")
def dead_letters() -> None:
    """Dead letters (table ingest_errors): messages ingest could not take, with the reason."""


@dead_letters.command("list")
@with_settings("warehouse", "topic")
def list_(settings: Settings) -> None:
    """Count the topic's dead letters by state, stage and reason."""
    from spanlake.ingest.replay import summary

    rows = summary(settings.warehouse, topic=settings.topic, storage_options=settings.storage_options)
    if rows.is_empty():
        click.echo(f"no dead letters of topic {settings.topic!r} in {settings.warehouse}")
        return
    for r in rows.iter_rows(named=True):
        click.echo(f"{r['letters']:>8}  {r['state']:<10}  {r['stage']:<6}  {r['reason']}  "
                   f"({r['first']:%Y-%m-%d %H:%M} .. {r['last']:%Y-%m-%d %H:%M} UTC)")  # fmt: skip
    pending = int(rows.filter(rows["state"] == "pending")["letters"].sum())
    if pending:
        click.echo(f"{pending} pending; once the cause is fixed: {spanlake_command()} dead-letters replay"
                   f"{warehouse_flag(settings)}")  # fmt: skip


@dead_letters.command()
@click.option("--since", type=Moment(), help="Only letters dead-lettered from then on (UTC unless an offset is given).")
@click.option("--filter", "contains", metavar="TEXT", help="Only letters whose reason contains TEXT (case-insensitive).")
@with_settings("warehouse", "topic")
def replay(settings: Settings, since: dt.datetime | None, contains: str | None) -> None:
    """Ingest the topic's dead letters again, exactly once, now that the cause is fixed.

    Takes every dead letter that kept its message's bytes (a message that did not decode or whose
    rows could not be built) and that no replay took before, through the same decoding and commit
    path as ingest; the letters are marked in table dead_letter_replays. A letter that fails again
    stays dead with its new reason, for a later replay. A replay interrupted by a crash is finished
    by the next one; live ingest can run meanwhile.
    """
    from spanlake.ingest.masking import Masker
    from spanlake.ingest.replay import DeadLetterReplay

    replayer = DeadLetterReplay(
        settings.warehouse, topic=settings.topic, storage_options=settings.storage_options,
        masker=Masker.from_settings(settings.mask, settings.mask_rules, settings.mask_dead_letters),
        crash_at=settings.crash_at or None, flush_spans=settings.flush_spans, flush_bytes=settings.flush_bytes,
    )  # fmt: skip
    with contextlib.ExitStack() as stack:
        bar: list[ProgressBar[int]] = []  # shown once the replay knows how many letters it takes

        def start(letters: int) -> None:
            bar.append(stack.enter_context(click.progressbar(length=letters, label="replaying", file=sys.stderr)))

        report = replayer.run(since=since, contains=contains, on_start=start, on_progress=lambda n: bar[0].update(n))
    flag = warehouse_flag(settings)
    if not (report.replayed or report.failing):
        click.echo(f"no dead letters of topic {settings.topic!r} to replay; see them with: "
                   f"{spanlake_command()} dead-letters list{flag}")  # fmt: skip
        return
    resumed = f" (finishing {len(report.resumed)} interrupted replay(s))" if report.resumed else ""
    click.echo(
        f"replayed {report.replayed} dead letters{resumed}: {report.spans} spans written"
        f" ({report.duplicates} already stored, {report.rejected_spans} rejected), {report.failing} still failing; "
        + (f"see why with: {spanlake_command()} dead-letters list{flag}" if report.failing
           else f"search them with: {spanlake_command()} traces search{flag}")
    )  # fmt: skip
