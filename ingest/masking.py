"""Masking at ingest: regex rules that redact personal data and secrets before anything is written.

This module owns the rules (`DEFAULT_RULES`, custom ones from settings) and their application to
every text a table stores: a decoded span's name, status message, attributes, events (names and
attributes) and resource attributes, including strings nested in lists and dicts, and a dead
letter's key, payload and error. Every other column derives from these (inputs, outputs,
previews, tags, metadata, service and environment), so it is masked too. Keys are never masked,
nor are non-string values (token counts, timestamps and prices stay numbers).

Cost matters: ingest decodes 25-45k spans/s per core. So every default rule is cheap to skip:
a value shorter than a rule's shortest match skips it (most attribute values are short);
secret and e-mail regexes run only on strings holding one of their gates (a substring every
match holds, such as "@" or "sk-"); phone and card regexes run only in small windows around
the digit runs one scan finds. Unchanged values come back as the same objects, so a clean
attribute dict costs no copy.

Wiring (done by the Delta sink): `masker.mask_spans(spans)` right after decoding, before rows
are built, and `DeadLetters(masker)`, whose every row goes through `mask_dead_letter`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, get_args

from spanlake.errors import ConfigError
from spanlake.settings import DeadLetterMasking
from spanlake.tables.pii import DEFAULT_RULES, MaskingRule, is_card_number, is_phone_number

if TYPE_CHECKING:
    from spanlake.ingest.otlp import Span

__all__ = ["DEFAULT_RULES", "Masker", "MaskingRule", "is_card_number", "is_phone_number"]

# Digit runs a phone or card number could hide in; [0-9] is several times faster than \d.
_DIGIT_RUN = re.compile(r"[0-9+(][0-9 ().-]{7,}")
_RUN_MIN_LENGTH = 8
_CONTEXT = 2  # characters either side of a digit run that lookarounds need to see
# Values shorter than this get their applicable rules from a table indexed by length.
_LENGTHS = 64


def _min_width(regex: re.Pattern[str]) -> int:
    """The fewest characters a match of `regex` can have (0 when the parser cannot tell)."""
    try:
        return int(re._parser.parse(regex.pattern, regex.flags).getwidth()[0])  # type: ignore[attr-defined]
    except Exception:  # a private API: never let it break masking
        return 0


class _Rule:
    """A compiled MaskingRule."""

    __slots__ = ("rule", "regex", "gates", "gate_chars", "numeric", "min_digits", "min_length", "check")

    def __init__(self, rule: MaskingRule) -> None:
        try:
            self.regex = re.compile(rule.pattern)
        except re.error as exc:
            raise ConfigError(f"masking rule {rule.name!r}: invalid regex {rule.pattern!r}: {exc}") from None
        self.rule, self.gates, self.numeric, self.min_digits = rule, rule.gates, rule.numeric, rule.min_digits
        self.check = rule.check
        self.min_length = _min_width(self.regex)
        # Single-character gates of a numeric rule are tested against each digit run at C speed.
        self.gate_chars = frozenset(rule.gates) if rule.gates and all(len(g) == 1 for g in rule.gates) else None

    def apply(self, text: str) -> str:
        """`text` with this rule applied; the same object when nothing matched."""
        if self.check is None:
            if self.regex.search(text) is None:  # cheaper than a sub that finds nothing
                return text
            return self.regex.sub(self.rule.replacement, text)
        pieces: list[str] = []
        done = 0
        for m in self.regex.finditer(text):
            if self.check(m.group()):
                pieces += (text[done : m.start()], m.expand(self.rule.replacement))
                done = m.end()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)


class Masker:
    """Applies rules, in order, to string values; everything else passes through untouched."""

    def __init__(self, rules: Iterable[MaskingRule] = DEFAULT_RULES, dead_letters: DeadLetterMasking = "mask") -> None:
        if dead_letters not in get_args(DeadLetterMasking):
            raise ConfigError(f"dead-letter masking must be one of {get_args(DeadLetterMasking)}, got {dead_letters!r}")
        self.rules = tuple(rules)
        self.dead_letters = dead_letters
        compiled = [_Rule(r) for r in self.rules]
        self._numeric = tuple(r for r in compiled if r.numeric)
        self._min_run_digits = min((r.min_digits for r in self._numeric), default=0)
        self._other = tuple(r for r in compiled if not r.numeric)
        # Rules a string of each length could match at all: a 12-character value cannot hold
        # a 20-character key, so short values skip most rules without even a substring test.
        self._for_length = [tuple(r for r in self._other if r.min_length <= n) for n in range(_LENGTHS)]
        self._min_length = min((r.min_length for r in compiled), default=0)

    @classmethod
    def from_settings(
        cls,
        enabled: bool,
        extra_rules: Iterable[Mapping[str, str]] | None = None,
        dead_letters: DeadLetterMasking = "mask",
    ) -> Masker | None:
        """The masker a settings object asks for: None when masking is off. `extra_rules` are
        {"name", "pattern", "replacement"} dicts, applied after the default rules; `dead_letters`
        says how a dead letter's payload is masked (see `mask_dead_letter`)."""
        if not enabled:
            return None
        extra = []
        for i, raw in enumerate(extra_rules or ()):
            name = str(raw.get("name") or f"rule {i + 1}")
            if not raw.get("pattern"):
                raise ConfigError(f"masking rule {name!r}: no pattern")
            extra.append(MaskingRule(name, str(raw["pattern"]), str(raw.get("replacement") or f"[REDACTED:{name}]")))
        return cls((*DEFAULT_RULES, *extra), dead_letters)

    def mask_text(self, text: str) -> str:
        """`text` with every rule applied; the same object when nothing matched."""
        n = len(text)
        if n < self._min_length:
            return text
        for rule in self._for_length[n] if n < _LENGTHS else self._other:
            if rule.gates:  # inlined: this loop runs for every string of every span
                for gate in rule.gates:
                    if gate in text:
                        break
                else:
                    continue
            text = rule.apply(text)
        if not self._numeric or n < _RUN_MIN_LENGTH:
            return text
        first = _DIGIT_RUN.search(text)  # most values have no run: cheaper than a finditer loop
        return text if first is None else self._mask_digit_runs(text, first.start())

    def _mask_digit_runs(self, text: str, start: int) -> str:
        # Numeric rules see only each digit run plus a little context: far cheaper than
        # scanning the whole string with their lookaround-heavy patterns.
        pieces: list[str] = []
        done = 0
        for run in _DIGIT_RUN.finditer(text, start):
            found = run.group().rstrip(" ().-")  # a sentence's full stop is no separator
            # A run is ASCII: bytes.translate counts its separators far faster than str methods.
            digits = len(found) - len(found.encode().translate(None, b"0123456789"))
            if digits < self._min_run_digits:
                continue  # most runs: dates, prices, counts
            lo, hi = max(run.start() - _CONTEXT, done), min(run.end() + _CONTEXT, len(text))
            window = masked = text[lo:hi]
            for rule in self._numeric:
                if digits < rule.min_digits:
                    continue
                if rule.gate_chars is not None and rule.gate_chars.isdisjoint(found):
                    continue
                if rule.gate_chars is None and rule.gates and not any(g in found for g in rule.gates):
                    continue
                masked = rule.apply(masked)
            if masked is not window:
                pieces += (text[done:lo], masked)
                done = hi
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def mask_value(self, value: Any) -> Any:
        """Strings masked, lists/tuples/dicts masked inside (values only); the same object when
        nothing changed, so a caller can test `is`."""
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return self.mask_attributes(value)
        if isinstance(value, (list, tuple)):
            masked = [self.mask_value(v) for v in value]
            if all(m is v for m, v in zip(masked, value)):
                return value
            return type(value)(masked)
        return value

    def mask_attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """A new dict with masked values when anything matched, else `attrs` itself."""
        out: dict[str, Any] | None = None
        for key, value in attrs.items():
            # most values are strings: skip mask_value's dispatch (the hot loop of masking)
            masked = self.mask_text(value) if type(value) is str else self.mask_value(value)
            if masked is not value:
                if out is None:
                    out = dict(attrs)
                out[key] = masked
        return attrs if out is None else out

    def mask_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """OTLP span events ({name, time_unix_nano, attributes}) with their names and attributes masked."""
        out: list[dict[str, Any]] | None = None
        for i, event in enumerate(events):
            name, attrs = event.get("name"), event.get("attributes")
            masked_name = self.mask_value(name)
            masked = self.mask_attributes(attrs) if attrs else attrs
            if masked_name is not name or masked is not attrs:
                if out is None:
                    out = list(events)
                out[i] = {**event, "name": masked_name, "attributes": masked}
        return events if out is None else out

    def mask_spans(self, spans: Iterable[Span]) -> None:
        """Mask, in place, every text field of each span: name, status message, attributes, events
        and resource attributes. The spans of one ResourceSpans share one resource dict: it is
        masked once, and its masked copy is shared the same way (row building relies on that)."""
        # id(resource) -> (resource, masked); holding the original keeps its id from being reused
        resources: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        for span in spans:
            span.name = self.mask_value(span.name)
            span.status_message = self.mask_value(span.status_message)
            span.attributes = self.mask_attributes(span.attributes)
            if span.events:
                span.events = self.mask_events(span.events)
            pair = resources.get(id(span.resource))
            if pair is None:
                pair = resources[id(span.resource)] = (span.resource, self.mask_attributes(span.resource))
            span.resource = pair[1]

    def mask_bytes(self, data: bytes) -> bytes:
        """`data` masked as UTF-8 text; bytes that are not UTF-8 pass through unchanged
        (surrogateescape), so an unmatched payload comes back as the same object, byte for byte."""
        text = data.decode("utf-8", "surrogateescape")
        masked = self.mask_text(text)
        return data if masked is text else masked.encode("utf-8", "surrogateescape")

    def mask_dead_letter(
        self, key: bytes | None, value: bytes | None, error: str
    ) -> tuple[bytes | None, bytes | None, str]:
        """A dead letter's (key, value, error) masked: the error quotes what it rejects (a span's
        name), the key is masked as text, and the payload either masked as text (`mask`) or, with
        `hash`, replaced by its sha256 and length, for payloads text rules cannot be trusted on
        (other encodings, compressed or escaped text)."""
        if value is not None:
            if self.dead_letters == "hash":
                value = f"[REDACTED:payload sha256={hashlib.sha256(value).hexdigest()} bytes={len(value)}]".encode()
            else:
                value = self.mask_bytes(value)
        return None if key is None else self.mask_bytes(key), value, self.mask_text(error)
