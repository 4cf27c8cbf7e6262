"""spanlake.instrument and @spanlake.trace in real application processes (each app is its own
subprocess: a process has one global TracerProvider), through the real broker into the tables."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
from judge_server import JudgeServer, Reply
from support import create_topic, ingest, read

from spanlake.broker import free_port
from spanlake.settings import Settings


def run_app(code: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_importing_the_instrumentation_loads_no_warehouse_dependency(tmp_path: Path) -> None:
    done = run_app("""
        import sys
        import spanlake
        from spanlake import instrument, trace, start_span, autolog
        from spanlake.exporter import KafkaSpanExporter
        print([m for m in ("polars", "deltalake", "pyarrow", "streamlit", "pandas") if m in sys.modules])
    """, tmp_path)  # fmt: skip
    assert done.stdout.strip() == "[]"


APP = """
    import asyncio, threading
    from concurrent.futures import ThreadPoolExecutor
    import spanlake

    spanlake.instrument(service_name="shop-agent", bootstrap_servers={servers!r}, topic={topic!r},
                        environment="test")

    @spanlake.trace(span_type="TOOL")
    def lookup(order_id, verbose=False):
        return {{"order": order_id, "status": "shipped"}}

    @spanlake.trace(span_type="RETRIEVER")
    async def retrieve(query):
        await asyncio.sleep(0.01)
        return [query + "-doc1", query + "-doc2"]

    @spanlake.trace
    def stream(n):
        for i in range(n):
            lookup(f"s{{i}}")
            yield i

    @spanlake.trace(span_type="TOOL")
    def broken():
        raise ValueError("no such order")

    @spanlake.trace(name="handle", span_type="AGENT")
    def handle(question):
        lookup("A1")
        docs = asyncio.run(gather())
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lookup, ["T1", "T2"]))
        worker = threading.Thread(target=lookup, args=("TH",))
        worker.start(); worker.join()
        total = sum(stream(2))
        try:
            broken()
        except ValueError:
            pass
        with spanlake.start_span("rerank", span_type="RERANKER", inputs={{"docs": docs}}) as span:
            span.set_outputs(docs[:1])
        return f"answer to {{question}} ({{total}})"

    async def gather():
        both = await asyncio.gather(retrieve("a"), retrieve("b"))
        return [d for docs in both for d in docs]

    print(handle("where is my order?"))
    assert spanlake.flush()
"""


def test_decorated_app_produces_the_span_tree(settings: Settings, tmp_path: Path) -> None:
    create_topic(settings, partitions=3)
    done = run_app(APP.format(servers=settings.bootstrap_servers, topic=settings.topic), tmp_path)
    assert "answer to where is my order? (1)" in done.stdout
    ingest(settings)
    spans = read(settings, "span_data")
    assert spans["trace_id"].n_unique() == 1
    by_id = {r["span_id"]: r for r in spans.iter_rows(named=True)}
    root = spans.filter(pl.col("parent_span_id").is_null()).row(0, named=True)
    assert (root["name"], root["span_type"]) == ("handle", "AGENT")
    assert json.loads(root["inputs"]) == {"question": "where is my order?"}
    assert root["outputs"] == "answer to where is my order? (1)"  # a JSON string is stored as its text

    def parent_name(row: dict) -> str:
        return by_id[row["parent_span_id"]]["name"]

    lookups = spans.filter(pl.col("name") == "lookup")
    assert lookups.height == 6 and set(lookups["span_type"]) == {"TOOL"}
    parents = sorted(parent_name(r) for r in lookups.iter_rows(named=True))
    assert parents == ["handle", "handle", "handle", "handle", "stream", "stream"]  # A1, pool x2, thread; stream x2
    assert {json.loads(r["inputs"])["order_id"] for r in lookups.iter_rows(named=True)} == {
        "A1", "T1", "T2", "TH", "s0", "s1"}  # fmt: skip
    assert json.loads(lookups.filter(pl.col("inputs").str.contains('"A1"'))["inputs"][0]) == {
        "order_id": "A1", "verbose": False}  # fmt: skip
    retrieves = spans.filter(pl.col("name") == "retrieve")
    assert retrieves.height == 2 and set(retrieves["span_type"]) == {"RETRIEVER"}
    assert {parent_name(r) for r in retrieves.iter_rows(named=True)} == {"handle"}  # asyncio keeps the parent
    stream = spans.filter(pl.col("name") == "stream").row(0, named=True)
    assert json.loads(stream["outputs"]) == [0, 1]
    broken = spans.filter(pl.col("name") == "broken").row(0, named=True)
    assert broken["status_code"] == "ERROR" and "no such order" in broken["status_message"]
    rerank = spans.filter(pl.col("name") == "rerank").row(0, named=True)
    assert rerank["span_type"] == "RERANKER" and json.loads(rerank["outputs"]) == ["a-doc1"]
    info = read(settings, "trace_info").row(0, named=True)
    assert (info["service_name"], info["environment"], info["span_count"]) == ("shop-agent", "test", spans.height)


def test_kafka_down_never_blocks_the_app_and_drops_past_the_bound(tmp_path: Path) -> None:
    done = run_app(f"""
        import time, logging
        logging.basicConfig()
        import spanlake
        from spanlake import tracing
        spanlake.instrument(service_name="offline", bootstrap_servers="127.0.0.1:{free_port()}",
                            max_buffered_spans=10)
        began = time.monotonic()
        for i in range(50):
            with spanlake.start_span(f"op-{{i}}"):
                pass
        print("app took", time.monotonic() - began)
        spanlake.flush(timeout_millis=5000)
        print("dropped", tracing.dropped_spans())
    """, tmp_path, timeout=180)  # fmt: skip
    took = float(done.stdout.split("app took ")[1].split()[0])
    assert took < 1.0  # the app's own work: exporting happens in the processor's thread
    assert "dropped 40" in done.stdout
    assert done.stderr.count("keeping up to 10 spans") == 1  # one warning per outage


def test_autolog_openai_records_the_llm_call_with_model_and_tokens(settings: Settings, tmp_path: Path) -> None:
    create_topic(settings, partitions=1)
    with JudgeServer() as server:
        server.script(Reply(content="Your order ships tomorrow.", prompt_tokens=42, completion_tokens=7))
        done = run_app(f"""
            import spanlake
            from openai import OpenAI
            used = spanlake.instrument(service_name="chat", bootstrap_servers={settings.bootstrap_servers!r},
                                       topic={settings.topic!r}, autolog=["openai"])
            assert spanlake.autolog("openai") == "opentelemetry-instrumentation-openai-v2"  # once, not twice
            client = OpenAI(base_url={server.url!r}, api_key="test-key")

            @spanlake.trace(span_type="AGENT")
            def answer(question):
                reply = client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{{"role": "user", "content": question}}])
                return reply.choices[0].message.content

            print(answer("When does my order ship?"))
            spanlake.flush()
        """, tmp_path)  # fmt: skip
    assert "ships tomorrow" in done.stdout
    ingest(settings)
    spans = read(settings, "span_data")
    assert spans.height == 2
    llm = spans.filter(pl.col("parent_span_id").is_not_null()).row(0, named=True)
    root = spans.filter(pl.col("parent_span_id").is_null()).row(0, named=True)
    assert llm["parent_span_id"] == root["span_id"]
    assert llm["span_type"] in ("LLM", "CHAT_MODEL")
    assert (llm["provider"], llm["input_tokens"], llm["output_tokens"]) == ("openai", 42, 7)
    assert llm["model"].startswith("gpt-4o-mini")
    info = read(settings, "trace_info").row(0, named=True)
    assert (info["input_tokens"], info["output_tokens"], info["llm_call_count"]) == (42, 7, 1)
