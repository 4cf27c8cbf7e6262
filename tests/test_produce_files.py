"""`spanlake produce` sends OTLP files as they are; the tables it feeds match their specs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from deltalake import DeltaTable
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import create_topic, ingest, read

from spanlake.cli import cli
from spanlake.exporter import encode
from spanlake.ingest.sink import SINK_TABLES
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


def test_produce_pb_and_json_files_then_ingest(settings: Settings, tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=9)
    for i in range(6):
        workload.emit_trace(i, 500)
    workload.shutdown()
    spans = memory.get_finished_spans()
    half = len(spans) // 2
    (tmp_path / "a.pb").write_bytes(encode(encode_spans(spans[:half]), "otlp_proto"))
    (tmp_path / "b.json").write_bytes(encode(encode_spans(spans[half:]), "otlp_json"))
    create_topic(settings, partitions=2)

    result = CliRunner().invoke(
        cli,
        ["produce", "--bootstrap-servers", settings.bootstrap_servers, "--topic", settings.topic,
         str(tmp_path / "a.pb"), str(tmp_path / "b.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "produced 2 messages" in result.output
    ingest(settings)

    stored = read(settings, "span_data")
    assert sorted(stored["span_id"]) == sorted(f"{s.context.span_id:016x}" for s in spans)
    assert read(settings, "trace_info").height == 6
    for spec in SINK_TABLES:  # the tables ingest creates; jobs create theirs
        name = spec.name
        live = DeltaTable(f"{settings.warehouse}/{name}").schema().to_arrow()
        assert [f.name for f in live] == spec.column_names, name
        assert DeltaTable(f"{settings.warehouse}/{name}").metadata().partition_columns == list(spec.partition_by)
