"""The price override file (settings.prices_file): private or negotiated prices per model, in USD
per million tokens, layered over genai-prices. TOML, one `[[prices]]` table per price:

    [[prices]]
    model = "gpt-4o"            # as spans name it, or the genai-prices model id it resolves to
    provider = "openai"         # optional: only that provider's spans
    start_date = 2025-01-01     # optional: in force from this UTC date on (else from the start)
    input_mtok = 2.0
    output_mtok = 8.0
    cache_read_mtok = 1.0       # optional; unset, cache reads pay input_mtok (genai-prices' rule)
    cache_write_mtok = 2.5      # optional; unset, cache writes pay input_mtok
    output_reasoning_mtok = 8.0 # optional; unset, reasoning pays output_mtok

Several tables for one model are its price history. The file's sha256 is the provenance of every
cost priced from it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from genai_prices.types import ModelPrice

from spanlake.errors import ConfigError

PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "output_reasoning_mtok")
REQUIRED_PRICE_KEYS = ("input_mtok", "output_mtok")
ENTRY_KEYS = {"model", "provider", "start_date", *PRICE_KEYS}


@dataclass(frozen=True)
class Override:
    model: str  # lower case, as genai-prices compares names
    provider: str | None
    start_date: dt.date | None
    price: ModelPrice


@dataclass(frozen=True)
class Overrides:
    source: str  # "override:<first 12 hex digits of the file's sha256>"
    entries: tuple[Override, ...]


def load_overrides(path: Path) -> Overrides:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"prices file {path}: cannot be read ({exc.strerror})") from None
    try:
        doc = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"prices file {path} is not valid TOML: {exc}") from None
    if unknown := sorted(set(doc) - {"prices"}):
        raise ConfigError(f"prices file {path}: unknown key {unknown[0]!r} (prices go in [[prices]] tables)")
    tables = doc.get("prices", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"prices file {path}: 'prices' must be an array of tables ([[prices]])")
    entries = tuple(_entry(path, i, table) for i, table in enumerate(tables, 1))
    seen: set[tuple[str, str | None, dt.date | None]] = set()
    for i, (e, table) in enumerate(zip(entries, tables), 1):
        if (e.model, e.provider, e.start_date) in seen:
            raise ConfigError(
                f"{_where(path, i, table['model'])}: a second price for the same model, provider and start_date"
            )
        seen.add((e.model, e.provider, e.start_date))
    return Overrides(f"override:{hashlib.sha256(data).hexdigest()[:12]}", entries)


def _where(path: Path, index: int, model: object) -> str:
    return f"prices file {path}, entry {index}" + (f" (model {model!r})" if isinstance(model, str) else "")


def _entry(path: Path, index: int, table: dict[str, Any]) -> Override:
    where = _where(path, index, table.get("model"))
    if unknown := sorted(set(table) - ENTRY_KEYS):
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(sorted(ENTRY_KEYS))})")
    model, provider, start = table.get("model"), table.get("provider"), table.get("start_date")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: 'model' must be a non-empty string")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise ConfigError(f"{where}: 'provider' must be a non-empty string")
    if start is not None and (not isinstance(start, dt.date) or isinstance(start, dt.datetime)):
        raise ConfigError(f"{where}: 'start_date' must be a TOML date such as 2025-01-01, got {start!r}")
    prices: dict[str, Decimal] = {}
    for key in PRICE_KEYS:
        value = table.get(key)
        if value is None:
            if key in REQUIRED_PRICE_KEYS:
                raise ConfigError(f"{where}: '{key}' is missing (USD per million tokens)")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}: '{key}' must be a non-negative number (USD per million tokens), got {value!r}")
        prices[key] = Decimal(str(value))  # str: 2.5 stays 2.5, not its binary expansion
    return Override(model.strip().lower(), provider.strip().lower() if provider else None, start, ModelPrice(**prices))
