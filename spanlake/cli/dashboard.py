"""`spanlake dashboard`: the Streamlit monitoring app on the warehouse, in the foreground."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from spanlake.cli.options import with_settings
from spanlake.settings import Settings


def app_path() -> Path:
    import spanlake.dashboard

    return Path(spanlake.dashboard.__file__).parent / "app.py"


def streamlit_command(port: int, address: str) -> list[str]:
    """`streamlit run` on the app: headless (no browser opened), no usage statistics sent. `-P`: the
    current directory is not put on sys.path, where a checkout's top-level `spanlake/` folder
    would shadow the installed package (its dashboard is mapped from `dashboard/`)."""
    return [
        sys.executable, "-P", "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port), "--server.address", address, "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="Port to serve on.")
@click.option("--address", default="localhost", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@with_settings("warehouse")
def dashboard(settings: Settings, port: int, address: str) -> None:
    """Serve the monitoring dashboard on the warehouse (Ctrl-C stops it)."""
    from spanlake.tables.delta import check_warehouse

    check_warehouse(settings.warehouse)
    env = {**os.environ, "SPANLAKE_WAREHOUSE": settings.warehouse}
    click.echo(f"dashboard on the warehouse at {settings.warehouse}: open http://{address}:{port} (Ctrl-C stops it)",
               err=True)  # fmt: skip
    process = subprocess.Popen(streamlit_command(port, address), env=env)
    # `docker compose stop` (or systemd) signals this process alone: pass SIGTERM on, so Streamlit
    # stops with it instead of outliving it (as a container's PID 1, an unhandled SIGTERM is ignored).
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached Streamlit too, as one process group
        code = process.wait()
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise SystemExit(code)
