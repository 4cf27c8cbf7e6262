"""A zombie ingest process (it lost its partitions but kept writing) cannot duplicate spans:
the tables' stored offsets fence it. DeltaSink against real Delta tables, no broker needed."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from kafka.consumer.fetcher import ConsumerRecord
from test_ingest_bad_input import request, span

from spanlake.errors import CommitConflict
from spanlake.ingest.sink import DeltaSink


def records(first: int, last: int) -> list[ConsumerRecord]:
    return [
        ConsumerRecord("t", 0, -1, o, 0, 0, None, request(span(100 + o, 1)).SerializeToString(), [], None, 0, 0, 0)
        for o in range(first, last + 1)
    ]


def test_a_zombie_writer_is_fenced_and_writes_nothing(tmp_path: Path) -> None:
    zombie, owner = (DeltaSink(str(tmp_path), group="g", topic="t") for _ in range(2))
    zombie.load_offsets([0])  # both believe they own partition 0: the zombie missed a rebalance
    owner.load_offsets([0])
    owner.commit(owner.decode(records(0, 4)))

    with pytest.raises(CommitConflict, match="partition 0 offset moved to 4"):
        zombie.commit(zombie.decode(records(0, 6)))

    spans = pl.read_delta(str(tmp_path / "span_data"))
    assert sorted(spans["offset"]) == [0, 1, 2, 3, 4]
    assert pl.read_delta(str(tmp_path / "trace_info")).height == 5
    # after re-reading what Delta holds, the former zombie takes over cleanly
    assert zombie.load_offsets([0]) == {0: 5}
    zombie.commit(zombie.decode(records(5, 6)))
    assert sorted(pl.read_delta(str(tmp_path / "span_data"))["offset"]) == list(range(7))


def test_a_batch_the_tables_already_hold_is_not_written_again(tmp_path: Path) -> None:
    first, second = (DeltaSink(str(tmp_path), group="g", topic="t") for _ in range(2))
    first.load_offsets([0])
    second.load_offsets([0])
    first.commit(first.decode(records(0, 3)))
    second.commit(second.decode(records(0, 3)))  # the same range: a commit that already landed
    assert pl.read_delta(str(tmp_path / "span_data")).height == 4
