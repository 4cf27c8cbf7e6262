"""Masking at ingest: with SPANLAKE_MASK on, nothing sensitive reaches any column of any table, nor
any Delta log (commits, checkpoints, their column statistics). Through the broker and `spanlake ingest`."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from kafka import KafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from support import SPANLAKE, create_topic, ingest_env, read
from test_ingest_bad_input import NOW_NS

from spanlake.encoding import CONTENT_TYPE
from spanlake.exporter import encode
from spanlake.ingest.sink import SINK_TABLES
from spanlake.settings import Settings
from spanlake.tables.delta import table_uri

PLANTED = {
    "email": "leaky.person@example.org",
    "phone": "+44 20 7946 0958",
    "payment_card": "4111 1111 1111 1111",  # Luhn-valid
    "api_key": "sk-proj-Zq8VtY3mLpW2nR6xK9bH4cJ7",
}
PII = f"mail {PLANTED['email']}, call {PLANTED['phone']}, card {PLANTED['payment_card']}, key {PLANTED['api_key']}"
# The values, and fragments a partial match or a truncated statistic would leave behind; compared
# in lower case, since some columns are (provider).
NEEDLES = [n.lower() for n in (*PLANTED.values(), "leaky.person", "7946 0958", "4111 1111", "Zq8VtY3mLpW2nR6xK9bH4cJ7")]
PLACEHOLDERS = [f"[redacted:{label}]" for label in PLANTED]
# Columns each planted value must reach, masked (so the scan below can fail).
PLANTED_COLUMNS = {
    "span_data": (
        "name", "status_message", "service_name", "model", "provider", "inputs", "outputs", "attributes",
        "resource_attributes", "events",
    ),
    "trace_info": (
        "root_span_name", "service_name", "environment", "user_id", "session_id", "models", "request_preview",
        "response_preview", "tags", "metadata",
    ),
    "ingest_errors": ("key", "error"),
}  # fmt: skip
MASKED_PII = "mail [REDACTED:email], call [REDACTED:phone], card [REDACTED:payment_card], key [REDACTED:api_key]"


def _any(value: Any) -> AnyValue:
    if isinstance(value, list):
        any_value = AnyValue()
        any_value.array_value.values.extend(_any(v) for v in value)
        return any_value
    return AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)


def _attrs(**attrs: Any) -> list[KeyValue]:
    return [KeyValue(key=k.replace("__", "."), value=_any(v)) for k, v in attrs.items()]


def planted_request(trace: int) -> ExportTraceServiceRequest:
    """A root span and a model call with PII in every text field OTLP has, and a span rejected
    for its 15-byte trace id whose name holds the PII too."""
    tid = trace.to_bytes(16, "big")
    root = Span(
        trace_id=tid, span_id=(1).to_bytes(8, "big"), name=PII, start_time_unix_nano=NOW_NS,
        end_time_unix_nano=NOW_NS + 9_000_000, status=Status(code=Status.STATUS_CODE_ERROR, message=PII),
        attributes=_attrs(
            note=PII, input__value=PII, output__value=PII, user__id=PII, session__id=PII, tag__tags=["ok", PII],
            **{"mlflow.traceTag.owner": PII},
        ),
        events=[Span.Event(name=PII, time_unix_nano=NOW_NS + 1, attributes=_attrs(exception__message=PII))],
    )  # fmt: skip
    call = Span(
        trace_id=tid, span_id=(2).to_bytes(8, "big"), parent_span_id=(1).to_bytes(8, "big"), name=f"chat {PII}",
        start_time_unix_nano=NOW_NS + 1_000_000, end_time_unix_nano=NOW_NS + 8_000_000,
        attributes=_attrs(
            gen_ai__operation__name="chat", gen_ai__request__model=PII, gen_ai__system=PII,
            gen_ai__usage__input_tokens=12, gen_ai__usage__output_tokens=3, llm__input_messages=[PII],
        ),
    )  # fmt: skip
    rejected = Span(
        trace_id=tid[:15], span_id=(3).to_bytes(8, "big"), name=PII, start_time_unix_nano=NOW_NS,
        end_time_unix_nano=NOW_NS + 1,
    )  # fmt: skip
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(_attrs(service__name=PII, deployment__environment=PII, host__owner=PII))
    rs.scope_spans.add().spans.extend([root, call, rejected])
    return req


def _texts(value: Any) -> list[str]:
    """Every string inside a column value (bytes as latin-1, so any byte sequence is searchable)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts(v)]
    return []


def _textual(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_list(t) or pa.types.is_map(t)


def stored_texts(settings: Settings) -> dict[str, str]:
    """'table.column' -> all text of that column in lower case, for every string, binary, list and map column
    of every table."""
    out = {}
    for spec in SINK_TABLES:  # every table ingest writes
        frame = read(settings, spec.name)
        # open_traces lists traces still waiting for their root: this test's traces are complete
        assert frame.height or spec.name == "open_traces", f"{spec.name} is empty: the test planted nothing there"
        for col in spec.columns:
            if _textual(col.type):
                text = "\n".join(t for v in frame[col.name].to_list() for t in _texts(v))
                out[f"{spec.name}.{col.name}"] = text.lower()
    return out


def delta_log_files(settings: Settings) -> dict[Path, bytes]:
    """Every file of every table's _delta_log (after writing a checkpoint of each), as bytes in lower
    case; a checkpoint's decoded rows are added as text too, since Parquet pages may be compressed."""
    out: dict[Path, bytes] = {}
    for spec in SINK_TABLES:  # every table ingest writes
        uri = table_uri(settings.warehouse, spec.name)
        DeltaTable(uri).create_checkpoint()
        for path in sorted((Path(uri) / "_delta_log").rglob("*")):
            if path.is_file():
                out[path] = path.read_bytes()
                if path.name.endswith(".parquet"):
                    out[path] += repr(pq.read_table(path).to_pylist()).encode()
                out[path] = out[path].lower()
    assert any(p.name.endswith(".checkpoint.parquet") for p in out)
    return out


@pytest.mark.parametrize("dead_letters", ["mask", "hash"])
def test_nothing_planted_reaches_any_column_or_delta_log(settings: Settings, dead_letters: str) -> None:
    garbage = b"\x00\xff\x13garbage " + PII.encode() + b" \xfe\xc3"
    create_topic(settings, partitions=1)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    proto, as_json = [("content-type", CONTENT_TYPE["otlp_proto"])], [("content-type", CONTENT_TYPE["otlp_json"])]
    for key, value, headers in (
        (f"{7:032x}".encode(), encode(planted_request(7), "otlp_proto"), proto),
        (f"{8:032x}".encode(), encode(planted_request(8), "otlp_json"), as_json),  # the other decoder
        (PII.encode(), garbage, proto),
    ):
        producer.send(settings.topic, key=key, value=value, partition=0, headers=headers).get(timeout=30)
    producer.close()
    env = {**ingest_env(settings), "SPANLAKE_MASK": "true", "SPANLAKE_MASK_DEAD_LETTERS": dead_letters}
    done = subprocess.run([SPANLAKE, "ingest", "--until-idle"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr

    texts = stored_texts(settings)
    leaks = sorted({column for column, text in texts.items() for needle in NEEDLES if needle in text})
    assert not leaks, f"planted values stored unmasked in {', '.join(leaks)}"
    logs = delta_log_files(settings)
    leaks = sorted({str(path) for path, data in logs.items() for needle in NEEDLES if needle.encode() in data})
    assert not leaks, f"planted values in Delta logs: {', '.join(leaks)}"

    # ... and the values were there, masked: every placeholder in every column the PII went into
    expected = [f"{table}.{column}" for table, columns in PLANTED_COLUMNS.items() for column in columns]
    missing = [(column, p) for column in expected for p in PLACEHOLDERS if p not in texts[column]]
    assert not missing, f"placeholders missing: {missing}"
    errors = read(settings, "ingest_errors")
    assert errors.height == 3  # the two rejected spans and the garbage message
    payload = errors.filter(errors["value"].is_not_null())["value"].to_list()
    if dead_letters == "hash":
        digest = hashlib.sha256(garbage).hexdigest()
        assert payload == [f"[REDACTED:payload sha256={digest} bytes={len(garbage)}]".encode()]
    else:  # masked as text; bytes that are not UTF-8 kept as they came
        assert payload == [b"\x00\xff\x13garbage " + MASKED_PII.encode() + b" \xfe\xc3"]
    # the commits' column statistics hold the masked values (they exist, and are not the raw ones)
    assert any(b"minvalues" in d and b"[redacted:email]" in d for p, d in logs.items() if p.suffix == ".json")
    assert read(settings, "trace_info")["root_span_name"].to_list() == [MASKED_PII] * 2
    assert sorted(read(settings, "span_data")["trace_id"].unique()) == [f"{7:032x}", f"{8:032x}"]  # ids: never masked
