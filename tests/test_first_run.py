"""What a new user hits first, through the `spanlake` command: a wrong broker, a mistyped topic
or warehouse, a search that matches nothing, a missing table. Each gets one clear line and
leaves nothing behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from support import SPANLAKE, TeeExporter, create_topic, ingest_env, ingest_subprocess

from spanlake.broker import free_port
from spanlake.errors import TableError
from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.sink import SINK_TABLES
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings
from spanlake.tables import scan


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def spanlake(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([SPANLAKE, *args], env={**ingest_env(settings), **env}, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_a_wrong_broker_fails_fast_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(warehouse=str(tmp_path / "warehouse"), bootstrap_servers=address, topic="spans")
    started = time.monotonic()
    done = spanlake(settings, "ingest", "--until-idle", SPANLAKE_CONNECT_TIMEOUT_SECONDS="2")
    assert time.monotonic() - started < 20  # 2 s of connecting plus start-up; it took 31 s
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("spanlake: error: cannot reach Kafka at " + address)
    assert "KafkaTimeoutError" not in line
    assert not (tmp_path / "warehouse").exists()


def test_a_missing_topic_is_named_and_not_created(settings: Settings) -> None:
    done = spanlake(settings, "ingest", "--until-idle")
    assert done.returncode == 1
    assert f"topic {settings.topic!r} does not exist" in one_line(done.stderr)
    assert not Path(settings.warehouse).exists()
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        assert settings.topic not in admin.list_topics()
    finally:
        admin.close()


def test_a_directory_of_other_files_is_not_made_a_warehouse(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    warehouse = Path(settings.warehouse)
    warehouse.mkdir()
    (warehouse / "notes.txt").write_text("mine")
    done = spanlake(settings, "ingest", "--until-idle")
    assert done.returncode == 1
    assert "is not a spanlake warehouse: it holds notes.txt" in one_line(done.stderr)
    assert sorted(p.name for p in warehouse.iterdir()) == ["notes.txt"]

    # An empty directory is fine, and so is a warehouse someone put a README into.
    (warehouse / "notes.txt").unlink()
    assert ingest_subprocess(settings).returncode == 0
    (warehouse / "README.md").write_text("spanlake tables")
    assert ingest_subprocess(settings).returncode == 0
    assert {p.name for p in warehouse.iterdir()} == {*(t.name for t in SINK_TABLES), "README.md"}


def test_no_match_missing_table_and_maintain_say_so_once(settings: Settings) -> None:
    with pytest.raises(TableError, match=f"no table 'trace_info' in warehouse {settings.warehouse}"):
        scan("trace_info", warehouse=settings.warehouse)

    create_topic(settings, partitions=1)
    tee = TeeExporter(KafkaSpanExporter(settings.bootstrap_servers, settings.topic))
    Workload(tee, seed=71).run(10)
    assert ingest_subprocess(settings).returncode == 0

    done = spanlake(settings, "traces", "search", "trace.status = 'NOPE'")
    assert done.returncode == 0
    assert one_line(done.stdout) == f"no traces match \"trace.status = 'NOPE'\" in {settings.warehouse}"

    done = spanlake(settings, "maintain")
    assert done.returncode == 0, done.stderr
    output = (done.stdout + done.stderr).splitlines()
    for name in (t.name for t in SINK_TABLES):
        assert sum(line.startswith(f"{name}: files") or f" {name}: files" in line for line in output) == 1, output
