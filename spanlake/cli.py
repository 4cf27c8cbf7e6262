"""The `spanlake` command. Each subcommand builds Settings once (SPANLAKE_* environment, then
flags) and passes plain values down. Errors print as one line; --debug shows the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from spanlake.errors import SpanlakeError
from spanlake.query.commands import traces  # click only: importing it stays cheap
from spanlake.settings import Settings
from spanlake.tables.schemas import spec

if TYPE_CHECKING:
    from spanlake.ingest.service import IngestStats

DEFAULT_BROKER_DIR = Path(".spanlake/kafka")

# flag -> Settings field; a subcommand takes the flags of the settings it uses.
_SETTING_FLAGS = {
    "warehouse": click.option("--warehouse", help="Warehouse root, local path or s3:// URI [env SPANLAKE_WAREHOUSE]."),
    "bootstrap_servers": click.option(
        "--bootstrap-servers", help="Kafka bootstrap servers [env SPANLAKE_BOOTSTRAP_SERVERS]."
    ),
    "topic": click.option("--topic", help="Kafka topic of OTLP spans [env SPANLAKE_TOPIC]."),
}


def with_settings(*fields: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the flags for `fields` and hand the command a `settings` built from env + flags."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            overrides = {f: kwargs.pop(f) for f in fields if kwargs.get(f) is not None}
            for f in fields:
                kwargs.pop(f, None)
            try:
                settings = Settings(**overrides)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise SpanlakeError(f"invalid setting {where} (SPANLAKE_{where.upper()}): {first['msg']}") from None
            return func(settings=settings, **kwargs)

        for f in reversed(fields):
            wrapper = _SETTING_FLAGS[f](wrapper)
        return wrapper

    return decorate


class _Cli(click.Group):
    """Turns expected errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug") or (ctx.obj or {}).get("debug"):
                raise
            message = str(exc) if isinstance(exc, SpanlakeError) else f"{type(exc).__name__}: {exc}"
            click.echo(f"spanlake: error: {message} (run with --debug for the traceback)", err=True)
            sys.exit(1)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="spanlake")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """spanlake: OTLP spans from Kafka, exactly once into Delta Lake tables."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        # kafka-python warns about every transient state (NotCoordinatorError while a fresh
        # broker elects group coordinators, slow IO-loop tasks); spanlake reports what matters.
        logging.getLogger("kafka").setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_kafka() -> Iterator[None]:
    """While connecting, kafka-python logs every failed attempt; the one error raised says it all."""
    kafka_logger = logging.getLogger("kafka")
    ctx = click.get_current_context(silent=True)
    if ctx is not None and (ctx.find_root().obj or {}).get("debug"):
        yield
        return
    level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        kafka_logger.setLevel(level)


def spanlake_command() -> str:
    """How to run spanlake again from here: `spanlake` when on PATH, else its real path."""
    script = Path(sys.executable).parent / "spanlake"
    on_path = shutil.which("spanlake")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "spanlake"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _warehouse_flag(settings: Settings) -> str:
    """The --warehouse flag a next command needs to find these tables ("" for the default)."""
    default = settings.warehouse == Settings.model_fields["warehouse"].default
    return "" if default else f" --warehouse {settings.warehouse}"


# --- broker -----------------------------------------------------------------------------


@cli.group()
def broker() -> None:
    """Run a local Apache Kafka broker (KRaft, one node) fetched from Maven Central."""


_data_dir = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=DEFAULT_BROKER_DIR, show_default=True,
    help="The broker's own directory (config, logs, data).",
)  # fmt: skip


@broker.command("start")
@click.option("--port", type=int, default=9092, show_default=True, help="PLAINTEXT listener port on 127.0.0.1.")
@_data_dir
def broker_start(port: int, data_dir: Path) -> None:
    """Fetch Kafka (once) and start a broker; returns when it answers metadata requests."""
    from spanlake.broker import start_broker

    settings = Settings()
    click.echo(f"starting Kafka broker on 127.0.0.1:{port} (data in {data_dir}) ...", err=True)
    info = start_broker(port=port, data_dir=data_dir, cache_dir=settings.cache_dir)
    click.echo(f"broker running: bootstrap servers {info.bootstrap_servers} (pid {info.pid})")


@broker.command("stop")
@_data_dir
def broker_stop(data_dir: Path) -> None:
    """Stop the broker that runs from DATA_DIR."""
    from spanlake.broker import stop_broker

    click.echo("broker stopped" if stop_broker(data_dir=data_dir) else f"no broker running from {data_dir}")


@broker.command("status")
@_data_dir
def broker_status(data_dir: Path) -> None:
    """Say whether a broker runs from DATA_DIR (exit code 3 when it does not)."""
    from spanlake.broker import broker_status as status

    info = status(data_dir=data_dir)
    if info is None or not info.running:
        click.echo(f"no broker running from {data_dir}")
        sys.exit(3)
    click.echo(f"running: bootstrap servers {info.bootstrap_servers} (pid {info.pid})")


# --- producing --------------------------------------------------------------------------


@cli.command()
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

    from spanlake.ingest.exporter import KafkaSpanExporter
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


@cli.command()
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


# --- ingest -----------------------------------------------------------------------------


@cli.command()
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
               f"search them with: {spanlake_command()} traces search{_warehouse_flag(settings)}")  # fmt: skip
    return stats, seconds


@cli.command()
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable; default: all).")
@click.option("--day", "days", multiple=True, type=click.DateTime(["%Y-%m-%d"]), help="Only this day (repeatable).")
@click.option("--retention-hours", type=float, help="Vacuum files unused this long [env SPANLAKE_RETENTION_HOURS, default 168].")
@with_settings("warehouse")
def maintain(settings: Settings, tables: tuple[str, ...], days: tuple, retention_hours: float | None) -> None:
    """Compact small files, order files for pruning, vacuum, and checkpoint the Delta logs."""
    from spanlake.tables.maintenance import maintain as run_maintenance

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


# --- the demo ---------------------------------------------------------------------------


@cli.command()
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
    command, where = spanlake_command(), _warehouse_flag(settings)
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


cli.add_command(traces)


def main() -> None:
    cli(prog_name="spanlake")
