"""The local Kafka broker, for real: fetch, start side by side, produce/consume, stop."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from spanlake.broker import (
    KAFKA_VERSION,
    BrokerInfo,
    broker_status,
    ensure_kafka_jars,
    free_port,
    start_broker,
    stop_broker,
)
from spanlake.errors import BrokerError


def round_trip(info: BrokerInfo, topic: str, payload: bytes) -> None:
    """Create `topic`, produce one message, consume it in a group and commit its offset."""
    with KafkaAdminClient(bootstrap_servers=info.bootstrap_servers) as admin:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
        assert topic in admin.list_topics()

    producer = KafkaProducer(bootstrap_servers=info.bootstrap_servers, acks="all")
    producer.send(topic, payload, key=b"k").get(timeout=30)
    producer.close()

    group = f"{topic}-group"
    consumer = KafkaConsumer(topic, bootstrap_servers=info.bootstrap_servers, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        records = []
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        assert [r.value for r in records] == [payload]
        consumer.commit()
    finally:
        consumer.close()

    with KafkaAdminClient(bootstrap_servers=info.bootstrap_servers) as admin:
        committed = admin.list_group_offsets({group: None})[group]
    assert committed[TopicPartition(topic, 0)].offset == 1


def test_session_broker_round_trip(broker: BrokerInfo, topic_name: str) -> None:
    assert broker.running
    assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
    round_trip(broker, topic_name, b"hello session broker")


def test_topics_auto_create(broker: BrokerInfo, topic_name: str) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    producer.send(topic_name, b"auto").get(timeout=30)
    producer.close()
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers) as admin:
        assert topic_name in admin.list_topics()


def test_second_broker_side_by_side(broker: BrokerInfo, tmp_path: Path, kafka_cache_dir: Path,
                                    topic_name: str) -> None:
    data_dir = tmp_path / "second"
    second = start_broker(port=free_port(), data_dir=data_dir, cache_dir=kafka_cache_dir)
    try:
        assert second.port != broker.port and second.pid != broker.pid
        assert broker_status(data_dir=data_dir) == second
        round_trip(second, topic_name, b"hello second broker")
        round_trip(broker, f"{topic_name}-s", b"hello first broker")
        # Two clusters, not one: a topic made on the second is unknown to the first.
        with KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers) as admin:
            assert topic_name not in admin.list_topics()
    finally:
        assert stop_broker(data_dir=data_dir) is True
    assert broker_status(data_dir=data_dir) is None
    assert stop_broker(data_dir=data_dir) is False
    assert broker_status(data_dir=broker.data_dir) == broker  # untouched


def test_restart_keeps_data_and_start_is_idempotent(tmp_path: Path, kafka_cache_dir: Path,
                                                    topic_name: str) -> None:
    data_dir = tmp_path / "restart"
    first = start_broker(port=free_port(), data_dir=data_dir, cache_dir=kafka_cache_dir)
    try:
        assert start_broker(port=first.port, data_dir=data_dir, cache_dir=kafka_cache_dir) == first
        with pytest.raises(BrokerError, match=f"already runs on port {first.port}"):
            start_broker(port=free_port(), data_dir=data_dir, cache_dir=kafka_cache_dir)
        round_trip(first, topic_name, b"before restart")
    finally:
        stop_broker(data_dir=data_dir)
    again = start_broker(port=free_port(), data_dir=data_dir, cache_dir=kafka_cache_dir)
    try:
        with KafkaAdminClient(bootstrap_servers=again.bootstrap_servers) as admin:
            assert topic_name in admin.list_topics()  # same storage, no reformat
    finally:
        stop_broker(data_dir=data_dir)


def test_crashed_broker_reports_not_running(tmp_path: Path, kafka_cache_dir: Path) -> None:
    data_dir = tmp_path / "crash"
    info = start_broker(port=free_port(), data_dir=data_dir, cache_dir=kafka_cache_dir)
    assert info.pid is not None
    os.kill(info.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (status := broker_status(data_dir=data_dir)) is not None and status.running:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status == BrokerInfo(data_dir=info.data_dir, port=info.port, pid=info.pid, running=False)
    assert stop_broker(data_dir=data_dir) is False
    assert broker_status(data_dir=data_dir) is None


def test_port_taken_by_session_broker(broker: BrokerInfo, tmp_path: Path, kafka_cache_dir: Path) -> None:
    with pytest.raises(BrokerError, match=f"port {broker.port} "):
        start_broker(port=broker.port, data_dir=tmp_path / "other", cache_dir=kafka_cache_dir)
    assert broker_status(data_dir=tmp_path / "other") is None


def test_port_taken_by_anything(tmp_path: Path, kafka_cache_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} "):
            start_broker(port=port, data_dir=tmp_path / "b", cache_dir=kafka_cache_dir)


def test_stop_and_status_when_nothing_ran(tmp_path: Path) -> None:
    assert stop_broker(data_dir=tmp_path) is False
    assert broker_status(data_dir=tmp_path) is None


def test_interrupted_fetch_is_redone(tmp_path: Path) -> None:
    half = tmp_path / f"kafka-{KAFKA_VERSION}"
    half.mkdir()
    (half / "leftover.jar").write_bytes(b"truncated")  # no marker: the fetch never finished
    jars = ensure_kafka_jars(tmp_path)
    assert jars == half
    assert (jars / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert not (jars / "leftover.jar").exists()
    assert ensure_kafka_jars(tmp_path) == jars  # cached now: no second fetch
    assert [p.name for p in tmp_path.iterdir()] == [half.name]  # no staging dir left


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BrokerError, match="mvn"):
        ensure_kafka_jars(tmp_path / "cache")
