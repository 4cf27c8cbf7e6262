"""The tables are plain Delta: DuckDB's delta extension answers the README's analyst question 3
(error rate by model) from the README's own snippet with the same result as the Polars answer."""

from __future__ import annotations

from pathlib import Path

import duckdb
import duckdb_extension_delta
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from support import create_topic, ingest
from test_readme import python_block_after

from spanlake.exporter import KafkaSpanExporter
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


def install_delta_extension(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`INSTALL delta` from the PyPI package's file (DuckDB's signed build; its repository may be
    unreachable), into a DuckDB home of the test's own."""
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (extension,) = Path(duckdb_extension_delta.__file__).parent.glob(f"extensions/v{duckdb.__version__}/delta.duckdb_extension")
    duckdb.connect().install_extension(str(extension))


def test_duckdb_answers_an_analyst_question_as_polars_does(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's snippets read ./spanlake-data, the default warehouse.
    settings = settings.model_copy(update={"warehouse": str(tmp_path / "spanlake-data")})
    create_topic(settings, partitions=2)
    Workload(KafkaSpanExporter(settings.bootstrap_servers, settings.topic), seed=7).run(300)
    ingest(settings)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", settings.warehouse)
    install_delta_extension(tmp_path / "home", monkeypatch)

    answers: dict = {}
    exec(python_block_after("Five questions an analyst asks"), answers)  # noqa: S102 - our own README
    exec(python_block_after("### Other engines"), answers)  # noqa: S102 - our own README

    by_polars = answers["error_rate_by_model"].with_columns(pl.col("calls").cast(pl.Int64)).sort("model")
    by_duckdb = answers["error_rate_by_model_duckdb"].sort("model")
    assert by_polars.height >= 5 and by_polars["error_rate"].max() > 0  # the workload has failed model calls
    assert_frame_equal(by_duckdb, by_polars)
