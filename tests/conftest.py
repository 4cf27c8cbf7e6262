"""Shared fixtures: one real local Kafka broker for the whole test session.

The first run fetches Kafka's jars with Maven (SPANLAKE_CACHE_DIR, else ~/.cache/spanlake).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanlake.broker import BrokerInfo, free_port, start_broker, stop_broker
from spanlake.settings import Settings


@pytest.fixture(scope="session")
def kafka_cache_dir() -> Path:
    """Where Kafka's jars are cached between runs (outside the repo)."""
    return Path(os.environ.get("SPANLAKE_CACHE_DIR") or Path.home() / ".cache" / "spanlake")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, kafka_cache_dir: Path) -> Iterator[BrokerInfo]:
    """A running one-node KRaft broker on a free port, stopped after the session."""
    data_dir = tmp_path_factory.mktemp("broker")
    info = start_broker(port=free_port(), data_dir=data_dir, cache_dir=kafka_cache_dir)
    try:
        yield info
    finally:
        stop_broker(data_dir=data_dir)


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test (or earlier run on the same broker) uses."""
    test = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:80]
    return f"{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(broker: BrokerInfo, topic_name: str, tmp_path: Path) -> Settings:
    """Settings for one test: the session broker, a fresh topic, a fresh warehouse."""
    return Settings(
        warehouse=str(tmp_path / "warehouse"),
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic_name,
        group=f"ingest-{topic_name}",
        flush_seconds=0.5,
        session_timeout_ms=6_000,  # the broker's minimum: a SIGKILLed member leaves the group fast
    )
