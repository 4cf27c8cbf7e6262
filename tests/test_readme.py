"""The README's analyst examples run as written against a freshly ingested warehouse."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from support import create_topic, ingest

from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.workload import Workload
from spanlake.query import count_traces, search_traces
from spanlake.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block_after(marker: str) -> str:
    text = README.read_text().split(marker, 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_five_analyst_questions_run_and_answer(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    create_topic(settings, partitions=1)
    Workload(KafkaSpanExporter(settings.bootstrap_servers, settings.topic), seed=4).run(400)
    ingest(settings)
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", settings.warehouse)  # scan() reads it, as for an analyst

    answers: dict = {}
    exec(python_block_after("Five questions an analyst asks"), answers)  # noqa: S102 - our own README

    assert answers["slowest_tools"]["name"].str.starts_with("execute_tool").all()
    assert answers["slowest_tools"]["p95_ms"].is_sorted(descending=True)
    assert answers["cost_per_user_day"]["usd"].sum() > 0
    rates = answers["error_rate_by_model"]
    assert rates.height >= 5 and rates["error_rate"].max() < 0.5  # a few percent of calls fail
    assert answers["busiest_sessions"]["turns"].max() > 1
    failed = answers["failed_tool_traces"]
    assert failed.height > 0 and set(failed["root_span_name"]) == {"agent.request"}

    # The filter language answers question 5 as the semi-join does: span clauses joined by AND describe one span.
    one_span = "span.type = 'TOOL' AND span.status = 'ERROR'"
    page = search_traces(one_span, max_results=1000)
    assert set(page["trace_id"]) == set(failed["trace_id"]) and count_traces(one_span) == failed.height
    spans, traces = answers["spans"], answers["traces"]
    tool = spans.filter(pl.col("span_type") == "TOOL").select("trace_id")
    error = spans.filter(pl.col("status_code") == "ERROR").select("trace_id")
    some_tool_and_some_error = traces.join(tool, on="trace_id", how="semi").join(error, on="trace_id", how="semi")
    assert some_tool_and_some_error.collect().height > failed.height  # the workload tells the two meanings apart

    # The Cost section prices the same spans: per user and day, they add up to question 2's answer.
    exec(python_block_after("### Cost"), answers)  # noqa: S102 - our own README
    assert answers["priced"]["cost_usd"].sum() == pytest.approx(answers["cost_per_user_day"]["usd"].sum(), rel=1e-9)

    exec(python_block_after("uses `scan_traces`"), answers)  # noqa: S102 - our own README
    by_service = answers["failed_tools_by_service"]
    assert by_service["traces"].sum() == failed.height and by_service["service_name"].is_not_null().all()


def test_the_readme_images_are_committed() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text())
    assert images, "the README shows the dashboard's screenshots"
    for image in images:
        path = README.parent / image
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{image}: not a committed PNG"
