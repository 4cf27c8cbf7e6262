"""Monitors (spanlake.jobs.monitors) over warehouses written by real code: traces through DeltaSink
(tests/scoring_support.Lake), cost tables by run_costs, assessments by log_feedback. Each metric
against hand-computed values; fire, stay quiet, resolve, with a real local webhook server; a webhook
that is down; two `spanlake jobs run monitors` processes at once; config errors; `jobs run all`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from scoring_support import Lake, S
from support import SPANLAKE

from spanlake.errors import ConfigError
from spanlake.jobs.assessments import log_feedback, override_feedback
from spanlake.jobs.costs import run_costs
from spanlake.jobs.monitor_rules import MonitorRule, load_monitors
from spanlake.jobs.monitors import run_monitors
from spanlake.tables import scan
from spanlake.tables.delta import open_or_create, table_uri
from spanlake.tables.schemas import ASSESSMENTS

UTC = dt.timezone.utc
T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # evaluation time of the trace and cost metrics
MIN = 60 * 10**9


def ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 10**9


def chat(inputs: int, outputs: int) -> dict:
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": inputs, "gen_ai.usage.output_tokens": outputs}  # fmt: skip


def gpt4o(inputs: int, outputs: int) -> float:  # $2.50 in, $10 out per million tokens
    return (inputs * 2.5 + outputs * 10) / 1e6


def rule(name: str, metric: str, window: str, threshold: float, **kw) -> MonitorRule:
    from spanlake.jobs.monitor_rules import METRICS, window_seconds

    seconds = window_seconds(window)
    assert seconds is not None
    return MonitorRule(name, metric, window, seconds, threshold, kw.pop("comparison", METRICS[metric].comparison), **kw)


def alerts(warehouse: str) -> pl.DataFrame:
    return scan("alerts", warehouse=warehouse).collect().sort("since", "rule", "scope")


def traces_lake(warehouse: str) -> Lake:
    """Service a: 4 traces in the last hour (100..400 ms, one failed, users u1 and u2 with one model call
    each); service b: 1 failed trace of 1000 ms; service a: one more trace 2 h ago (outside 1h)."""
    lake = Lake(warehouse)
    for i, (ms, error, user) in enumerate([(100, False, "u1"), (200, True, "u2"), (300, False, "u1"),
                                           (400, False, None)]):  # fmt: skip
        call = [S(type="LLM", attrs=chat(1000, 100) if user == "u1" else chat(2000, 0), ms=10)] if user else []
        lake.add(S(ms=ms, error=error, attrs={"user.id": user} if user else {}, children=call),
                 start_ns=ns(T) - (50 - i) * MIN, service="a")  # fmt: skip
    lake.add(S(ms=1000, error=True), start_ns=ns(T) - 10 * MIN, service="b")
    lake.add(S(ms=5000, error=True, attrs={"user.id": "u1"}, children=[S(type="LLM", attrs=chat(10_000, 0))]),
             start_ns=ns(T) - 120 * MIN, service="a")  # fmt: skip
    return lake


def observed(warehouse: str, *rules: MonitorRule, now: dt.datetime = T) -> dict[tuple[str, str], float | None]:
    run = run_monitors(list(rules), warehouse=warehouse, now=now)
    rows = alerts(warehouse).filter(pl.col("run_id") == run.run_id)
    return {(r["rule"], r["scope"]): r["observed"] for r in rows.iter_rows(named=True)}


def test_trace_metrics_compute_the_hand_computed_values(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    traces_lake(wh)
    got = observed(
        wh,
        rule("errors", "error_rate", "1h", -1),  # threshold -1 (above): every scope fires, so its value is recorded
        rule("errors-by-service", "error_rate", "1h", -1, by="service"),
        rule("p50", "latency_p50_ms", "1h", -1, filter="service_name = 'a'"),
        rule("p95", "latency_p95_ms", "1h", -1, filter="service_name = 'a'"),
        rule("p99", "latency_p99_ms", "1h", -1, filter="service_name = 'a'"),
        rule("errors-1d", "error_rate", "1d", -1, by="user_id"),
        rule("llm-traces", "error_rate", "1h", -1, filter="span.type = 'LLM'"),  # a span filter: its own scan
    )
    assert got == pytest.approx({
        ("errors", "all"): 2 / 5,
        ("errors-by-service", "service=a"): 1 / 4, ("errors-by-service", "service=b"): 1.0,
        ("p50", "all"): 250.0, ("p95", "all"): 300 + 0.85 * 100, ("p99", "all"): 300 + 0.97 * 100,
        ("errors-1d", "user_id=u1"): 1 / 3, ("errors-1d", "user_id=u2"): 1.0, ("errors-1d", "user_id=(none)"): 1 / 2,
        ("llm-traces", "all"): 1 / 3,
    })  # fmt: skip


def test_cost_and_judge_spend_compute_the_hand_computed_values(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    traces_lake(wh)
    at = T - dt.timedelta(minutes=30)
    row = {c: None for c in ASSESSMENTS.column_names} | {
        "assessment_id": "a" * 32, "trace_id": "0" * 31 + "1", "name": "polite", "kind": "feedback",
        "source_type": "LLM_JUDGE", "judge_input_tokens": 1_000_000, "judge_output_tokens": 100_000,
        "judge_model": "gpt-4o-mini", "created_at": at, "day": at.date(),
    }  # fmt: skip
    write_deltalake(open_or_create(table_uri(wh, "assessments"), ASSESSMENTS),
                    pa.Table.from_pylist([row], schema=ASSESSMENTS.schema), mode="append")  # fmt: skip
    run_costs(warehouse=wh)
    got = observed(
        wh,
        rule("spend-per-user", "cost_usd", "1d", 0, by="user_id"),
        rule("spend-1h", "cost_usd", "1h", 0),
        rule("spend-a", "cost_usd", "1d", 0, filter="service_name = 'a' AND user_id = 'u2'"),
        rule("judges", "judge_spend_usd", "1d", 0, by="model"),
    )
    assert got == pytest.approx({
        ("spend-per-user", "user_id=u1"): 2 * gpt4o(1000, 100) + gpt4o(10_000, 0),
        ("spend-per-user", "user_id=u2"): gpt4o(2000, 0),
        ("spend-1h", "all"): 2 * gpt4o(1000, 100) + gpt4o(2000, 0),  # the hour of 11:00; 10:00 started before T - 1h
        ("spend-a", "all"): gpt4o(2000, 0),
        ("judges", "model=gpt-4o-mini"): (1_000_000 * 0.15 + 100_000 * 0.6) / 1e6,
    }, rel=1e-9)  # fmt: skip


def test_pass_rate_freshness_and_dead_letters_compute_the_hand_computed_values(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    lake = Lake(wh)
    ids = lake.add(S(), S(), S(), S())
    lake.add_raw(b"not an OTLP request", b"nor this")  # 2 dead letters of 2 messages, in the second batch
    log_feedback(trace_id=ids[0], name="concise", value=True, warehouse=wh)
    log_feedback(trace_id=ids[1], name="concise", value=False, warehouse=wh)
    wrong = log_feedback(trace_id=ids[2], name="concise", value="no", warehouse=wh)
    override_feedback(trace_id=ids[2], assessment_id=wrong, value="yes", warehouse=wh)  # counts instead of "no"
    log_feedback(trace_id=ids[3], name="concise", error="judge timed out", warehouse=wh)  # no verdict
    log_feedback(trace_id=ids[3], name="other", value=False, warehouse=wh)
    newest = scan("ingest_batches", warehouse=wh).select(pl.col("committed_at").max()).collect().item()
    now = max(newest, dt.datetime.now(UTC)) + dt.timedelta(seconds=120)
    got = observed(
        wh,
        rule("concise", "scorer_pass_rate", "1h", 2.0, scorer="concise"),  # below 2: always fires
        rule("fresh", "ingest_freshness_seconds", "15m", -1),
        rule("dead", "dead_letter_rate", "1h", -1),
        now=now,
    )
    assert got == pytest.approx({
        ("concise", "all"): 2 / 3, ("fresh", "all"): (now - newest).total_seconds(), ("dead", "all"): 2 / 6,
    })  # fmt: skip
    stalled = observed(wh, rule("stalled", "ingest_freshness_seconds", "15m", 3600), now=now + dt.timedelta(days=2))
    assert stalled == pytest.approx({("stalled", "all"): (now + dt.timedelta(days=2) - newest).total_seconds()})


class Webhook:
    """A real HTTP server in a thread that records every JSON body POSTed to it; `up = False` closes it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.status == 200:
                    hook.bodies.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_a_rule_fires_stays_quiet_while_firing_resolves_and_the_webhook_gets_both(tmp_path: Path, webhook: Webhook) -> None:
    wh = str(tmp_path / "wh")
    traces_lake(wh)
    rules = [rule("errors", "error_rate", "1h", 0.5, by="service")]
    first = run_monitors(rules, warehouse=wh, now=T, webhook_url=webhook.url)
    assert [(t["scope"], t["state"]) for t in first.transitions] == [("service=b", "FIRING")]
    assert (first.scopes, first.firing) == (2, 1)
    again = run_monitors(rules, warehouse=wh, now=T + dt.timedelta(minutes=5), webhook_url=webhook.url)
    assert (again.transitions, again.firing) == ([], 1)
    assert alerts(wh).height == 1 and len(webhook.bodies) == 1  # no repeated notification while firing
    later = run_monitors(rules, warehouse=wh, now=T + dt.timedelta(hours=2), webhook_url=webhook.url)  # b is gone
    assert [(t["scope"], t["state"], t["observed"]) for t in later.transitions] == [("service=b", "RESOLVED", None)]
    rows = alerts(wh)
    assert rows.select("rule", "scope", "state", "observed", "threshold", "comparison", "notified").rows() == [
        ("errors", "service=b", "FIRING", 1.0, 0.5, ">", True), ("errors", "service=b", "RESOLVED", None, 0.5, ">", True)
    ]
    assert rows["since"].to_list() == [T, T + dt.timedelta(hours=2)]
    assert rows["window_start"].to_list() == [T - dt.timedelta(hours=1), T + dt.timedelta(hours=1)]
    assert [(b["state"], b["scope"], b["observed"], b["since"]) for b in webhook.bodies] == [
        ("FIRING", "service=b", 1.0, T.isoformat()), ("RESOLVED", "service=b", None, (T + dt.timedelta(hours=2)).isoformat())
    ]
    assert webhook.bodies[0]["text"] == "FIRING errors: error_rate for service=b is 1 (> 0.5) over the last 1h"
    assert {b["alert_id"] for b in webhook.bodies} == set(rows["alert_id"])
    quiet = run_monitors(rules, warehouse=wh, now=T + dt.timedelta(hours=3), webhook_url=webhook.url)
    assert quiet.transitions == [] and len(webhook.bodies) == 2 and alerts(wh).height == 2
    runs = scan("job_runs", warehouse=wh).filter(pl.col("job") == "monitors").collect()
    assert runs.height == 4 and runs["rows_written"].sort().to_list() == [0, 0, 1, 1]


def test_the_readme_alerts_snippet_lists_what_fires_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_readme import python_block_after

    wh = str(tmp_path / "wh")
    traces_lake(wh)
    rules = [rule("errors", "error_rate", "1h", 0.5, by="service"), rule("p50", "latency_p50_ms", "1h", 250)]
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", wh)

    def firing_now() -> list[tuple]:
        answers: dict = {}
        exec(python_block_after("### Monitors and alerts"), answers)  # noqa: S102 - our own README
        return sorted(answers["firing_now"].select("rule", "scope", "observed").rows())

    run_monitors(rules, warehouse=wh, now=T)
    assert firing_now() == [("errors", "service=b", 1.0), ("p50", "all", 300.0)]
    run_monitors(rules, warehouse=wh, now=T + dt.timedelta(hours=2))  # every trace left the window
    assert firing_now() == []


def test_min_count_and_comparison_below(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    traces_lake(wh)
    got = run_monitors([rule("few", "error_rate", "1h", 0.5, by="service", min_count=2),
                        rule("fast", "latency_p50_ms", "1h", 350, comparison="<")], warehouse=wh, now=T)  # fmt: skip
    assert [(t["rule"], t["scope"], t["comparison"]) for t in got.transitions] == [("fast", "all", "<")]  # 1 trace in b


def test_a_webhook_that_is_down_records_notified_false_and_delivers_later_once(tmp_path: Path, webhook: Webhook) -> None:
    wh = str(tmp_path / "wh")
    traces_lake(wh)
    rules = [rule("errors", "error_rate", "1h", 0.5, by="service")]
    webhook.status = 503
    run_monitors(rules, warehouse=wh, now=T, webhook_url=webhook.url)
    assert alerts(wh)["notified"].to_list() == [False] and webhook.bodies == []
    webhook.status = 200
    retried = run_monitors(rules, warehouse=wh, now=T + dt.timedelta(minutes=1), webhook_url=webhook.url)
    assert (retried.transitions, retried.redelivered) == ([], 1)
    assert alerts(wh)["notified"].to_list() == [True] and [b["state"] for b in webhook.bodies] == ["FIRING"]
    run_monitors(rules, warehouse=wh, now=T + dt.timedelta(minutes=2), webhook_url=webhook.url)
    assert len(webhook.bodies) == 1  # a delivered notification is never sent again
    closed = Webhook()
    closed.close()  # nothing listens there: connection refused
    run_monitors(rules, warehouse=wh, now=T + dt.timedelta(hours=2), webhook_url=closed.url)
    assert alerts(wh)["notified"].to_list() == [True, False]


def monitors_config(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


LIVE_RULES = """
    [[monitors]]
    name = "errors"
    metric = "error_rate"
    by = "service"
    window = "1h"
    threshold = 0.5

    [[monitors]]
    name = "dead"
    metric = "dead_letter_rate"
    window = "1h"
    threshold = 0
"""


def live_lake(warehouse: str) -> None:
    """Traces from 10 minutes ago (the CLI evaluates at the current time) and a dead letter."""
    lake = Lake(warehouse)
    start = ns(dt.datetime.now(UTC)) - 10 * MIN
    lake.add(S(error=True), S(error=True), start_ns=start, service="a")
    lake.add(S(), start_ns=start, service="b")
    lake.add_raw(b"garbage")


def test_two_monitor_processes_at_once_write_each_transition_once(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    live_lake(wh)
    config = monitors_config(tmp_path / "jobs.toml", LIVE_RULES)
    env = {**os.environ, "SPANLAKE_WAREHOUSE": wh}
    procs = [subprocess.Popen([SPANLAKE, "jobs", "run", "monitors", "--config", str(config)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = alerts(wh)
    assert sorted(zip(rows["rule"], rows["scope"], rows["state"], strict=True)) == [
        ("dead", "all", "FIRING"), ("errors", "service=a", "FIRING")
    ]
    assert all(line.startswith("monitors: 2 rules") for out, _ in outs for line in out.splitlines())
    assert any("2 transitions (2 firing, 0 resolved), 2 firing now" in out for out, _ in outs), outs
    assert all("read_delta" in out or "not evaluated" in out for out, _ in outs)
    assert scan("job_runs", warehouse=wh).filter(pl.col("job") == "monitors").collect().height == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[monitors]]\nname = "x"\nmetric = "cost"\nwindow = "1d"\nthreshold = 1\n',
         "monitor 1 (x): metric 'cost' is not one of cost_usd,"),
        ('[[monitors]]\nname = "x"\nmetric = "cost_usd"\nwindow = "1 day"\nthreshold = 1\n', "monitor 1 (x): window '1 day'"),
        ('[[monitors]]\nname = "x"\nmetric = "cost_usd"\nwindow = "15m"\nthreshold = 1\n', "cost windows are whole hours"),
        ('[[monitors]]\nname = "x"\nmetric = "error_rate"\nwindow = "1h"\n', "monitor 1 (x): `threshold` is missing"),
        ('[[monitors]]\nname = "x"\nmetric = "error_rate"\nwindow = "1h"\nthreshold = 1\nby = "host"\n',
         "by = 'host': for error_rate it is one of service, model, environment, user_id"),
        ('[[monitors]]\nname = "x"\nmetric = "scorer_pass_rate"\nwindow = "1h"\nthreshold = 1\n', "`scorer = "),
        ('[[monitors]]\nname = "x"\nmetric = "error_rate"\nwindow = "1h"\nthreshold = 1\nfilter = "nope = 1"\n',
         "monitor 1 (x): bad filter:"),
        ('[[monitors]]\nname = "x"\nmetric = "cost_usd"\nwindow = "1h"\nthreshold = 1\nfilter = "state = \'OK\'"\n',
         "a cost filter names only"),
        ('[[monitors]]\nname = "x"\nmetric = "error_rate"\nwindow = "1h"\nthreshold = 1\nlimit = 3\n',
         "monitor 1 (x): unknown key 'limit'"),
        ('[[monitors]]\nname = "x"\nmetric = "error_rate"\nwindow = "1h"\nthreshold = 1\n' * 2, "'x' is used twice"),
        ('[[scorers]]\nbuiltin = "trace_failed"\n', "registers no monitors"),
    ],
)  # fmt: skip
def test_config_errors_are_one_line_naming_the_file_and_entry(tmp_path: Path, body: str, message: str) -> None:
    config = monitors_config(tmp_path / "jobs.toml", body)
    with pytest.raises(ConfigError) as caught:
        load_monitors(config)
    assert str(caught.value).startswith(str(config)) and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_jobs_run_all_runs_scorers_costs_and_monitors(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    live_lake(wh)
    config = monitors_config(tmp_path / "jobs.toml", '[[scorers]]\nbuiltin = "trace_failed"\n' + LIVE_RULES)
    env = {**os.environ, "SPANLAKE_WAREHOUSE": wh}
    done = subprocess.run([SPANLAKE, "jobs", "run", "all", "--config", str(config)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["scorers", "costs", "monitors"], lines
    assert "2 transitions" in lines[2]
    jobs = scan("job_runs", warehouse=wh).collect().sort("started_at")["job"].to_list()
    assert jobs == ["scorers", "costs", "monitors"]
    only_monitors = monitors_config(tmp_path / "monitors.toml", LIVE_RULES)
    done = subprocess.run([SPANLAKE, "jobs", "run", "all", "--config", str(only_monitors)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(f"skipped: {only_monitors} registers no scorers: it needs")
    assert "0 transitions" in done.stdout.splitlines()[2]
    alone = subprocess.run([SPANLAKE, "jobs", "run", "scorers", "--config", str(only_monitors)], env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert alone.returncode == 1 and "registers no scorers" in alone.stderr
