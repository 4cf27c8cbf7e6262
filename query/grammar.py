"""The trace filter language's grammar: the tokenizer, the AST node classes, and the
recursive-descent parser from filter text (and `order_by` items) to that AST. Compiling the
AST to Polars is `spanlake.query.filters`.

MLflow's `search_traces` grammar, plus OR, NOT and parentheses:

    filter     = or_expr EOF
    or_expr    = and_expr { "OR" and_expr }
    and_expr   = not_expr { "AND" not_expr }
    not_expr   = "NOT" not_expr | "(" or_expr ")" | clause
    clause     = field ( cmp value
                       | ["NOT"] ("LIKE" | "ILIKE" | "RLIKE") string
                       | ["NOT"] "IN" "(" value { "," value } ")"
                       | "IS" ["NOT"] "NULL" )
    field      = part { "." part }          part = identifier | `backticked`
    cmp        = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    value      = 'string' | "string" | number
    order_key  = field [ "ASC" | "DESC" ]

Keywords are case-insensitive; strings take backslash escapes (\\ \' \" \n \t \r; any other
backslash is kept, so LIKE can escape % and _) and doubled quotes. A number must fit a 64-bit
float. Positions in errors are 0-based character offsets. Nothing in a filter is evaluated:
values only become literals.

Bounds (user text reaches this parser from the dashboard): at most MAX_FILTER_CHARS characters,
MAX_TERMS clauses (an IN list is one clause, whatever its length) and MAX_DEPTH levels of
parentheses and NOTs; past any of them the filter is refused with a FilterError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from spanlake.errors import FilterError

__all__ = [
    "MAX_FILTER_CHARS", "MAX_TERMS", "And", "Clause", "FilterError", "Literal", "Node", "Not", "Or", "Token",
    "abbreviate", "parse_filter", "parse_order_key", "syntax_error", "tokenize",
]  # fmt: skip

MAX_DEPTH = 64  # nesting of parentheses and NOTs: deeper input is an error, not a RecursionError
# Size bounds, so that no filter can hold a reader for long: compiling and planning cost grows
# linearly with the clauses (tests/test_filters.py runs a filter at both bounds).
MAX_FILTER_CHARS = 100_000
MAX_TERMS = 256
PATTERN_OPS = ("LIKE", "ILIKE", "RLIKE")
EXPECTED_COMPARATOR = "a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, RLIKE, IN, NOT IN, IS NULL, IS NOT NULL)"
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "`": "`", "n": "\n", "t": "\t", "r": "\r"}
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT, QUOTED_IDENT, STRING, NUMBER, OP, "(", ")", ",", ".", EOF
    value: str | int | float
    pos: int
    text: str

    def describe(self) -> str:
        return "end of input" if self.kind == "EOF" else repr(self.text)

    def is_keyword(self, word: str) -> bool:
        return self.kind == "IDENT" and str(self.value).upper() == word


@dataclass(frozen=True)
class Literal:
    value: str | int | float
    pos: int


@dataclass(frozen=True)
class Clause:
    field: tuple[str, ...]
    op: str  # =, !=, <, <=, >, >=, [NOT ]LIKE/ILIKE/RLIKE, [NOT ]IN, IS [NOT ]NULL
    values: tuple[Literal, ...]
    pos: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Clause | And | Or | Not


def syntax_error(what: str, token: Token) -> FilterError:
    err = FilterError(f"expected {what} at position {token.pos}, found {token.describe()}")
    err.position = token.pos  # type: ignore[attr-defined]
    return err


# --- tokenizer --------------------------------------------------------------------------


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The unescaped body of the quoted token at `start` and the index just past it."""
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
        elif ch == quote and text[i + 1 : i + 2] == quote:  # SQL-style doubled quote
            out.append(quote)
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    kind = "identifier" if quote == "`" else "string"
    raise FilterError(f"unterminated {kind} starting at position {start}")


def _number(m: re.Match[str], pos: int) -> int | float:
    """The value of a NUMBER match; FilterError when it does not fit a 64-bit float, so every
    later step (Int64 and Float64 literals, epoch ms arithmetic) works on finite values."""
    text = m.group()
    try:
        value = float(text) if (m.group(1) or m.group(2)) else int(text)  # int: ValueError past 4,300 digits
        if math.isfinite(value):  # float(huge int) raises OverflowError; 1e400 is inf
            return value
    except (ValueError, OverflowError):
        pass
    raise FilterError(f"number {abbreviate(text)!r} at position {pos} is out of range (it must fit a 64-bit float)")


def abbreviate(text: str, limit: int = 24) -> str:
    """`text` for a one-line error: long values (a 400-digit number, a 50 KB pattern) are cut."""
    return text if len(text) <= limit else f"{text[: limit - 4]}..."


def tokenize(text: str) -> list[Token]:
    return list(_tokens(text))


def _tokens(text: str) -> Iterator[Token]:
    # A generator, so the parser reports the first error by position: `x = ); ...` complains
    # about ')' before the tokenizer ever sees ';'.
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch in "'\"`":
            value, i = _quoted(text, i)
            yield Token("QUOTED_IDENT" if ch == "`" else "STRING", value, start, text[start:i])
        elif m := _NUMBER.match(text, i):
            i = m.end()
            yield Token("NUMBER", _number(m, start), start, m.group())
        elif m := _IDENT.match(text, i):
            i = m.end()
            yield Token("IDENT", m.group(), start, m.group())
        elif text.startswith(("!=", "<>", "<=", ">="), i):
            i += 2
            yield Token("OP", text[start:i], start, text[start:i])
        elif ch in "=<>":
            i += 1
            yield Token("OP", ch, start, ch)
        elif ch in "(),.":
            i += 1
            yield Token(ch, ch, start, ch)
        else:
            raise FilterError(f"unexpected character {ch!r} at position {start}")
    yield Token("EOF", "", len(text), "")


# --- parser -----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_FILTER_CHARS:
            raise FilterError(
                f"filter is longer than {MAX_FILTER_CHARS:,} characters ({len(text):,}) at position {MAX_FILTER_CHARS}"
            )
        self.tokens = _tokens(text)
        self.tok = next(self.tokens)  # the one token of lookahead the grammar needs
        self.depth = 0
        self.terms = 0

    def take(self) -> Token:
        tok = self.tok
        if tok.kind != "EOF":
            self.tok = next(self.tokens)
        return tok

    def accept_keyword(self, word: str) -> bool:
        if self.tok.is_keyword(word):
            self.take()
            return True
        return False

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise syntax_error(what, self.tok)
        return self.take()

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "EOF":
            raise syntax_error("AND, OR or the end of the filter", self.tok)
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.accept_keyword("OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.accept_keyword("AND"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        if self.tok.kind == "(" or self.tok.is_keyword("NOT"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterError(f"filter nests deeper than {MAX_DEPTH} levels at position {self.tok.pos}")
            node = self.nested()
            self.depth -= 1
            return node
        return self.clause()

    def nested(self) -> Node:
        if self.take().kind != "(":
            return Not(self.not_expr())
        node = self.or_expr()
        if self.tok.kind != ")":
            raise syntax_error("AND, OR or ')'", self.tok)
        self.take()
        return node

    def field(self) -> tuple[tuple[str, ...], int]:
        if self.tok.kind not in ("IDENT", "QUOTED_IDENT") or self.tok.value == "":
            raise syntax_error("a field name", self.tok)
        pos = self.tok.pos
        parts = [str(self.take().value)]
        while self.tok.kind == ".":
            self.take()
            if self.tok.kind not in ("IDENT", "QUOTED_IDENT"):
                raise syntax_error("a name after '.'", self.tok)
            parts.append(str(self.take().value))
        return tuple(parts), pos

    def value(self) -> Literal:
        if self.tok.kind not in ("STRING", "NUMBER"):
            raise syntax_error("a value (a quoted string or a number)", self.tok)
        tok = self.take()
        return Literal(tok.value, tok.pos)

    def clause(self) -> Clause:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(
                f"filter has more than {MAX_TERMS:,} clauses at position {self.tok.pos}; "
                "join the values of one field with IN (...)"
            )
        field, pos = self.field()
        tok = self.tok
        if tok.kind == "OP":
            self.take()
            op = "!=" if tok.value == "<>" else str(tok.value)
            return Clause(field, op, (self.value(),), pos)
        if self.accept_keyword("IS"):
            negated = self.accept_keyword("NOT")
            if not self.accept_keyword("NULL"):
                raise syntax_error("NULL or NOT NULL after IS", self.tok)
            return Clause(field, "IS NOT NULL" if negated else "IS NULL", (), pos)
        prefix = "NOT " if self.accept_keyword("NOT") else ""
        for op in PATTERN_OPS:
            if self.accept_keyword(op):
                if self.tok.kind != "STRING":
                    raise syntax_error(f"a quoted pattern after {op}", self.tok)
                return Clause(field, prefix + op, (self.value(),), pos)
        if self.accept_keyword("IN"):
            return Clause(field, prefix + "IN", self.in_list(), pos)
        raise syntax_error("LIKE, ILIKE, RLIKE or IN after NOT" if prefix else EXPECTED_COMPARATOR, self.tok)

    def in_list(self) -> tuple[Literal, ...]:
        self.expect("(", "'(' after IN")
        values = [self.value()]
        while self.tok.kind == ",":
            self.take()
            values.append(self.value())
        self.expect(")", "',' or ')' in the IN list")
        return tuple(values)


def parse_filter(text: str) -> Node:
    """Parse a filter string into its AST; raises FilterError naming position and expectation."""
    return _Parser(text).parse()


def parse_order_key(text: str) -> tuple[tuple[str, ...], int, bool]:
    """Parse one `order_by` item, `<field> [ASC|DESC]`: (field path, position, descending)."""
    parser = _Parser(text)
    field, pos = parser.field()
    descending = parser.accept_keyword("DESC")
    if not descending:
        parser.accept_keyword("ASC")
    if parser.tok.kind != "EOF":
        raise syntax_error("ASC, DESC or the end of the order key", parser.tok)
    return field, pos, descending
