"""The benchmark warehouse generator builds the tables users get: its trace_info agrees with its
span_data, recomputed from scratch by the rules (one row per trace, counts, token totals, times,
state from the root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from spanlake.tables.tokens import TOKEN_COLUMNS, is_model_call, token_totals

REPO = Path(__file__).resolve().parent.parent


def test_generator_trace_info_matches_its_spans(tmp_path: Path) -> None:
    out = tmp_path / "wh"
    # Small parts: a day is written in several span parts, each rolled up on its own.
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "build_warehouse.py"), "--traces", "3000", "--days", "2",
         "--spans-per-part", "4000", "--out", str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    spans = pl.read_delta(str(out / "span_data"))
    traces = pl.read_delta(str(out / "trace_info"))

    assert traces.height == 3000
    assert traces["trace_id"].n_unique() == traces.height
    assert set(traces["trace_id"]) == set(spans["trace_id"])
    assert traces["day"].n_unique() == 2

    is_root = pl.col("parent_span_id").is_null()
    expected = (
        spans.group_by("trace_id")
        .agg(
            span_count=pl.len().cast(pl.Int64),
            error_count=(pl.col("status_code") == "ERROR").sum().cast(pl.Int64),
            llm_call_count=is_model_call().sum().cast(pl.Int64),
            request_time=pl.col("start_time").min(),
            end_time=pl.col("end_time").max(),
            root_span_id=pl.col("span_id").filter(is_root).first(),
            root_span_name=pl.col("name").filter(is_root).first(),
            state=pl.col("status_code").filter(is_root).first().replace_strict({"ERROR": "ERROR"}, default="OK"),
        )
        .join(token_totals(spans), on="trace_id")
        .with_columns(day=pl.col("request_time").dt.date())
        .sort("trace_id")
    )
    got = traces.select(expected.columns).sort("trace_id")
    assert_frame_equal(got, expected, check_column_order=False)
    # The rows say something: errors, model calls and tokens are there to be checked.
    assert got["error_count"].sum() > 0 and (got["state"] == "ERROR").any() and (got["state"] == "OK").any()
    assert all(got[c].drop_nulls().sum() > 0 for c in TOKEN_COLUMNS)
    assert got["llm_call_count"].sum() > 0 and got["span_count"].max() > 2
