"""`evaluate`: score stored traces (never re-running the application) or given rows, write every
result to `assessments` under one run id, and return MLflow's result shape.

    from spanlake.jobs import evaluate, scorer
    result = evaluate("service_name = 'support' AND trace.status = 'OK'", scorers=[...], start_time="2025-06-01")
    result.metrics["exact_match/mean"], result.result_df, result.run_id
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from opentelemetry.sdk.trace.export import SpanExporter

from spanlake.errors import ScoringError
from spanlake.jobs.assessments import write_assessments
from spanlake.jobs.datasets import Dataset
from spanlake.jobs.deadlines import Deadlines
from spanlake.jobs.job_runs import JobRun, one_line
from spanlake.jobs.loading import RowsBatch
from spanlake.jobs.predict import predict
from spanlake.jobs.runner import check_scorers, results_frame, score_batch, score_traces
from spanlake.jobs.scorer import Aggregation, Scorer
from spanlake.query.assessments import value_as_number
from spanlake.query.search import TimeArg, TracePage, scan_traces, warehouse_location

__all__ = ["EvaluationResult", "evaluate", "metrics_of", "wide_results"]


@dataclass(frozen=True)
class EvaluationResult:
    """`result_df`: one row per trace (`trace_id`, `<name>/value`, `<name>/rationale`,
    `<name>/error`); `metrics`: `<name>/<aggregation>`; `run_id`: assessments.run_id (and
    job_runs.run_id); `dataset`: the dataset name and version read, when data was a Dataset."""

    run_id: str
    metrics: dict[str, float]
    result_df: pl.DataFrame
    dataset: tuple[str, int] | None = None


def evaluate(
    data: Any,
    scorers: Sequence[Scorer],
    predict_fn: Callable[..., Any] | None = None,
    *,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    exporter: SpanExporter | None = None,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> EvaluationResult:
    """Score `data` with `scorers` and record every result in `assessments` under a new run id,
    and the run in `job_runs` (job `evaluate`).

    `data` is stored traces: a `search_traces` page, a filter string (with `start_time` /
    `end_time` bounding request_time), a list of trace ids, a DataFrame with `trace_id` (and
    no `inputs`); or rows: a list of dicts or a DataFrame with `inputs`, optional `outputs`,
    `expectations` and `trace_id`, or a `datasets.Dataset` (the version it holds is recorded).
    Stored traces are never re-run. Rows are scored as given (`trace` is None for them); an
    assessment needs a trace id, so a row without one gets a new random id (32 hex characters,
    the trace id format), which result_df shows.

    With `predict_fn`, each row's inputs go to the app inside a root span this run starts
    (jobs.predict; its spans go to `exporter`, e.g. spanlake's KafkaSpanExporter), and what it
    returned is scored as the row's outputs, under that span's trace id.
    """
    where, options = warehouse_location(warehouse, storage_options)
    checked = check_scorers(scorers)
    run = JobRun("evaluate")
    dataset = (data.name, data.version) if isinstance(data, Dataset) else None
    if dataset:
        run.watermark = {"dataset": dataset[0], "dataset_version": dataset[1]}
    try:
        rows = _rows(data)
        if predict_fn is not None:
            if rows is None:
                raise ScoringError("evaluate(predict_fn=...) calls the app on rows of inputs (or a dataset), "
                                   f"not on stored traces; got {_describe(data)}")  # fmt: skip
            rows = [*predict(rows, predict_fn, run_id=run.run_id, exporter=exporter)]
        if rows is not None:
            trace_ids, results = _score_rows(rows, checked)
        else:
            traces = _stored(data, start_time, end_time, where, options)
            trace_ids = traces["trace_id"].unique(maintain_order=True).to_list()
            results = score_traces(traces, checked, warehouse=where, storage_options=options)
        run.rows_read = len(trace_ids)
        run.rows_written = write_assessments(results, run_id=run.run_id, warehouse=where, storage_options=options)
    except Exception as exc:
        run.record(warehouse=where, storage_options=options, error=one_line(exc))
        raise
    run.record(warehouse=where, storage_options=options)
    return EvaluationResult(run.run_id, metrics_of(results, checked), wide_results(trace_ids, results, checked), dataset)


# --- what data is -----------------------------------------------------------------------------


def _rows(data: Any) -> Sequence[Mapping[str, Any]] | None:
    """`data` as rows of inputs/outputs/expectations, or None when it names stored traces."""
    if isinstance(data, Dataset):
        return list(data.to_rows())
    if isinstance(data, pl.DataFrame) and "inputs" in data.columns:
        return list(data.to_dicts())
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        for i, row in enumerate(data):
            if "inputs" not in row:
                raise ScoringError(
                    f"evaluation row {i} has no `inputs` (it has {', '.join(map(str, row)) or 'nothing'})"
                )
        return data
    return None


def _stored(
    data: Any, start_time: TimeArg, end_time: TimeArg, warehouse: str, options: Mapping[str, str]
) -> pl.DataFrame:
    if isinstance(data, TracePage):
        frame = data.frame
    elif isinstance(data, str):
        frame = scan_traces(
            data, start_time=start_time, end_time=end_time, warehouse=warehouse, storage_options=options
        ).collect()
    elif isinstance(data, pl.DataFrame) and "trace_id" in data.columns:
        frame = data
    elif isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
        frame = pl.DataFrame({"trace_id": list(data)}, schema={"trace_id": pl.String})
    else:
        raise ScoringError(
            "evaluate's data is a search_traces page, a filter string, a list of trace ids, or rows of "
            f"inputs/outputs/expectations (a list of dicts or a DataFrame); got {_describe(data)}"
        )
    if frame.is_empty():
        raise ScoringError(f"nothing to evaluate: {_describe(data)} selects no traces")
    return frame


def _describe(data: Any) -> str:
    if isinstance(data, str):
        return f"the filter {data!r}"
    if isinstance(data, (list, tuple, pl.DataFrame)) and len(data) == 0:
        return f"an empty {type(data).__name__}"
    return f"a {type(data).__name__}"


def _score_rows(rows: Sequence[Mapping[str, Any]], scorers: list[Scorer]) -> tuple[list[str], pl.DataFrame]:
    session = [s.name for s in scorers if s.session_level]
    if session:
        raise ScoringError(f"scorer {session[0]!r} takes `session`: it needs stored traces, not rows")
    ids = [str(r.get("trace_id") or uuid.uuid4().hex) for r in rows]
    batch = RowsBatch(
        ids, [r.get("inputs") for r in rows], [r.get("outputs") for r in rows], [r.get("expectations") for r in rows]
    )
    with Deadlines() as deadlines:
        return ids, results_frame(score_batch(batch, scorers, deadlines))


# --- MLflow's result shape --------------------------------------------------------------------


def _value_column(name: str, rows: pl.DataFrame) -> pl.Expr:
    kinds = set(rows["value_type"].drop_nulls())
    column = {"bool": "value_bool", "number": "value_number", "string": "value_string", "json": "value_json"}
    if len(kinds) == 1:
        return pl.col(column[kinds.pop()]).alias(f"{name}/value")
    if not kinds:
        return pl.lit(None, dtype=pl.String).alias(f"{name}/value")
    texts = [pl.when(pl.col("value_type") == k).then(pl.col(c).cast(pl.String)) for k, c in column.items()]
    return pl.coalesce(texts).alias(f"{name}/value")


def wide_results(trace_ids: Sequence[str], results: pl.DataFrame, scorers: Sequence[Scorer]) -> pl.DataFrame:
    """One row per trace, three columns per assessment name, in the scorers' order. A scorer
    with several results on one trace (one per span) shows its first here; assessments holds all."""
    out = pl.DataFrame({"trace_id": list(trace_ids)}, schema={"trace_id": pl.String})
    rank = {s.name: i for i, s in enumerate(scorers)}
    named = results.select("name", "scorer").unique(maintain_order=True).rows()
    ordered = dict.fromkeys(name for name, _ in sorted(named, key=lambda pair: rank.get(pair[1], len(rank))))
    for name in ordered:
        rows = results.filter(pl.col("name") == name).unique("trace_id", keep="first", maintain_order=True)
        columns = rows.select(
            "trace_id", _value_column(name, rows), pl.col("rationale").alias(f"{name}/rationale"),
            pl.coalesce("error_message", "error_code").alias(f"{name}/error"),
        )  # fmt: skip
        out = out.join(columns, on="trace_id", how="left", maintain_order="left")
    return out


def _numbers(rows: pl.DataFrame) -> pl.Series:
    """The values a metric averages: the read layer's rule (bools and yes/no as 1/0)."""
    return rows.select(value_as_number()).to_series().drop_nulls().drop_nans()


def _aggregate(values: pl.Series, agg: Aggregation) -> float | None:
    if callable(agg):
        return float(agg(values.to_list()))
    computed = {
        "min": values.min, "max": values.max, "mean": values.mean, "median": values.median,
        "variance": lambda: values.var(ddof=0), "p90": lambda: values.quantile(0.9, "linear"),
    }[agg]()  # fmt: skip
    return None if computed is None else float(computed)  # type: ignore[arg-type]


def metrics_of(results: pl.DataFrame, scorers: Sequence[Scorer]) -> dict[str, float]:
    """`<name>/<aggregation>` over each assessment name's values (errors and nulls left out),
    with the aggregations of the scorer that produced it (`mean` by default)."""
    by_scorer = {s.name: s for s in scorers}
    metrics: dict[str, float] = {}
    for (name, scorer_name), rows in results.filter(pl.col("error_code").is_null()).group_by(
        "name", "scorer", maintain_order=True
    ):
        values = _numbers(rows)
        if values.is_empty():
            continue
        for agg in by_scorer[str(scorer_name)].aggregations:
            label = agg if isinstance(agg, str) else getattr(agg, "__name__", "custom")
            result = _aggregate(values, agg)
            if result is not None:
                metrics[f"{name}/{label}"] = result
    return metrics
