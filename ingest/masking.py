"""Masking at ingest: regex rules that redact personal data and secrets before anything is written.

This module owns the rules (`DEFAULT_RULES`, custom ones from settings) and their application to
span and event attribute values, including strings nested in lists and dicts. Keys are never
masked, nor are non-string values (token counts, timestamps and prices stay numbers).

Cost matters: ingest decodes ~25-45k spans/s per core. A value is first screened by cheap
substring tests (`in` and one translate) that every rule's matches must pass; only candidates
run the rule regexes. Unchanged values are returned as the same objects, so an attribute dict
without a match costs no copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spanlake.errors import ConfigError

__all__ = ["DEFAULT_RULES", "Masker", "MaskingRule"]

# Deleting every digit tells how many a string holds in one C-level pass.
_NO_DIGITS = str.maketrans("", "", "0123456789")


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_prefix(digits: str) -> bool:
    # Issuer ranges (Visa 4, Mastercard 51-55/2221-2720, Amex 34/37, Discover/UnionPay 6, JCB and
    # Diners 3): excludes Unix timestamps in s/ms/ns, which start with 1 for decades to come.
    if digits[0] in "3456":
        return True
    return digits[0] == "2" and 2221 <= int(digits[:4]) <= 2720


def is_card_number(match: str) -> bool:
    """13-19 digits in groups of 3+ (one separator kind), an issuer prefix and a valid Luhn sum."""
    digits = _digits(match)
    separators = set(re.findall(r"[ -]", match))
    if len(separators) > 1 or not 13 <= len(digits) <= 19:
        return False
    if separators and min(len(g) for g in re.split(r"[ -]", match)) < 3:
        return False
    return _card_prefix(digits) and _luhn(digits)


def is_phone_number(match: str) -> bool:
    """Between 8 and 15 digits (E.164 allows at most 15), and not an ISO-like date."""
    return 8 <= len(_digits(match)) <= 15 and not re.match(r"\d{4}[-.]\d\d[-.]\d\d", match)


@dataclass(frozen=True)
class MaskingRule:
    """`pattern` is a regex; each match becomes `replacement` (an re.sub template: \\1 works).

    `check`, when set, must accept the matched text too (Luhn for cards); `triggers`, when set,
    are substrings one of which every match contains, used to skip the regex cheaply.
    """

    name: str
    pattern: str
    replacement: str
    check: Callable[[str], bool] | None = None
    triggers: tuple[str, ...] | None = None
    min_digits: int = 0  # a match holds at least this many digits: fewer in a string, regex skipped


_SECRET_PATTERNS = (
    r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9][A-Za-z0-9_-]{19,}",  # OpenAI, Anthropic
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",  # AWS access key ids
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}",  # GitHub tokens
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API keys
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
    r"(?<=[Bb]earer )[A-Za-z0-9._~+/=-]{16,}",  # any bearer token, keeping the word "Bearer"
)

_PHONE_PATTERNS = (
    r"(?<![\w+])\+\d[\d ().-]{5,22}\d(?!\w)",  # international: +44 20 7946 0958, +14155552671
    r"(?<![\w.-])\(\d{3}\) ?\d{3}[ .-]\d{4}(?![\w-]|\.\d)",  # (415) 555-2671
    r"(?<![\w.-])\d{3}(?:-\d{3}-|\.\d{3}\.)\d{4}(?![\w-]|\.\d)",  # 415-555-2671, 415.555.2671
    r"(?<![\w.:+-])0\d{1,4}(?: \d{2,8}){1,4}(?![\w:-]|\.\d)",  # national: 020 7946 0958, 06 12 34 56 78
    r"(?<![\w.:+-])0\d{2,4}-\d{6,8}(?![\w:-]|\.\d)",  # national with one dash: 0171-1234567
)

DEFAULT_RULES: tuple[MaskingRule, ...] = (
    # Secrets first: their bodies may hold digit runs the later rules would otherwise cut up.
    MaskingRule(
        "api_key", "|".join(_SECRET_PATTERNS), "[REDACTED:api_key]",
        triggers=(
            "sk-", "k_live_", "k_test_", "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
            "github_pat_", "xox", "AIza", "eyJ", "earer ",
        ),
    ),  # fmt: skip
    MaskingRule(
        "email", r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
        "[REDACTED:email]", triggers=("@",),
    ),  # fmt: skip
    MaskingRule(
        "payment_card", r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-]|\.\d)", "[REDACTED:payment_card]",
        check=is_card_number, min_digits=13,
    ),  # fmt: skip
    MaskingRule("phone", "|".join(_PHONE_PATTERNS), "[REDACTED:phone]", check=is_phone_number, min_digits=8),
)


class _Compiled:
    __slots__ = ("rule", "regex", "triggers", "min_digits")

    def __init__(self, rule: MaskingRule) -> None:
        try:
            self.regex = re.compile(rule.pattern)
        except re.error as exc:
            raise ConfigError(f"masking rule {rule.name!r}: invalid regex {rule.pattern!r}: {exc}") from None
        self.rule = rule
        self.triggers = rule.triggers
        self.min_digits = rule.min_digits

    def apply(self, text: str) -> str:
        check = self.rule.check
        if check is None:
            return self.regex.sub(self.rule.replacement, text)
        return self.regex.sub(lambda m: m.expand(self.rule.replacement) if check(m.group()) else m.group(), text)


class Masker:
    """Applies rules, in order, to string values; everything else passes through untouched."""

    def __init__(self, rules: Iterable[MaskingRule] = DEFAULT_RULES) -> None:
        self.rules = tuple(rules)
        self._compiled = tuple(_Compiled(r) for r in self.rules)

    @classmethod
    def from_settings(cls, enabled: bool, extra_rules: list[Mapping[str, str]] | None = None) -> Masker | None:
        """The masker for a settings object: None when masking is off; `extra_rules` are
        {"name", "pattern", "replacement"} dicts applied after the default rules."""
        if not enabled:
            return None
        extra = []
        for i, raw in enumerate(extra_rules or ()):
            name = str(raw.get("name") or f"rule {i + 1}")
            if not raw.get("pattern"):
                raise ConfigError(f"masking rule {name!r}: no pattern")
            extra.append(MaskingRule(name, str(raw["pattern"]), str(raw.get("replacement") or f"[REDACTED:{name}]")))
        return cls((*DEFAULT_RULES, *extra))

    def mask_text(self, text: str) -> str:
        """`text` with every rule applied (the same object when nothing matched)."""
        digits = -1
        for c in self._compiled:
            if c.triggers is not None and not any(t in text for t in c.triggers):
                continue
            if c.min_digits:
                if digits < 0:
                    digits = len(text) - len(text.translate(_NO_DIGITS))
                if digits < c.min_digits:
                    continue
            masked = c.apply(text)
            if masked != text:
                text = masked
                digits = -1
        return text

    def mask_value(self, value: Any) -> Any:
        """Strings masked, lists/tuples/dicts masked inside (values only); the same object when
        nothing changed, so callers can test `is`."""
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
            masked = self.mask_value(value)
            if masked is not value:
                if out is None:
                    out = dict(attrs)
                out[key] = masked
        return attrs if out is None else out

    def mask_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """OTLP events ({name, time_unix_nano, attributes}) with masked attributes."""
        out: list[dict[str, Any]] | None = None
        for i, event in enumerate(events):
            attrs = event.get("attributes")
            masked = self.mask_attributes(attrs) if attrs else attrs
            if masked is not attrs:
                if out is None:
                    out = list(events)
                out[i] = {**event, "attributes": masked}
        return events if out is None else out
