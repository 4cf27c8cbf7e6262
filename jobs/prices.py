"""The cost of model-call spans, each priced at the price in force at its start time: genai-prices
(pinned: dated price history, cache and reasoning prices, long-context tiers), with the override
file (settings.prices_file, jobs/price_overrides.py) layered over it.

Fast by construction: genai-prices is asked once per distinct (provider, model, UTC day); its
answer becomes per-token rates per long-context band (and time-of-day slot, for off-peak prices),
the spans join those rates and the cost is a Polars expression. The rules, those of
`genai_prices.calc_price` (tests/test_prices.py checks them span by span):

- Inclusive counts are split so that no token is counted twice: uncached input = input - cache
  read - cache creation, and output - reasoning. A part the model has no price of its own for pays
  its whole's price (cache reads without a cache price pay the input price; reasoning pays output).
- A tier is a cliff chosen by the span's whole input: past it, every token pays the tier's rate.
- A cost the instrumentation reported wins. An unknown model is unpriced (null cost and a reason),
  never zero.

The output adds cost_usd, cost_source ("reported" | "computed" | null), price_source
("genai-prices==<version>" or "override:<sha256[:12]>"), price_date (when the price used took
effect; null for an undated price) and unpriced_reason (null once priced).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import genai_prices
import polars as pl
from genai_prices.data_snapshot import find_provider_by_id, get_snapshot
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
    calc_unit_price,
)

from spanlake.errors import TableError
from spanlake.jobs.price_overrides import PRICE_KEYS, Override, Overrides, load_overrides
from spanlake.settings import Settings

LIBRARY_SOURCE = f"genai-prices=={genai_prices.__version__}"
PRICE_COLUMNS = ("cost_usd", "cost_source", "price_source", "price_date", "unpriced_reason")
# OpenTelemetry gen_ai.provider.name values that genai-prices' own provider matching misses.
PROVIDER_ALIASES = {"gcp.gen_ai": "google", "x_ai": "x-ai", "azure.ai.inference": "azure", "azure.ai.openai": "azure"}

US_PER_DAY = 86_400_000_000
NO_LIMIT = 2**62
KEY = ["provider", "model", "_day"]
SPAN_COLUMNS = ("provider", "model", "start_time", "input_tokens", "output_tokens", "cache_read_input_tokens",
                "cache_creation_input_tokens", "reasoning_output_tokens", "provided_cost_usd")  # fmt: skip
# The share of a span each price key charges, and whose price it pays when the model has none.
PARTS = {
    "input_mtok": ("input_tokens", ("cache_read_input_tokens", "cache_creation_input_tokens"), None),
    "cache_read_mtok": ("cache_read_input_tokens", (), "input_mtok"),
    "cache_write_mtok": ("cache_creation_input_tokens", (), "input_mtok"),
    "output_mtok": ("output_tokens", ("reasoning_output_tokens",), None),
    "output_reasoning_mtok": ("reasoning_output_tokens", (), "output_mtok"),
}
RATES_SCHEMA = {
    "provider": pl.String, "model": pl.String, "_day": pl.Date,
    "_tod_from": pl.Int64, "_tod_to": pl.Int64, "_above": pl.Int64, "_upto": pl.Int64,
    **{f"_rate_{k}": pl.Float64 for k in PARTS}, "_per_call": pl.Float64,
    "_price_source": pl.String, "_price_date": pl.Date, "_reason": pl.String,
}  # fmt: skip

CALL_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "provider": pl.String, "model": pl.String, "start_time": pl.Datetime("us", "UTC"),
    **{c: pl.Int64 for c in SPAN_COLUMNS if c.endswith("_tokens")}, "provided_cost_usd": pl.Float64,
}  # fmt: skip

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


@dataclass
class _Model:
    """What one (provider, model) of the spans resolves to."""

    info: ModelInfo | None
    reason: str | None  # why genai-prices does not price it
    overrides: list[Override]  # matching override entries, oldest first
    slots: list[int] = field(default_factory=lambda: [0])  # time-of-day slot starts (us), for off-peak prices


class PriceList:
    """genai-prices with an optional override file over it; resolves span keys to rates."""

    def __init__(self, overrides_file: Path | None = None) -> None:
        self.overrides: Overrides | None = load_overrides(overrides_file) if overrides_file else None
        self._snapshot = get_snapshot()
        self._models: dict[tuple[str | None, str | None], _Model] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceList:
        return cls(settings.prices_file)

    def call_cost(
        self, model: str, input_tokens: int, output_tokens: int, at: dt.datetime, provider: str | None = None
    ) -> tuple[float | None, str | None]:
        """(USD, None) for one model call started at `at`, priced exactly as price_spans prices a span
        (the judges' budget counts what cost_rollups will record); (None, reason) when unpriced."""
        call = pl.DataFrame(
            [{"provider": provider, "model": model, "start_time": at, "input_tokens": input_tokens,
              "output_tokens": output_tokens}],
            schema=CALL_SCHEMA,
        )  # fmt: skip
        priced = price_spans(call, self).row(0, named=True)
        return priced["cost_usd"], priced["unpriced_reason"]

    def rates(self, keys: pl.DataFrame) -> pl.DataFrame:
        """Rate rows (RATES_SCHEMA) for distinct (provider, model, _day) keys: one per long-context
        band and time-of-day slot of the price in force that day, or one carrying the reason."""
        rows: list[dict[str, Any]] = []
        for provider, model, day in keys.select(KEY).iter_rows():
            key = {"provider": provider, "model": model, "_day": day}
            if day is None:
                rows.append({**key, **_unpriced("no start_time", 0, US_PER_DAY)})
                continue
            rows.extend({**key, **row} for row in self._day_rows(self._model(provider, model), day))
        return pl.DataFrame(rows, schema=RATES_SCHEMA)

    def _model(self, provider: str | None, model: str | None) -> _Model:
        cached = self._models.get((provider, model))
        if cached is None:
            cached = self._models[(provider, model)] = self._resolve(provider, model)
        return cached

    def _resolve(self, provider: str | None, model: str | None) -> _Model:
        if model is None:
            return _Model(None, "no model", [])
        found, reason = self._find(provider, model)
        names = {model.lower(), model.rsplit("/", 1)[-1].lower()}
        providers = {provider.lower()} if provider else set()
        if found:
            names.add(found[1].id.lower())
            providers.add(found[0].id)
        entries = self.overrides.entries if self.overrides else ()
        matching = [e for e in entries if e.model in names and (e.provider is None or e.provider in providers)]
        matching.sort(key=lambda e: e.start_date or dt.date.min)
        if found is None:
            return _Model(None, reason, matching)
        info = found[1]
        conditionals = info.prices if isinstance(info.prices, list) else []
        slots = sorted({0} | {
            _us_of_day(t) for c in conditionals if isinstance(c.constraint, TimeOfDateConstraint)
            for t in (c.constraint.start_time, c.constraint.end_time)
        })  # fmt: skip
        return _Model(info, None, matching, slots)

    def _find(self, provider: str | None, model: str) -> tuple[tuple[Provider, ModelInfo] | None, str | None]:
        provider_id = PROVIDER_ALIASES.get(provider, provider) if provider else None
        if provider_id and find_provider_by_id(self._snapshot.providers, provider_id) is None:
            return None, f"unknown provider {provider!r} (model {model!r})"
        attempts = [(provider_id, model)]
        if "/" in model:  # "openai/gpt-4o", "models/gemini-1.5-flash": the prefix may name the provider
            prefix, bare = model.rsplit("/", 1)
            attempts.append((provider_id, bare))
            if provider_id is None and find_provider_by_id(self._snapshot.providers, prefix.split("/")[-1]):
                attempts.append((prefix.split("/")[-1], bare))
        for pid, ref in attempts:
            try:
                return self._snapshot.find_provider_model(ref, None, pid, None), None
            except LookupError:
                continue
        return None, f"unknown model {model!r}" + (f" (provider {provider!r})" if provider else "")

    def _day_rows(self, m: _Model, day: dt.date) -> list[dict[str, Any]]:
        in_force = [e for e in m.overrides if e.start_date is None or e.start_date <= day]
        if in_force:
            assert self.overrides is not None
            return _bands(in_force[-1].price, self.overrides.source, in_force[-1].start_date, 0, US_PER_DAY)
        if m.info is None:
            return [_unpriced(m.reason, 0, US_PER_DAY)]
        rows = []
        for start, end in zip(m.slots, [*m.slots[1:], US_PER_DAY]):
            at = dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(microseconds=start)
            price = m.info.get_prices(at)
            rows += _bands(price, LIBRARY_SOURCE, _start_date(m.info, price), start, end)
        return rows


def _us_of_day(t: dt.time) -> int:
    if t.tzinfo is not None:  # genai-prices compares times of day in UTC
        t = dt.datetime.combine(dt.date(2000, 1, 1), t).astimezone(dt.timezone.utc).time()
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _start_date(info: ModelInfo, price: ModelPrice) -> dt.date | None:
    """The date the price genai-prices chose took effect, when its history dates it."""
    for conditional in info.prices if isinstance(info.prices, list) else ():
        if conditional.prices is price and isinstance(conditional.constraint, StartDateConstraint):
            return conditional.constraint.start_date
    return None


def _unpriced(reason: str | None, tod_from: int, tod_to: int) -> dict[str, Any]:
    return {"_tod_from": tod_from, "_tod_to": tod_to, "_above": -1, "_upto": NO_LIMIT, "_reason": reason}


def _bands(price: ModelPrice, source: str, since: dt.date | None, tod_from: int, tod_to: int) -> list[dict[str, Any]]:
    """Per-token rates (USD per million) of one price, one row per long-context band: a band
    (above, upto] holds the spans whose whole input falls in it."""
    values = {key: getattr(price, key) for key in (*PRICE_KEYS, "requests_kcount")}
    if values["input_mtok"] is None and values["output_mtok"] is None and values["requests_kcount"] is None:
        return [_unpriced(f"no per-token price ({source})", tod_from, tod_to)]
    starts = sorted({t.start for v in values.values() if isinstance(v, TieredPrices) for t in v.tiers})
    rows = []
    for above, upto in zip([-1, *starts], [*starts, NO_LIMIT]):
        # genai-prices' own tier rule, at the smallest input in the band
        rate = {k: float(calc_unit_price(values[k], 1_000_000, above + 1, 1_000_000)) for k in PRICE_KEYS if values[k]}
        for key, (_, _, whole) in PARTS.items():
            if key not in rate:
                rate[key] = rate.get(whole, 0.0) if whole else 0.0
        per_call = float(calc_unit_price(values["requests_kcount"], 1, above + 1, 1_000))
        rows.append({
            "_tod_from": tod_from, "_tod_to": tod_to, "_above": above, "_upto": upto,
            **{f"_rate_{k}": r for k, r in rate.items()}, "_per_call": per_call,
            "_price_source": source, "_price_date": since,
        })  # fmt: skip
    return rows


def price_spans(spans: Frame, prices: PriceList | None = None) -> Frame:
    """`spans` (span_data rows, eager or lazy) with PRICE_COLUMNS added (replaced, on a re-price)."""
    prices = prices or PriceList()
    lazy = spans.lazy().drop(PRICE_COLUMNS, strict=False)
    if missing := [c for c in SPAN_COLUMNS if c not in lazy.collect_schema()]:
        raise TableError(f"price_spans: the spans lack span_data column(s) {', '.join(missing)}")
    start = pl.col("start_time").dt.cast_time_unit("us")
    lazy = lazy.with_columns(_day=start.dt.date(), _tod=start.dt.epoch("us") % US_PER_DAY)
    keys = lazy.select(KEY).unique().collect()
    rates = prices.rates(keys)
    priced = lazy.join(rates.lazy(), on=KEY, how="left", nulls_equal=True, maintain_order="left")
    if rates.height > keys.height:  # several bands or slots for some key: keep the span's own
        whole_input = pl.col("input_tokens").fill_null(0)
        priced = priced.filter(
            (pl.col("_tod") >= pl.col("_tod_from")) & (pl.col("_tod") < pl.col("_tod_to"))
            & (whole_input > pl.col("_above")) & (whole_input <= pl.col("_upto"))
        )  # fmt: skip
    out = priced.with_columns(_cost(), _invalid().alias("_invalid")).with_columns(
        unpriced_reason=pl.when(pl.col("provided_cost_usd").is_not_null()).then(None)
        .when(pl.col("_reason").is_not_null()).then(pl.col("_reason"))
        .when(pl.col("input_tokens").is_null() & pl.col("output_tokens").is_null()).then(pl.lit("no token counts"))
        .otherwise(pl.col("_invalid"))
    ).with_columns(
        cost_source=pl.when(pl.col("provided_cost_usd").is_not_null()).then(pl.lit("reported"))
        .when(pl.col("unpriced_reason").is_null()).then(pl.lit("computed")),
    ).with_columns(
        cost_usd=pl.when(pl.col("cost_source") == "reported").then(pl.col("provided_cost_usd"))
        .when(pl.col("cost_source") == "computed").then(pl.col("_cost")),
        price_source=pl.when(pl.col("cost_source") == "computed").then(pl.col("_price_source")),
        price_date=pl.when(pl.col("cost_source") == "computed").then(pl.col("_price_date")),
    )  # fmt: skip
    out = out.drop([c for c in out.collect_schema() if c.startswith("_")]).select(
        pl.all().exclude(PRICE_COLUMNS), *PRICE_COLUMNS
    )
    return out.collect() if isinstance(spans, pl.DataFrame) else out


def _count(column: str) -> pl.Expr:
    return pl.col(column).fill_null(0)


def _cost() -> pl.Expr:
    parts = [
        (_count(whole) - pl.sum_horizontal(*(_count(p) for p in minus))) * pl.col(f"_rate_{key}") if minus
        else _count(whole) * pl.col(f"_rate_{key}")
        for key, (whole, minus, _) in PARTS.items()
    ]  # fmt: skip
    return (pl.sum_horizontal(parts) / 1_000_000 + pl.col("_per_call")).alias("_cost")


def _invalid() -> pl.Expr:
    """Counts no price applies to: they contradict each other (inclusive counts) or are negative."""
    counts = [_count(c) for c in dict.fromkeys(w for w, _, _ in PARTS.values())]
    cached = _count("cache_read_input_tokens") + _count("cache_creation_input_tokens")
    return (
        pl.when(pl.min_horizontal(counts) < 0).then(pl.lit("negative token count"))
        .when(cached > _count("input_tokens")).then(pl.lit("cache tokens exceed input_tokens"))
        .when(_count("reasoning_output_tokens") > _count("output_tokens"))
        .then(pl.lit("reasoning_output_tokens exceed output_tokens"))
    )  # fmt: skip
