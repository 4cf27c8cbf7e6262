"""Personal data and secrets as regex rules: e-mail addresses, phone and card numbers (Luhn
checked), API keys and tokens. Ingest masks with them (`spanlake.ingest.masking`) and the PII
scorer detects with them (`spanlake.jobs.builtins`), so both agree on what counts as PII.

Each rule carries what makes it cheap to skip (gates, numeric, min_digits): the masker's hot
loop relies on them, see ingest/masking.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_RULES", "IP_ADDRESS", "PHONE_MIN_DIGITS", "MaskingRule", "is_card_number", "is_phone_number"]

# Shortest national numbers matched (089 123456) have 9 digits; an ISO date has only 8.
PHONE_MIN_DIGITS = 9


@dataclass(frozen=True)
class MaskingRule:
    """Each match of `pattern` becomes `replacement` (an re.sub template, so \\1 works).

    `check`, when set, must accept the matched text as well (Luhn for cards). `gates` are
    substrings one of which every match contains: strings without any skip the regex. `numeric`
    says every match is made of digits and " ().+-" only, so the rule runs just around digit
    runs that hold at least `min_digits` digits (and one of its gates).
    """

    name: str
    pattern: str
    replacement: str
    check: Callable[[str], bool] | None = None
    gates: tuple[str, ...] = ()
    numeric: bool = False
    min_digits: int = 0


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    """13-19 digits in groups of 3+ (one separator kind), an issuer prefix, a valid Luhn sum."""
    digits = text.replace(" ", "").replace("-", "")
    # Issuers: Visa 4, Mastercard 51-55 and 2221-2720, Amex/Diners/JCB 3, Discover/UnionPay 6.
    # Unix timestamps in s, ms, us and ns all start with 1 (until 2033), so they never pass.
    if not (digits[0] in "3456" or (digits[0] == "2" and 2221 <= int(digits[:4]) <= 2720)):
        return False
    if not 13 <= len(digits) <= 19 or (" " in text and "-" in text):
        return False
    if len(digits) < len(text) and min(map(len, re.split(r"[ -]", text))) < 3:
        return False
    return _luhn(digits)


def is_phone_number(text: str) -> bool:
    """9 to 15 digits (E.164 allows at most 15) and no ISO date inside."""
    digits = sum(c.isdigit() for c in text)
    return PHONE_MIN_DIGITS <= digits <= 15 and not re.search(r"\d{4}-\d\d-\d\d", text)


def _key(name: str, pattern: str, *gates: str) -> MaskingRule:
    return MaskingRule(name, pattern, "[REDACTED:api_key]", gates=gates)


# A secret's regex runs only on strings holding one of its gates (a fast substring test). The
# patterns mostly start with a literal too, so a search skips straight to its occurrences; a
# lookbehind placed after the literal checks that it starts a word ("task-..." is no "sk-" key).
_SECRET_RULES = (
    _key("openai_anthropic_key", r"(?a)sk-(?<![\w-]sk-)(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9][\w-]{19,}", "sk-"),
    _key("stripe_key", r"(?a)(?<![\w-])[sr]k_(?:live|test)_[A-Za-z0-9]{16,}", "k_live_", "k_test_"),
    _key("aws_access_key", r"(?a)A(?:KIA|SIA)(?<!\wA...)[A-Z0-9]{16}(?!\w)", "AKIA", "ASIA"),
    _key(
        "github_token", r"(?a)gh[pousr]_(?<![\w-]gh._)[A-Za-z0-9]{36,}|github_pat_(?<![\w-]github_pat_)\w{22,}",
        "gh", "github_pat_",
    ),  # fmt: skip
    _key("slack_token", r"(?a)xox[abposr]-(?<![\w-]xox.-)[A-Za-z0-9-]{10,}", "xox"),
    _key("google_api_key", r"(?a)AIza(?<![\w-]AIza)[\w-]{35}", "AIza"),
    _key("jwt", r"(?a)eyJ(?<![\w-]eyJ)[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}", "eyJ"),
    # Only the token goes: "Authorization: Bearer [REDACTED:api_key]" still says what it was.
    _key("bearer_token", r"(?<=[Bb]earer )[A-Za-z0-9._~+/=-]{16,}", "earer "),
)

_PHONE_PATTERNS = (
    r"(?<![\w+])\+\d[\d ().-]{5,22}\d(?!\w)",  # international: +44 20 7946 0958, +14155552671
    r"(?<![\w.-])\(\d{3}\) ?\d{3}[ .-]\d{4}(?![\w-]|\.\d)",  # (415) 555-2671
    r"(?<![\w.-])\d{3}(?:-\d{3}-|\.\d{3}\.)\d{4}(?![\w-]|\.\d)",  # 415-555-2671, 415.555.2671
    r"(?<![\w.:+-])0\d{1,4}(?: \d{2,8}){1,4}(?![\w:-]|\.\d)",  # national: 020 7946 0958, 06 12 34 56 78
    r"(?<![\w.:+-])0\d{2,4}-\d{6,8}(?![\w:-]|\.\d)",  # national with one dash: 0171-1234567
)

DEFAULT_RULES: tuple[MaskingRule, ...] = (
    # Secrets first: their bodies may hold digit runs the later rules would cut up.
    *_SECRET_RULES,
    MaskingRule(
        "email", r"(?a)(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*"
        r"\.[A-Za-z]{2,}\b",
        "[REDACTED:email]", gates=("@",),
    ),  # fmt: skip
    MaskingRule(
        "payment_card", r"(?a)(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-]|\.\d)", "[REDACTED:payment_card]",
        check=is_card_number, numeric=True, min_digits=13,
    ),  # fmt: skip
    MaskingRule(
        "phone", "(?a)" + "|".join(_PHONE_PATTERNS), "[REDACTED:phone]", check=is_phone_number,
        gates=(" ", "-", ".", "+", "("), numeric=True, min_digits=PHONE_MIN_DIGITS,  # never a bare digit run
    ),  # fmt: skip
)

# Detection only (ingest does not mask addresses: they are operational data there): IPv4 with
# octets 0-255; IPv6 in full (8 groups) or compressed (with "::") form, so times never match.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = r"[0-9A-Fa-f]{1,4}"
IP_ADDRESS = MaskingRule(
    "ip_address",
    rf"(?a)(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)"
    rf"|(?<![\w:])(?:(?:{_HEX}:){{7}}{_HEX}|(?:{_HEX}:){{1,6}}:(?:{_HEX}(?::{_HEX}){{0,5}})?)(?![\w:])",
    "[REDACTED:ip_address]", gates=(".", ":"),
)  # fmt: skip
