"""Production scoring through the real path: traces produced to the real broker and ingested,
scorers registered in a config file, `spanlake jobs run scorers` run as its own process, and
the assessments and job_runs tables read back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from support import SPANLAKE, create_topic, ingest, read, send_raw, wait_for
from test_ingest_bad_input import request, span

from spanlake.settings import Settings

NOW_NS = int(time.time()) * 10**9 - 3_600 * 10**9  # an hour ago: ingest stamps rows now, whatever the span times
DAY_NS = 86_400 * 10**9

SCORERS_PY = """
import time
from spanlake.jobs.scorer import scorer

@scorer
def answered(outputs):
    return outputs is not None and "answer" in str(outputs)

@scorer
def slow_answered(outputs):
    time.sleep({sleep})
    return outputs is not None
"""


def trace_id(n: int) -> str:
    return f"{n:032x}"


def send_traces(settings: Settings, numbers: range | list[int], *, roots: bool = True, children: bool = True,
                start: int = NOW_NS) -> None:  # fmt: skip
    """Trace n: a root (inputs and outputs) and one child; either part may be left out."""
    spans = []
    for n in numbers:
        t = start + n * 10**9
        if roots:
            spans.append(span(n, 1, start=t, end=t + 10**9, **{"input.value": f"question {n}",
                                                                "output.value": f"answer {n}"}))  # fmt: skip
        if children:
            spans.append(span(n, 2, parent=1, start=t + 10**6, end=t + 10**8))
    send_raw(settings, [request(*spans[i : i + 50]).SerializeToString() for i in range(0, len(spans), 50)])


def write_config(tmp_path: Path, entries: str, *, sleep: float = 0.0) -> Path:
    (tmp_path / "my_scorers.py").write_text(SCORERS_PY.format(sleep=sleep))
    config = tmp_path / "scorers.toml"
    config.write_text(textwrap.dedent(entries))
    return config


def run_jobs(settings: Settings, config: Path, *args: str, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
    done = subprocess.run(
        [SPANLAKE, "jobs", "run", "scorers", "--config", str(config), "--warehouse", settings.warehouse, *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    return done


def assessments(settings: Settings, name: str | None = None) -> pl.DataFrame:
    frame = read(settings, "assessments")
    return frame if name is None else frame.filter(pl.col("name") == name)


def scored_ids(settings: Settings, name: str) -> list[str]:
    ids = assessments(settings, name)["trace_id"].to_list()
    assert len(ids) == len(set(ids)), f"{name}: some trace was scored twice"
    return sorted(ids)


def in_sample(tid: str, rate: float) -> bool:
    return int.from_bytes(hashlib.sha256(tid.encode()).digest()[:8], "big") / 2**64 < rate


ANSWERED = """
    [[scorers]]
    use = "my_scorers:answered"
    sample_rate = 1.0
"""


def test_a_rerun_scores_nothing_twice_and_a_late_root_is_scored_when_it_arrives(settings: Settings,
                                                                                tmp_path: Path) -> None:  # fmt: skip
    create_topic(settings, partitions=1)
    send_traces(settings, range(1, 21))
    send_traces(settings, [99], roots=False)  # trace 99: its child only, the root comes later
    ingest(settings)
    config = write_config(tmp_path, ANSWERED)

    first = run_jobs(settings, config)
    assert scored_ids(settings, "answered") == [trace_id(n) for n in range(1, 21)]  # not the IN_PROGRESS one
    assert assessments(settings, "answered")["value_bool"].to_list() == [True] * 20
    assert "wrote 20 assessments" in first.stdout
    second = run_jobs(settings, config)
    assert "wrote 0 assessments" in second.stdout
    assert assessments(settings).height == 20

    send_traces(settings, range(21, 26))
    send_traces(settings, [99], children=False)  # the late root
    ingest(settings)
    run_jobs(settings, config)
    assert scored_ids(settings, "answered") == sorted(trace_id(n) for n in [*range(1, 26), 99])

    runs = read(settings, "job_runs").sort("started_at")
    assert runs["job"].to_list() == ["scorers"] * 3 and runs["status"].to_list() == ["OK"] * 3
    assert runs["rows_written"].to_list() == [20, 0, 6]
    assert set(assessments(settings)["run_id"]) == {runs["run_id"][0], runs["run_id"][2]}
    watermark = json.loads(runs["watermark"][2])["answered"]
    assert watermark["ingested_at"] == read(settings, "trace_info")["ingested_at"].max().isoformat()


def test_sampling_is_the_same_in_every_process_and_run(settings: Settings, tmp_path: Path) -> None:
    create_topic(settings, partitions=1)
    send_traces(settings, range(1, 81))
    ingest(settings)
    config = write_config(tmp_path, """
        [[scorers]]
        use = "my_scorers:answered"
        name = "half"
        sample_rate = 0.5
        [[scorers]]
        use = "my_scorers:answered"
        name = "fifth"
        sample_rate = 0.2
        filter = "trace.status = 'OK'"
    """)  # fmt: skip
    run_jobs(settings, config, env={"PYTHONHASHSEED": "1"})
    expected = {rate: sorted(trace_id(n) for n in range(1, 81) if in_sample(trace_id(n), rate)) for rate in (0.5, 0.2)}
    assert 25 < len(expected[0.5]) < 55 and 5 < len(expected[0.2]) < 30
    assert scored_ids(settings, "half") == expected[0.5]
    assert scored_ids(settings, "fifth") == expected[0.2]
    assert set(expected[0.2]) <= set(expected[0.5])  # one hash for all scorers: samples nest

    # Another warehouse, another process with another hash seed: the same traces.
    other = settings.model_copy(update={"warehouse": str(tmp_path / "other")})
    ingest(other)
    run_jobs(other, config, env={"PYTHONHASHSEED": "2"})
    assert scored_ids(other, "half") == expected[0.5] and scored_ids(other, "fifth") == expected[0.2]


def test_two_job_processes_at_once_never_double_write(settings: Settings, tmp_path: Path) -> None:
    create_topic(settings, partitions=1)
    send_traces(settings, range(1, 41))
    ingest(settings)
    config = write_config(tmp_path, """
        [[scorers]]
        use = "my_scorers:slow_answered"
        [[scorers]]
        use = "my_scorers:answered"
    """, sleep=0.1)  # fmt: skip
    command = [SPANLAKE, "jobs", "run", "scorers", "--config", str(config), "--warehouse", settings.warehouse]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    expected = [trace_id(n) for n in range(1, 41)]
    assert scored_ids(settings, "slow_answered") == expected
    assert scored_ids(settings, "answered") == expected
    # The slow scorer's 4 s gave the loser time to see the lease: it says who holds it.
    assert any("another job process is scoring 'slow_answered'" in out for out, _ in outs), outs
    assert read(settings, "job_runs")["rows_written"].sum() == 80


def test_a_changed_scorer_scores_new_traces_and_a_backfill_scores_the_old_ones(settings: Settings,
                                                                              tmp_path: Path) -> None:  # fmt: skip
    create_topic(settings, partitions=1)
    send_traces(settings, range(1, 11), start=NOW_NS - 3 * DAY_NS)  # three days ago
    ingest(settings)
    config = write_config(tmp_path, ANSWERED)
    run_jobs(settings, config)
    old_version = assessments(settings, "answered")["scorer_version"].unique().to_list()
    assert len(old_version) == 1 and assessments(settings).height == 10

    # Same name, new code: a new scorer version.
    (tmp_path / "my_scorers.py").write_text(SCORERS_PY.format(sleep=0).replace('"answer" in', '"answer " in'))
    send_traces(settings, range(11, 14))
    ingest(settings)
    run_jobs(settings, config)
    new = assessments(settings, "answered").filter(pl.col("scorer_version") != old_version[0])
    assert sorted(new["trace_id"]) == [trace_id(n) for n in range(11, 14)]  # only traces since the change

    since = dt.datetime.fromtimestamp((NOW_NS - 4 * DAY_NS) / 1e9, dt.timezone.utc).date().isoformat()
    backfill = run_jobs(settings, config, "--backfill", "--since", since)
    assert f"backfill since {since}" in backfill.stdout and "wrote 10 assessments" in backfill.stdout
    new = assessments(settings, "answered").filter(pl.col("scorer_version") != old_version[0])
    assert sorted(new["trace_id"]) == [trace_id(n) for n in range(1, 14)]
    assert "wrote 0 assessments" in run_jobs(settings, config, "--backfill", "--since", since).stdout
    # A backfill leaves the watermark where it was: the next pass scores only what is new.
    assert "wrote 0 assessments" in run_jobs(settings, config).stdout


def test_a_failing_pass_is_recorded_and_a_loop_goes_on(settings: Settings, tmp_path: Path) -> None:
    create_topic(settings, partitions=1)
    send_traces(settings, range(1, 6))
    ingest(settings)
    config = write_config(tmp_path, """
        [[scorers]]
        use = "no_such_module:answered"
    """)  # fmt: skip
    failed = run_jobs(settings, config, check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith(f"spanlake: error: {config}, scorer 1 (no_such_module")
    runs = read(settings, "job_runs")
    assert runs["status"].to_list() == ["ERROR"] and "cannot import 'no_such_module'" in runs["error"][0]

    loop = subprocess.Popen(
        [SPANLAKE, "jobs", "run", "all", "--every", "0.5", "--config", str(config), "--warehouse", settings.warehouse],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # `all` runs the costs job after the scorers: it has job_runs rows of its own
        scorer_runs = lambda: read(settings, "job_runs").filter(pl.col("job") == "scorers")  # noqa: E731
        wait_for(lambda: scorer_runs().height >= 3, 120, "two failed passes of the loop")
        write_config(tmp_path, ANSWERED)
        wait_for(lambda: "OK" in scorer_runs()["status"].to_list(), 120, "a pass after the fix")
    finally:
        loop.terminate()  # SIGTERM: the loop ends after the pass under way
        _, err = loop.communicate(timeout=60)
    assert loop.returncode == 0 and err.rstrip().endswith("stopped"), err
    assert "cannot import 'no_such_module'" in err and "(next pass in 0.5s)" in err
    assert scored_ids(settings, "answered") == [trace_id(n) for n in range(1, 6)]


USE = '[[scorers]]\nuse = "my_scorers:answered"\n'


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (USE + "sample_rate = 1.5\n", "scorer 1 (my_scorers:answered): sample_rate must be a number from 0 to 1, got 1.5"),
        (USE + "rate = 1\n", "scorer 1: unknown key 'rate'"),
        ('[[scorers]]\nuse = "my_scorers"\n', "scorer 1 (my_scorers): use = 'my_scorers' must be `module:attribute`"),
        (USE + '[[scorers]]\nuse = "my_scorers:nope"\n', "scorer 2 (my_scorers:nope): module 'my_scorers' has no attribute 'nope'"),
        ('[[scorers]]\nuse = "my_scorers:plain"\n', "'plain' is not a scorer; decorate it with @scorer"),
        (USE + 'filter = "trace.status = "\n', "scorer 1 (my_scorers:answered): bad filter:"),
        (USE + USE, "scorer name 'answered' is registered twice"),
        ("scorers = 3\n", "registers no scorers"),
        ("[[scorers]\n", "is not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_scorers_file_is_one_line_naming_the_file_and_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: str, message: str
) -> None:
    from spanlake.errors import ConfigError
    from spanlake.jobs.registry import load_registry

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_scorers", raising=False)
    config = write_config(tmp_path, entries)
    (tmp_path / "my_scorers.py").write_text(SCORERS_PY.format(sleep=0) + "\ndef plain(outputs):\n    return True\n")
    with pytest.raises(ConfigError) as caught:
        load_registry(config)
    assert str(caught.value).startswith(f"{config}") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_yaml_scorers_file_registers_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spanlake.jobs.registry import load_registry

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_scorers", raising=False)
    toml = write_config(tmp_path, ANSWERED)
    yaml = tmp_path / "scorers.yaml"
    yaml.write_text("scorers:\n  - use: my_scorers:answered\n    sample_rate: 1.0\n")
    assert [(r.name, r.version, r.sample_rate) for r in load_registry(yaml)] == [
        (r.name, r.version, r.sample_rate) for r in load_registry(toml)
    ]


def test_the_example_scorers_run_on_workload_traces(settings: Settings) -> None:
    from spanlake.exporter import KafkaSpanExporter
    from spanlake.ingest.workload import Workload

    create_topic(settings, partitions=1)
    Workload(KafkaSpanExporter(settings.bootstrap_servers, settings.topic), seed=3).run(200)
    ingest(settings)
    done = run_jobs(settings, Path(__file__).resolve().parent.parent / "examples" / "scorers.toml")
    traces = read(settings, "trace_info").filter(pl.col("state") != "IN_PROGRESS")
    written = assessments(settings)
    assert f"wrote {written.height} assessments" in done.stdout and written["error_code"].null_count() == written.height
    failed = dict(zip(*assessments(settings, "trace_failed").select("trace_id", "value_bool"), strict=True))
    assert failed == dict(zip(traces["trace_id"], traces["state"] == "ERROR", strict=True))
    slow = assessments(settings, "latency_over_threshold")
    assert slow.height == traces.height and slow["value_bool"].sum() == (traces["duration_ms"] > 5000).sum()
    tools = read(settings, "span_data").filter(pl.col("span_type") == "TOOL")["trace_id"].unique()
    assert set(assessments(settings, "tool_call_failed")["trace_id"]) == set(tools) & set(traces["trace_id"])
    # A built-in records nothing where its question does not apply (here: no output to check).
    answered = traces.filter(pl.col("response_preview").is_not_null())["trace_id"]
    assert scored_ids(settings, "pii_detected") == sorted(t for t in answered if in_sample(t, 0.5))
    support = traces.filter(pl.col("service_name") == "support-bot")["trace_id"]
    concise = assessments(settings, "concise_answer")
    assert scored_ids(settings, "concise_answer") == sorted(t for t in support if in_sample(t, 0.2))
    assert concise["rationale"].str.ends_with("words (60 at most)").all() and concise.height > 0
