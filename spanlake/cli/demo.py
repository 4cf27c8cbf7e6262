"""`spanlake demo`: local broker, production-like traffic, ingest, the example scorers, costs and
monitors, then a summary of what to run next."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from spanlake.cli.broker import DEFAULT_BROKER_DIR
from spanlake.cli.ingest import run_ingest, run_workload
from spanlake.cli.jobs import costs_pass, example_filter, monitors_pass, run_scorers_pass
from spanlake.cli.options import spanlake_command, warehouse_flag, with_settings
from spanlake.errors import NothingConfigured
from spanlake.settings import Settings


@click.command()
@click.option("--traces", type=click.IntRange(min=1), default=5000, show_default=True, help="Traces to generate.")
@click.option("--port", type=int, default=9092, show_default=True, help="Port of the local broker.")
@click.option(
    "--scorers", type=click.Path(dir_okay=False, path_type=Path), default=Path("examples/scorers.toml"),
    show_default=True, help="Jobs config (scorers, monitors) to run on the demo data (skipped when the file is missing).",
)  # fmt: skip
@with_settings("warehouse", "topic")
def demo(settings: Settings, traces: int, port: int, scorers: Path) -> None:
    """Everything at once: local broker, production-like traffic, ingest, scoring, costs, monitors, then a summary."""
    from spanlake.broker import start_broker
    from spanlake.tables.delta import table_uri

    started = time.monotonic()
    click.echo(f"1/4 starting the local Kafka broker on port {port} (first run fetches Kafka with Maven) ...", err=True)
    info = start_broker(port=port, data_dir=DEFAULT_BROKER_DIR, cache_dir=settings.cache_dir)
    settings = settings.model_copy(update={"bootstrap_servers": info.bootstrap_servers})
    click.echo(f"2/4 producing {traces} traces through KafkaSpanExporter ...", err=True)
    run_workload(settings, traces=traces, rate=None, seed=0, partitions=3, encoding="otlp_proto")
    click.echo("3/4 ingesting into Delta ...", err=True)
    stats, seconds = run_ingest(settings, until_idle=True)
    command, where = spanlake_command(), warehouse_flag(settings)
    if scorers.exists():
        click.echo(f"4/4 scoring the traces with the scorers registered in {scorers} ...", err=True)
        report = run_scorers_pass(settings, scorers, None)
        scored = (
            f"Scoring: {report.rows_written} assessments written by {len(report.scorers)} scorers into the assessments "
            f"table (job run {report.run_id} in job_runs); "
            f'search them: {command} traces search "{example_filter(report)}" --limit 5{where}\n'
        )
    else:
        scored = (
            f"No scorers file at {scorers}: scoring skipped (run {command} jobs run scorers --config FILE{where}).\n"
        )
    click.echo("    costs and monitors ...", err=True)
    scored += costs_pass(settings, None) + "\n"
    if scorers.exists():
        try:
            scored += monitors_pass(settings, scorers) + "\n"
        except NothingConfigured as exc:
            scored += f"Monitors skipped: {exc}\n"
    failed = _a_failed_trace(settings) or "TRACE_ID"
    click.echo(
        f"\nDone in {time.monotonic() - started:.0f}s: {stats.spans} spans of {traces} traces ingested in "
        f"{seconds:.1f}s ({stats.spans / max(seconds, 1e-9):,.0f} spans/s), {stats.dead_letters} dead letters.\n"
        f"The data is in {settings.warehouse} (Delta tables span_data, trace_info, ingest_errors, ingest_batches).\n"
        f"{scored}"
        "Next:\n"
        f"  {command} traces search \"trace.status = 'ERROR'\" --limit 5{where}    (failed traces)\n"
        f"  {command} traces get {failed}{where}    (one of them as a span tree)\n"
        f'  {sys.executable} -c "import polars as pl; '
        f"print(pl.read_delta('{table_uri(settings.warehouse, 'trace_info')}').group_by('service_name', 'state').len())\"\n"
        f"The broker keeps running (bootstrap servers {info.bootstrap_servers}); stop it with: {command} broker stop"
    )


def _a_failed_trace(settings: Settings) -> str | None:
    import polars as pl

    from spanlake.tables import scan

    ids = scan("trace_info", warehouse=settings.warehouse, storage_options=settings.storage_options)
    first = ids.filter(pl.col("state") == "ERROR").select("trace_id").head(1).collect()
    return first.item() if first.height else None
