"""The trace filter language's compilation: the field catalogue (which names a filter may use
and what each reads) and the compiler from the AST of `spanlake.query.grammar` to Polars
expressions over `trace_info` (plus per-clause predicates over `span_data`).

Nothing in a filter is evaluated: values only become literals. Positions in errors are 0-based
character offsets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeGuard

import polars as pl

from spanlake.errors import FilterError
from spanlake.query.assessments import ASSESSMENT_KINDS, BOOL_WORDS
from spanlake.query.costs import COST_COLUMN, COST_FIELD
from spanlake.query.grammar import (
    PATTERN_OPS,
    And,
    Clause,
    Literal,
    Node,
    Not,
    Or,
    abbreviate,
    parse_filter,
    parse_order_key,
)  # fmt: skip
from spanlake.tables.schemas import SPAN_DATA, TRACE_INFO

__all__ = [
    "ASSESSMENT_MATCH", "CompiledFilter", "Field", "FilterError", "Node", "compile_filter", "order_key",
    "parse_filter", "resolve_field",
]  # fmt: skip


# --- helpers the compiler shares --------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def regex_escape(text: str) -> str:
    """Escape for the Rust regex crate (the set its own `escape` escapes)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in text)


def like_to_regex(pattern: str, *, case_insensitive: bool) -> str:
    """SQL LIKE -> anchored regex: % is any run, _ one character, backslash escapes the next."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(regex_escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else regex_escape(ch))
        i += 1
    # (?s): previews and payloads hold newlines, which % and _ must match too.
    return ("(?is)" if case_insensitive else "(?s)") + "^" + "".join(out) + "$"


def parse_time_us(lit: Literal, field: str) -> int:
    """A time value as epoch microseconds: epoch ms number or ISO-8601 string (naive = UTC)."""
    try:
        if isinstance(lit.value, (int, float)):
            us = round(lit.value * 1000)
            _EPOCH + dt.timedelta(microseconds=us)  # raises when out of datetime's range
            return us
        when = dt.datetime.fromisoformat(lit.value)
    except (ValueError, OverflowError):
        raise FilterError(
            f"{field} takes epoch milliseconds or an ISO-8601 time; {lit.value!r} at position {lit.pos} is neither"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


def parse_date(lit: Literal, field: str) -> dt.date:
    if isinstance(lit.value, str):
        try:
            return dt.date.fromisoformat(lit.value)
        except ValueError:
            pass
    raise FilterError(f"{field} takes an ISO date like '2024-05-01'; {lit.value!r} at position {lit.pos} is not one")


# --- fields -----------------------------------------------------------------------------

SPAN_MATCH = "__span_match_{}"
ASSESSMENT_MATCH = "__assessment_match_{}"
TRACE_ALIASES = {  # MLflow's trace./attributes. names -> (trace_info column, value is epoch ms)
    "timestamp_ms": ("request_time", True),
    "execution_time_ms": ("duration_ms", False),
    "end_time_ms": ("end_time", True),
    "status": ("state", False),
    "name": ("root_span_name", False),
    "request_id": ("trace_id", False),
}
SPAN_ALIASES = {"name": "name", "type": "span_type", "status": "status_code"}
VALID_FIELDS = (
    f"a trace_info column ({', '.join(TRACE_INFO.column_names)}) or one of "
    f"{', '.join([*TRACE_ALIASES, 'client_request_id', 'text'])}, bare or as trace.<x> / attributes.<x>; "
    "tags.<key>; metadata.<key>; "
    "span.name, span.type, span.status, span.content, span.attributes.<key>, span.<span_data column>; "
    f"feedback.<name>, expectation.<name>; {COST_FIELD} (USD, from the cost job's trace_costs)"
)
_TRACE_DTYPES = dict(pl.from_arrow(TRACE_INFO.schema.empty_table()).schema)  # type: ignore[union-attr]
_SPAN_DTYPES = dict(pl.from_arrow(SPAN_DATA.schema.empty_table()).schema)  # type: ignore[union-attr]


@dataclass(frozen=True)
class Field:
    """A resolved field: what it reads, of which kind, and from which table."""

    name: str
    kind: str  # string, number, time, date, list, map, text, json
    exprs: tuple[pl.Expr, ...]
    dtype: pl.DataType = pl.String()
    column: str | None = None  # the plain column read, when there is one
    on_spans: bool = False
    ms: bool = False  # a time whose value is whole epoch ms (request_time floored)
    assessment: tuple[str, str] | None = None  # (kind, name) of a feedback./expectation. field

    @property
    def expr(self) -> pl.Expr:
        return self.exprs[0]


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_numeric():
        return "number"
    if isinstance(dtype, pl.Datetime):
        return "time"
    return {pl.Date: "date", pl.List: "list", pl.Map: "map"}.get(dtype.base_type(), "string")


def _column(name: str, shown: str, *, on_spans: bool = False, ms: bool = False) -> Field:
    dtype = (_SPAN_DTYPES if on_spans else _TRACE_DTYPES)[name]
    return Field(shown, _kind(dtype), (pl.col(name),), dtype, name, on_spans, ms)


def _json_path(key: str, field: str) -> str:
    # The path is built, never spliced from free text: the key is quoted with a delimiter it
    # does not contain, and keys the JSONPath engine cannot quote safely are refused.
    if not key or "\\" in key or ("'" in key and '"' in key):
        raise FilterError(f"{field}: attribute keys that are empty, hold a backslash or both quote kinds are not supported")
    quote = "'" if '"' in key else '"'
    return f"$[{quote}{key}{quote}]"


def _span_field(rest: tuple[str, ...], shown: str) -> Field | None:
    if rest == ("content",):
        return Field(shown, "text", (pl.col("inputs"), pl.col("outputs")), on_spans=True)
    if len(rest) >= 2 and rest[0] == "attributes":
        path = _json_path(".".join(rest[1:]), shown)
        return Field(shown, "json", (pl.col("attributes").str.json_path_match(path),), on_spans=True)
    if len(rest) == 1 and (rest[0] in SPAN_ALIASES or rest[0] in _SPAN_DTYPES):
        return _column(SPAN_ALIASES.get(rest[0], rest[0]), shown, on_spans=True)
    return None


def _trace_field(name: str, shown: str) -> Field | None:
    if name in TRACE_ALIASES:
        column, ms = TRACE_ALIASES[name]
        return _column(column, shown, ms=ms)
    if name == "text":
        return Field(shown, "text", (pl.col("request_preview"), pl.col("response_preview")))
    if name == "client_request_id":  # no column of its own: the root span's tag of that name
        return Field(shown, "string", (pl.col("tags").map.get("client_request_id"),))
    if name in _TRACE_DTYPES:
        return _column(name, shown)
    return None


def resolve_field(path: tuple[str, ...], pos: int) -> Field:
    """The Field a dotted path names; FilterError listing the valid fields when none."""
    shown = ".".join(path)
    head, rest = path[0], path[1:]
    found: Field | None = None
    if shown == COST_FIELD:  # not a trace_info column: the search joins trace_costs (spanlake.query.costs)
        found = Field(shown, "number", (pl.col(COST_COLUMN),), pl.Float64(), COST_COLUMN)
    elif not rest:  # bare names: trace_info columns and the trace./attributes. names
        found = _trace_field(head, shown)
    elif head in ("trace", "attributes") and len(rest) == 1:
        found = _trace_field(rest[0], shown)
    elif head in ("tags", "tag", "metadata", "request_metadata") and rest:
        column = "tags" if head.startswith("tag") else "metadata"
        found = Field(shown, "string", (pl.col(column).map.get(".".join(rest)),))
    elif head == "span" and rest:
        found = _span_field(rest, shown)
    elif head in ASSESSMENT_KINDS and rest and all(rest):  # over assessments rows: see assessment_predicate
        found = Field(shown, "assessment", (pl.col("value_string"),), assessment=(head, ".".join(rest)))
    if found is None:
        raise FilterError(f"unknown field {shown!r} at position {pos}; valid fields: {VALID_FIELDS}")
    return found


def order_key(text: str) -> tuple[str, pl.Expr, bool]:
    """An `order_by` item as (field name, sort expression, descending)."""
    path, pos, descending = parse_order_key(text)
    fld = resolve_field(path, pos)
    if fld.on_spans or fld.kind not in ("string", "number", "time", "date"):
        raise FilterError(
            f"cannot order by {fld.name!r}: order keys are trace fields holding a string, number, time or date"
        )
    return fld.name, fld.expr, descending


# --- compiler ---------------------------------------------------------------------------

_CMP = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_ORDERING = ("<", "<=", ">", ">=")
_OPS = {
    "string": ("=", "!=", *PATTERN_OPS, "IN"),
    "list": ("=", "!=", *PATTERN_OPS, "IN"),
    "number": ("=", "!=", *_ORDERING, "IN"),
    "time": ("=", "!=", *_ORDERING, "IN"),
    "date": ("=", "!=", *_ORDERING, "IN"),
    "json": ("=", "!=", *_ORDERING, *PATTERN_OPS, "IN"),
    "text": ("=", "!=", *PATTERN_OPS),
    "map": (),
    "assessment": ("=", "!=", *_ORDERING, *PATTERN_OPS, "IN"),
}
_KIND_NAMES = {"string": "a string", "list": "a list of strings", "number": "a number", "time": "a time",
               "date": "a date", "json": "a JSON attribute", "text": "full text", "map": "a map",
               "assessment": "an assessment value"}  # fmt: skip
_TIME = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class CompiledFilter:
    """A filter as Polars expressions.

    `predicate` runs on trace_info once each `span_predicates[i]` has been turned into the
    boolean column SPAN_MATCH.format(i): "the trace has at least one span where it holds".
    One span predicate is all the span clauses of one AND (they describe one span, as in
    MLflow; see _Compiler). `days` bounds the `day` partition as implied by top-level AND
    clauses on request_time or day (None: unbounded).
    """

    predicate: pl.Expr | None
    span_predicates: tuple[pl.Expr, ...]
    days: tuple[dt.date | None, dt.date | None]
    # A condition on the SPAN_MATCH columns that every matching trace meets (None: none), e.g.
    # `m0` for "state = 'OK' AND span.type = 'TOOL' AND span.status = 'ERROR'": the search can keep only
    # those span matches and inner-join them, instead of joining every trace of the range.
    span_required: pl.Expr | None = None
    # Like span_predicates, over valid assessments rows (one per feedback./expectation. clause),
    # each turned into the boolean column ASSESSMENT_MATCH.format(i); `assessment_required`, a
    # condition on those columns that every matching trace meets (None: none).
    assessment_predicates: tuple[pl.Expr, ...] = ()
    assessment_required: pl.Expr | None = None
    reads_cost: bool = False  # a trace.cost clause: the search joins trace_costs before `predicate`


def _type_error(fld: Field, lit: Literal, why: str = "") -> FilterError:
    what = "the string" if isinstance(lit.value, str) else "the number"
    kind = f"{_KIND_NAMES[fld.kind]} ({fld.dtype})" if fld.kind == "number" else _KIND_NAMES[fld.kind]
    return FilterError(
        f"field {fld.name!r} is {kind} and cannot be compared with {what} {lit.value!r} at position {lit.pos}{why}"
    )


def _check(fld: Field, clause: Clause) -> tuple[str, bool]:
    """The clause's base operator and whether it is negated, after checking it fits the field."""
    negated = clause.op.startswith("NOT ")
    base = clause.op[4:] if negated else clause.op
    if base.startswith("IS") and fld.kind != "text":
        return base, False
    if base not in _OPS[fld.kind]:
        allowed = ", ".join(_OPS[fld.kind]) or "only IS NULL and IS NOT NULL (use <field>.<key> for a key)"
        raise FilterError(
            f"{clause.op} is not supported for {fld.name!r} ({_KIND_NAMES[fld.kind]}) at position {clause.pos}; "
            f"it takes {allowed}"
        )
    for lit in clause.values:
        is_str = isinstance(lit.value, str)
        if not is_str and (fld.kind in ("string", "list", "text", "date") or base in PATTERN_OPS):
            raise _type_error(fld, lit)
        if is_str and fld.kind == "number":
            raise _type_error(fld, lit)
        if is_str and fld.kind in ("json", "assessment") and base in _ORDERING:
            raise _type_error(fld, lit, " (<, <=, >, >= compare numbers)")
    return base, negated


def _pattern(base: str, lit: Literal) -> str:
    text = str(lit.value)
    pattern = text if base == "RLIKE" else like_to_regex(text, case_insensitive=base == "ILIKE")
    try:  # fail at compile time, with a position, rather than in the middle of a scan
        pl.select(pl.lit("").str.contains(pattern))
    except pl.exceptions.PolarsError as exc:
        if "size limit" in str(exc):  # e.g. LIKE with 50,000 '_'
            raise FilterError(
                f"pattern {abbreviate(text)!r} at position {lit.pos} is too large for the regular-expression engine"
            ) from None
        raise FilterError(f"invalid regular expression {abbreviate(text)!r} at position {lit.pos}") from None
    return pattern


def _strings(e: pl.Expr, base: str, values: tuple[Literal, ...]) -> pl.Expr:
    if base == "IN":
        return e.is_in(pl.Series([v.value for v in values], dtype=pl.String).implode())
    if base in PATTERN_OPS:
        return e.str.contains(_pattern(base, values[0]))
    return getattr(e, _CMP[base])(pl.lit(values[0].value, dtype=pl.String))


def _numbers(e: pl.Expr, dtype: pl.DataType, base: str, values: tuple[Literal, ...]) -> pl.Expr:
    # ints beyond Int64 compare as floats rather than overflow a literal
    nums = [v.value if isinstance(v.value, int) and -(2**63) <= v.value < 2**63 else float(v.value) for v in values]
    if base != "IN":
        return getattr(e, _CMP[base])(pl.lit(nums[0]))
    # is_in wants one dtype: stay on the column's integers when every value is one
    if dtype.is_integer() and all(isinstance(n, int) for n in nums):
        return e.is_in(pl.Series(nums, dtype=pl.Int64).implode())
    return e.cast(pl.Float64).is_in(pl.Series([float(n) for n in nums], dtype=pl.Float64).implode())


def _json(e: pl.Expr, base: str, values: tuple[Literal, ...]) -> pl.Expr:
    # json_path_match renders every value as text; numbers compare as numbers.
    strs = tuple(v for v in values if isinstance(v.value, str))
    nums = tuple(v for v in values if not isinstance(v.value, str))
    as_number = e.cast(pl.Float64, strict=False)
    if base != "IN":
        return _strings(e, base, values) if strs else _numbers(as_number, pl.Float64(), base, values)
    parts = [_strings(e, "IN", strs)] if strs else []
    parts += [_numbers(as_number, pl.Float64(), "IN", nums)] if nums else []
    return parts[0] if len(parts) == 1 else parts[0] | parts[1]


def _text(fld: Field, base: str, values: tuple[Literal, ...]) -> pl.Expr:
    # Missing previews count as empty text, so `!=` and NOT keep traces without any.
    pattern = "(?is)" + regex_escape(str(values[0].value)) if base in ("=", "!=") else _pattern(base, values[0])
    match = pl.any_horizontal([e.fill_null("").str.contains(pattern) for e in fld.exprs])
    return ~match if base == "!=" else match


def _lists(e: pl.Expr, base: str, values: tuple[Literal, ...]) -> pl.Expr:
    if base in ("=", "!="):  # a list "equals" a value it contains
        found = e.list.contains(pl.lit(values[0].value, dtype=pl.String))
        return ~found if base == "!=" else found
    return e.list.eval(_strings(pl.element(), base, values)).list.any()


_MIN_US = (dt.datetime.min.replace(tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_US = (dt.datetime.max.replace(tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(microseconds=1)


def _time_lit(us: int) -> pl.Expr:
    # clamped: a bound one ms past datetime.max still means "everything before it". Built from
    # the integer (the planner folds the cast): a Python datetime literal costs ~2 ms to convert.
    return pl.lit(min(max(us, _MIN_US), _MAX_US), dtype=pl.Int64).cast(_TIME)


def _times(fld: Field, base: str, values: tuple[Literal, ...]) -> pl.Expr:
    e, us = fld.expr, [parse_time_us(v, fld.name) for v in values]
    if not fld.ms:
        if base == "IN":
            return e.is_in(pl.Series(us, dtype=pl.Int64).cast(_TIME).implode())
        return getattr(e, _CMP[base])(_time_lit(us[0]))
    if base == "IN":
        return e.dt.epoch("ms").is_in(pl.Series([u // 1000 for u in us if u % 1000 == 0], dtype=pl.Int64).implode())
    # An ms field is request_time floored to whole ms: rewrite to ranges on the raw column so
    # the comparison still prunes by statistics. floor(t) > v <=> t >= floor(v) + 1, etc.
    u = us[0]
    floor_next, ceil = (u // 1000 + 1) * 1000, -(-u // 1000) * 1000
    if base in ("=", "!="):
        equal: pl.Expr
        if u % 1000:  # a fractional ms equals no floored time (null stays null)
            equal = pl.when(e.is_not_null()).then(False)
        else:
            equal = (e >= _time_lit(u)) & (e < _time_lit(u + 1000))
        return ~equal if base == "!=" else equal
    bound = {">": floor_next, ">=": ceil, "<": ceil, "<=": floor_next}[base]
    return e >= _time_lit(bound) if base in (">", ">=") else e < _time_lit(bound)


def _dates(e: pl.Expr, fld: Field, base: str, values: tuple[Literal, ...]) -> pl.Expr:
    days = [parse_date(v, fld.name) for v in values]
    if base == "IN":
        return e.is_in(pl.Series(days, dtype=pl.Date).implode())
    return getattr(e, _CMP[base])(pl.lit(days[0], dtype=pl.Date))


def clause_expr(fld: Field, clause: Clause) -> pl.Expr:
    """One clause as a boolean expression over the table the field lives in."""
    base, negated = _check(fld, clause)
    e, values = fld.expr, clause.values
    if base in ("IS NULL", "IS NOT NULL"):
        return e.is_null() if base == "IS NULL" else e.is_not_null()
    if fld.kind == "number":
        out = _numbers(e, fld.dtype, base, values)
    elif fld.kind == "time":
        out = _times(fld, base, values)
    elif fld.kind == "date":
        out = _dates(e, fld, base, values)
    elif fld.kind == "json":
        out = _json(e, base, values)
    elif fld.kind == "text":
        out = _text(fld, base, values)
    elif fld.kind == "list":
        out = _lists(e, base, values)
    else:
        out = _strings(e, base, values)
    return ~out if negated else out


def assessment_predicate(fld: Field, clause: Clause) -> pl.Expr:
    """A `feedback.<name>` / `expectation.<name>` clause over assessments rows: the row is of that
    kind and name and its value satisfies the clause. A value compares only with values of its
    own type: a quoted value with string values (and, for the words of BOOL_WORDS, with bools:
    'yes' and 'true' match True), a number with number values; so `!=` and NOT IN are true for a
    row of a comparable type whose value differs, and never for an error (no value). IS NOT NULL
    is "has a value"; the compiler makes IS NULL its negation at the trace level."""
    assert fld.assessment is not None
    kind, name = fld.assessment
    base, negated = _check(fld, clause)
    row = (pl.col("kind") == kind) & (pl.col("name") == name)
    if base in ("IS NULL", "IS NOT NULL"):
        return row & pl.col("value_type").is_not_null()
    value_type = pl.col("value_type")
    strs = tuple(v for v in clause.values if isinstance(v.value, str))
    nums = tuple(v for v in clause.values if not isinstance(v.value, str))
    groups: list[tuple[pl.Expr, pl.Expr]] = []  # (the row's value is comparable, the comparison)
    if strs:
        groups.append((value_type == "string", _strings(pl.col("value_string"), base, strs)))
        flags = [BOOL_WORDS[str(v.value).lower()] for v in strs if str(v.value).lower() in BOOL_WORDS]
        if flags and base not in PATTERN_OPS:
            same = pl.col("value_bool").is_in(pl.Series(flags, dtype=pl.Boolean).implode())
            groups.append((value_type == "bool", ~same if base == "!=" else same))
    if nums:
        groups.append((value_type == "number", _numbers(pl.col("value_number"), pl.Float64(), base, nums)))
    return row & any_of([comparable & (~test if negated else test) for comparable, test in groups]).fill_null(False)


def _day_bound(clause: Clause) -> tuple[dt.date | None, dt.date | None]:
    fld = resolve_field(clause.field, clause.pos)
    if fld.on_spans or fld.column not in ("request_time", "day") or clause.op not in ("=", *_ORDERING):
        return None, None
    lit = clause.values[0]
    if fld.column == "day":
        day = parse_date(lit, fld.name)
    else:
        day = (_EPOCH + dt.timedelta(microseconds=parse_time_us(lit, fld.name))).date()
    return (day if clause.op in ("=", ">", ">=") else None), (day if clause.op in ("=", "<", "<=") else None)


def _days(node: Node) -> tuple[dt.date | None, dt.date | None]:
    """Day partitions the filter can match: only top-level AND clauses narrow them (day = date(request_time))."""
    lo: dt.date | None = None
    hi: dt.date | None = None
    for item in _conjuncts(node):
        if isinstance(item, Clause):
            a, b = _day_bound(item)
            lo = a if lo is None or (a is not None and a > lo) else lo
            hi = b if hi is None or (b is not None and b < hi) else hi
    return lo, hi


@dataclass(frozen=True)
class _Exists:
    """Some span of the trace satisfies `predicate` (over span_data); not yet given a SPAN_MATCH
    column, so an OR can still merge it with other span alternatives."""

    predicate: pl.Expr


_Built: TypeAlias = tuple[pl.Expr, pl.Expr | None] | _Exists  # (trace-side expression, span requirement)
_FOLDABLE = ("string", "list", "number", "time", "date", "json")  # kinds where `a = x OR a = y` is `a IN (x, y)`


def _foldable(node: Node) -> TypeGuard[Clause]:
    """`f = x` or `f IN (...)` on a field where an OR of them is one IN."""
    return isinstance(node, Clause) and node.op in ("=", "IN") and resolve_field(node.field, node.pos).kind in _FOLDABLE


def _conjuncts(node: Node) -> list[Node]:
    """The operands of an AND chain, through parentheses: AND is associative."""
    return [c for item in node.items for c in _conjuncts(item)] if isinstance(node, And) else [node]


def _clauses(node: Node) -> list[Clause]:
    """Every clause of the filter, in text order."""
    if isinstance(node, Clause):
        return [node]
    return [c for item in ((node.item,) if isinstance(node, Not) else node.items) for c in _clauses(item)]


def _disjuncts(node: Node) -> list[Node]:
    return [d for item in node.items for d in _disjuncts(item)] if isinstance(node, Or) else [node]


class _Compiler:
    """AST -> Polars. Span clauses joined by AND in one boolean context describe one span, as in
    MLflow (one correlated EXISTS): the conjunction's span clauses become one span predicate,
    true for a trace when some span satisfies all of them. An OR of span alternatives is one
    predicate too (some span satisfies a, or some satisfies b: some span satisfies a OR b);
    NOT negates the trace-level result ("no span ...")."""

    def __init__(self) -> None:
        self.span_predicates: list[pl.Expr] = []
        self.assessment_predicates: list[pl.Expr] = []
        self.assessment_clauses: dict[int, int] = {}  # id(clause) -> its ASSESSMENT_MATCH index

    def assessment(self, fld: Field, clause: Clause) -> pl.Expr:
        """The trace has a valid assessment row where the clause holds (IS NULL: it has none)."""
        self.assessment_clauses[id(clause)] = len(self.assessment_predicates)
        self.assessment_predicates.append(assessment_predicate(fld, clause))
        match = pl.col(ASSESSMENT_MATCH.format(len(self.assessment_predicates) - 1))
        return ~match if clause.op == "IS NULL" else match

    def trace_side(self, built: _Built) -> tuple[pl.Expr, pl.Expr | None]:
        """(expression over trace_info, a necessary condition on the span matches or None)."""
        if not isinstance(built, _Exists):
            return built
        self.span_predicates.append(built.predicate)
        match = pl.col(SPAN_MATCH.format(len(self.span_predicates) - 1))
        return match, match

    def build(self, node: Node) -> _Built:
        if isinstance(node, Or):
            return self.disjunction(node)
        if isinstance(node, Not):
            return ~self.trace_side(self.build(node.item))[0], None  # (conservative: no requirement through NOT)
        return self.conjunction(_conjuncts(node))

    def conjunction(self, items: list[Node]) -> _Built:
        span_exprs: list[pl.Expr] = []
        parts: list[tuple[pl.Expr, pl.Expr | None]] = []
        for item in items:  # in text order, so the first bad clause is the one reported
            if isinstance(item, Clause):
                fld = resolve_field(item.field, item.pos)
                if fld.assessment is not None:  # each one its own EXISTS: one row has one name
                    parts.append((self.assessment(fld, item), None))
                    continue
                expr = clause_expr(fld, item)
                if fld.on_spans:
                    span_exprs.append(expr)
                    continue
                parts.append((expr, None))
            else:
                parts.append(self.trace_side(self.build(item)))
        if span_exprs:
            group = _Exists(all_of(span_exprs))
            if not parts:
                return group
            parts.append(self.trace_side(group))
        needed = [r for _, r in parts if r is not None]
        return all_of([e for e, _ in parts]), all_of(needed) if needed else None

    def disjunction(self, node: Or) -> _Built:
        span_exprs: list[pl.Expr] = []
        parts: list[tuple[pl.Expr, pl.Expr | None]] = []
        for built in self.alternatives(node):
            if isinstance(built, _Exists):
                span_exprs.append(built.predicate)
            else:
                parts.append(built)
        if span_exprs:
            group = _Exists(any_of(span_exprs))
            if not parts:
                return group
            parts.append(self.trace_side(group))
        needed = [r for _, r in parts if r is not None]
        required = any_of(needed) if len(needed) == len(parts) else None  # else a branch needs no span
        return any_of([e for e, _ in parts]), required

    def alternatives(self, node: Or) -> list[_Built]:
        """The OR's operands built, with `f = x OR f = y OR f IN (z)` folded into one `f IN (x, y, z)`:
        one is_in however long the chain (SQL nulls agree: null IN (...) is null, like null = x)."""
        out: list[_Built] = []
        folds: dict[tuple[str, ...], list[Clause]] = {}
        for item in _disjuncts(node):
            built = self.build(item)  # every clause is checked, in text order, before folding
            if _foldable(item):
                folds.setdefault(item.field, []).append(item)
                continue
            out.append(built)
        for path, clauses in folds.items():
            values = tuple(v for c in clauses for v in c.values)
            out.append(self.build(clauses[0] if len(clauses) == 1 else Clause(path, "IN", values, clauses[0].pos)))
        return out


def any_of(exprs: Sequence[pl.Expr]) -> pl.Expr:
    """`exprs` joined by | as a balanced tree. Polars' planning time grows with an expression's
    depth: a left-deep chain of n terms is n deep (1,600 ORs took 47 s to plan), a balanced one
    log2(n). | (Kleene logic, like SQL: null | true is true) as everywhere in the compiler."""
    if len(exprs) == 1:
        return exprs[0]
    mid = len(exprs) // 2
    return any_of(exprs[:mid]) | any_of(exprs[mid:])


_SPLIT_CONJUNCTS = 32


def all_of(exprs: Sequence[pl.Expr]) -> pl.Expr:
    """`exprs` joined by & (Kleene logic). A few as a balanced & tree: the optimizer splits it into
    conjuncts it pushes into the parquet scan (pruning, prefiltering). Many as one all_horizontal,
    which it leaves whole: pushing n conjuncts into a scan costs O(n^2) (1,000 took minutes)."""
    if len(exprs) > _SPLIT_CONJUNCTS:
        return pl.all_horizontal(exprs)
    if len(exprs) == 1:
        return exprs[0]
    mid = len(exprs) // 2
    return all_of(exprs[:mid]) & all_of(exprs[mid:])


def compile_filter(text: str | None) -> CompiledFilter:
    """Parse and compile a filter string (None or blank: match everything)."""
    if text is None or not text.strip():
        return CompiledFilter(None, (), (None, None))
    node = parse_filter(text)
    compiler = _Compiler()
    predicate, required = compiler.trace_side(compiler.build(node))
    # An assessment clause in the top-level AND must match for the trace to: only traces with
    # such rows need joining (an inner join on the few assessments rows that match).
    needed = [
        pl.col(ASSESSMENT_MATCH.format(compiler.assessment_clauses[id(c)]))
        for c in _conjuncts(node)
        if isinstance(c, Clause) and id(c) in compiler.assessment_clauses and c.op != "IS NULL"
    ]
    return CompiledFilter(
        predicate,
        tuple(compiler.span_predicates),
        _days(node),
        required,
        tuple(compiler.assessment_predicates),
        all_of(needed) if needed else None,
        any(resolve_field(c.field, c.pos).column == COST_COLUMN for c in _clauses(node)),
    )
