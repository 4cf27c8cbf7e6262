"""LLM judges against a real local chat-completions server (tests/judge_server.py): verdicts and
rationales of every judge, retries honouring Retry-After, the verdict cache, the budget stop,
malformed verdicts, bounded concurrency, and an API key that never leaks.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pytest
from judge_server import JudgeServer, Reply, Request, verdict

from spanlake.errors import ConfigError
from spanlake.jobs.feedback import BUDGET_EXCEEDED, JUDGE_ERROR, Feedback
from spanlake.jobs.judge_cache import VerdictCache
from spanlake.jobs.judge_client import Budget, JudgeClient, default_client
from spanlake.jobs.judges import (
    Correctness,
    ExpectationsGuidelines,
    Guidelines,
    RelevanceToQuery,
    RetrievalGroundedness,
    Safety,
    make_judge,
)  # fmt: skip
from spanlake.query.traces import Trace, order_spans
from spanlake.settings import Settings

KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    with JudgeServer() as s:
        yield s


def client(server: JudgeServer, tmp_path: Path, **options: Any) -> JudgeClient:
    options.setdefault("cache", VerdictCache(tmp_path / "judge_cache.sqlite"))
    options.setdefault("backoff_seconds", 0.01)
    return JudgeClient(base_url=server.url, model="judge-1", api_key=KEY, **options)


def user_prompt(request: Request) -> str:
    return request.body["messages"][-1]["content"]


# --- each judge ----------------------------------------------------------------------------


def test_guidelines_verdict_and_rationale_and_what_it_cost(server: JudgeServer, tmp_path: Path) -> None:
    server.respond = lambda r: (
        verdict("no", "it says 'go away'") if "go away" in user_prompt(r) else verdict("yes", "ok")
    )
    polite = Guidelines(name="polite", guidelines=["Be courteous.", "No slang."], client=client(server, tmp_path))
    rude = polite(inputs={"question": "where is my order?"}, outputs="go away")
    kind = polite(inputs={"question": "where is my order?"}, outputs="It ships tomorrow, thank you for waiting.")
    assert (rude.name, rude.value, rude.rationale, rude.error) == ("polite", "no", "it says 'go away'", None)
    assert kind.value == "yes"
    assert (rude.judge_input_tokens, rude.judge_output_tokens, rude.judge_model) == (100, 20, "judge-1")
    assert rude.source is not None and (rude.source.source_type, rude.source.source_id) == ("LLM_JUDGE", "judge-1")
    sent = server.requests[0].body
    assert sent["model"] == "judge-1" and sent["temperature"] == 0
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["result"] == {
        "type": "string",
        "enum": ["yes", "no"],
    }
    prompt = user_prompt(server.requests[0])
    assert "- Be courteous.\n- No slang." in prompt and '"question": "where is my order?"' in prompt
    assert polite.source_type == "LLM_JUDGE" and polite.params == ("inputs", "outputs")


def test_judges_take_only_what_they_declare_through_run(server: JudgeServer, tmp_path: Path) -> None:
    c = client(server, tmp_path)
    available = {
        "inputs": "q",
        "outputs": "a",
        "expectations": {"expected_response": "a"},
        "trace": None,
        "session": None,
    }
    for judge in (
        Guidelines(guidelines="g", client=c),
        RelevanceToQuery(client=c),
        Safety(client=c),
        Correctness(client=c),
    ):
        assert judge.run(**available).value == "yes", judge
    assert [Safety(client=c).params, Correctness(client=c).params] == [
        ("outputs",),
        ("inputs", "outputs", "expectations"),
    ]


def test_expectations_guidelines_reads_the_trace_s_guidelines(server: JudgeServer, tmp_path: Path) -> None:
    judge = ExpectationsGuidelines(client=client(server, tmp_path))
    server.script(verdict("no", "not in French"))
    result = judge(inputs="bonjour", outputs="hello", expectations={"guidelines": ["Answer in French."]})
    assert (result.name, result.value, result.rationale) == ("expectations_guidelines", "no", "not in French")
    assert "- Answer in French." in user_prompt(server.requests[0])
    with pytest.raises(ValueError, match="needs a 'guidelines' expectation"):
        judge(inputs="q", outputs="a", expectations={})


def test_correctness_with_expected_facts_or_expected_response(server: JudgeServer, tmp_path: Path) -> None:
    judge = Correctness(client=client(server, tmp_path))
    server.script(verdict("no", "misses the date"), verdict("yes", "same answer"))
    facts = judge(inputs="When?", outputs="In Paris.", expectations={"expected_facts": ["in Paris", "on 3 May"]})
    answer = judge(inputs="Capital of France?", outputs="Paris", expectations={"expected_response": "Paris."})
    assert (facts.value, facts.rationale, answer.value) == ("no", "misses the date", "yes")
    assert "<expected_facts>\n- in Paris\n- on 3 May\n</expected_facts>" in user_prompt(server.requests[0])
    assert "<expected_response>\nParis.\n</expected_response>" in user_prompt(server.requests[1])
    with pytest.raises(ValueError, match="'expected_facts' or 'expected_response'"):
        judge(inputs="q", outputs="a", expectations={"guidelines": "x"})


def test_relevance_and_safety(server: JudgeServer, tmp_path: Path) -> None:
    c = client(server, tmp_path)
    server.script(verdict("no", "talks about the weather"), verdict("no", "gives instructions for a weapon"))
    relevance = RelevanceToQuery(client=c)(inputs="What is your refund policy?", outputs="It is sunny today.")
    safety = Safety(client=c)(outputs="Here is how to build it: ...")
    assert (relevance.name, relevance.value, relevance.rationale) == (
        "relevance_to_query",
        "no",
        "talks about the weather",
    )
    assert (safety.name, safety.value) == ("safety", "no")
    assert "It is sunny today." in user_prompt(server.requests[0]) and "<content>" in user_prompt(server.requests[1])


def _trace(spans: list[dict[str, Any]]) -> Trace:
    base = {"parent_span_id": None, "span_type": None, "inputs": None, "outputs": None, "status_code": "OK",
            "duration_ms": 5.0, "status_message": None}  # fmt: skip
    rows = [{**base, **s, "start_time": i} for i, s in enumerate(spans)]
    info = {"trace_id": "a" * 32, "root_span_id": rows[0]["span_id"], "state": "OK", "duration_ms": 40.0,
            "span_count": len(rows), "response_preview": None}  # fmt: skip
    return Trace(info, order_spans(rows))


def test_retrieval_groundedness_gives_one_feedback_per_retriever_span(server: JudgeServer, tmp_path: Path) -> None:
    trace = _trace([
        {"span_id": "r" * 16, "name": "rag", "span_type": "CHAIN", "inputs": '{"q": "refund window?"}',
         "outputs": "30 days, free return shipping."},
        {"span_id": "1" * 16, "parent_span_id": "r" * 16, "name": "search_docs", "span_type": "RETRIEVER",
         "outputs": '[{"page_content": "Refunds within 30 days."}]'},
        {"span_id": "2" * 16, "parent_span_id": "r" * 16, "name": "search_faq", "span_type": "RETRIEVER",
         "outputs": '[{"page_content": "Shipping costs 5 EUR."}]'},
        {"span_id": "3" * 16, "parent_span_id": "r" * 16, "name": "llm", "span_type": "CHAT_MODEL"},
    ])  # fmt: skip
    server.respond = lambda r: (
        verdict("yes", "supported")
        if "Refunds within 30 days" in user_prompt(r)
        else verdict("no", "free shipping unsupported")
    )
    judge = RetrievalGroundedness(client=client(server, tmp_path))
    results = judge.run(trace=trace, inputs="ignored", outputs="ignored")
    assert [(f.name, f.span_id, f.value) for f in results] == [
        ("retrieval_groundedness", "1" * 16, "yes"), ("retrieval_groundedness", "2" * 16, "no"),
    ]  # fmt: skip
    assert all("30 days, free return shipping." in user_prompt(r) and "refund window?" in user_prompt(r)
               for r in server.requests)  # fmt: skip
    assert judge(trace=_trace([{"span_id": "r" * 16, "name": "chat"}])) is None  # no retriever: nothing recorded
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("value_type", "answer", "expected"),
    [(bool, True, True), (bool, "no", False), (int, 4, 4), (int, "5", 5), (float, 0.25, 0.25), (str, "calm", "calm"),
     (Literal["good", "bad"], "Bad", "bad"), (dict, {"tone": "calm"}, {"tone": "calm"})],
)  # fmt: skip
def test_make_judge_returns_its_value_type(
    server: JudgeServer, tmp_path: Path, value_type: Any, answer: Any, expected: Any
) -> None:
    judge = make_judge(name="tone", instructions="Rate the tone of {{ outputs }} given {{inputs}}.",
                       feedback_value_type=value_type, client=client(server, tmp_path))  # fmt: skip
    server.script(verdict(answer, "looks calm"))
    result = judge(inputs="hi", outputs="hello there")
    assert (result.value, result.rationale, result.error) == (expected, "looks calm", None)
    assert user_prompt(server.requests[0]) == "Rate the tone of hello there given hi."
    assert judge.params == ("inputs", "outputs")


def test_make_judge_renders_expectations_and_the_trace(server: JudgeServer, tmp_path: Path) -> None:
    judge = make_judge(name="tools", instructions="Did {{ trace }} meet {{ expectations }}?", feedback_value_type=bool,
                       model="openai:/gpt-4o", client=client(server, tmp_path))  # fmt: skip
    trace = _trace([{"span_id": "r" * 16, "name": "agent", "span_type": "AGENT"},
                    {"span_id": "t" * 16, "parent_span_id": "r" * 16, "name": "lookup", "span_type": "TOOL",
                     "status_code": "ERROR", "status_message": "timeout after 30 s"}])  # fmt: skip
    server.script(verdict(False, "the tool failed"))
    result = judge.run(trace=trace, expectations={"tool": "lookup"}, inputs="x")
    assert (result.value, result.judge_model) == (False, "gpt-4o")
    prompt = user_prompt(server.requests[0])
    assert server.requests[0].body["model"] == "gpt-4o" and '"tool": "lookup"' in prompt
    assert "  - lookup [TOOL] status ERROR" in prompt and "status_message: timeout after 30 s" in prompt
    with pytest.raises(ValueError, match="needs trace"):
        judge(expectations={"tool": "lookup"})


@pytest.mark.parametrize(
    ("instructions", "message"),
    [("Is {{ output }} fine?", r"use '\{\{ output \}\}'; the only template variables are \{\{ inputs \}\}"),
     ("Is {{ inputs.question }} fine?", r"'\{\{ inputs.question \}\}'"),
     ("Is the answer fine?", "must use at least one of"), ("", "non-empty")],
)  # fmt: skip
def test_make_judge_refuses_other_template_variables(
    server: JudgeServer, tmp_path: Path, instructions: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_judge(name="bad", instructions=instructions, client=client(server, tmp_path))


def test_version_follows_prompt_and_model(server: JudgeServer, tmp_path: Path) -> None:
    c = client(server, tmp_path)
    versions = {
        Guidelines(name="g", guidelines="A", client=c).version, Guidelines(name="g", guidelines="B", client=c).version,
        Guidelines(name="g", guidelines="A", model="other", client=c).version,
    }  # fmt: skip
    assert len(versions) == 3 and Guidelines(name="g", guidelines="A", client=c).version in versions


# --- verdict parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "value", "rationale"),
    [('{"rationale": "fine", "result": "yes"}', "yes", "fine"),
     ('```json\n{"rationale": "fine", "result": "no"}\n```', "no", "fine"),
     ('{"rationale": "line one\nline two", "result": "yes"}', "yes", "line one\nline two"),
     ('Sure! Here is my verdict: {"Reasoning": "ok", "Verdict": true} Hope it helps.', "yes", "ok"),
     ("Rationale: it is polite\nand clear.\nResult: **Yes**", "yes", "it is polite\nand clear."),
     ("No.", "no", None), ("true", "yes", None), ('"yes"', "yes", None)],
)  # fmt: skip
def test_verdicts_parse_from_what_models_really_send(
    server: JudgeServer, tmp_path: Path, content: str, value: str, rationale: str | None
) -> None:
    server.script(Reply(content=content))
    result = Safety(client=client(server, tmp_path))(outputs="x")
    assert (result.value, result.rationale, result.error) == (value, rationale, None)


@pytest.mark.parametrize(
    ("content", "quoted"),
    [("I would rather not say.", "'I would rather not say.'"),
     ('{"rationale": "hmm", "result": "maybe"}', "verdict 'maybe' is not one of 'yes', 'no'"),
     ('{"thoughts": "no result key"}', "no result key"), ("", "holds no verdict: ''"),
     ("word " * 100, "... (500 chars)")],
)  # fmt: skip
def test_malformed_verdicts_become_judge_errors_not_exceptions(
    server: JudgeServer, tmp_path: Path, content: str, quoted: str
) -> None:
    c = client(server, tmp_path)
    server.script(Reply(content=content), Reply(content=content))
    result = Safety(client=c)(outputs="x")
    assert result.error_code == JUDGE_ERROR and quoted in (result.error_message or "")
    assert (result.value, result.judge_input_tokens) == (None, 100)  # the tokens were spent all the same
    assert Safety(client=c)(outputs="x").error_code == JUDGE_ERROR  # not kept: asked again
    assert len(server.requests) == 2


def test_a_200_that_is_not_a_chat_completion_is_a_judge_error(server: JudgeServer, tmp_path: Path) -> None:
    server.script(Reply(body=b"<html>gateway</html>"), Reply(body=b'{"object": "list"}'))
    c = client(server, tmp_path)
    assert "not JSON: <html>gateway</html>" in (Safety(client=c)(outputs="x").error_message or "")
    assert "without choices[0].message" in (Safety(client=c)(outputs="y").error_message or "")


# --- retries -------------------------------------------------------------------------------


def test_429_storm_retries_honour_retry_after_seconds_and_dates(server: JudgeServer, tmp_path: Path) -> None:
    soon = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds, 1 s of it spent by the first wait
    server.script(Reply(status=429, headers={"Retry-After": "1"}), Reply(status=429, headers={"Retry-After": soon}),
                  Reply(status=429, headers={"retry-after-ms": "300"}), verdict("yes", "fine"))  # fmt: skip
    result = Safety(client=client(server, tmp_path, backoff_seconds=0.0))(outputs="x")
    assert (result.value, result.error) == ("yes", None)
    at = [r.at for r in server.requests]
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert len(at) == 4 and gaps[0] >= 1.0 and gaps[1] >= 0.9 and 0.3 <= gaps[2] < 1.0, gaps


def test_5xx_are_retried_with_backoff_then_reported(server: JudgeServer, tmp_path: Path) -> None:
    server.script(Reply(status=500), Reply(status=503), verdict("yes"))
    c = client(server, tmp_path, max_retries=3, backoff_seconds=0.05)
    assert Safety(client=c)(outputs="x").value == "yes" and len(server.requests) == 3
    server.script(*[Reply(status=502, body=b"bad gateway")] * 4)
    failed = Safety(client=c)(outputs="y")
    assert failed.error_code == JUDGE_ERROR and len(server.requests) == 7
    assert (
        failed.error_message
        == f"judge endpoint {server.url}/chat/completions failed 4 times, last: HTTP 502: bad gateway"
    )
    gaps = [b.at - a.at for a, b in zip(server.requests[3:], server.requests[4:])]
    assert gaps[2] > gaps[0] and gaps[0] >= 0.025  # exponential: 0.05 * 2**n with jitter in [0.5, 1]


def test_client_errors_are_not_retried_and_a_dead_endpoint_is_reported(server: JudgeServer, tmp_path: Path) -> None:
    server.script(Reply(status=404, body=b'{"error": "model judge-1 not found"}'))
    result = Safety(client=client(server, tmp_path))(outputs="x")
    assert result.error_code == JUDGE_ERROR and "refused the request: HTTP 404" in (result.error_message or "")
    assert len(server.requests) == 1
    dead = JudgeClient(base_url="http://127.0.0.1:9/v1", model="m", max_retries=2, backoff_seconds=0.01)
    result = Safety(client=dead)(outputs="x")
    assert result.error_code == JUDGE_ERROR and "failed 3 times, last: " in (result.error_message or "")


def test_a_server_without_response_format_is_asked_without_it(server: JudgeServer, tmp_path: Path) -> None:
    server.reject_response_format = True
    c = client(server, tmp_path)
    assert Safety(client=c)(outputs="x").value == "yes" and Safety(client=c)(outputs="y").value == "yes"
    assert ["response_format" in r.body for r in server.requests] == [True, False, False]


# --- cache, budget, concurrency ------------------------------------------------------------


def test_a_second_run_makes_zero_calls(server: JudgeServer, tmp_path: Path) -> None:
    server.respond = lambda r: verdict("no" if "rude" in user_prompt(r) else "yes", "looked")
    outputs = [f"answer {i}" + (" rude" if i % 3 == 0 else "") for i in range(30)]

    def run(c: JudgeClient) -> list[Feedback]:
        judge = Guidelines(name="polite", guidelines="Be polite.", client=c)
        with ThreadPoolExecutor(judge.concurrency) as pool:
            return list(pool.map(lambda o: judge.run(inputs="q", outputs=o), outputs))

    first = run(client(server, tmp_path, concurrency=8))
    assert len(server.requests) == 30
    again = run(client(server, tmp_path, concurrency=8))  # a new process would open the same file
    assert len(server.requests) == 30, "the second run called the endpoint"
    assert [f.value for f in again] == [f.value for f in first] and first[0].value == "no"
    assert {(f.judge_input_tokens, f.judge_output_tokens) for f in again} == {(0, 0)}
    assert again[0].metadata == {"judge_cache": "hit"} and first[0].metadata is None
    other_model = Guidelines(name="polite", guidelines="Be polite.", model="judge-2", client=client(server, tmp_path))
    other_model(inputs="q", outputs=outputs[0])
    assert len(server.requests) == 31  # the key holds the model


def test_the_budget_stops_calls_and_says_so_once(
    server: JudgeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(server, tmp_path, budget=Budget(tokens=250))  # each call: 100 + 20 tokens
    judge = Safety(client=c)
    with caplog.at_level(logging.WARNING, logger="spanlake.jobs.judge_client"):
        results = [judge(outputs=f"answer {i}") for i in range(6)]
    assert [r.error_code for r in results] == [None, None, None, BUDGET_EXCEEDED, BUDGET_EXCEEDED, BUDGET_EXCEEDED]
    assert len(server.requests) == 3 and c.budget.spent_tokens == 360
    assert (
        results[3].error_message
        == "judge budget of 250 tokens per run is spent (360 used); no further judge calls this run"
    )
    assert [r.getMessage() for r in caplog.records].count(
        "judge budget of 250 tokens per run is spent (360 used); no further judge calls this run"
    ) == 1 and len(caplog.records) == 1
    assert judge(outputs="answer 0").value == "yes"  # a kept verdict costs nothing, budget or not
    judge.start_run()  # the runner starts the next run
    assert judge(outputs="answer 9").error is None and len(server.requests) == 4


def test_concurrent_calls_pass_the_budget_by_less_than_the_concurrency(server: JudgeServer, tmp_path: Path) -> None:
    server.default = verdict("yes", delay=0.05)
    judge = Safety(client=client(server, tmp_path, concurrency=4, budget=Budget(tokens=250)))
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: judge(outputs=f"a{i}").error_code, range(40)))
    made = len(server.requests)
    assert 3 <= made <= 3 + 3 and codes.count(None) == made and codes.count(BUDGET_EXCEEDED) == 40 - made


def test_a_usd_budget_prices_the_judge_model_as_the_cost_job_does(server: JudgeServer, tmp_path: Path) -> None:
    # gpt-4o-mini in genai-prices: $0.15 in, $0.60 out per million; a call is 100 + 20 tokens: $0.000027
    settings = Settings(judge_base_url=server.url, judge_model="gpt-4o-mini", judge_budget_usd=0.00006, judge_cache=False)
    c = JudgeClient.from_settings(settings)
    judge = Safety(client=c)
    assert [judge(outputs=str(i)).error_code for i in range(4)] == [None, None, None, BUDGET_EXCEEDED]
    assert c.budget.spent_usd == pytest.approx(3 * (100 * 0.15 + 20 * 0.60) / 1e6, rel=1e-12)
    assert {r.body["model"] for r in server.requests} == {"gpt-4o-mini"} and len(server.requests) == 3


def test_a_usd_budget_for_a_model_without_a_price_is_refused_before_any_call(
    server: JudgeServer, tmp_path: Path
) -> None:
    usd = dict(judge_base_url=server.url, judge_budget_usd=1.0, judge_cache=False)
    with pytest.raises(ConfigError) as err:
        JudgeClient.from_settings(Settings(judge_model="llama3.1:8b", **usd))
    assert str(err.value) == (
        "judge model 'llama3.1:8b' has no price (unknown model 'llama3.1:8b'), so a USD judge budget cannot count its "
        "calls: add it to SPANLAKE_PRICES_FILE, set SPANLAKE_JUDGE_INPUT_USD_PER_MTOK and _OUTPUT_USD_PER_MTOK, "
        "or budget tokens (SPANLAKE_JUDGE_BUDGET_TOKENS)"
    )
    priced = JudgeClient.from_settings(Settings(judge_model="gpt-4o-mini", **usd))
    with pytest.raises(ConfigError, match="judge model 'judge-1' has no price"):  # a judge naming its own model
        Safety(client=priced, model="judge-1")
    with pytest.raises(ConfigError, match="set both judge_input_usd_per_mtok and judge_output_usd_per_mtok"):
        JudgeClient.from_settings(Settings(judge_model="gpt-4o-mini", judge_input_usd_per_mtok=1.0, **usd))
    assert server.requests == []


def test_a_usd_budget_takes_the_prices_file_or_the_two_flat_prices(server: JudgeServer, tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[[prices]]\nmodel = "llama3.1:8b"\ninput_mtok = 5.0\noutput_mtok = 25.0\n')
    usd = dict(judge_base_url=server.url, judge_model="llama3.1:8b", judge_budget_usd=0.0015, judge_cache=False)
    for settings in (Settings(prices_file=path, **usd),  # a call: 0.0005 + 0.0005 USD
                     Settings(judge_input_usd_per_mtok=5.0, judge_output_usd_per_mtok=25.0, **usd)):  # fmt: skip
        c = JudgeClient.from_settings(settings)
        judge = Safety(client=c)
        assert [judge(outputs=str(i)).error_code for i in range(3)] == [None, None, BUDGET_EXCEEDED]
        assert c.budget.spent_usd == pytest.approx(0.002, rel=1e-12)
    budget = Budget(usd=0.0015, input_usd_per_mtok=5.0, output_usd_per_mtok=25.0)  # flat prices: any model
    assert client(server, tmp_path, budget=budget).budget is budget


def test_concurrency_is_bounded_over_all_threads(server: JudgeServer, tmp_path: Path) -> None:
    server.default = verdict("yes", delay=0.1)
    c = client(server, tmp_path, concurrency=4)
    judges = [Safety(client=c), RelevanceToQuery(client=c)]
    assert {j.concurrency for j in judges} == {4}
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: judges[i % 2].run(inputs="q", outputs=f"a{i}"), range(40)))
    assert {r.value for r in results} == {"yes"} and len(server.requests) == 40
    assert server.max_in_flight == 4


# --- settings and the secret ---------------------------------------------------------------


def test_settings_honour_the_openai_variables(
    monkeypatch: pytest.MonkeyPatch, server: JudgeServer, tmp_path: Path
) -> None:
    for name in ("SPANLAKE_JUDGE_BASE_URL", "SPANLAKE_JUDGE_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().judge_base_url == "https://api.openai.com/v1" and Settings().judge_api_key is None
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SPANLAKE_JUDGE_CONCURRENCY", "3")
    monkeypatch.setenv("SPANLAKE_JUDGE_CACHE_PATH", str(tmp_path / "env_cache.sqlite"))
    judge = Safety()  # no client: the process's default, from the environment
    assert judge.concurrency == 3 and judge.client is default_client()
    assert judge(outputs="x").value == "yes" and server.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert (tmp_path / "env_cache.sqlite").exists()
    monkeypatch.setenv("SPANLAKE_JUDGE_BASE_URL", "http://spanlake.example/v1")
    monkeypatch.setenv("SPANLAKE_JUDGE_API_KEY", "sk-other")
    settings = Settings()
    assert settings.judge_base_url == "http://spanlake.example/v1" and settings.judge_api_key is not None
    assert settings.judge_api_key.get_secret_value() == "sk-other"
    assert Settings(judge_base_url="http://arg/v1").judge_base_url == "http://arg/v1"  # arguments by field name


def test_the_api_key_never_appears_in_logs_errors_reprs_or_files(
    server: JudgeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(judge_base_url=server.url, judge_api_key=KEY, judge_cache_path=tmp_path / "c.sqlite",
                        judge_max_retries=1)  # fmt: skip
    c = JudgeClient.from_settings(settings)
    c.backoff_seconds = 0.01
    echo = json.dumps({"error": f"invalid api key {KEY}"}).encode()  # a proxy echoing the header back
    server.script(Reply(status=401, body=echo), Reply(status=500, body=echo), Reply(status=500, body=echo),
                  Reply(status=429, body=echo), verdict("yes"))  # fmt: skip
    judge = Guidelines(name="polite", guidelines="Be polite.", client=c)
    with caplog.at_level(logging.DEBUG):
        results = [judge(inputs="q", outputs=o) for o in ("a", "b", "c")]
    assert [r.error_code for r in results] == [JUDGE_ERROR, JUDGE_ERROR, None]
    assert "invalid api key **********" in (results[0].error_message or "")
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in server.requests)  # it was sent
    seen = [caplog.text, *(str(r) for r in results), repr(settings), str(settings), settings.model_dump_json(),
            repr(c), repr(judge), repr(c.cache)]  # fmt: skip
    assert caplog.text and not [s for s in seen if KEY in s]
    assert KEY.encode() not in (tmp_path / "c.sqlite").read_bytes()
    assert not any(KEY.encode() in p.read_bytes() for p in tmp_path.iterdir())
