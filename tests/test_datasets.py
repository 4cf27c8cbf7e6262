"""Evaluation datasets: Delta tables under the warehouse whose versions are the dataset's
versions, made from records or from stored traces (root inputs and outputs, expectations)."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable
from support import create_topic, ingest
from test_production_scoring import send_traces, trace_id

from spanlake.jobs import datasets
from spanlake.jobs.assessments import log_expectation
from spanlake.jobs.datasets import DatasetError
from spanlake.query import search_traces
from spanlake.settings import Settings
from spanlake.tables.delta import check_warehouse

RECORDS = [
    {"inputs": {"question": "Can I get a refund?"}, "expectations": {"expected_facts": ["30 days"]}},
    {"inputs": {"question": "Where is my order?"}},
    {"inputs": "plain text question", "outputs": "a known answer"},
]


def test_versions_are_the_tables_versions(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh")
    ds = datasets.create("support", RECORDS, warehouse=warehouse)
    assert (ds.name, ds.version, len(ds)) == ("support", 0, 3)
    assert DeltaTable(f"{warehouse}/datasets/support").version() == 0
    assert ds.to_rows() == [
        {"inputs": {"question": "Can I get a refund?"}, "expectations": {"expected_facts": ["30 days"]}},
        {"inputs": {"question": "Where is my order?"}, "expectations": {}},
        {"inputs": "plain text question", "expectations": {}, "outputs": "a known answer"},
    ]
    changed = [{"inputs": {"question": "Where is my order?"}, "expectations": {"expected_response": "tracking"}},
               {"inputs": {"question": "Do you ship abroad?"}}]  # fmt: skip
    ds1 = datasets.merge_records("support", changed, warehouse=warehouse)
    assert (ds1.version, len(ds1)) == (1, 4)  # the same inputs replace a record
    assert {
        "inputs": {"question": "Where is my order?"},
        "expectations": {"expected_response": "tracking"},
    } in ds1.to_rows()
    assert datasets.load("support", version=0, warehouse=warehouse).to_rows() == ds.to_rows()
    assert datasets.load("support", warehouse=warehouse).version == 1
    check_warehouse(warehouse)  # a warehouse with datasets is still a warehouse


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh")
    datasets.create("a", RECORDS, warehouse=warehouse)
    cases = [
        (lambda: datasets.create("a", RECORDS, warehouse=warehouse), "dataset 'a' exists already"),
        (lambda: datasets.load("b", warehouse=warehouse), "no dataset 'b' in"),
        (lambda: datasets.load("a", version=7, warehouse=warehouse), "dataset 'a' has no readable version 7"),
        (lambda: datasets.create("../x", RECORDS, warehouse=warehouse), "dataset name '../x' must be"),
        (lambda: datasets.create("c", [{"expectations": {}}], warehouse=warehouse), "record 1 needs `inputs`"),
        (lambda: datasets.create("c", [{"inputs": 1, "output": 2}], warehouse=warehouse), "unknown key 'output'"),
        (lambda: datasets.create("c", [], warehouse=warehouse), "at least one record"),
    ]
    for call, message in cases:
        with pytest.raises(DatasetError) as caught:
            call()
        assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_dataset_from_a_search_takes_the_root_inputs_outputs_and_expectations(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    send_traces(settings, range(1, 6))
    ingest(settings)
    log_expectation(trace_id=trace_id(2), name="expected_response", value="ANSWER 2", warehouse=settings.warehouse)
    page = search_traces(warehouse=settings.warehouse, max_results=3, order_by=["request_time ASC"])
    ds = datasets.create("from-traces", page, warehouse=settings.warehouse)
    assert ds.to_rows() == [
        {
            "inputs": f"question {n}",
            "outputs": f"answer {n}",
            "trace_id": trace_id(n),
            "expectations": {"expected_response": "ANSWER 2"} if n == 2 else {},
        }
        for n in (1, 2, 3)
    ]
