"""tables/vocabulary.py is the one spelling of the values spanlake's columns take: every map onto
them stays inside it, the OTLP decoder indexes it by the wire value, and no module keeps a copy."""

from __future__ import annotations

import re
from pathlib import Path

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from spanlake.ingest.attribute_keys import INFERRED_MODEL_CALL_TYPE, SPAN_TYPE_SOURCES, VERCEL_SPAN_TYPES
from spanlake.tables.schemas import SPAN_DATA, TRACE_INFO
from spanlake.tables.vocabulary import MODEL_CALL_TYPES, SPAN_TYPES, STATUS_CODES, TRACE_STATES, UNKNOWN_SPAN_TYPE

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("spanlake", "ingest", "tables", "query", "jobs", "dashboard", "bench")


def test_every_convention_maps_onto_the_vocabulary() -> None:
    mapped = {t for _, mapping in SPAN_TYPE_SOURCES for t in mapping.values()} | set(VERCEL_SPAN_TYPES.values())
    assert mapped <= set(SPAN_TYPES)
    assert UNKNOWN_SPAN_TYPE in SPAN_TYPES and UNKNOWN_SPAN_TYPE not in mapped  # UNKNOWN is "nothing said"
    assert MODEL_CALL_TYPES <= set(SPAN_TYPES)
    assert INFERRED_MODEL_CALL_TYPE in MODEL_CALL_TYPES


def test_status_codes_are_in_otlp_enum_order() -> None:
    # The decoders turn the wire's enum number into STATUS_CODES[number].
    assert [Status.StatusCode.Name(i) for i in range(len(STATUS_CODES))] == [f"STATUS_CODE_{c}" for c in STATUS_CODES]


def test_column_docs_name_the_vocabulary() -> None:
    docs = {c.name: c.doc for spec in (SPAN_DATA, TRACE_INFO) for c in spec.columns}
    assert all(t in docs["span_type"] for t in SPAN_TYPES)
    assert all(c in docs["status_code"] for c in STATUS_CODES)
    assert all(s in docs["state"] for s in TRACE_STATES)
    assert all(t in docs["llm_call_count"] for t in MODEL_CALL_TYPES)


def test_no_layer_keeps_a_second_copy() -> None:
    """Neither a definition of these names nor a literal spelling of the type list outside vocabulary.py."""
    definition = re.compile(r"^(SPAN_TYPES|MODEL_CALL_TYPES|STATUS_CODES|TRACE_STATES)\s*=", re.MULTILINE)
    model_calls = re.compile(r"""["']LLM["'],\s*["']CHAT_MODEL["'],\s*["']EMBEDDING["']""")
    offenders = []
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            if path == ROOT / "tables" / "vocabulary.py":
                continue
            text = path.read_text()
            if definition.search(text) or model_calls.search(text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
