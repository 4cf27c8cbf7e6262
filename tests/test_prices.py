"""Span pricing (spanlake.jobs.prices): the vectorized cost equals genai_prices.calc_price span by span
and hand-computed prices; names match with prefixes and dates; unknown is unpriced, never zero; a
reported cost wins; the override file layers over genai-prices with its own provenance."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from pathlib import Path

import polars as pl
import pytest
from genai_prices import Usage, calc_price
from support import create_topic, ingest, read

from spanlake.errors import ConfigError, TableError
from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.workload import CHAT_MODELS, EMBED_MODELS, Workload
from spanlake.jobs.prices import LIBRARY_SOURCE, PRICE_COLUMNS, PriceList, price_spans
from spanlake.settings import Settings
from spanlake.tables.vocabulary import MODEL_CALL_TYPES

UTC = dt.timezone.utc
COUNTS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
          "reasoning_output_tokens")  # fmt: skip
SCHEMA = {
    "span_id": pl.String, "provider": pl.String, "model": pl.String, "start_time": pl.Datetime("us", "UTC"),
    **dict.fromkeys(COUNTS, pl.Int64), "provided_cost_usd": pl.Float64,
}  # fmt: skip


def spans(*rows: dict) -> pl.DataFrame:
    full = [{"span_id": f"{i:016x}", "provider": None, "start_time": dt.datetime(2026, 6, 1, 12, tzinfo=UTC),
             "provided_cost_usd": None, **dict.fromkeys(COUNTS), **row} for i, row in enumerate(rows)]  # fmt: skip
    return pl.DataFrame(full, schema=SCHEMA)


def price_one(prices: PriceList | None = None, **row) -> dict:
    return price_spans(spans(row), prices).row(0, named=True)


# --- equal to genai-prices, span by span ----------------------------------------------------

# (span provider, span model, calc_price's model_ref and provider_id); the span names vary how
# spans name models, calc_price gets the plain name.
CASES = [
    ("openai", "gpt-4o-2024-08-06", "gpt-4o", "openai"),
    ("openai", "openai/gpt-4o-mini", "gpt-4o-mini", "openai"),
    (None, "gpt-4.1-2025-04-14", "gpt-4.1", None),
    ("openai", "o3", "o3", "openai"),  # $10/$40 until 2025-06-10, then $2/$8
    ("openai", "o3-mini-2025-01-31", "o3-mini", "openai"),
    ("openai", "gpt-5.6-luna", "gpt-5.6-luna", "openai"),  # tiered, price cut 2026-07-30
    ("openai", "text-embedding-3-small", "text-embedding-3-small", "openai"),
    ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022", "anthropic"),
    ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022", "anthropic"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "anthropic"),  # 200k tier
    ("anthropic", "claude-sonnet-4-6", "claude-sonnet-4-6", "anthropic"),  # 200k tier until 2026-03-13
    ("gcp.gemini", "models/gemini-1.5-flash-002", "gemini-1.5-flash-002", "gcp.gemini"),  # 128k tier
    ("gcp.vertex_ai", "gemini-2.5-pro", "gemini-2.5-pro", "gcp.vertex_ai"),
    ("gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash", "gcp.gemini"),
    ("deepseek", "deepseek-chat", "deepseek-chat", "deepseek"),  # off-peak hours
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-sonnet-20241022-v2:0", "aws"),
    ("cohere", "embed-v4.0", "embed-v4.0", "cohere"),
]


def varied_sample(n: int, seed: int = 5) -> tuple[pl.DataFrame, list[float]]:
    rng = random.Random(seed)
    rows, expected = [], []
    for i in range(n):
        provider, model, ref, provider_id = CASES[i % len(CASES)]
        start = dt.datetime(2024, 9, 1, tzinfo=UTC) + dt.timedelta(seconds=rng.randrange(0, 820 * 86_400))
        if i % 7 == 0:  # either side of a dated price change
            start = rng.choice([dt.datetime(2025, 6, 9, 23, 59, tzinfo=UTC), dt.datetime(2025, 6, 10, tzinfo=UTC),
                                dt.datetime(2026, 3, 12, 23, tzinfo=UTC), dt.datetime(2026, 3, 13, 1, tzinfo=UTC),
                                dt.datetime(2026, 7, 29, 12, tzinfo=UTC), dt.datetime(2026, 7, 30, 12, tzinfo=UTC)])  # fmt: skip
        shape = i % 6
        inputs = rng.choice([0, 1, 999, 128_000, 128_001, 200_000, 200_001, 272_001, 350_000]) if shape == 5 \
            else rng.randint(1, 20_000)  # fmt: skip
        cached = rng.randint(0, inputs) if shape in (1, 3) else 0
        created = rng.randint(0, inputs - cached) if shape in (2, 3) else 0
        outputs = 0 if "embed" in model else rng.randint(0, 5_000)
        reasoning = rng.randint(0, outputs) if shape in (4, 5) else 0
        rows.append({"provider": provider, "model": model, "start_time": start, "input_tokens": inputs,
                     "output_tokens": outputs, "cache_read_input_tokens": cached or None,
                     "cache_creation_input_tokens": created or None, "reasoning_output_tokens": reasoning or None})  # fmt: skip
        usage = Usage(input_tokens=inputs, cache_read_tokens=cached, cache_write_tokens=created,
                      output_tokens=outputs, output_reasoning_tokens=reasoning)  # fmt: skip
        expected.append(
            float(calc_price(usage, ref, provider_id=provider_id, genai_request_timestamp=start).total_price)
        )
    return spans(*rows), expected


def test_the_vectorized_cost_equals_calc_price_span_by_span() -> None:
    sample, expected = varied_sample(1_500)
    priced = price_spans(sample)
    assert priced["span_id"].to_list() == sample["span_id"].to_list()  # same rows, same order
    assert priced["cost_source"].to_list() == ["computed"] * sample.height
    assert priced["price_source"].unique().to_list() == [LIBRARY_SOURCE]
    assert priced["cost_usd"].to_list() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert (priced["cost_usd"] > 0).sum() > 0.99 * sample.height


# --- hand-computed --------------------------------------------------------------------------

# Prices per million tokens, from the providers' price pages.
HAND = [  # (case, row, cost)
    ("plain: gpt-4o $2.50 in, $10 out",
     {"provider": "openai", "model": "gpt-4o-2024-08-06", "input_tokens": 1000, "output_tokens": 200},
     (1000 * 2.5 + 200 * 10) / 1e6),
    ("cached: 600 of 1000 read from the cache at $1.25",
     {"provider": "openai", "model": "gpt-4o-2024-08-06", "input_tokens": 1000, "cache_read_input_tokens": 600,
      "output_tokens": 200}, (400 * 2.5 + 600 * 1.25 + 200 * 10) / 1e6),
    ("cache creation: claude-3-5-haiku $0.80 in, $1 cache write, $4 out",
     {"provider": "anthropic", "model": "claude-3-5-haiku-20241022", "input_tokens": 2000,
      "cache_creation_input_tokens": 1500, "output_tokens": 100}, (500 * 0.8 + 1500 * 1.0 + 100 * 4) / 1e6),
    ("reasoning tokens pay output's $4.40 (o3-mini)",
     {"provider": "openai", "model": "o3-mini-2025-01-31", "input_tokens": 1000, "output_tokens": 1000,
      "reasoning_output_tokens": 800}, (1000 * 1.1 + 1000 * 4.4) / 1e6),
    ("long context: claude-sonnet-4-5 past 200k pays $6 in, $22.50 out for every token",
     {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929", "input_tokens": 300_000, "output_tokens": 1000},
     (300_000 * 6 + 1000 * 22.5) / 1e6),
    ("at 200k exactly the base $3 / $15 still applies",
     {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929", "input_tokens": 200_000, "output_tokens": 1000},
     (200_000 * 3 + 1000 * 15) / 1e6),
    ("long context with a cached part: the cliff is chosen by the whole input",
     {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929", "input_tokens": 250_000,
      "cache_read_input_tokens": 150_000, "output_tokens": 0}, (100_000 * 6 + 150_000 * 0.6) / 1e6),
]  # fmt: skip


@pytest.mark.parametrize(("row", "cost"), [c[1:] for c in HAND], ids=[c[0] for c in HAND])
def test_cost_equals_the_hand_computed_price(row: dict, cost: float) -> None:
    priced = price_one(**row)
    assert priced["cost_usd"] == pytest.approx(cost, rel=1e-12)
    assert (priced["cost_source"], priced["price_source"], priced["unpriced_reason"]) == (
        "computed",
        LIBRARY_SOURCE,
        None,
    )


def test_a_span_pays_the_price_in_force_when_it_started() -> None:
    """o3 went from $10/$40 to $2/$8 on 2025-06-10 (UTC): a span either side of midnight."""
    usage = {"provider": "openai", "model": "o3", "input_tokens": 1_000_000, "output_tokens": 1_000_000}
    before = price_one(**usage, start_time=dt.datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC))
    after = price_one(**usage, start_time=dt.datetime(2025, 6, 10, 0, 0, 1, tzinfo=UTC))
    assert (before["cost_usd"], before["price_date"]) == (pytest.approx(50.0), None)  # the undated first price
    assert (after["cost_usd"], after["price_date"]) == (pytest.approx(10.0), dt.date(2025, 6, 10))
    # claude-sonnet-4-6 lost its long-context tier on 2026-03-13
    long = {"provider": "anthropic", "model": "claude-sonnet-4-6", "input_tokens": 300_000, "output_tokens": 1000}
    assert price_one(**long, start_time=dt.datetime(2026, 3, 1, tzinfo=UTC))["cost_usd"] == pytest.approx(1.8225)
    assert price_one(**long, start_time=dt.datetime(2026, 4, 1, tzinfo=UTC))["cost_usd"] == pytest.approx(0.915)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "model", "plain"), [
    ("openai", "openai/gpt-4o", "gpt-4o"),
    (None, "openai/gpt-4o", "gpt-4o"),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("gcp.gemini", "models/gemini-1.5-flash-002", "gemini-1.5-flash"),
    ("gcp.gen_ai", "gemini-2.5-flash", "gemini-2.5-flash"),  # an OTel provider name genai-prices does not know
    ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
])  # fmt: skip
def test_provider_prefixes_and_dated_versions_match(provider: str | None, model: str, plain: str) -> None:
    usage = {"input_tokens": 10_000, "cache_read_input_tokens": 4_000, "output_tokens": 700}
    named = price_one(provider=provider, model=model, **usage)
    reference = price_one(provider=None, model=plain, **usage)
    assert reference["cost_usd"] > 0 and named["cost_source"] == "computed"
    assert named["cost_usd"] == pytest.approx(reference["cost_usd"], rel=1e-12)


def test_a_dated_version_with_its_own_price_keeps_it() -> None:
    """gpt-4o-2024-05-13 is $5/$15, not gpt-4o's $2.50/$10."""
    priced = price_one(provider="openai", model="gpt-4o-2024-05-13", input_tokens=1_000_000, output_tokens=0)
    assert priced["cost_usd"] == pytest.approx(5.0)


# --- unpriced, reported ---------------------------------------------------------------------


def test_what_cannot_be_priced_is_null_with_a_reason_never_zero() -> None:
    usage = {"input_tokens": 100, "output_tokens": 10}
    priced = price_spans(spans(
        {"provider": "bar", "model": "foo", **usage},
        {"provider": "openai", "model": "foo", **usage},
        {"model": "foo", **usage},
        {"provider": "openai", "model": None, **usage},
        {"provider": "openai", "model": "gpt-4o"},  # a failed call reports no usage
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "cache_read_input_tokens": 11},
        {"provider": "openai", "model": "o3-mini", "output_tokens": 10, "reasoning_output_tokens": 11},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": -5},
        {"provider": "openai", "model": "whisper-1", "input_tokens": 100},  # priced per audio minute, not token
    ))  # fmt: skip
    assert priced["unpriced_reason"].to_list() == [
        "unknown provider 'bar' (model 'foo')", "unknown model 'foo' (provider 'openai')", "unknown model 'foo'",
        "no model", "no token counts", "cache tokens exceed input_tokens",
        "reasoning_output_tokens exceed output_tokens", "negative token count",
        f"no per-token price ({LIBRARY_SOURCE})",
    ]  # fmt: skip
    assert priced.select(PRICE_COLUMNS[:4]).null_count().row(0) == (priced.height,) * 4


def test_a_reported_cost_wins_over_a_computed_one() -> None:
    priced = price_spans(spans(
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 10, "provided_cost_usd": 0.5},
        {"provider": "acme", "model": "private-llm", "provided_cost_usd": 0.25},
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 10},
    ))  # fmt: skip
    assert priced["cost_usd"].to_list() == [0.5, 0.25, pytest.approx(0.0026)]
    assert priced["cost_source"].to_list() == ["reported", "reported", "computed"]
    assert priced["price_source"].to_list() == [None, None, LIBRARY_SOURCE]
    assert priced["unpriced_reason"].to_list() == [None, None, None]


def test_spans_without_the_columns_pricing_reads_are_refused_in_one_line() -> None:
    with pytest.raises(TableError, match=r"^price_spans: the spans lack span_data column\(s\) provided_cost_usd$"):
        price_spans(spans().drop("provided_cost_usd"))
    no_start = spans({"provider": "openai", "model": "gpt-4o", "input_tokens": 1}).with_columns(
        start_time=pl.lit(None, SCHEMA["start_time"])
    )
    assert price_spans(no_start)["unpriced_reason"].to_list() == ["no start_time"]


def test_lazy_in_lazy_out_and_a_reprice_replaces_the_columns() -> None:
    sample, expected = varied_sample(60)
    lazy = price_spans(sample.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    again = price_spans(lazy.collect())  # re-pricing a priced frame: same columns, same values
    assert again.columns == [*SCHEMA, *PRICE_COLUMNS]
    assert again["cost_usd"].to_list() == pytest.approx(expected, rel=1e-12, abs=1e-15)


# --- the override file ----------------------------------------------------------------------

OVERRIDES = """
[[prices]]  # negotiated from 2026-01-01
model = "gpt-4o"
provider = "openai"
start_date = 2026-01-01
input_mtok = 2.0
output_mtok = 8.0
cache_read_mtok = 0.5

[[prices]]  # self-hosted, no cache price: cached tokens pay the input price
model = "acme-llama-70b"
input_mtok = 0.3
output_mtok = 0.9
"""


def test_the_override_file_layers_over_genai_prices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(OVERRIDES)
    monkeypatch.setenv("SPANLAKE_PRICES_FILE", str(path))
    prices = PriceList.from_settings(Settings())
    source = "override:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    usage = {"input_tokens": 1000, "cache_read_input_tokens": 600, "output_tokens": 100}
    priced = price_spans(spans(
        {"provider": "openai", "model": "gpt-4o-2024-08-06", "start_time": dt.datetime(2025, 12, 31, 23, tzinfo=UTC), **usage},
        {"provider": "openai", "model": "gpt-4o-2024-08-06", "start_time": dt.datetime(2026, 1, 1, 1, tzinfo=UTC), **usage},
        {"provider": "azure.ai.openai", "model": "gpt-4o", "start_time": dt.datetime(2026, 2, 1, tzinfo=UTC), **usage},
        {"provider": "vllm", "model": "acme-llama-70b", **usage},
        {"provider": "openai", "model": "gpt-4o-mini", **usage},
    ), prices)  # fmt: skip
    assert priced["cost_usd"].to_list() == pytest.approx([
        (400 * 2.5 + 600 * 1.25 + 100 * 10) / 1e6,  # before the negotiated price: genai-prices'
        (400 * 2.0 + 600 * 0.5 + 100 * 8) / 1e6,
        (400 * 2.5 + 600 * 1.25 + 100 * 10) / 1e6,  # the override names provider openai, not Azure
        (1000 * 0.3 + 100 * 0.9) / 1e6,
        (400 * 0.15 + 600 * 0.075 + 100 * 0.6) / 1e6,
    ], rel=1e-12)  # fmt: skip
    assert priced["price_source"].to_list() == [LIBRARY_SOURCE, source, LIBRARY_SOURCE, source, LIBRARY_SOURCE]
    assert priced["price_date"].to_list() == [None, dt.date(2026, 1, 1), None, None, None]


@pytest.mark.parametrize(("text", "message"), [
    ("[[prices]\nmodel = 1", "is not valid TOML: "),
    ('[[prices]]\nmodel = "m"\noutput_mtok = 1', "entry 1 (model 'm'): 'input_mtok' is missing"),
    ('[[prices]]\nmodel = "m"\ninput_mtok = -1\noutput_mtok = 1',
     "entry 1 (model 'm'): 'input_mtok' must be a non-negative number (USD per million tokens), got -1"),
    ('[[prices]]\nmodel = "m"\ninput_mtok = "2"\noutput_mtok = 1', "'input_mtok' must be a non-negative number"),
    ('[[prices]]\nmodel = "m"\ninput_mtok = 1\noutput_mtok = 1\ncache_mtok = 1', "entry 1 (model 'm'): unknown key 'cache_mtok'"),
    ('[[prices]]\ninput_mtok = 1\noutput_mtok = 1', "entry 1: 'model' must be a non-empty string"),
    ('[[prices]]\nmodel = "m"\nstart_date = "2025-01-01"\ninput_mtok = 1\noutput_mtok = 1',
     "entry 1 (model 'm'): 'start_date' must be a TOML date such as 2025-01-01, got '2025-01-01'"),
    ('[[prices]]\nmodel = "a"\ninput_mtok = 1\noutput_mtok = 1\n[[prices]]\nmodel = "A"\ninput_mtok = 2\noutput_mtok = 2',
     "entry 2 (model 'A'): a second price for the same model, provider and start_date"),
    ('[gpt-4o]\ninput_mtok = 1', "unknown key 'gpt-4o' (prices go in [[prices]] tables)"),
])  # fmt: skip
def test_a_bad_override_file_fails_with_one_line_naming_the_file_and_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        PriceList(path)
    assert str(raised.value).startswith(f"prices file {path}") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_override_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prices file .*nope\.toml: cannot be read \(No such file or directory\)"):
        PriceList(tmp_path / "nope.toml")


# --- the synthetic workload costs real money ------------------------------------------------


def test_the_workload_names_real_priced_models_with_cache_and_reasoning_usage(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    Workload(KafkaSpanExporter(settings.bootstrap_servers, settings.topic), seed=9).run(300)
    ingest(settings)
    calls = price_spans(read(settings, "span_data").filter(pl.col("span_type").is_in(sorted(MODEL_CALL_TYPES))))
    answered = calls.filter(pl.col("status_code") != "ERROR")
    assert set(answered["model"]) == {m for _, _, m in CHAT_MODELS} | {m for _, m in EMBED_MODELS}
    assert answered["cost_source"].to_list() == ["computed"] * answered.height and (answered["cost_usd"] > 0).all()
    assert set(calls.filter(pl.col("status_code") == "ERROR")["unpriced_reason"]) == {"no token counts"}
    by_model = answered.group_by("model").agg(pl.col(c).sum() for c in COUNTS[2:])
    assert by_model.filter(pl.col("cache_read_input_tokens") > 0).height >= 5  # every chat model caches
    assert set(by_model.filter(pl.col("cache_creation_input_tokens") > 0)["model"]) == {
        m for p, _, m in CHAT_MODELS if p == "anthropic"
    }
    assert set(by_model.filter(pl.col("reasoning_output_tokens") > 0)["model"]) == {
        "o3-mini-2025-01-31",
        "gemini-2.5-flash",
    }
