"""`spanlake gateway`: the OTLP/HTTP receiver (spanlake.ingest.gateway) in the foreground."""

from __future__ import annotations

import click

from spanlake.cli.options import with_settings
from spanlake.settings import Settings


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=4318, show_default=True, help="Port (OTLP/HTTP's own).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@with_settings("bootstrap_servers", "topic")
def gateway(settings: Settings, port: int, host: str) -> None:
    """Receive OTLP/HTTP traces (POST /v1/traces, protobuf or JSON, gzip) and produce them to Kafka.

    Point any OpenTelemetry SDK at it: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://HOST:PORT/v1/traces.
    It answers 200 only once Kafka acknowledged the spans, and 503 with Retry-After while Kafka is down.
    """
    import uvicorn

    from spanlake.ingest.gateway import GatewayConfig, create_app

    config = GatewayConfig(
        bootstrap_servers=settings.bootstrap_servers, topic=settings.topic,
        max_body_bytes=settings.gateway_max_body_bytes, send_timeout_seconds=settings.gateway_send_timeout_seconds,
        retry_after_seconds=settings.gateway_retry_after_seconds,
    )  # fmt: skip
    click.echo(
        f"gateway on http://{host}:{port}/v1/traces -> Kafka {settings.bootstrap_servers} topic {settings.topic!r}; "
        f"point an OTel SDK at it with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://{host}:{port}/v1/traces "
        f"(health: http://{host}:{port}/health; Ctrl-C stops it)", err=True,
    )  # fmt: skip
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
