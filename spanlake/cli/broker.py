"""`spanlake broker`: a local Apache Kafka broker (KRaft, one node) for the demo, tests and dev."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from spanlake.cli.options import build_settings

DEFAULT_BROKER_DIR = Path(".spanlake/kafka")


@click.group()
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

    click.echo(f"starting Kafka broker on 127.0.0.1:{port} (data in {data_dir}) ...", err=True)
    info = start_broker(port=port, data_dir=data_dir, cache_dir=build_settings().cache_dir)
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
