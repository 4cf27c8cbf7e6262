"""`spanlake demo`: local broker, production-like traffic, ingest, then a summary of what to run next."""

from __future__ import annotations

import sys
import time

import click

from spanlake.cli.broker import DEFAULT_BROKER_DIR
from spanlake.cli.ingest import run_ingest, run_workload
from spanlake.cli.options import spanlake_command, warehouse_flag, with_settings
from spanlake.settings import Settings


@click.command()
@click.option("--traces", type=click.IntRange(min=1), default=5000, show_default=True, help="Traces to generate.")
@click.option("--port", type=int, default=9092, show_default=True, help="Port of the local broker.")
@with_settings("warehouse", "topic")
def demo(settings: Settings, traces: int, port: int) -> None:
    """Everything at once: local broker, production-like traffic, ingest, then a summary."""
    from spanlake.broker import start_broker
    from spanlake.tables.delta import table_uri

    started = time.monotonic()
    click.echo(f"1/3 starting the local Kafka broker on port {port} (first run fetches Kafka with Maven) ...", err=True)
    info = start_broker(port=port, data_dir=DEFAULT_BROKER_DIR, cache_dir=settings.cache_dir)
    settings = settings.model_copy(update={"bootstrap_servers": info.bootstrap_servers})
    click.echo(f"2/3 producing {traces} traces through KafkaSpanExporter ...", err=True)
    run_workload(settings, traces=traces, rate=None, seed=0, partitions=3, encoding="otlp_proto")
    click.echo("3/3 ingesting into Delta ...", err=True)
    stats, seconds = run_ingest(settings, until_idle=True)
    command, where = spanlake_command(), warehouse_flag(settings)
    failed = _a_failed_trace(settings) or "TRACE_ID"
    click.echo(
        f"\nDone in {time.monotonic() - started:.0f}s: {stats.spans} spans of {traces} traces ingested in "
        f"{seconds:.1f}s ({stats.spans / max(seconds, 1e-9):,.0f} spans/s), {stats.dead_letters} dead letters.\n"
        f"The data is in {settings.warehouse} (Delta tables span_data, trace_info, ingest_errors, ingest_batches).\n"
        "Next:\n"
        f"  {command} traces search \"trace.status = 'ERROR'\" --limit 5{where}    (failed traces)\n"
        f"  {command} traces get {failed}{where}    (one of them as a span tree)\n"
        f"  {sys.executable} -c \"import polars as pl; "
        f"print(pl.read_delta('{table_uri(settings.warehouse, 'trace_info')}').group_by('service_name', 'state').len())\"\n"
        f"The broker keeps running (bootstrap servers {info.bootstrap_servers}); stop it with: {command} broker stop"
    )


def _a_failed_trace(settings: Settings) -> str | None:
    import polars as pl

    from spanlake.tables import scan

    ids = scan("trace_info", warehouse=settings.warehouse, storage_options=settings.storage_options)
    first = ids.filter(pl.col("state") == "ERROR").select("trace_id").head(1).collect()
    return first.item() if first.height else None
