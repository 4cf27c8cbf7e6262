"""Producer-side helpers: create the topic, and send OTLP files to it as they are."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from spanlake.encoding import CONTENT_TYPE
from spanlake.errors import SpanlakeError
from spanlake.ingest.otlp import Encoding, decode

FILE_ENCODINGS: dict[str, Encoding] = {".pb": "otlp_proto", ".json": "otlp_json"}


def ensure_topic(bootstrap_servers: str, topic: str, *, partitions: int = 3) -> bool:
    """Create `topic` if it does not exist; returns True when it was created."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), client_id="spanlake-admin")
    except KafkaError as exc:
        raise SpanlakeError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        if topic in admin.list_topics():
            return False
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def file_encoding(path: Path) -> Encoding:
    try:
        return FILE_ENCODINGS[path.suffix.lower()]
    except KeyError:
        raise SpanlakeError(f"{path}: unknown extension {path.suffix!r}; expected .pb (OTLP protobuf) or .json (OTLP JSON)") from None


def read_otlp_file(path: Path) -> tuple[bytes, Encoding, bytes | None, int]:
    """A file's bytes, encoding, key (its first trace id) and span count; a bad file fails
    here, naming the file, instead of later as a dead letter."""
    encoding = file_encoding(path)
    try:
        value = path.read_bytes()
    except OSError as exc:
        raise SpanlakeError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        spans, rejects = decode(value, encoding)
    except SpanlakeError as exc:
        raise SpanlakeError(f"{path}: {exc}") from exc
    return value, encoding, spans[0].trace_id.encode() if spans else None, len(spans) + len(rejects)


def produce_files(
    paths: Iterable[Path],
    *,
    bootstrap_servers: str,
    topic: str,
    on_sent: Callable[[Path, int], None] | None = None,
) -> int:
    """Send each file as one message, unchanged, keyed by its first trace id."""
    files = [(path, *read_otlp_file(path)) for path in paths]  # all checked before anything is sent
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap_servers.split(","), acks="all", max_request_size=16 * 1024 * 1024)
    except KafkaError as exc:
        raise SpanlakeError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        for path, value, encoding, key, count in files:
            producer.send(topic, key=key, value=value, headers=[("content-type", CONTENT_TYPE[encoding])]).get(timeout=30)
            if on_sent:
                on_sent(path, count)
        producer.flush()
    finally:
        producer.close()
    return len(files)
