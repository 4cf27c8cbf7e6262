"""score_traces: run scorers over stored traces and return their results as rows.

Per batch of traces (BATCH_TRACES), the runner loads what the scorers declare, each source in
one scan (jobs/loading.py), then runs: vectorized scorers once over the batch's DataFrame;
scorers with `concurrency > 1` (LLM judges) from a thread pool of that size, meanwhile the
others one trace after another on the calling thread; session-level scorers once per session
at the end. A scorer's failure is a result, never an exception: SCORER_ERROR (it raised, or
returned something no assessment can hold) or SCORER_TIMEOUT (jobs/deadlines.py) rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import polars as pl

from spanlake.errors import ScoringError
from spanlake.jobs.assessments import RESULT_COLUMNS, RESULT_SCHEMA, feedback_row, result_row
from spanlake.jobs.deadlines import Deadlines, ScorerTimedOut
from spanlake.jobs.feedback import SCORER_ERROR, SCORER_TIMEOUT, AssessmentError, AssessmentSource, Feedback
from spanlake.jobs.loading import Batch, StoredBatch, expectations_of, sessions_of
from spanlake.jobs.scorer import Scorer

__all__ = ["BATCH_TRACES", "check_scorers", "score_batch", "score_traces"]

# Traces loaded and scored at a time: large enough that per-scan costs vanish, small enough
# that a batch's spans fit in memory.
BATCH_TRACES = 500_000
# ... unless a scorer takes `trace`: a batch's Trace objects are Python dicts per span.
TRACE_BATCH_TRACES = 50_000

Outcome = tuple[Any, AssessmentError | None]


def score_traces(
    traces: pl.DataFrame,
    scorers: Sequence[Scorer],
    *,
    warehouse: str,
    storage_options: Mapping[str, str] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> pl.DataFrame:
    """Score `traces` (trace_info rows, at least `trace_id`) with `scorers`; one row per result
    (RESULT_COLUMNS: the assessments columns a write does not add, plus `scorer`).
    `on_progress(n)` is called with the number of traces scored so far after each batch."""
    checked = check_scorers(scorers)
    for s in checked:
        s.start_run()  # a judge's per-run budget starts afresh
    if "trace_id" not in traces.columns:
        raise ScoringError(f"traces to score need a trace_id column; got {', '.join(traces.columns) or 'no columns'}")
    traces = traces.unique("trace_id", keep="first", maintain_order=True)
    options = dict(storage_options or {})
    per_trace = [s for s in checked if not s.session_level]
    per_session = [s for s in checked if s.session_level]
    parts: list[pl.DataFrame] = []
    session_ids: dict[str, None] = {}  # ordered set
    with Deadlines() as deadlines:
        size = TRACE_BATCH_TRACES if any("trace" in s.params for s in per_trace) else BATCH_TRACES
        for start in range(0, traces.height, size):
            batch = StoredBatch(traces.slice(start, size), warehouse, options)
            parts += score_batch(batch, per_trace, deadlines)
            if per_session:
                session_ids.update(dict.fromkeys(batch.frame["session_id"].drop_nulls()))
            if on_progress is not None:
                on_progress(min(start + size, traces.height))
        if per_session:
            parts.append(_score_sessions(list(session_ids), per_session, warehouse, options, deadlines))
    return results_frame(parts)


def check_scorers(scorers: Iterable[Any]) -> list[Scorer]:
    checked = list(scorers)
    for i, s in enumerate(checked):
        if not isinstance(s, Scorer):
            hint = "; decorate it with @scorer" if callable(s) else ""
            raise ScoringError(f"scorers[{i}] is a {type(s).__name__}, not a Scorer{hint}")
    names = [s.name for s in checked]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ScoringError(f"two scorers are named {repeated[0]!r}; give each a name of its own (name=...)")
    return checked


def results_frame(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    return pl.concat([p.select(pl.col(c).cast(t) for c, t in RESULT_SCHEMA.items()) for p in parts])


def score_batch(batch: Batch, scorers: Sequence[Scorer], deadlines: Deadlines) -> list[pl.DataFrame]:
    """Results of per-trace and vectorized `scorers` over one batch."""
    ids = batch.trace_ids
    if not ids or not scorers:
        return []
    calls = [s for s in scorers if not s.vectorized]
    declared = {p for s in calls for p in s.params}
    loaders = {
        "inputs": batch.inputs, "outputs": batch.outputs, "expectations": batch.expectations, "trace": batch.traces,
    }  # fmt: skip
    args = {name: load() for name, load in loaders.items() if name in declared}

    def kwargs(s: Scorer, i: int) -> dict[str, Any]:
        return {p: args[p][i] for p in s.params if p in args}

    pools: list[tuple[Scorer, ThreadPoolExecutor, list[_Pooled]]] = []
    for s in calls:
        if s.concurrency > 1:  # I/O-bound (a judge): calls overlap in a pool of that size
            pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix=f"scorer-{s.name}")
            pools.append((s, pool, [_Pooled(pool, s, kwargs(s, i), deadlines) for i in range(len(ids))]))
    out = [_vectorized(s, batch, deadlines) for s in scorers if s.vectorized]
    rows: list[dict[str, Any]] = []
    for s in calls:
        if s.concurrency <= 1:
            record = _recorder(s, rows)
            for i, trace_id in enumerate(ids):
                record(trace_id, _call(s, kwargs(s, i), deadlines))
    for s, pool, pending in pools:
        record = _recorder(s, rows)
        for trace_id, call in zip(ids, pending):
            record(trace_id, call.outcome())
        pool.shutdown(wait=False, cancel_futures=True)  # a call given up on finishes in the background
    out.append(pl.DataFrame(rows, schema=RESULT_SCHEMA))
    return out


def _call(s: Scorer, kwargs: dict[str, Any], deadlines: Deadlines) -> Outcome:
    try:
        return deadlines.call(s.run, kwargs, s.timeout), None
    except ScorerTimedOut:
        return None, _timeout(s)
    except Exception as exc:
        return None, AssessmentError.of(exc)


class _Pooled:
    """One call in a scorer's pool. The watchdog interrupts it in Python code; one blocked in C
    (a socket read) is given up on shortly after its deadline, counted from when it started."""

    GRACE = 0.05  # seconds past the deadline: the watchdog's own interruption comes first

    def __init__(self, pool: ThreadPoolExecutor, s: Scorer, kwargs: dict[str, Any], deadlines: Deadlines) -> None:
        self.scorer, self.started = s, 0.0
        self.future: Future[Outcome] = pool.submit(self._run, kwargs, deadlines)

    def _run(self, kwargs: dict[str, Any], deadlines: Deadlines) -> Outcome:
        self.started = time.monotonic()
        return _call(self.scorer, kwargs, deadlines)

    def outcome(self) -> Outcome:
        timeout = self.scorer.timeout
        while True:
            if timeout <= 0:
                return self.future.result()
            wait = 0.05 if not self.started else self.started + timeout + self.GRACE - time.monotonic()
            try:
                return self.future.result(timeout=max(wait, 0))
            except FutureTimeout:
                if self.started and time.monotonic() >= self.started + timeout + self.GRACE:
                    return None, _timeout(self.scorer)


def _timeout(s: Scorer) -> AssessmentError:
    return AssessmentError(SCORER_TIMEOUT, f"scorer {s.name!r} ran past its timeout of {s.timeout:g} s")


def _recorder(s: Scorer, rows: list[dict[str, Any]]) -> Callable[[str, Outcome], None]:
    """record(trace_id, outcome): appends the rows a scorer's outcome on one trace makes."""
    source = AssessmentSource(s.source_type, s.name)
    base: dict[str, Any] = {"name": s.name, "source": source, "scorer": s.name, "scorer_version": s.version}

    def record(trace_id: str, outcome: Outcome) -> None:
        value, error = outcome
        if error is None:
            try:
                rows.extend(_rows_of(value, trace_id, base))
                return
            except (TypeError, ValueError) as exc:
                error = AssessmentError(SCORER_ERROR, f"scorer {s.name!r} {exc}")
        rows.append(result_row(trace_id=trace_id, value=None, error=error, **base))

    return record


def _rows_of(value: Any, trace_id: str, base: dict[str, Any]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, Feedback):
        return [feedback_row(value, trace_id=trace_id, **base)]
    if isinstance(value, list) and all(isinstance(v, Feedback) for v in value):
        return [feedback_row(v, trace_id=trace_id, **base) for v in value]
    if isinstance(value, (bool, int, float, str)) or type(value).__module__ == "numpy":
        try:
            return [result_row(trace_id=trace_id, value=value, **base)]
        except TypeError:
            pass  # a numpy array, say: the message below names it
    raise TypeError(
        f"returned a {type(value).__name__}; a scorer returns a bool, int, float, str, Feedback, a list of "
        "Feedback, or None"
    )


# --- vectorized scorers -----------------------------------------------------------------------


def _vectorized(s: Scorer, batch: Batch, deadlines: Deadlines) -> pl.DataFrame:
    """A vectorized scorer's rows: it gets the batch's DataFrame (and `spans` when it declares
    them) and returns a Series, an expression or a sequence with one value per trace: a bool,
    number or string, or a struct with `value` (and `rationale`). Null: nothing recorded."""
    frame = batch.vector_frame()
    extra = {"spans": batch.spans()} if "spans" in s.params else {}

    vectorized: Any = s  # called with the frame first, not by parameter name

    def run() -> pl.Series:
        return _values(vectorized(frame, **extra), frame)

    try:
        values = deadlines.call(run, {}, s.timeout)
        return _vector_rows(s, frame["trace_id"], values)
    except ScorerTimedOut:
        error = _timeout(s)
    except Exception as exc:
        error = AssessmentError.of(exc)
    return _constant_rows(s, frame["trace_id"], error_code=error.error_code, error_message=error.error_message)


def _values(out: Any, frame: pl.DataFrame) -> pl.Series:
    if isinstance(out, pl.Expr):
        out = frame.select(out.alias("value")).to_series()
    elif not isinstance(out, pl.Series):
        if isinstance(out, (str, bytes)) or not isinstance(out, Sequence):
            raise TypeError(f"a vectorized scorer returns a Series, an expression or a list, not a {type(out).__name__}")
        out = pl.Series("value", list(out), strict=False)
    if out.len() != frame.height:
        raise TypeError(f"a vectorized scorer returned {out.len()} values for {frame.height} traces")
    return out


def _value_type(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_numeric():
        return "number"
    if dtype == pl.String:
        return "string"
    raise TypeError(f"a vectorized scorer's values must be bool, numbers or strings, not {dtype}")


def _vector_rows(s: Scorer, ids: pl.Series, values: pl.Series) -> pl.DataFrame:
    frame = pl.DataFrame({"trace_id": ids, "v": values})
    value, rationale = pl.col("v"), pl.lit(None, dtype=pl.String)
    dtype: Any = values.dtype
    if isinstance(dtype, pl.Struct):
        fields = {f.name: f.dtype for f in dtype.fields}
        if "value" not in fields:
            raise TypeError(f"a vectorized scorer's struct needs a `value` field; it has {', '.join(fields)}")
        value, dtype = pl.col("v").struct.field("value"), fields["value"]
        if "rationale" in fields:
            rationale = pl.col("v").struct.field("rationale").cast(pl.String)
    kind = _value_type(dtype)
    column = {"bool": "value_bool", "number": "value_number", "string": "value_string"}[kind]
    picked = frame.filter(value.is_not_null()).select(
        "trace_id", value.cast(RESULT_SCHEMA[column]).alias(column), rationale.alias("rationale")
    )
    return _constant_rows(s, picked["trace_id"], value_type=kind, **{c: picked[c] for c in (column, "rationale")})


def _constant_rows(s: Scorer, ids: pl.Series, **columns: Any) -> pl.DataFrame:
    """Rows for `ids` with the scorer's name and source, and `columns` (a value or a Series each)."""
    fixed = {
        "name": s.name, "kind": "feedback", "source_type": s.source_type, "source_id": s.name,
        "scorer_version": s.version, "scorer": s.name, **columns,
    }  # fmt: skip
    frame = pl.DataFrame({"trace_id": ids}, schema={"trace_id": pl.String})
    return frame.with_columns(
        (fixed[c] if isinstance(fixed.get(c), pl.Series) else pl.lit(fixed.get(c), dtype=RESULT_SCHEMA[c])).alias(c)
        for c in RESULT_COLUMNS if c != "trace_id"
    )  # fmt: skip


# --- session-level scorers --------------------------------------------------------------------


def _score_sessions(
    session_ids: list[str], scorers: Sequence[Scorer], warehouse: str, options: Mapping[str, str],
    deadlines: Deadlines,
) -> pl.DataFrame:  # fmt: skip
    """Each session-level scorer once per session, with `session` (its traces in time order) and
    `expectations` (its traces' expectations, later ones winning); rows carry the last trace."""
    sessions = sessions_of(session_ids, warehouse, options)
    expected: dict[str, dict[str, Any]] = {}
    if any("expectations" in s.params for s in scorers):  # one read for every session's traces
        every = [t.trace_id for traces in sessions.values() for t in traces]
        expected = dict(zip(every, expectations_of(every, warehouse, options)))
    rows: list[dict[str, Any]] = []
    records = [(s, _recorder(s, rows)) for s in scorers]
    for traces in sessions.values():
        merged: dict[str, Any] = {}
        for t in traces:
            merged.update(expected.get(t.trace_id, {}))
        available = {"session": traces, "expectations": merged}
        for s, record in records:
            record(traces[-1].trace_id, _call(s, {p: available[p] for p in s.params if p in available}, deadlines))
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)
