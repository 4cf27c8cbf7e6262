"""The built-in code scorers, vectorized: each one is a Polars expression (or a join over the
batch's spans) evaluated once per batch, so they run at column speed over millions of traces.

Every built-in answers the question its name asks (True: the condition holds) and records
nothing (null) where the question does not apply: no output, no tool call, no retriever, no
token count, a trace still in progress. Text rules read the root span's output as stored (JSON
stays JSON text). PII detection is the one rule Polars' regex engine cannot state (card
numbers need Luhn, the patterns need lookarounds): a Polars pre-filter picks the few outputs
that could hold PII, and the rules of `spanlake.tables.pii` (the ones ingest masks with) decide
on those.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import polars as pl

from spanlake.errors import ScoringError
from spanlake.jobs.scorer import Aggregation, Scorer, _digest
from spanlake.tables.pii import DEFAULT_RULES, IP_ADDRESS, MaskingRule

__all__ = [
    "AnySpanFailed", "InvalidJSON", "LacksCitations", "LatencyOverThreshold", "PIIDetection", "RefusalDetected",
    "RegexMatch", "ResponseLength", "RetrievalEmpty", "TokenBudgetExceeded", "ToolCallFailed", "TraceFailed",
    "builtin_scorers",
]  # fmt: skip

Field = Literal["inputs", "outputs"]


class BuiltinScorer(Scorer):
    """A vectorized scorer defined by its settings; `spans` says it reads the batch's spans."""

    default_name: ClassVar[str]
    uses_spans: ClassVar[bool] = False

    def __init__(
        self, *, name: str | None = None, aggregations: list[Aggregation] | None = None, timeout: float | None = None,
        **settings: Any,
    ) -> None:  # fmt: skip
        params = ("traces", "spans") if self.uses_spans else ("traces",)
        version = _digest(f"{type(self).__name__}:{sorted(settings.items())!r}")
        super().__init__(
            name or self.default_name, aggregations=aggregations, timeout=timeout, vectorized=True, params=params,
            version=version,
        )  # fmt: skip
        self.settings = settings

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.score(*args, **kwargs)

    def score(self, traces: pl.DataFrame, spans: pl.DataFrame | None = None) -> pl.Expr | pl.Series:
        return self.expression()

    def expression(self) -> pl.Expr:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"


def _regex(pattern: str, where: str) -> str:
    """`pattern`, checked now by the engine that runs it (Polars' Rust regex), not at scoring time."""
    try:
        pl.Series([""]).str.contains(pattern)
    except pl.exceptions.ComputeError as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        reason = next((line for line in lines if line.startswith("error:")), lines[0])
        raise ScoringError(f"{where}: invalid regex {pattern!r}: {reason}") from None
    return pattern


class LatencyOverThreshold(BuiltinScorer):
    """The trace took longer than `max_ms` milliseconds."""

    default_name = "latency_over_threshold"

    def __init__(self, max_ms: float, **options: Any) -> None:
        super().__init__(max_ms=float(max_ms), **options)
        self.max_ms = float(max_ms)

    def expression(self) -> pl.Expr:
        return pl.col("duration_ms") > self.max_ms


_COMPLETE = pl.col("state") != "IN_PROGRESS"


class TraceFailed(BuiltinScorer):
    """The trace's root span failed (state ERROR); null while the trace is in progress."""

    default_name = "trace_failed"

    def expression(self) -> pl.Expr:
        return pl.when(_COMPLETE).then(pl.col("state") == "ERROR")


class AnySpanFailed(BuiltinScorer):
    """Some span of the trace has status ERROR."""

    default_name = "any_span_failed"

    def expression(self) -> pl.Expr:
        return pl.col("error_count") > 0


class TokenBudgetExceeded(BuiltinScorer):
    """The trace's model calls used more than `max_tokens` tokens in total."""

    default_name = "token_budget_exceeded"

    def __init__(self, max_tokens: int, **options: Any) -> None:
        super().__init__(max_tokens=int(max_tokens), **options)
        self.max_tokens = int(max_tokens)

    def expression(self) -> pl.Expr:
        return pl.col("total_tokens") > self.max_tokens


class _SpanRule(BuiltinScorer):
    """True when some span of `span_type` matches `failed`; null for traces with no such span."""

    uses_spans = True
    span_type: ClassVar[str]

    def failed(self) -> pl.Expr:
        raise NotImplementedError

    def score(self, traces: pl.DataFrame, spans: pl.DataFrame | None = None) -> pl.Series:
        assert spans is not None
        per_trace = (
            spans.lazy().filter(pl.col("span_type") == self.span_type)
            .group_by("trace_id").agg(self.failed().any().alias("value"))
        )  # fmt: skip
        joined = traces.lazy().select("trace_id").join(per_trace, on="trace_id", how="left", maintain_order="left")
        return joined.collect()["value"]


class ToolCallFailed(_SpanRule):
    """A tool call (a TOOL span) of the trace failed."""

    default_name = "tool_call_failed"
    span_type = "TOOL"

    def failed(self) -> pl.Expr:
        return pl.col("status_code") == "ERROR"


_EMPTY_OUTPUTS = ["", "[]", "{}", "null", '""', '{"documents": []}', '{"documents":[]}']


class RetrievalEmpty(_SpanRule):
    """A retriever span of the trace returned nothing (no output, or an empty list or object)."""

    default_name = "retrieval_empty"
    span_type = "RETRIEVER"

    def failed(self) -> pl.Expr:
        out = pl.col("outputs").str.strip_chars()
        return out.is_null() | out.is_in(_EMPTY_OUTPUTS)


def _text(field: str) -> pl.Expr:
    if field not in ("inputs", "outputs"):
        raise ScoringError(f"a text rule reads inputs or outputs, not {field!r}")
    return pl.col(field)


class ResponseLength(BuiltinScorer):
    """The output is shorter than `min_length` or longer than `max_length`, counted in `unit`
    (chars or words); null without output."""

    default_name = "response_length_out_of_bounds"

    def __init__(
        self, *, min_length: int | None = None, max_length: int | None = None,
        unit: Literal["chars", "words"] = "chars", **options: Any,
    ) -> None:  # fmt: skip
        if min_length is None and max_length is None:
            raise ScoringError("ResponseLength needs min_length, max_length or both")
        if unit not in ("chars", "words"):
            raise ScoringError(f"ResponseLength counts chars or words, not {unit!r}")
        super().__init__(min_length=min_length, max_length=max_length, unit=unit, **options)
        self.min_length, self.max_length, self.unit = min_length, max_length, unit

    def expression(self) -> pl.Expr:
        text = pl.col("outputs")
        length = text.str.len_chars() if self.unit == "chars" else text.str.count_matches(r"\S+")
        out = pl.lit(False)
        if self.min_length is not None:
            out = out | (length < self.min_length)
        if self.max_length is not None:
            out = out | (length > self.max_length)
        return pl.when(text.is_not_null()).then(out)


class RegexMatch(BuiltinScorer):
    """`pattern` (Rust regex syntax, as Polars runs it) matches the output (or `field`)."""

    default_name = "regex_match"

    def __init__(self, pattern: str, *, field: Field = "outputs", **options: Any) -> None:
        super().__init__(pattern=pattern, field=field, **options)
        self.pattern, self.field = _regex(pattern, "RegexMatch"), field
        _text(field)

    def expression(self) -> pl.Expr:
        return _text(self.field).str.contains(self.pattern)


# Numbered references [1], footnotes [^a], named sources [source: x] and links.
DEFAULT_CITATION = r"(?i)\[\d+(?:[,-]\s*\d+)*\]|\[\^[\w-]+\]|\[(?:source|ref|doc|citation)[^\]]*\]|https?://\S+"


class LacksCitations(BuiltinScorer):
    """The output cites nothing: no match of `pattern` (by default [1], [^1], [source: ...] or a URL)."""

    default_name = "lacks_citations"

    def __init__(self, pattern: str = DEFAULT_CITATION, **options: Any) -> None:
        super().__init__(pattern=pattern, **options)
        self.pattern = _regex(pattern, "LacksCitations")

    def expression(self) -> pl.Expr:
        return ~pl.col("outputs").str.contains(self.pattern)


DEFAULT_REFUSAL = (
    r"(?i)\b(?:I(?:'|’)?m sorry,? but|I(?: am|'m|’m) (?:unable|not able) to|I (?:can(?:'|’)?t|cannot|can not|won(?:'|’)?t|"
    r"will not) (?:help|assist|provide|comply|do that|answer|share|discuss|support)|as an AI(?: language model)?,? I)"
)


class RefusalDetected(BuiltinScorer):
    """The output refuses the request ("I can't help with that", "I'm sorry, but ...")."""

    default_name = "refusal_detected"

    def __init__(self, pattern: str = DEFAULT_REFUSAL, **options: Any) -> None:
        super().__init__(pattern=pattern, **options)
        self.pattern = _regex(pattern, "RefusalDetected")

    def expression(self) -> pl.Expr:
        return pl.col("outputs").str.contains(self.pattern)


class InvalidJSON(BuiltinScorer):
    """The output is not valid JSON (a JSON `null` counts as valid)."""

    default_name = "invalid_json"

    def expression(self) -> pl.Expr:
        text = pl.col("outputs")
        valid = text.str.json_path_match("$").is_not_null() | (text.str.strip_chars() == "null")
        return pl.when(text.is_not_null()).then(~valid)


# A superset of where a PII rule can match: a rule's gate substrings, a digit run long enough
# for a phone or card number, an IPv4 or IPv6 shape. Only outputs passing it reach Python.
_DIGIT_RUN = r"[0-9+(][0-9 ().-]{7,}"
_IP_SHAPES = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:"


class PIIDetection(BuiltinScorer):
    """The output holds personal data or a secret: an e-mail address, phone or card number
    (Luhn-checked), API key or token, or IP address. The rationale names the kinds found."""

    default_name = "pii_detected"

    def __init__(self, *, field: Field = "outputs", **options: Any) -> None:
        super().__init__(field=field, **options)
        self.field = field
        self.rules: Sequence[MaskingRule] = (*DEFAULT_RULES, IP_ADDRESS)
        self._compiled = [(r.name, re.compile(r.pattern), r.check) for r in self.rules]
        gates = {g for r in DEFAULT_RULES if not r.numeric for g in r.gates}
        self._gate = "|".join([*(re.escape(g) for g in sorted(gates)), _DIGIT_RUN, _IP_SHAPES])
        _text(field)

    def kinds(self, text: str) -> list[str]:
        """The rules that match `text`, by name."""
        return [
            name for name, regex, check in self._compiled
            if any(check is None or check(m.group()) for m in regex.finditer(text))
        ]  # fmt: skip

    def score(self, traces: pl.DataFrame, spans: pl.DataFrame | None = None) -> pl.Series:
        text = traces[self.field]
        candidate = text.str.contains(self._gate).fill_null(False)
        found: list[list[str] | None] = [None] * traces.height
        for i in candidate.arg_true():
            found[i] = self.kinds(text[i])
        value = [None if t is None else bool(f) for t, f in zip(text, found)]
        rationale = [f"found: {', '.join(dict.fromkeys(f))}" if f else None for f in found]
        return pl.DataFrame(
            {"value": value, "rationale": rationale}, schema={"value": pl.Boolean, "rationale": pl.String}
        ).to_struct("pii")


def builtin_scorers() -> list[BuiltinScorer]:
    """The built-ins that need no settings, with their defaults."""
    return [
        TraceFailed(), AnySpanFailed(), ToolCallFailed(), RetrievalEmpty(), LacksCitations(), PIIDetection(),
        RefusalDetected(), InvalidJSON(),
    ]  # fmt: skip
