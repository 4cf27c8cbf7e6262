"""Build a large synthetic spanlake warehouse for the query benchmark, writing Delta directly.

Traces are generated vectorised (numpy + polars), one UTC day at a time, and laid out the way
maintenance leaves a table:

* `trace_info/day=D`: one commit (one ~118 MB file) per day, rows sorted by request_time, in
  row groups of 8,192 rows (~8 busy minutes): time bounds and top-k searches skip by file and
  row-group min/max statistics, and reading one row back decodes ~8k rows, not 64k.
* `span_data/day=D`: rows sorted by trace_id, written part by part (--spans-per-part whole
  traces, one commit and one ~120 MB file each), so the files of a day cover disjoint trace_id
  ranges and each 16,384-row group a narrow one: a lookup by trace_id reads about one row group
  per day. (One streamed write per day would not do: delta-rs spreads a stream's batches over
  concurrent file writers, and the files' trace_id ranges then overlap.) Spans of a late trace
  that start after midnight are carried into the next day's partition, merged in trace_id order.

deltalake 1.6.6's write_deltalake has no max_rows_per_file; target_file_size (a cap, default
512 MiB here) never splits a part, so the part size sets the file size: ~1.8M spans / 1.43M
traces, ~120 MB per file, a common compaction target (delta-rs defaults to 100 MiB) that keeps
the log small (36 files for 10M traces) while a file is still a unit of parallel work.

Distributions: 6 services, 3 environments, 5,000 users (Zipf, s=1.1: user-0000 is the
busiest, user-0042 ~0.2% of traces), 30-minute sessions, 5 trace shapes (chat, rag, embed,
agent with geometric tool turns, and 0.2% 50-span "research" agents), 6 chat and 2 embedding
models over 5 providers (ingest/workload.py's real, dated names, all priced by genai-prices; 20%
of calls report their cost), lognormal latencies and token counts, a diurnal arrival curve, ~3%
ERROR traces plus 3% of tool calls failing (recovered), tags (6 keys, one optional) and
metadata (8 keys incl. mlflow.trace.user) maps, ~100-200 byte attribute JSON per span.

    .venv/bin/python bench/build_warehouse.py --traces 200000 --out /work/bench-data/wh-200k
    .venv/bin/python bench/build_warehouse.py --out /work/bench-data/wh-10m        # 10M traces

The output directory must not exist or be empty (use --force to replace it). Both tables are
checkpointed at the end, so readers load one checkpoint instead of replaying the JSON log.
On 2 vCPUs (AMD EPYC) the 10M-trace build takes ~9 minutes and peaks at ~9 GB RSS; a smaller
--spans-per-part lowers the peak (and the file size) proportionally.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, PostCommitHookProperties, write_deltalake

from spanlake.ingest.rows import EXTRA_SCHEMA, ROLLUP_COLUMNS, trace_aggregates
from spanlake.ingest.workload import CHAT_MODELS, EMBED_MODELS, REASONING_MODELS
from spanlake.jobs.prices import SPAN_COLUMNS, PriceList, price_spans
from spanlake.tables.delta import writer_properties
from spanlake.tables.schemas import SPAN_DATA, STRING_MAP, TRACE_INFO

US_PER_MS = 1_000
PRICES = PriceList()
US_PER_DAY = 86_400_000_000
EPOCH = dt.date(1970, 1, 1)

# --- the workload's vocabulary ----------------------------------------------------------

SERVICES = ("support-bot", "docs-rag", "search-api", "agent-runner", "billing-assistant", "code-review")
ENVIRONMENTS = ("production", "staging", "dev")
ENV_WEIGHTS = (0.80, 0.15, 0.05)
SHAPES = ("chat", "rag", "embed", "agent", "research")
SHAPE_WEIGHTS = (0.30, 0.30, 0.10, 0.298, 0.002)
CHAT, RAG, EMBED, AGENT, RESEARCH = range(5)
SHAPE_SERVICES = {  # shape -> (service indices, weights)
    CHAT: ((0, 4), (0.5, 0.5)),
    RAG: ((1, 2), (0.6, 0.4)),
    EMBED: ((2,), (1.0,)),
    AGENT: ((0, 3, 4, 5), (0.3, 0.4, 0.15, 0.15)),
    RESEARCH: ((3, 5), (0.5, 0.5)),
}
RESEARCH_SPANS = 50  # root + 24 (LLM, TOOL) turns + final LLM
MAX_AGENT_TURNS = 20
# Real models, named as their providers name them (ingest/workload.py's list: (provider, requested
# model, the dated model the response reports) and the models reporting reasoning), so the
# warehouse's cost is a real cost: every name prices through genai-prices.
CHAT_MODEL_WEIGHTS = (0.30, 0.25, 0.05, 0.20, 0.10, 0.10)  # in CHAT_MODELS' order
TOOLS = ("search_orders", "get_weather", "lookup_customer", "create_ticket", "run_sql", "fetch_url")
QUESTIONS = (  # (before the number, after it); None: no number
    ("How do I reset my password?", None), ("Where is my order ", "?"), ("Summarise the refund policy.", None),
    ("What changed in release ", "?"), ("Compare plan A and plan B pricing.", None),
    ("Why was I charged twice?", None), ("Translate this paragraph to German.", None),
    ("Which regions support SSO?", None), ("Draft a reply to ticket ", " about a late delivery."),
    ("Explain error code ", " in the billing export."),
)  # fmt: skip
N_USERS = 5_000
ZIPF_S = 1.1
TRACE_ERROR_RATE = 0.03
TOOL_ERROR_RATE = 0.03
APP_VERSIONS = ("2025.11.3", "2025.11.4", "2025.12.0")
EXPERIMENTS = ("prompt-v2", "prompt-v3")
# Span types (codes index this tuple)
TYPES = ("AGENT", "CHAIN", "LLM", "TOOL", "EMBEDDING", "RETRIEVER", "RERANKER", "PARSER")
T_AGENT, T_CHAIN, T_LLM, T_TOOL, T_EMBED, T_RETR, T_RERANK, T_PARSER = range(len(TYPES))
# (median ms, lognormal sigma) per span type; the root's duration is its children's plus gaps
LATENCY = {T_LLM: (900, 0.8), T_TOOL: (150, 1.0), T_EMBED: (60, 0.5), T_RETR: (45, 0.7),
           T_RERANK: (30, 0.4), T_PARSER: (3, 0.5)}  # fmt: skip
# Arrivals per hour of the UTC day: a business-hours peak over a night floor.
HOURLY = np.array([0.35 + 0.65 * max(0.0, math.sin(math.pi * (h - 6) / 14)) for h in range(24)])


# --- helpers ----------------------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> pl.Series:
    """n random lowercase hex ids of 2*nbytes characters, built without Python objects."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    chars = np.empty((n, 2 * nbytes), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, (n + 1) * 2 * nbytes, 2 * nbytes, dtype=np.int32)
    arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))
    return pl.Series(arr)


def jfmt(template: str, *args: pl.Expr | str) -> pl.Expr:
    """pl.format where only `{}` is a placeholder: other braces (JSON) are literal."""
    parts = [p.replace("{", "{{").replace("}", "}}") for p in template.split("{}")]
    return pl.format("{}".join(parts), *args)


def lut(values: tuple[str, ...] | list[str], idx: np.ndarray) -> pl.Series:
    """values[idx] as a polars String series (idx: numpy ints)."""
    return pl.Series(list(values), dtype=pl.String).gather(pl.Series(idx.astype(np.int64, copy=False)))


def lognormal(rng: np.random.Generator, median: float | np.ndarray, sigma: float | np.ndarray, n: int) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, 1.0, n) * sigma)


def choice(rng: np.random.Generator, n: int, weights: tuple[float, ...] | np.ndarray) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def string_map(n: int, entries: list[tuple[str, pl.Series, np.ndarray | None]]) -> pa.MapArray:
    """A map<string,string> column from per-key value columns (mask: rows that have the key)."""
    rows, values = [], []
    for _key, col, mask in entries:
        idx = np.arange(n) if mask is None else np.flatnonzero(mask)
        rows.append(idx)
        values.append(col.gather(pl.Series(idx)).to_arrow().cast(pa.string()))
    all_rows = np.concatenate(rows)
    perm = np.argsort(all_rows, kind="stable")  # row-major, keys in entry order within a row
    key_arr = pa.concat_arrays([pa.array([key] * len(r), pa.string()) for (key, _, _), r in zip(entries, rows)])
    val_arr = pa.concat_arrays(values)
    counts = np.bincount(all_rows, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    take = pa.array(perm)
    return pa.MapArray.from_arrays(pa.array(offsets), key_arr.take(take), val_arr.take(take), type=STRING_MAP)


def to_table(df: pl.DataFrame, schema: pa.Schema, extra: dict[str, pa.Array] | None = None) -> pa.Table:
    arrow = df.to_arrow()
    cols = []
    for field in schema:
        col = extra[field.name] if extra and field.name in extra else arrow.column(field.name)
        cols.append(col.cast(field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def rss() -> str:
    """This process's resident memory, for the progress lines."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return fmt_bytes(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return "?"


def compact(df: pl.DataFrame) -> pl.DataFrame:
    """A copy that owns its strings: a gathered or filtered polars string column keeps views
    into the whole source buffers, which would keep every part of a day alive."""
    return pl.DataFrame(pl.from_arrow(df.to_arrow()))


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def dir_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts]
    return sum(p.stat().st_size for p in files), len(files)


# --- one day ----------------------------------------------------------------------------


class Day:
    """Per-trace facts of one day, in request_time order (index i = row i of trace_info)."""

    def __init__(self, rng: np.random.Generator, day: dt.date, n: int, agent_turn_mean: float) -> None:
        self.day, self.n = day, n
        day_us = (day - EPOCH).days * US_PER_DAY
        hour = choice(rng, n, HOURLY)
        self.request_us = np.sort(day_us + hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, n))
        self.trace_id = hex_ids(rng, n, 16)
        self.shape = choice(rng, n, SHAPE_WEIGHTS)
        self.service = np.zeros(n, dtype=np.int64)
        for shape, (services, weights) in SHAPE_SERVICES.items():
            mask = self.shape == shape
            self.service[mask] = np.asarray(services)[choice(rng, int(mask.sum()), weights)]
        self.env = choice(rng, n, ENV_WEIGHTS)
        ranks = np.arange(1, N_USERS + 1, dtype=float)
        self.user = choice(rng, n, ranks**-ZIPF_S)
        self.error = rng.random(n) < TRACE_ERROR_RATE
        self.question = rng.integers(0, len(QUESTIONS), n)
        self.qnum = rng.integers(100, 100_000, n)
        self.app_version = choice(rng, n, (0.2, 0.5, 0.3))
        self.experiment = np.where(rng.random(n) < 0.2, rng.integers(0, len(EXPERIMENTS), n), -1)
        self.chat_model = choice(rng, n, CHAT_MODEL_WEIGHTS)
        self.embed_model = rng.integers(0, len(EMBED_MODELS), n)
        turns = np.minimum(rng.geometric(1.0 / agent_turn_mean, n), MAX_AGENT_TURNS)
        self.n_spans = np.select(
            [self.shape == CHAT, self.shape == RAG, self.shape == EMBED, self.shape == AGENT],
            [2 + (rng.random(n) < 0.3), 5, 1 + rng.integers(1, 4, n), 2 + 2 * turns],
            RESEARCH_SPANS,
        ).astype(np.int64)

    def strings(self) -> pl.DataFrame:
        """Per-trace string columns the span and trace tables share."""
        q = QUESTIONS
        before = lut([b for b, _ in q], self.question)
        after = lut([a or "" for _, a in q], self.question)
        has_num = pl.Series(np.array([a is not None for _, a in q])[self.question])
        user = pl.Series(self.user).cast(pl.String).str.zfill(4)
        df = pl.DataFrame(
            {
                "before": before, "after": after, "has_num": has_num, "qnum": self.qnum, "user_n": user,
                "bucket": self.request_us // 1_800_000_000 % 100_000,
                "shape_s": lut(SHAPES, self.shape), "service_name": lut(SERVICES, self.service),
                "environment": lut(ENVIRONMENTS, self.env),
            }
        )  # fmt: skip
        return df.select(
            question=pl.when("has_num")
            .then(pl.concat_str("before", pl.col("qnum").cast(pl.String), "after"))
            .otherwise("before"),
            user_id=jfmt("user-{}", "user_n"),
            session_id=jfmt("user-{}-s{}", "user_n", "bucket"),
            shape_s="shape_s",
            service_name="service_name",
            environment="environment",
        )


def span_part(rng: np.random.Generator, day: Day, idx: np.ndarray, strings: pl.DataFrame, offset0: int) -> pl.DataFrame:
    """span_data rows (as a polars frame, plus helper columns) for the traces `idx` of `day`."""
    n_spans = day.n_spans[idx]
    total = int(n_spans.sum())
    starts = np.concatenate([[0], np.cumsum(n_spans)[:-1]])
    t = np.repeat(np.arange(len(idx)), n_spans)  # local trace index per span
    pos = np.arange(total) - starts[t]
    n = n_spans[t]
    shape = day.shape[idx][t]
    # span type per (shape, position)
    agentish = (shape == AGENT) | (shape == RESEARCH)
    typ = np.select(
        [
            (pos == 0) & agentish, pos == 0,
            shape == CHAT,
            (shape == RAG) & (pos == 1), (shape == RAG) & (pos == 2), (shape == RAG) & (pos == 3), shape == RAG,
            shape == EMBED,
            pos % 2 == 1,
        ],
        [T_AGENT, T_CHAIN, np.where(pos == 1, T_LLM, T_PARSER), T_EMBED, T_RETR, T_RERANK, T_LLM, T_EMBED, T_LLM],
        T_TOOL,
    )  # fmt: skip
    # timing: children run one after another, each after a 1-5 ms gap; the root spans them all
    dur = np.zeros(total)
    for code, (median, sigma) in LATENCY.items():
        m = typ == code
        dur[m] = lognormal(rng, median, sigma, int(m.sum()))
    dur_us = np.maximum(np.rint(dur * US_PER_MS), 1).astype(np.int64)
    gap_us = rng.integers(1_000, 5_000, total)
    step = np.where(pos == 0, 0, gap_us + dur_us)
    cum = np.cumsum(step)
    end_off = cum - (cum[starts] - step[starts])[t]
    root_start = day.request_us[idx]
    start_us = root_start[t] + np.where(pos == 0, 0, end_off - dur_us)
    end_us = start_us + dur_us
    last_end = np.maximum.reduceat(end_us, starts)
    root_end = last_end + rng.integers(1_000, 10_000, len(idx))
    end_us = np.where(pos == 0, root_end[t], end_us)
    # errors: an ERROR trace fails its root and its last span; 3% of tool calls fail and recover
    trace_err = day.error[idx][t]
    tool_err = (typ == T_TOOL) & (rng.random(total) < TOOL_ERROR_RATE)
    err = (trace_err & ((pos == 0) | (pos == n - 1))) | tool_err
    # models and tokens
    chat_model = day.chat_model[idx][t]
    embed_model = day.embed_model[idx][t]
    is_llm, is_emb = typ == T_LLM, typ == T_EMBED
    model_idx = np.where(is_llm, chat_model, np.where(is_emb, len(CHAT_MODELS) + embed_model, -1))
    ok_call = (is_llm | is_emb) & ~err
    in_tok = np.where(
        is_llm, lognormal(rng, 900, 0.6, total), lognormal(rng, np.where(shape == EMBED, 2000, 14), 0.5, total)
    )
    in_tok = np.maximum(np.rint(in_tok), 1).astype(np.int64)
    out_tok = np.maximum(np.rint(lognormal(rng, 180, 0.6, total)), 1).astype(np.int64)
    tool_idx = rng.integers(0, len(TOOLS), total)
    cache_frac = rng.random(total)
    cost_reported = rng.random(total) < 0.2
    df = pl.DataFrame(
        {
            "t": t, "pos": pos, "typ": typ, "start_us": start_us, "end_us": end_us, "dur_us": dur_us,
            "err": err, "trace_err": trace_err, "model_idx": model_idx, "ok_call": ok_call, "is_llm": is_llm,
            "is_emb": is_emb, "in_tok": in_tok, "out_tok": out_tok, "tool": lut(TOOLS, tool_idx),
            "cache_frac": cache_frac, "cost_reported": cost_reported, "shape": shape,
            "span_id": hex_ids(rng, total, 8), "call_id": hex_ids(rng, total, 4),
            "n_docs": rng.integers(3, 20, total), "score": np.round(rng.uniform(0.5, 0.99, total), 3),
        }
    )  # fmt: skip
    g = strings.gather(pl.Series(idx)).with_columns(trace_id=day.trace_id.gather(pl.Series(idx)))
    df = df.with_columns(g.gather(pl.Series(t)))
    requested_names = [m for _, m, _ in CHAT_MODELS] + [m for _, m in EMBED_MODELS]
    response_names = [r for _, _, r in CHAT_MODELS] + [m for _, m in EMBED_MODELS]
    providers = [p for p, _, _ in CHAT_MODELS] + [p for p, _ in EMBED_MODELS]
    typ_c, has_model = pl.col("typ"), pl.col("model_idx") >= 0
    midx = pl.col("model_idx").clip(0)
    requested = pl.when(has_model).then(pl.lit(pl.Series(requested_names)).gather(midx))
    responded = pl.when(has_model).then(pl.lit(pl.Series(response_names)).gather(midx))
    # span_data's model is the response's when reported: a failed call names only the requested one
    model = pl.when(pl.col("ok_call")).then(responded).otherwise(requested)
    provider = pl.when(has_model).then(pl.lit(pl.Series(providers)).gather(midx))
    is_root = pl.col("pos") == 0
    anthropic = provider == "anthropic"
    reports_tokens = pl.col("ok_call")
    in_tokens = pl.when(reports_tokens).then("in_tok")
    out_tokens = pl.when(reports_tokens & pl.col("is_llm")).then("out_tok")
    root_out = jfmt("Here is what I found about: {}", "question")
    answer = jfmt("Answer ({} tokens) based on {} messages.", "out_tok", pl.col("pos") // 2 + 1)
    error_msg = (
        pl.when(typ_c == T_TOOL).then(jfmt("{} timed out", "tool"))
        .when(is_root).then(pl.lit("rate limited"))
        .when(typ_c == T_PARSER).then(pl.lit("JSONDecodeError: Expecting value: line 1 column 1"))
        .otherwise(pl.lit("429 Too Many Requests"))
    )  # fmt: skip
    error_type = (
        pl.when(typ_c == T_TOOL).then(pl.lit("TimeoutError"))
        .when(is_root).then(pl.lit("RuntimeError"))
        .when(typ_c == T_PARSER).then(pl.lit("JSONDecodeError"))
        .otherwise(pl.lit("RateLimitError"))
    )  # fmt: skip
    attributes = (
        pl.when(is_root).then(jfmt(
            '{"gen_ai.operation.name":"{}","user.id":"{}","session.id":"{}","input.value":"{}",'
            '"mlflow.traceTag.shape":"{}","app.version":"2025.11.3"}',
            pl.when(pl.col("typ") == T_AGENT).then(pl.lit("invoke_agent")).otherwise(pl.lit("invoke_workflow")),
            "user_id", "session_id", "question", "shape_s"))
        .when(pl.col("is_llm")).then(jfmt(
            '{"gen_ai.operation.name":"chat","gen_ai.provider.name":"{}","gen_ai.request.model":"{}",'
            '{}"gen_ai.request.temperature":0.2,"gen_ai.usage.input_tokens":{},"gen_ai.usage.output_tokens":{}}',
            provider, requested, pl.when("ok_call").then(jfmt('"gen_ai.response.model":"{}",', responded))
            .otherwise(pl.lit("")), in_tokens.fill_null(0), out_tokens.fill_null(0)))
        .when(pl.col("is_emb")).then(jfmt(
            '{"gen_ai.operation.name":"embeddings","gen_ai.provider.name":"{}","gen_ai.request.model":"{}",'
            '"gen_ai.usage.input_tokens":{}}', provider, requested, in_tokens.fill_null(0)))
        .when(typ_c == T_TOOL).then(jfmt(
            '{"gen_ai.operation.name":"execute_tool","gen_ai.tool.name":"{}","gen_ai.tool.call.id":"call_{}"}',
            "tool", "call_id"))
        .when(typ_c == T_RETR).then(jfmt(
            '{"gen_ai.operation.name":"retrieval","gen_ai.data_source.id":"kb-main","retrieval.top_k":{}}',
            "n_docs"))
        .when(typ_c == T_RERANK).then(pl.lit('{"openinference.span.kind":"RERANKER","reranker.top_k":5}'))
        .otherwise(pl.lit('{"openinference.span.kind":"CHAIN","parser":"json_output"}'))
    )  # fmt: skip
    inputs = (
        pl.when(is_root | (typ_c == T_EMBED) | (typ_c == T_RETR)).then("question")
        .when(pl.col("is_llm")).then(jfmt('[{"role":"user","content":"{}"}]', "question"))
        .when(typ_c == T_TOOL).then(jfmt('{"query":"{}","limit":{}}', "user_id", "n_docs"))
    )  # fmt: skip
    outputs = (
        pl.when(pl.col("err")).then(None)
        .when(is_root).then(root_out)
        .when(pl.col("is_llm")).then(answer)
        .when(typ_c == T_TOOL).then(jfmt('{"rows":{},"ok":true}', "n_docs"))
        .when(typ_c == T_RETR).then(jfmt('[{"doc_id":"kb-{}","score":{}}]', "n_docs", "score"))
    )  # fmt: skip
    events = pl.when(pl.col("err")).then(jfmt(
        '[{"name":"exception","time_unix_nano":{},"attributes":{"exception.type":"{}","exception.message":"{}"}}]',
        pl.col("end_us") * 1000, error_type, error_msg))  # fmt: skip
    name = (
        pl.when(is_root).then(jfmt("{}.request", "shape_s"))
        .when(pl.col("is_llm")).then(jfmt("chat {}", requested))
        .when(pl.col("is_emb")).then(jfmt("embeddings {}", requested))
        .when(typ_c == T_TOOL).then(jfmt("execute_tool {}", "tool"))
        .when(typ_c == T_RETR).then(pl.lit("retrieve docs"))
        .when(typ_c == T_RERANK).then(pl.lit("rerank"))
        .otherwise(pl.lit("parse output"))
    )  # fmt: skip
    kind = (
        pl.when(is_root).then(pl.lit("SERVER"))
        .when(pl.col("is_llm") | pl.col("is_emb") | (typ_c == T_RETR)).then(pl.lit("CLIENT"))
        .otherwise(pl.lit("INTERNAL"))
    )  # fmt: skip
    status = (
        pl.when(pl.col("err")).then(pl.lit("ERROR"))
        .when(is_root | pl.col("is_llm")).then(pl.lit("OK"))
        .otherwise(pl.lit("UNSET"))
    )  # fmt: skip
    resource = jfmt(
        '{"service.name":"{}","deployment.environment.name":"{}","service.version":"1.4.2",'
        '"telemetry.sdk.language":"python","telemetry.sdk.name":"opentelemetry","telemetry.sdk.version":"1.38.0"}',
        "service_name", "environment",
    )  # fmt: skip
    # parents: every child hangs off the root, except the reranker under the retriever
    root_row = pl.Series(starts[t])
    parent_row = pl.Series(np.where((shape == RAG) & (pos == 3), np.arange(total) - 1, starts[t]))
    cache_ok = reports_tokens & pl.col("is_llm")
    # Usage as the providers report it: prompts of 1024+ tokens cache (OpenAI's reads in 128-token
    # steps); OpenAI and Anthropic always report a cache read count, Gemini only on a hit; only
    # Anthropic reports cache creation; reasoning models count reasoning inside output_tokens.
    cacheable = pl.col("in_tok") >= 1024
    hit = cacheable & (pl.col("cache_frac") > 0.6)
    cached = (pl.col("in_tok") * pl.col("cache_frac")).cast(pl.Int64)
    cached = pl.when(provider == "openai").then(cached // 128 * 128).otherwise(cached)
    us = pl.Datetime("us", "UTC")
    out = df.with_columns(
        parent_span_id=pl.when(~is_root).then(pl.col("span_id").gather(parent_row)),
        root_span_id=pl.col("span_id").gather(root_row),
        name=name,
        span_kind=kind,
        span_type=pl.lit(pl.Series(TYPES)).gather(pl.col("typ")),
        start_time=pl.col("start_us").cast(us),
        end_time=pl.col("end_us").cast(us),
        duration_ms=(pl.col("end_us") - pl.col("start_us")) / 1000.0,
        status_code=status,
        status_message=pl.when(pl.col("err")).then(error_msg),
        model=model,
        provider=provider,
        input_tokens=in_tokens,
        output_tokens=out_tokens,
        total_tokens=pl.when(reports_tokens).then(pl.col("in_tok") + pl.when("is_llm").then("out_tok").otherwise(0)),
        cache_read_input_tokens=pl.when(cache_ok & ((provider != "gcp.gemini") | hit)).then(
            pl.when(hit).then(cached).otherwise(0)
        ),
        cache_creation_input_tokens=pl.when(cache_ok & anthropic).then(
            (pl.col("in_tok") * (cacheable & (pl.col("cache_frac") < 0.05))).cast(pl.Int64)
        ),
        reasoning_output_tokens=pl.when(cache_ok & model.is_in(sorted(REASONING_MODELS))).then(
            (pl.col("out_tok") * pl.col("cache_frac")).cast(pl.Int64)
        ),
        provided_cost_usd=pl.lit(None, pl.Float64),
        inputs=inputs,
        outputs=outputs,
        attributes=attributes,
        resource_attributes=resource,
        events=events,
        topic=pl.lit("otlp_spans"),
        partition=(pl.col("t") % 3).cast(pl.Int32),
        offset=pl.lit(offset0, dtype=pl.Int64) + pl.int_range(pl.len(), dtype=pl.Int64),
        ingested_at=(pl.col("end_us") + 2_000_000).cast(us),
        day=(pl.col("start_us") // US_PER_DAY).cast(pl.Int32).cast(pl.Date),
    )
    # 20% of calls report their cost (as a gateway such as LiteLLM does): the real one, genai-prices'.
    priced = price_spans(out.select(SPAN_COLUMNS), PRICES)["cost_usd"]
    return out.with_columns(provided_cost_usd=pl.when(cache_ok & pl.col("cost_reported")).then(priced))


def span_facts(spans: pl.DataFrame) -> pl.DataFrame:
    """A part's span rows as ingest's rollup reads them (ROLLUP_COLUMNS: span_data's and the
    per-span facts ingest keeps beside them), so trace_info's span-derived columns come from the
    same code as ingest's (`trace_aggregates`)."""
    is_root = pl.col("pos") == 0  # only the root's attributes carry the user and the session
    return spans.select(
        *(c for c in ROLLUP_COLUMNS if c not in EXTRA_SCHEMA.names),
        is_error=pl.col("status_code") == "ERROR",
        user_id=pl.when(is_root).then("user_id"),
        session_id=pl.when(is_root).then("session_id"),
        environment="environment",  # the resource's, on every span
    )


def trace_table(day: Day, strings: pl.DataFrame, aggs: pl.DataFrame) -> pa.Table:
    """trace_info rows of the day, in request_time order: ingest's span aggregates (`aggs`) plus
    the tags and metadata ingest takes from the root's attributes and resource."""
    n = day.n
    base = pl.DataFrame({"trace_id": day.trace_id}).with_columns(shape_s=strings["shape_s"])
    df = base.join(aggs, on="trace_id", how="left", maintain_order="left").with_columns(
        ingested_at=pl.col("end_time") + pl.duration(seconds=2),
    )
    op = pl.Series(np.where((day.shape == AGENT) | (day.shape == RESEARCH), "invoke_agent", "invoke_workflow"))
    tags = string_map(
        n,
        [
            ("gen_ai.operation.name", op, None),
            ("user.id", df["user_id"], None),
            ("session.id", df["session_id"], None),
            ("shape", df["shape_s"], None),
            ("app.version", lut(APP_VERSIONS, day.app_version), None),
            ("experiment", lut(EXPERIMENTS, np.maximum(day.experiment, 0)), day.experiment >= 0),
        ],
    )
    const = lambda v: pl.Series([v], dtype=pl.String).new_from_index(0, n)  # noqa: E731
    metadata = string_map(
        n,
        [
            ("service.name", df["service_name"], None),
            ("deployment.environment.name", df["environment"], None),
            ("service.version", const("1.4.2"), None),
            ("telemetry.sdk.language", const("python"), None),
            ("telemetry.sdk.name", const("opentelemetry"), None),
            ("telemetry.sdk.version", const("1.38.0"), None),
            ("mlflow.trace.user", df["user_id"], None),
            ("mlflow.trace.session", df["session_id"], None),
        ],
    )
    return to_table(df, TRACE_INFO.schema, {"tags": tags, "metadata": metadata})


# --- driver -----------------------------------------------------------------------------


def agent_turn_mean(spans_per_trace: float) -> float:
    """Mean tool turns of an agent trace so that the mix averages `spans_per_trace` spans."""
    w = SHAPE_WEIGHTS
    fixed = w[CHAT] * 2.3 + w[RAG] * 5 + w[EMBED] * 3 + w[RESEARCH] * RESEARCH_SPANS + w[AGENT] * 2
    return max(1.0, (spans_per_trace - fixed) / (2 * w[AGENT]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=10_000_000, help="traces in total (default 10,000,000)")
    parser.add_argument("--spans-per-trace", type=float, default=5.0, help="mean spans per trace (default 5)")
    parser.add_argument("--days", type=int, default=7, help="UTC days the traces spread over (default 7)")
    parser.add_argument("--start-day", default="2025-11-03", help="first day, ISO date (default 2025-11-03)")
    parser.add_argument("--out", required=True, type=Path, help="warehouse directory to create (outside the repo)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--spans-per-part", type=int, default=2_000_000,
                        help="at most this many spans generated and written at a time (whole traces, split "
                        "evenly over the day): one span_data file each; bounds memory (default 2,000,000: "
                        "~1.8M spans, ~120 MB per file, ~9 GB peak RSS)")
    parser.add_argument("--target-file-mb", type=int, default=512,
                        help="Delta target_file_size in MiB, a cap: a write rolls to a new file past it (default 512)")
    parser.add_argument("--trace-row-group", type=int, default=TRACE_INFO.row_group_rows,
                        help="trace_info parquet row-group rows (default 8,192: ~8 busy minutes; small groups let "
                        "time bounds and top-k searches skip most of a day, and make a one-row read cheap)")
    parser.add_argument("--span-row-group", type=int, default=SPAN_DATA.row_group_rows,
                        help="span_data parquet row-group rows (default 16,384: a trace_id lookup reads ~1 group/day)")
    parser.add_argument("--force", action="store_true", help="delete --out first if it exists")
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    repo = Path(__file__).resolve().parent.parent
    if out == repo or repo in out.parents:
        parser.error(f"--out must be outside the repository ({repo})")
    if out.exists() and any(out.iterdir()):
        if not args.force:
            parser.error(f"{out} exists and is not empty (pass --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    first_day = dt.date.fromisoformat(args.start_day)
    turn_mean = agent_turn_mean(args.spans_per_trace)
    per_day = np.full(args.days, args.traces // args.days)
    per_day[: args.traces % args.days] += 1
    span_uri, trace_uri = str(out / "span_data"), str(out / "trace_info")
    target = args.target_file_mb * 1024 * 1024
    props = {
        "trace_info": writer_properties(TRACE_INFO, row_group_rows=args.trace_row_group),
        "span_data": writer_properties(SPAN_DATA, row_group_rows=args.span_row_group),
    }
    no_hooks = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
    print(
        f"building {args.traces:,} traces over {args.days} days from {first_day} into {out}\n"
        f"  mean spans/trace target {args.spans_per_trace} (agent turn mean {turn_mean:.2f}), "
        f"target file {args.target_file_mb} MiB, row groups {args.trace_row_group:,} / {args.span_row_group:,} rows",
        flush=True,
    )
    began = time.perf_counter()
    carry: pl.DataFrame | None = None  # spans starting after midnight: next day's partition
    offset = 0
    total_spans = 0
    span_cols = SPAN_DATA.column_names
    for i in range(args.days):
        day_began = time.perf_counter()
        rng = np.random.default_rng([args.seed, i])
        day = Day(rng, first_day + dt.timedelta(days=i), int(per_day[i]), turn_mean)
        strings = day.strings()
        order = day.trace_id.arg_sort().to_numpy()  # trace_id order: span_data's layout
        cum = np.cumsum(day.n_spans[order])
        n_parts = max(1, math.ceil(int(cum[-1]) / args.spans_per_part))
        cuts = np.searchsorted(cum, np.arange(1, n_parts) * (cum[-1] / n_parts))
        parts = np.split(order, cuts)
        bounds = [day.trace_id[int(p[0])] for p in parts[1:]]
        carried_in, carry_out = carry, []
        aggs: list[pl.DataFrame] = []
        written = 0

        for k, idx in enumerate(parts):  # one write (one commit, one file) per part
            df = span_part(rng, day, idx, strings, offset)
            offset += df.height
            aggs.append(compact(trace_aggregates(span_facts(df))))
            spans = df.select(span_cols)
            del df
            late = spans.filter(pl.col("day") != day.day)
            if late.height:
                carry_out.append(compact(late))
                spans = spans.filter(pl.col("day") == day.day)
            if carried_in is not None and carried_in.height:
                ids = carried_in["trace_id"]
                inside = ids >= bounds[k - 1] if k > 0 else pl.repeat(True, ids.len(), eager=True)
                if k < len(bounds):
                    inside &= ids < bounds[k]
                extra = carried_in.filter(inside)
                if extra.height:
                    spans = pl.concat([spans, extra]).sort("trace_id", "start_time", maintain_order=True)
            written += spans.height
            write_deltalake(
                span_uri, to_table(spans, SPAN_DATA.schema), partition_by=["day"], mode="append",
                target_file_size=target, writer_properties=props["span_data"], post_commithook_properties=no_hooks,
                configuration={"delta.appendOnly": "false"} if i == 0 and k == 0 else None,
            )  # fmt: skip
            print(
                f"  {day.day} span part {k + 1}/{len(parts)}: {spans.height:,} spans "
                f"({time.perf_counter() - day_began:.0f}s into the day, rss {rss()})",
                flush=True,
            )
            del spans
        carry = pl.concat(carry_out) if carry_out else None
        total_spans += written
        agg = pl.concat(aggs)
        traces = trace_table(day, strings, agg)
        write_deltalake(
            trace_uri, traces, partition_by=["day"], mode="append", target_file_size=target,
            writer_properties=props["trace_info"], post_commithook_properties=no_hooks,
            configuration={"delta.appendOnly": "false"} if i == 0 else None,
        )  # fmt: skip
        elapsed = time.perf_counter() - began
        print(
            f"day {day.day}: {day.n:,} traces, {written:,} spans stored "
            f"({0 if carry is None else carry.height:,} carried to the next day) "
            f"in {time.perf_counter() - day_began:.1f}s (rss {rss()}); total {elapsed:.0f}s, "
            f"ETA {elapsed / (i + 1) * (args.days - i - 1):.0f}s",
            flush=True,
        )
    if carry is not None and carry.height:  # the last day's late spans: the next partition
        spans = carry.sort("trace_id", "start_time")
        write_deltalake(
            span_uri, to_table(spans, SPAN_DATA.schema), partition_by=["day"], mode="append",
            target_file_size=target, writer_properties=props["span_data"], post_commithook_properties=no_hooks,
        )  # fmt: skip
        total_spans += spans.height
    build_s = time.perf_counter() - began
    ck = time.perf_counter()
    for uri in (trace_uri, span_uri):
        DeltaTable(uri).create_checkpoint()
    ck_s = time.perf_counter() - ck
    summary = {"traces": int(args.traces), "spans": int(total_spans), "days": args.days, "seed": args.seed,
               "build_seconds": round(build_s, 1), "checkpoint_seconds": round(ck_s, 2)}  # fmt: skip
    for name in ("trace_info", "span_data"):
        size, files = dir_size(out / name)
        summary[f"{name}_bytes"], summary[f"{name}_files"] = size, files
        print(f"{name}: {files} files, {fmt_bytes(size)}")
    print(
        f"built {args.traces:,} traces / {total_spans:,} spans ({total_spans / args.traces:.2f} per trace) "
        f"in {build_s:.0f}s (+{ck_s:.1f}s checkpoints)"
    )
    (out / "build_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
