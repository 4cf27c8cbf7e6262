"""What scorers declare, loaded for one batch of traces and only when asked: root inputs and
outputs, spans (as a DataFrame and as `Trace` objects), expectations, sessions.

`StoredBatch` reads the warehouse, each source in one scan for the whole batch, pruned by the
batch's trace ids and days. `RowsBatch` holds rows given by the caller (an evaluation over
inputs/outputs with no stored trace). The runner sees both through `Batch`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import orjson
import polars as pl

from spanlake.errors import ScoringError
from spanlake.query.assessments import assessment_value, scan_assessments
from spanlake.query.entities import parse_payload
from spanlake.query.search import open_table, spans_of, trace_id_in
from spanlake.query.traces import Trace, order_spans
from spanlake.tables.schemas import SPAN_DATA, TRACE_INFO

__all__ = ["Batch", "RowsBatch", "StoredBatch", "expectations_of", "sessions_of"]

_ONE_DAY = dt.timedelta(days=1)
_SPAN_SCHEMA = pl.from_arrow(SPAN_DATA.schema.empty_table()).schema  # type: ignore[union-attr]
_INFO_SCHEMA = pl.from_arrow(TRACE_INFO.schema.empty_table()).schema  # type: ignore[union-attr]


class Batch:
    """One batch of traces, one row each in `frame` (trace_id first)."""

    frame: pl.DataFrame

    @property
    def trace_ids(self) -> list[str]:
        return self.frame["trace_id"].to_list()

    def inputs(self) -> list[Any]:
        raise NotImplementedError

    def outputs(self) -> list[Any]:
        raise NotImplementedError

    def expectations(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def traces(self) -> list[Trace | None]:
        raise NotImplementedError

    def spans(self) -> pl.DataFrame:
        """span_data rows of the batch's traces (empty when there are none)."""
        raise NotImplementedError

    def vector_frame(self) -> pl.DataFrame:
        """What a vectorized scorer gets: the trace columns plus `inputs`/`outputs` as text."""
        raise NotImplementedError


class StoredBatch(Batch):
    """Traces stored in the warehouse; `frame` holds their trace_info rows (loaded when the
    caller gave fewer columns)."""

    def __init__(self, traces: pl.DataFrame, warehouse: str, storage_options: Mapping[str, str]) -> None:
        self.warehouse, self.options = warehouse, dict(storage_options)
        self.frame = self._complete(traces)

    def _scan(self, name: str) -> pl.LazyFrame:
        return open_table(name, self.warehouse, self.options)[1]

    def _complete(self, traces: pl.DataFrame) -> pl.DataFrame:
        if traces.is_empty():
            return pl.DataFrame(schema=_INFO_SCHEMA)
        if all(c in traces.columns for c in TRACE_INFO.column_names):
            return traces.select(TRACE_INFO.column_names)
        ids = traces["trace_id"]
        preds = [trace_id_in(ids.to_list())]
        if "day" in traces.columns and traces["day"].null_count() == 0:
            preds.append(pl.col("day").is_between(traces["day"].min(), traces["day"].max()))
        rows = self._scan("trace_info").filter(*preds).collect().unique("trace_id", keep="first")
        found = traces.select("trace_id").join(rows, on="trace_id", how="inner", maintain_order="left")
        if found.height < traces.height:
            missing = sorted(set(ids) - set(found["trace_id"]))
            raise ScoringError(
                f"{len(missing)} trace(s) to score are not in {self.warehouse}'s trace_info, e.g. {missing[0]!r}"
            )
        return found

    @cached_property
    def _root_io(self) -> pl.DataFrame:
        """trace_id, inputs, outputs of each trace's root span, in frame order (null when the
        root is not stored). A root starts when its trace does: on the trace's day, or the next
        one when a child's clock ran early."""
        frame = self.frame.select("trace_id", "root_span_id", "day")
        if frame.is_empty():
            return pl.DataFrame(schema={"trace_id": pl.String, "inputs": pl.String, "outputs": pl.String})
        roots = (
            self._scan("span_data")
            .filter(
                pl.col("day").is_between(frame["day"].min(), frame["day"].max() + _ONE_DAY),  # type: ignore[operator]
                pl.col("parent_span_id").is_null(),
                trace_id_in(frame["trace_id"].to_list()),
            )
            .select("trace_id", "span_id", "inputs", "outputs")
            .collect()
            .unique(["trace_id", "span_id"], keep="first")
        )
        return frame.join(
            roots, left_on=["trace_id", "root_span_id"], right_on=["trace_id", "span_id"], how="left",
            maintain_order="left",
        ).select("trace_id", "inputs", "outputs")  # fmt: skip

    def inputs(self) -> list[Any]:
        return [parse_payload(v) for v in self._root_io["inputs"]]

    def outputs(self) -> list[Any]:
        return [parse_payload(v) for v in self._root_io["outputs"]]

    @cached_property
    def _spans(self) -> pl.DataFrame:
        return spans_of(self.frame, self._scan("span_data")).collect()

    def spans(self) -> pl.DataFrame:
        return self._spans

    def traces(self) -> list[Trace | None]:
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for span in self._spans.to_dicts():
            by_trace.setdefault(span["trace_id"], []).append(span)
        return [Trace(info, order_spans(by_trace.get(info["trace_id"], []))) for info in self.frame.to_dicts()]

    def expectations(self) -> list[dict[str, Any]]:
        return expectations_of(self.trace_ids, self.warehouse, self.options)

    @cached_property
    def _vector_frame(self) -> pl.DataFrame:
        return pl.concat([self.frame, self._root_io.drop("trace_id")], how="horizontal")

    def vector_frame(self) -> pl.DataFrame:
        return self._vector_frame

class RowsBatch(Batch):
    """Rows given by the caller: `trace_id`, `inputs`, optional `outputs` and `expectations`
    as Python values; no spans, no stored trace (`trace` is None)."""

    def __init__(
        self, trace_ids: Sequence[str], inputs: Sequence[Any], outputs: Sequence[Any],
        expectations: Sequence[Mapping[str, Any] | None],
    ) -> None:  # fmt: skip
        self.frame = pl.DataFrame({"trace_id": list(trace_ids)}, schema={"trace_id": pl.String})
        self._inputs, self._outputs = list(inputs), list(outputs)
        self._expectations = [dict(e or {}) for e in expectations]

    def inputs(self) -> list[Any]:
        return self._inputs

    def outputs(self) -> list[Any]:
        return self._outputs

    def expectations(self) -> list[dict[str, Any]]:
        return self._expectations

    def traces(self) -> list[Trace | None]:
        return [None] * self.frame.height

    def spans(self) -> pl.DataFrame:
        return pl.DataFrame(schema=_SPAN_SCHEMA)

    def vector_frame(self) -> pl.DataFrame:
        def text(values: list[Any]) -> list[str | None]:
            return [v if v is None or isinstance(v, str) else orjson.dumps(v, default=str).decode() for v in values]

        return self.frame.with_columns(
            inputs=pl.Series(text(self._inputs), dtype=pl.String), outputs=pl.Series(text(self._outputs), dtype=pl.String)
        )


def expectations_of(trace_ids: Sequence[str], warehouse: str, options: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per trace id, {name: value} of its expectation assessments (the latest per name); empty
    dicts when the assessments table does not exist yet."""
    found = (
        scan_assessments(warehouse=warehouse, storage_options=options, kind="expectation")
        .filter(pl.col("error_code").is_null(), trace_id_in(trace_ids))
        .collect()
    )
    latest = found.sort("created_at").unique(["trace_id", "name"], keep="last")
    out: dict[str, dict[str, Any]] = {}
    for row in latest.iter_rows(named=True):
        out.setdefault(row["trace_id"], {})[row["name"]] = assessment_value(row)
    return [out.get(t, {}) for t in trace_ids]


def sessions_of(session_ids: Sequence[str], warehouse: str, options: Mapping[str, str]) -> dict[str, list[Trace]]:
    """Each session whole: every stored trace with that session_id (not only those of a batch),
    in request_time order."""
    if not session_ids:
        return {}
    rows = (
        open_table("trace_info", warehouse, options)[1]
        .filter(pl.col("session_id").is_in(pl.Series(list(session_ids), dtype=pl.String).implode()))
        .collect()
        .unique("trace_id", keep="first")
        .sort("request_time", "trace_id")
    )
    out: dict[str, list[Trace]] = {}
    for trace in StoredBatch(rows, warehouse, options).traces():
        assert trace is not None
        out.setdefault(trace.info["session_id"], []).append(trace)
    return out
