"""What every command group shares: settings from env + flags, one-line errors, quiet Kafka logs,
and how to tell the user the next command to run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from spanlake.errors import SpanlakeError
from spanlake.settings import Settings

# flag -> Settings field; a command takes the flags of the settings it uses.
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
            return func(settings=build_settings(**overrides), **kwargs)

        for f in reversed(fields):
            wrapper = _SETTING_FLAGS[f](wrapper)
        return wrapper

    return decorate


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `overrides`; a bad value is one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpanlakeError(f"invalid setting {where} (SPANLAKE_{where.upper()}): {first['msg']}") from None


class OneLineErrors(click.Group):
    """Turns expected errors into one line on stderr and exit code 1 (--debug: the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if debugging(ctx):
                raise
            message = str(exc) if isinstance(exc, SpanlakeError) else f"{type(exc).__name__}: {exc}"
            click.echo(f"spanlake: error: {message} (run with --debug for the traceback)", err=True)
            sys.exit(1)


def debugging(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return ctx is not None and bool(ctx.params.get("debug") or (ctx.find_root().obj or {}).get("debug"))


@contextlib.contextmanager
def quiet_kafka() -> Iterator[None]:
    """While connecting, kafka-python logs every failed attempt; the one error raised says it all."""
    if debugging():
        yield
        return
    kafka_logger = logging.getLogger("kafka")
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


def warehouse_flag(settings: Settings) -> str:
    """The --warehouse flag a next command needs to find these tables ("" for the default)."""
    default = settings.warehouse == Settings.model_fields["warehouse"].default
    return "" if default else f" --warehouse {settings.warehouse}"
