"""Masking rules: what each default rule redacts, what it must leave alone (ids, timestamps,
counts, prices, versions), nested values, custom rules and configuration errors."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spanlake.errors import ConfigError
from spanlake.ingest.dead_letters import DeadLetters
from spanlake.ingest.masking import DEFAULT_RULES, Masker, MaskingRule, is_card_number
from spanlake.ingest.otlp import Span

MASKER = Masker()


def masked(text: str) -> str:
    return MASKER.mask_text(text)


def assert_masked(text: str, label: str) -> None:
    out = masked(f"contact: {text}, thanks")
    assert out == f"contact: [REDACTED:{label}], thanks", out


def assert_kept(text: str) -> None:
    for candidate in (text, f"value {text} here", json.dumps({"v": text})):
        assert masked(candidate) is candidate, masked(candidate)


# Things no rule may touch: ids, times, counts, prices, versions, addresses.
KEPT = [
    "4bf92f3577b34da6a3ce929d0e0e4736",  # trace id
    "00f067aa0ba902b7",  # span id
    "12345678901234567890123456789012",  # an all-digit trace id
    "550e8400-e29b-41d4-a716-446655440000",  # UUID
    "12345678-1234-1234-1234-123456789012",  # an all-digit UUID
    "2024-11-03T14:35:00Z",
    "2024-11-03T14:35:00.123456+00:00",
    "2024-11-03 14:35:00",
    "01-02-2024 12:30",
    "1730640000",  # Unix seconds
    "1730640000123",  # ms
    "1730640000123456789",  # ns
    "1234567",
    "12345678",
    "1532 input tokens, 212 output tokens, 1744 total",
    "$1,234.56",
    "1234567.89",
    "0.000015 USD per token",
    "2.4.1",
    "v10.0.19045.3803",
    "192.168.100.200",
    "gpt-4o-2024-08-06",
    "chatcmpl-9x8YzAbCdEf1234567890",
    "+12.5% week over week",
    "@app.route('/users')",
    "user@localhost",
    "lodash@4.17.21",
    "task-force-planning-meeting-notes-2024",
    "risk-assessment-for-the-quarterly-report",
    "scikit-learn sk-learn",
    "ghost_writer_of_the_long_story_that_goes_on_and_on_and_on",
    "Bearer token",
    "4111 1111 1111 1112",  # fails Luhn
    "1234567890123452",  # Luhn-valid, but no issuer starts with 1
    "9999 9999 9999 9995",  # Luhn-valid, no issuer starts with 9
]


@pytest.mark.parametrize("text", KEPT)
def test_kept(text: str) -> None:
    assert_kept(text)


@pytest.mark.parametrize(
    "text",
    ["jane.doe@example.com", "a+tag@sub.example.co.uk", "first_last-99@my-company.io", "JOHN@EXAMPLE.ORG"],
)
def test_email(text: str) -> None:
    assert_masked(text, "email")


@pytest.mark.parametrize(
    "text",
    [
        "+44 20 7946 0958",
        "+1 (415) 555-2671",
        "+14155552671",
        "+49 30 1234567",
        "+33 6 12 34 56 78",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "020 7946 0958",
        "06 12 34 56 78",
        "0171-1234567",
    ],
)
def test_phone(text: str) -> None:
    assert_masked(text, "phone")


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0000 0000 0004",
        "2223 0031 2200 3222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "3782 822463 10005",
        "6011111111111117",  # Discover
        "4222222222222",  # 13-digit Visa
    ],
)
def test_payment_card(text: str) -> None:
    assert_masked(text, "payment_card")


def test_card_check() -> None:
    assert is_card_number("4111 1111 1111 1111")
    assert not is_card_number("4111 1111-1111 1111")  # mixed separators
    assert not is_card_number("41 11 11 11 11 11 11 11")  # groups of 2: a list of numbers
    assert not is_card_number("4111111111111111111111")  # too long


@pytest.mark.parametrize(
    "text",
    [
        "sk-proj-" + "Ab3" * 16,
        "sk-ant-api03-" + "xY9_" * 20,
        "sk-" + "a1B2" * 12,
        "sk_live_" + "51HabcDEF0123456789",
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "ghp_" + "a" * 36,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-2712-4912-AbCdEfGhIjKl",
        "xoxp-1234567890-abcdefghij",
        "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_api_keys(text: str) -> None:
    assert_masked(text, "api_key")


def test_bearer_keeps_the_scheme_word() -> None:
    assert masked("Authorization: Bearer abcdef0123456789ABCDEF.xyz") == "Authorization: Bearer [REDACTED:api_key]"
    assert masked("authorization: bearer abcdef0123456789ABCDEF") == "authorization: bearer [REDACTED:api_key]"


def test_several_kinds_in_one_text() -> None:
    text = (
        'I booked on 2024-11-03 at 14:35 for $1,234.56 (order 4821937). Mail jane@example.com or call '
        "+44 20 7946 0958; card 4111 1111 1111 1111, key sk-proj-" + "Z" * 30 + "."
    )
    assert masked(text) == (
        "I booked on 2024-11-03 at 14:35 for $1,234.56 (order 4821937). Mail [REDACTED:email] or call "
        "[REDACTED:phone]; card [REDACTED:payment_card], key [REDACTED:api_key]."
    )


@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
def test_no_trace_id_is_masked(trace_id: str) -> None:
    assert masked(f"trace {trace_id} span") == f"trace {trace_id} span"


@given(st.datetimes(), st.integers(min_value=0, max_value=10**9))
def test_no_timestamp_or_count_is_masked(when, count: int) -> None:
    for text in (when.isoformat(), f"{when:%Y-%m-%d %H:%M:%S}", str(count), f"{count:,}", f"{count / 100:.2f}"):
        assert masked(text) == text


# --- structure ------------------------------------------------------------------------------


def test_clean_attributes_come_back_as_the_same_dict() -> None:
    attrs = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1532, "tags": ["a", "b"]}
    assert MASKER.mask_attributes(attrs) is attrs


def test_changed_attributes_are_a_new_dict_and_the_input_is_untouched() -> None:
    attrs = {"user.email": "jane@example.com", "n": 4111111111111111, "ok": "fine"}
    out = MASKER.mask_attributes(attrs)
    assert out == {"user.email": "[REDACTED:email]", "n": 4111111111111111, "ok": "fine"}
    assert attrs["user.email"] == "jane@example.com"


def test_keys_and_non_strings_are_never_masked() -> None:
    attrs = {"jane@example.com": "x", "+44 20 7946 0958": 4111111111111111, "f": 4.5, "b": True, "none": None}
    assert MASKER.mask_attributes(attrs) is attrs


def test_nested_lists_and_dicts() -> None:
    attrs = {
        "messages": [{"role": "user", "content": "mail jane@example.com"}, {"role": "assistant", "content": "ok"}],
        "tuple": ("a", "415-555-2671"),
        "deep": {"a": [{"b": ["AKIAIOSFODNN7EXAMPLE"]}]},
    }
    out = MASKER.mask_attributes(attrs)
    assert out["messages"][0]["content"] == "mail [REDACTED:email]"
    assert out["messages"][1] is attrs["messages"][1]  # unchanged parts are shared, not copied
    assert out["tuple"] == ("a", "[REDACTED:phone]")
    assert out["deep"] == {"a": [{"b": ["[REDACTED:api_key]"]}]}


def test_json_text_values_are_masked_inside() -> None:
    value = json.dumps([{"role": "user", "content": "my card is 4111-1111-1111-1111"}])
    assert json.loads(masked(value))[0]["content"] == "my card is [REDACTED:payment_card]"


def test_events() -> None:
    events = [
        {
            "name": "exception",
            "time_unix_nano": 1730640000123456789,
            "attributes": {"exception.message": "no user jane@example.com"},
        },
        {"name": "retry", "time_unix_nano": 1730640000223456789, "attributes": {}},
    ]
    out = MASKER.mask_events(events)
    assert out[0]["attributes"] == {"exception.message": "no user [REDACTED:email]"}
    assert out[0]["time_unix_nano"] == 1730640000123456789 and out[1] is events[1]
    assert events[0]["attributes"]["exception.message"] == "no user jane@example.com"  # input untouched
    clean = [events[1]]
    assert MASKER.mask_events(clean) is clean


def test_event_names_are_masked() -> None:
    events = [{"name": "sent to jane@example.com", "time_unix_nano": 1, "attributes": {}}]
    assert MASKER.mask_events(events) == [{"name": "sent to [REDACTED:email]", "time_unix_nano": 1, "attributes": {}}]


def _span(i: int, resource: dict, **text: str) -> Span:
    return Span(
        trace_id=f"{1:032x}", span_id=f"{i:016x}", parent_span_id=None, name=text.get("name", "chat gpt-4o"),
        kind="CLIENT", start_ns=1, end_ns=2, status_code="ERROR", status_message=text.get("status"),
        attributes={"a": text.get("attr", "fine")},
        events=[{"name": text.get("event", "exception"), "time_unix_nano": 1, "attributes": {}}], resource=resource,
    )  # fmt: skip


def test_mask_spans_covers_every_text_field_and_keeps_resources_shared() -> None:
    shared = {"service.name": "svc jane@example.com", "deployment.environment": "prod", "n": 3}
    other = {"service.name": "clean"}
    pii = "jane@example.com"
    spans = [
        _span(1, shared, name=f"ask {pii}", status=f"no user {pii}", attr=pii, event=f"mail {pii}"),
        _span(2, shared),
        _span(3, other),
    ]
    MASKER.mask_spans(spans)
    a, b, c = spans
    assert (a.name, a.status_message) == ("ask [REDACTED:email]", "no user [REDACTED:email]")
    assert a.attributes == {"a": "[REDACTED:email]"} and a.events[0]["name"] == "mail [REDACTED:email]"
    assert a.resource == {"service.name": "svc [REDACTED:email]", "deployment.environment": "prod", "n": 3}
    assert a.resource is b.resource  # masked once, still one dict for the spans of one resource
    assert c.resource is other and b.name == "chat gpt-4o" and b.status_message is None  # clean: untouched
    assert shared["service.name"] == "svc jane@example.com"  # the decoder's dict is not mutated


def test_mask_bytes_keeps_undecodable_bytes() -> None:
    raw = b"\x00\xff garbage jane@example.com \xc3\xa9\xfe tail"
    assert MASKER.mask_bytes(raw) == b"\x00\xff garbage [REDACTED:email] \xc3\xa9\xfe tail"
    clean = b"\x08\x96\x01 no secrets \xff"
    assert MASKER.mask_bytes(clean) is clean


def test_mask_dead_letter_masks_key_payload_and_error() -> None:
    key, value, error = MASKER.mask_dead_letter(
        b"jane@example.com", b"\x01{bad +44 20 7946 0958", "span 'call jane@example.com': trace_id must be 16 bytes"
    )
    assert key == b"[REDACTED:email]" and value == b"\x01{bad [REDACTED:phone]"
    assert error == "span 'call [REDACTED:email]': trace_id must be 16 bytes"
    assert MASKER.mask_dead_letter(None, None, "empty message") == (None, None, "empty message")


def test_mask_dead_letter_hash_mode_keeps_only_digest_and_length() -> None:
    payload = "caf\u00e9 jane@example.com".encode("utf-16")  # no text rule can see into UTF-16
    hashing = Masker(dead_letters="hash")
    key, value, error = hashing.mask_dead_letter(b"4bf92f3577b34da6a3ce929d0e0e4736", payload, "bad jane@example.com")
    assert value == f"[REDACTED:payload sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload)}]".encode()
    assert key == b"4bf92f3577b34da6a3ce929d0e0e4736" and error == "bad [REDACTED:email]"  # keys stay text-masked


def test_dead_letters_mask_every_row_they_take() -> None:
    letters = DeadLetters(MASKER)
    letters.add(topic="t", partition=0, offset=1, key=None, value=b"jane@example.com", error="bad jane@example.com", stage="decode")
    table = letters.table(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    assert table["value"].to_pylist() == [b"[REDACTED:email]"]
    assert table["error"].to_pylist() == ["bad [REDACTED:email]"]


# --- configuration -------------------------------------------------------------------------


def test_from_settings() -> None:
    assert Masker.from_settings(False, [{"name": "x", "pattern": "("}]) is None
    masker = Masker.from_settings(
        True,
        [
            {"name": "employee_id", "pattern": r"EMP-\d{6}", "replacement": "[REDACTED:employee]"},
            {"name": "ticket", "pattern": r"(TICKET-)\d+"},
        ],
    )
    assert masker is not None and masker.rules[: len(DEFAULT_RULES)] == DEFAULT_RULES
    assert masker.mask_text("EMP-123456 asked") == "[REDACTED:employee] asked"
    assert masker.mask_text("TICKET-42") == "[REDACTED:ticket]"  # default replacement: the rule's name
    assert masker.mask_text("jane@example.com") == "[REDACTED:email]"  # defaults still apply


def test_custom_rules_apply_to_short_strings_and_templates_work() -> None:
    masker = Masker([MaskingRule("user", r"(user_)\d+", r"\1[REDACTED]")])
    assert masker.mask_text("u_1") == "u_1"
    assert masker.mask_text("user_42") == "user_[REDACTED]"
    assert Masker([MaskingRule("x", "x", "y")]).mask_text("x") == "y"


def test_bad_regex_names_the_rule() -> None:
    with pytest.raises(ConfigError, match="masking rule 'broken'.*invalid regex"):
        Masker.from_settings(True, [{"name": "broken", "pattern": "([a-z"}])
    with pytest.raises(ConfigError, match="masking rule 'empty': no pattern"):
        Masker.from_settings(True, [{"name": "empty", "pattern": ""}])
    with pytest.raises(ConfigError, match="dead-letter masking must be one of"):
        Masker.from_settings(True, dead_letters="drop")  # type: ignore[arg-type]
