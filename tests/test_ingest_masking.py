"""Masking at ingest: with SPANLAKE_MASK on, nothing sensitive reaches any table."""

from __future__ import annotations

from support import create_topic, ingest, read, send_raw
from test_ingest_bad_input import request, span

from spanlake.settings import Settings


def test_masked_before_anything_is_written(settings: Settings) -> None:
    secret = "mail jane.doe@example.com, key sk-proj-abcdefghijklmnopqrstuvwx1234"
    root = span(20, 1, **{"input.value": secret, "user.id": "u-1"})
    create_topic(settings, partitions=1)
    send_raw(settings, [request(root).SerializeToString()])
    ingest(settings.model_copy(update={"mask": True}))

    stored = read(settings, "span_data").row(0, named=True)
    for text in (stored["inputs"], stored["attributes"], read(settings, "trace_info")["request_preview"][0]):
        assert "jane.doe@example.com" not in text and "sk-proj-" not in text
        assert "[REDACTED:email]" in text and "[REDACTED:api_key]" in text
    assert stored["trace_id"] == f"{20:032x}"  # ids are never masked
