"""The `spanlake` command: the roof of the layers, the one place that imports all of them.

Each command group is a module here (broker, ingest, traces, jobs, dashboard, gateway, demo); the options they share
(settings from env + flags, one-line errors) live in `options`. A command builds Settings
once and passes plain values down; heavy imports (Polars, Kafka, Delta) happen inside the
commands, so `spanlake --help` stays fast.
"""

from __future__ import annotations

import logging
import sys

import click

from spanlake.cli.broker import broker
from spanlake.cli.dashboard import dashboard
from spanlake.cli.demo import demo
from spanlake.cli.gateway import gateway
from spanlake.cli.ingest import generate, ingest, maintain, produce
from spanlake.cli.jobs import jobs
from spanlake.cli.options import OneLineErrors
from spanlake.cli.traces import traces


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (broker, generate, produce, ingest, maintain, traces, jobs, dashboard, gateway, demo):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="spanlake")
