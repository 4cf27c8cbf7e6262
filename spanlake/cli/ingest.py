"""Producing and ingesting: `spanlake generate`, `produce`, `ingest` and `maintain`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spanlake.cli.options import quiet_kafka, spanlake_command, warehouse_flag, with_settings
from spanlake.settings import Settings

if TYPE_CHECKING:
    from spanlake.ingest.service import IngestStats


@click.command()
@click.option("--traces", type=click.IntRange(min=1), required=True, help="How many traces to produce.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Traces per second (default: as fast as possible).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed gives the same traces.")
@click.option("--partitions", type=click.IntRange(min=1), default=3, show_default=True, help="Partitions if the topic is created.")
@click.option("--encoding", type=click.Choice(["otlp_proto", "otlp_json"]), default="otlp_proto", show_default=True)
@with_settings("bootstrap_servers", "topic")
def generate(settings: Settings, traces: int, rate: float | None, seed: int, partitions: int, encoding: str) -> None:
    """Produce a synthetic, production-like LLM workload through KafkaSpanExporter."""
    run_workload(settings, traces=traces, rate=rate, seed=seed, partitions=partitions, encoding=encoding)


def run_workload(settings: Settings, *, traces: int, rate: float | None, seed: int, partitions: int, encoding: str) -> None:
    import datetime as dt

    from spanlake.exporter import KafkaSpanExporter
    from spanlake.ingest.producer import ensure_topic
    from spanlake.ingest.workload import Workload

    if ensure_topic(settings.bootstrap_servers, settings.topic, partitions=partitions):
        click.echo(f"created topic {settings.topic!r} with {partitions} partitions", err=True)
    exporter = KafkaSpanExporter(settings.bootstrap_servers, settings.topic, encoding=encoding)  # type: ignore[arg-type]
    start = dt.datetime.now(dt.timezone.utc) if rate else None
    with click.progressbar(length=traces, label="producing traces", file=sys.stderr) as bar:
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            bar.update(n - done)
            done = n

        Workload(exporter, seed=seed, start=start).run(traces, rate=rate, on_progress=progress)
        bar.update(traces - done)
    click.echo(f"produced {traces} traces to {settings.topic!r}")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_settings("bootstrap_servers", "topic")
def produce(settings: Settings, files: tuple[Path, ...]) -> None:
    """Send OTLP files (.pb protobuf or .json OTLP JSON ExportTraceServiceRequest) as they are."""
    from spanlake.ingest.producer import produce_files

    sent = produce_files(
        files,
        bootstrap_servers=settings.bootstrap_servers,
        topic=settings.topic,
        on_sent=lambda path, n: click.echo(f"sent {path} ({n} spans)", err=True),
    )
    click.echo(f"produced {sent} messages to {settings.topic!r}")


@click.command()
@click.option("--group", help="Consumer group [env SPANLAKE_GROUP, default spanlake-ingest].")
@click.option("--until-idle", is_flag=True, help="Exit once caught up with the topic (batch runs, tests).")
@with_settings("warehouse", "bootstrap_servers", "topic")
def ingest(settings: Settings, group: str | None, until_idle: bool) -> None:
    """Consume OTLP spans and commit them exactly once to the Delta tables."""
    if group:
        settings = settings.model_copy(update={"group": group})
    run_ingest(settings, until_idle=until_idle)


def run_ingest(settings: Settings, *, until_idle: bool) -> tuple[IngestStats, float]:
    """Ingest and say what happened; returns the stats and the seconds it took."""
    from spanlake.ingest.service import SpanIngestor

    started = time.monotonic()
    with quiet_kafka():
        ingestor = SpanIngestor(
            settings,
            until_idle=until_idle,
            crash_at=settings.crash_at or None,
            on_batch=lambda r, s: click.echo(
                f"committed {r.spans} spans from {r.messages} messages ({r.dead_letters} dead letters); "
                f"total {s.spans} spans",
                err=True,
            ),
        )
    stats = ingestor.run()
    seconds = time.monotonic() - started
    click.echo(f"ingested {stats.spans} spans from {stats.messages} messages in {stats.batches} batches "
               f"({stats.dead_letters} dead letters) into {settings.warehouse} in {seconds:.1f}s; "
               f"search them with: {spanlake_command()} traces search{warehouse_flag(settings)}")  # fmt: skip
    return stats, seconds


@click.command()
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable; default: all).")
@click.option("--day", "days", multiple=True, type=click.DateTime(["%Y-%m-%d"]), help="Only this day (repeatable).")
@click.option("--retention-hours", type=float, help="Vacuum files unused this long [env SPANLAKE_RETENTION_HOURS, default 168].")
@with_settings("warehouse")
def maintain(settings: Settings, tables: tuple[str, ...], days: tuple, retention_hours: float | None) -> None:
    """Compact small files, order files for pruning, vacuum, and checkpoint the Delta logs."""
    from spanlake.tables.maintenance import maintain as run_maintenance
    from spanlake.tables.schemas import spec

    for name in tables:
        spec(name)  # an unknown table is a one-line error naming the valid ones
    report = run_maintenance(
        settings.warehouse,
        storage_options=settings.storage_options,
        retention_hours=retention_hours if retention_hours is not None else settings.retention_hours,
        tables=list(tables) or None,
        days=[d.date() for d in days] or None,
    )
    for line in report.lines():
        click.echo(line)
