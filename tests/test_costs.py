"""The cost job (spanlake.jobs.costs) over spans ingested through the real broker: hand-computed
costs in all three tables, incremental runs equal to a from-scratch computation after late spans
and re-runs, two runs at once, re-pricing with an override file, judge spend."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import threading
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from polars.testing import assert_frame_equal
from support import SPANLAKE, create_topic, ingest, read, send_raw
from test_ingest_bad_input import request, span

from spanlake.jobs.costs import DIMENSIONS, costs_from_scratch, run_costs
from spanlake.jobs.prices import LIBRARY_SOURCE, PriceList
from spanlake.settings import Settings
from spanlake.tables.delta import open_or_create, table_uri
from spanlake.tables.schemas import ASSESSMENTS

UTC = dt.timezone.utc
T0 = int(dt.datetime(2026, 6, 1, 10, tzinfo=UTC).timestamp()) * 10**9
MIN = 60 * 10**9
TABLES = ("span_costs", "trace_costs", "cost_rollups")


def chat(inputs: int, outputs: int, cached: int = 0, model: str = "gpt-4o-2024-08-06") -> dict:
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": inputs, "gen_ai.usage.output_tokens": outputs,
            "gen_ai.usage.cache_read.input_tokens": cached}  # fmt: skip


WRAPPER = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06", "llm.provider": "openai",
           "llm.token_count.prompt": 5000, "llm.token_count.completion": 500}  # fmt: skip
ROOT = {"user.id": "u1", "deployment.environment.name": "prod"}
A, B = 0xA, 0xB


def gpt4o(inputs: int, outputs: int, cached: int = 0) -> float:  # $2.50 in, $1.25 cached, $10 out
    return ((inputs - cached) * 2.5 + cached * 1.25 + outputs * 10) / 1e6


def send(settings: Settings, *spans) -> None:
    send_raw(settings, [request(*spans, service="shop").SerializeToString()])
    ingest(settings)


def tables(settings: Settings) -> dict[str, pl.DataFrame]:
    keys = {"span_costs": ["trace_id", "span_id"], "trace_costs": ["trace_id"], "cost_rollups": pl.all()}
    return {t: read(settings, t).select(costs_from_scratch(warehouse=settings.warehouse)[t].columns).sort(keys[t])
            for t in TABLES}  # fmt: skip


def assert_from_scratch(settings: Settings, prices: PriceList | None = None) -> None:
    expected = costs_from_scratch(warehouse=settings.warehouse, prices=prices)
    for name, table in tables(settings).items():
        # float sums in another order (a day from its hours) differ in the last bits only
        assert_frame_equal(table, expected[name], check_exact=False, rel_tol=1e-12, abs_tol=1e-15)


def versions(settings: Settings) -> list[int]:
    return [DeltaTable(table_uri(settings.warehouse, t)).version() for t in TABLES]


def first_batches(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    send(settings,
         span(A, 1, start=T0, end=T0 + 90 * MIN, **ROOT),
         span(A, 2, parent=1, start=T0 + MIN, end=T0 + 2 * MIN, **chat(1000, 200, cached=600)),
         span(A, 3, parent=1, start=T0 + 3 * MIN, end=T0 + 4 * MIN, **WRAPPER),  # its inner call comes later
         span(A, 4, parent=1, start=T0 + 70 * MIN, end=T0 + 71 * MIN, **chat(100, 10, model="no-such-model")))  # fmt: skip


def test_costs_are_hand_computed_and_late_spans_and_reruns_keep_them_equal_to_from_scratch(settings: Settings) -> None:
    first_batches(settings)
    run = run_costs(warehouse=settings.warehouse)
    spans = read(settings, "span_costs").sort("span_id")
    assert spans["span_id"].to_list() == [f"{i:016x}" for i in (2, 3, 4)]
    assert spans["cost_usd"].to_list()[:2] == pytest.approx([gpt4o(1000, 200, 600), gpt4o(5000, 500)], rel=1e-12)
    assert spans.row(2, named=True)["cost_usd"] is None
    assert spans.row(2, named=True)["unpriced_reason"] == "unknown model 'no-such-model' (provider 'openai')"
    assert spans.select("uncached_input_tokens", "cache_read_tokens", "non_reasoning_output_tokens").row(0) == (
        400, 600, 200)  # fmt: skip
    assert set(spans["price_source"].drop_nulls()) == {LIBRARY_SOURCE}
    assert set(spans["user_id"]) == {"u1"} and set(spans["environment"]) == {"prod"}
    trace = read(settings, "trace_costs").row(0, named=True)
    assert (trace["priced_spans"], trace["unpriced_spans"], trace["input_tokens"]) == (2, 1, 6100)
    assert trace["cost_usd"] == pytest.approx(gpt4o(1000, 200, 600) + gpt4o(5000, 500), rel=1e-12)
    rollups = read(settings, "cost_rollups").filter(pl.col("model") == "gpt-4o-2024-08-06")
    hour = rollups.filter(pl.col("window") == "hour").row(0, named=True)
    assert (hour["window_start"], hour["spans"], hour["cache_read_tokens"]) == (
        dt.datetime(2026, 6, 1, 10, tzinfo=UTC), 2, 600)  # fmt: skip
    assert rollups.filter(pl.col("window") == "day")["cost_usd"].item() == pytest.approx(hour["cost_usd"])
    assert run.rows_written > 0 and run.windows_recomputed == 3  # 10:00, 11:00 and the day
    assert_from_scratch(settings)

    # Late: the wrapper's inner call (the wrapper stops counting) and a new trace in the 10:00 hour.
    send(settings,
         span(A, 5, parent=3, start=T0 + 3 * MIN + 10**9, end=T0 + 4 * MIN - 10**9, **chat(4000, 400)),
         span(B, 1, start=T0 + 30 * MIN, end=T0 + 31 * MIN, **chat(2000, 100)))  # fmt: skip
    run = run_costs(warehouse=settings.warehouse)
    assert set(read(settings, "span_costs")["span_id"]) == {f"{i:016x}" for i in (1, 2, 4, 5)}
    trace = read(settings, "trace_costs").filter(pl.col("trace_id") == f"{A:032x}").row(0, named=True)
    assert trace["cost_usd"] == pytest.approx(gpt4o(1000, 200, 600) + gpt4o(4000, 400), rel=1e-12)
    assert trace["input_tokens"] == read(settings, "trace_info").filter(pl.col("trace_id") == f"{A:032x}")[
        "input_tokens"].item()  # the tokens rule, as trace_info applies it  # fmt: skip
    assert_from_scratch(settings)

    # A re-run changes nothing: not even a Delta version moves.
    before = versions(settings)
    again = run_costs(warehouse=settings.warehouse)
    assert versions(settings) == before and again.rows_written == 0
    assert again.watermark == run.watermark
    runs = read(settings, "job_runs").filter(pl.col("job") == "costs")
    assert runs.height == 3 and set(runs["status"]) == {"OK"}


def test_two_runs_at_once_write_each_window_once(settings: Settings) -> None:
    first_batches(settings)
    run_costs(warehouse=settings.warehouse)
    send(settings, span(B, 1, start=T0 + 30 * MIN, end=T0 + 31 * MIN, **chat(2000, 100)))
    errors: list[BaseException] = []

    def one() -> None:
        try:
            run_costs(warehouse=settings.warehouse)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rollups = read(settings, "cost_rollups")
    assert not rollups.select("window", "window_start", "kind", *DIMENSIONS).is_duplicated().any()
    assert not read(settings, "span_costs")["span_id"].is_duplicated().any()
    assert_from_scratch(settings)


OVERRIDE = """
[[prices]]
model = "gpt-4o"
provider = "openai"
start_date = 2026-01-01
input_mtok = 2.0
cache_read_mtok = 0.5
output_mtok = 8.0
"""


def test_reprice_since_a_date_with_an_override_file_changes_history_and_its_provenance(
    settings: Settings, tmp_path: Path
) -> None:
    first_batches(settings)
    run_costs(warehouse=settings.warehouse)
    path = tmp_path / "prices.toml"
    path.write_text(OVERRIDE)
    prices = PriceList(path)
    run_costs(warehouse=settings.warehouse, reprice_since=dt.date(2026, 6, 1), prices=prices)
    row = read(settings, "span_costs").filter(pl.col("span_id") == f"{2:016x}").row(0, named=True)
    assert row["cost_usd"] == pytest.approx((400 * 2.0 + 600 * 0.5 + 200 * 8) / 1e6, rel=1e-12)
    assert row["price_source"] == "override:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert row["price_date"] == dt.date(2026, 1, 1)
    assert_from_scratch(settings, prices)
    runs = read(settings, "job_runs").filter(pl.col("job") == "costs").sort("started_at")
    assert '"reprice_since": "2026-06-01"' in runs["watermark"][-1]


def test_judge_spend_is_priced_and_rolled_up_beside_app_spend(settings: Settings) -> None:
    first_batches(settings)
    run_costs(warehouse=settings.warehouse)
    at = dt.datetime(2026, 6, 2, 9, 15, tzinfo=UTC)
    row = {c: None for c in ASSESSMENTS.column_names} | {
        "assessment_id": "a" * 32, "trace_id": f"{A:032x}", "name": "polite", "kind": "feedback",
        "source_type": "LLM_JUDGE", "judge_input_tokens": 1000, "judge_output_tokens": 100,
        "judge_model": "gpt-4o-mini", "created_at": at, "day": at.date(),
    }  # fmt: skip
    table = open_or_create(table_uri(settings.warehouse, "assessments"), ASSESSMENTS)
    write_deltalake(table, pa.Table.from_pylist([row], schema=ASSESSMENTS.schema), mode="append")
    run_costs(warehouse=settings.warehouse)
    judge = read(settings, "cost_rollups").filter(pl.col("kind") == "judge").sort("window")
    assert judge["window"].to_list() == ["day", "hour"]
    assert judge["window_start"].to_list() == [dt.datetime(2026, 6, 2, tzinfo=UTC), at.replace(minute=0)]
    assert judge["cost_usd"].to_list() == pytest.approx([(1000 * 0.15 + 100 * 0.6) / 1e6] * 2, rel=1e-12)
    assert read(settings, "cost_rollups").filter(pl.col("kind") == "app").height > 0
    assert_from_scratch(settings)


def test_two_job_processes_at_once_then_a_cli_reprice_with_the_prices_file(settings: Settings, tmp_path: Path) -> None:
    first_batches(settings)
    env = {**os.environ, "SPANLAKE_WAREHOUSE": settings.warehouse}
    command = [SPANLAKE, "jobs", "run", "costs"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(out.startswith("costs: read ") for out, _ in outs)
    assert_from_scratch(settings)
    path = tmp_path / "prices.toml"
    path.write_text(OVERRIDE)
    done = subprocess.run([*command, "--reprice", "--since", "2026-06-01"], env={**env, "SPANLAKE_PRICES_FILE": str(path)},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("costs re-priced since 2026-06-01: ")
    sources = set(read(settings, "span_costs")["price_source"].drop_nulls())
    assert sources == {"override:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]}
    assert_from_scratch(settings, PriceList(path))
    wrong = subprocess.run([*command, "--backfill", "--since", "2026-06-01"], env=env, capture_output=True, text=True)
    assert wrong.returncode == 2 and "--backfill does not apply to the costs job" in wrong.stderr


def test_search_filters_and_orders_by_the_cost_the_job_computed(settings: Settings) -> None:
    from spanlake.query import count_traces, search_traces

    first_batches(settings)
    C = 0xC  # a trace without a model call: no trace_costs row
    send(settings, span(B, 1, start=T0 + 30 * MIN, end=T0 + 31 * MIN, **chat(2000, 100)),
         span(C, 1, start=T0 + 40 * MIN, end=T0 + 41 * MIN, **ROOT))  # fmt: skip
    run_costs(warehouse=settings.warehouse)
    a, b, c = f"{A:032x}", f"{B:032x}", f"{C:032x}"
    a_usd, b_usd = gpt4o(1000, 200, 600) + gpt4o(5000, 500), gpt4o(2000, 100)  # A's third span is unpriced
    page = search_traces(order_by=["trace.cost DESC"], max_results=2, warehouse=settings.warehouse)
    assert page["trace_id"].to_list() == [a, b] and page["cost_usd"].to_list() == pytest.approx([a_usd, b_usd])
    last = search_traces(order_by=["trace.cost DESC"], max_results=2, page_token=page.next_page_token,
                         warehouse=settings.warehouse)  # fmt: skip
    assert last["trace_id"].to_list() == [c] and last["cost_usd"].to_list() == [None] and last.next_page_token is None
    between = (a_usd + b_usd) / 2
    assert search_traces(f"trace.cost > {between}", warehouse=settings.warehouse)["trace_id"].to_list() == [a]
    assert count_traces(f"trace.cost <= {between}", warehouse=settings.warehouse) == 1
    assert search_traces("trace.cost IS NULL", warehouse=settings.warehouse)["trace_id"].to_list() == [c]
