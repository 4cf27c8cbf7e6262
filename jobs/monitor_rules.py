"""Monitor rules: the `[[monitors]]` entries of the jobs config file (the file of `[[scorers]]`,
SPANLAKE_SCORERS_FILE / `--config`), which `spanlake jobs run monitors` evaluates.

    [[monitors]]
    name = "user-daily-spend"   # unique; alerts.rule
    metric = "cost_usd"         # what is measured (METRICS below)
    window = "1d"               # rolling window [now - window, now): <n>m, <n>h or <n>d
    threshold = 5.0
    by = "user_id"              # optional: service, model, environment or user_id (one alert scope per value)
    filter = "service_name = 'support-bot'"  # optional: a search filter (the `traces search` language)
    comparison = "above"        # optional: above (fire when observed > threshold) or below (<)
    min_count = 20              # optional: a window with fewer rows than this never fires
    webhook = "https://hooks.slack.com/services/..."  # optional: instead of SPANLAKE_ALERT_WEBHOOK_URL
    scorer = "trace_failed"     # scorer_pass_rate only: the assessment name

Metrics, each over the rows of the window (`rows` is what min_count counts):

    cost_usd                   cost_rollups hour rows of kind app starting in the window (whole hours): USD; rows: spans
    judge_spend_usd            the same for kind judge (LLM judges' spend; by model = the judge model)
    error_rate                 trace_info, completed traces (OK, ERROR) by request_time: share ERROR; rows: traces
    latency_p50_ms / _p95_ms / _p99_ms   the same traces' duration_ms quantile
    scorer_pass_rate           valid `scorer` feedback created in the window: mean of value_as_number (yes/True = 1)
    ingest_freshness_seconds   seconds since the newest ingest_batches commit (a stalled ingest fires)
    dead_letter_rate           ingest_batches committed in the window: dead_letters / messages; rows: batches

Filters: trace_info metrics take any search filter; cost_usd one over the columns its rollups keep
(service_name, environment, user_id, models); the other metrics none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from spanlake.errors import ConfigError, NothingConfigured
from spanlake.jobs.registry import read_config

Comparison = Literal[">", "<"]
DIMENSIONS = ("service", "model", "environment", "user_id")
COST_FILTER_COLUMNS = {"service_name", "environment", "user_id", "models"}  # trace_info names the rollups hold
KEYS = {"name", "metric", "window", "threshold", "by", "filter", "comparison", "scorer", "min_count", "webhook"}
COMPARISONS: dict[str, Comparison] = {"above": ">", "below": "<"}
_UNITS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Metric:
    source: str  # the one table it reads
    comparison: Comparison  # when a rule does not say
    by: tuple[str, ...]  # dimensions it can be grouped by
    filters: Literal["any", "cost", "none"]


_TRACES = Metric("trace_info", ">", DIMENSIONS, "any")
METRICS = {
    "cost_usd": Metric("cost_rollups", ">", DIMENSIONS, "cost"),
    "judge_spend_usd": Metric("cost_rollups", ">", ("model",), "none"),
    "error_rate": _TRACES,
    "latency_p50_ms": _TRACES,
    "latency_p95_ms": _TRACES,
    "latency_p99_ms": _TRACES,
    "scorer_pass_rate": Metric("assessments", "<", (), "none"),
    "ingest_freshness_seconds": Metric("ingest_batches", ">", (), "none"),
    "dead_letter_rate": Metric("ingest_batches", ">", (), "none"),
}


@dataclass(frozen=True)
class MonitorRule:
    name: str
    metric: str
    window: str  # as written ("1h"); `seconds` is its length
    seconds: int
    threshold: float
    comparison: Comparison
    by: str | None = None
    filter: str | None = None
    scorer: str | None = None
    min_count: int = 1
    webhook: str | None = None

    @property
    def source(self) -> str:
        return METRICS[self.metric].source


def window_seconds(text: str) -> int | None:
    """"15m", "1h", "1d" -> seconds; None when it is not one."""
    m = re.fullmatch(r"([1-9][0-9]*)([mhd])", text)
    return int(m[1]) * _UNITS[m[2]] if m else None


def load_monitors(path: Path) -> list[MonitorRule]:
    """The monitor rules of the jobs config file `path`; a ConfigError naming the file, entry and key."""
    entries = read_config(path).get("monitors")
    if not isinstance(entries, list) or not entries:
        raise NothingConfigured(f"{path} registers no monitors: it needs a `monitors` list ([[monitors]] in TOML)")
    rules = [_rule(f"{path}, monitor {i}", entry) for i, entry in enumerate(entries, 1)]
    names = [r.name for r in rules]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: monitor name {twice[0]!r} is used twice; alerts tell rules apart by name")
    return rules


def _rule(where: str, entry: Any) -> MonitorRule:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: an entry is a table of keys ({', '.join(sorted(KEYS))}), got {entry!r}")
    if isinstance(entry.get("name"), str) and entry["name"].strip():
        where = f"{where} ({entry['name']})"
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; keys are {', '.join(sorted(KEYS))}")
    for key in ("name", "metric", "window", "threshold"):  # the keys every monitor has
        if key not in entry:
            raise ConfigError(f"{where}: `{key}` is missing (every monitor has name, metric, window and threshold)")
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name must be a non-empty string, got {name!r}")
    metric = METRICS.get(entry["metric"]) if isinstance(entry["metric"], str) else None
    if metric is None:
        raise ConfigError(f"{where}: metric {entry['metric']!r} is not one of {', '.join(METRICS)}")
    seconds = window_seconds(entry["window"]) if isinstance(entry["window"], str) else None
    if seconds is None:
        raise ConfigError(f'{where}: window {entry["window"]!r} must be minutes, hours or days: "15m", "1h", "1d"')
    if metric.source == "cost_rollups" and seconds % 3600:
        raise ConfigError(f"{where}: window {entry['window']!r}: cost windows are whole hours (cost_rollups holds hours)")
    threshold = entry["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"{where}: threshold must be a number, got {threshold!r}")
    comparison = entry.get("comparison")
    if comparison is not None and comparison not in COMPARISONS:
        raise ConfigError(f"{where}: comparison must be above or below, got {comparison!r}")
    by = entry.get("by")
    if by is not None and by not in metric.by:
        allowed = f"one of {', '.join(metric.by)}" if metric.by else "not given"
        raise ConfigError(f"{where}: by = {by!r}: for {entry['metric']} it is {allowed}")
    scorer = entry.get("scorer")
    if (scorer is not None) != (entry["metric"] == "scorer_pass_rate"):
        raise ConfigError(f'{where}: `scorer = "<assessment name>"` goes with metric scorer_pass_rate, and only there')
    if scorer is not None and (not isinstance(scorer, str) or not scorer):
        raise ConfigError(f"{where}: scorer must be an assessment name, got {scorer!r}")
    min_count = entry.get("min_count", 1)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ConfigError(f"{where}: min_count must be a whole number from 1, got {min_count!r}")
    webhook = entry.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not re.match(r"https?://", webhook)):
        raise ConfigError(f"{where}: webhook must be an http(s):// URL, got {webhook!r}")
    return MonitorRule(
        name=name, metric=entry["metric"], window=entry["window"], seconds=seconds, threshold=float(threshold),
        comparison=COMPARISONS[comparison] if comparison else metric.comparison, by=by,
        filter=_filter(where, entry.get("filter"), metric), scorer=scorer, min_count=min_count, webhook=webhook,
    )  # fmt: skip


def _filter(where: str, text: Any, metric: Metric) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConfigError(f"{where}: filter must be a search filter string, got {text!r}")
    if metric.filters == "none":
        raise ConfigError(f"{where}: this metric takes no filter")
    from spanlake.query import compile_filter

    try:
        compiled = compile_filter(text)
    except Exception as exc:  # FilterError: say where it was
        raise ConfigError(f"{where}: bad filter: {exc}") from None
    if metric.filters == "cost":
        names = set() if compiled.predicate is None else set(compiled.predicate.meta.root_names())
        if compiled.span_predicates or compiled.assessment_predicates or not names <= COST_FILTER_COLUMNS:
            raise ConfigError(
                f"{where}: a cost filter names only {', '.join(sorted(COST_FILTER_COLUMNS))} (what cost_rollups keeps)"
            )
    return text
