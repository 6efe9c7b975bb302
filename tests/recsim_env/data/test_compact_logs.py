"""Compact Parquet logs: narrow column types on disk, the documented dtypes in memory, and statistics
read by row groups that agree with the loaded table and refuse what `read_parquet` refuses."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

import recsim_env.data.parquet as parquet_module
from recsim_env.data import DataError, LoggedInteractions
from recsim_env.data.cli import app as data_app
from recsim_env.data.loaders import summarize
from recsim_env.data.parquet import _PARQUET_META_KEY


def _log(n_rows: int = 5_000, n_users: int = 300, seed: int = 0) -> LoggedInteractions:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, n_users, n_rows),
            "item_id": rng.integers(0, 1_000, n_rows),
            "timestamp": rng.uniform(1.7e9, 1.8e9, n_rows),
            "click": rng.integers(0, 2, n_rows).astype(float),
            "watch_time": rng.exponential(30.0, n_rows),  # not exact as float32
            "session_id": rng.integers(0, 10**6, n_rows),
            "propensity": rng.choice([0.5, 0.25, 1 / 3], n_rows),
        }
    )
    return LoggedInteractions.from_frame(frame, feedback_cols=["click", "watch_time"], name="compact")


def test_the_file_is_compact_and_reads_back_bit_for_bit(tmp_path):
    data = _log()
    path = tmp_path / "log.parquet"
    data.to_parquet(path)
    stored = pq.read_schema(path)
    assert stored.field("user_id").type == pa.int32() and stored.field("item_id").type == pa.int32()
    assert stored.field("session_id").type == pa.int32()
    assert stored.field("click").type == pa.float32()  # 0/1: exact
    assert stored.field("watch_time").type == pa.float64()  # not exact in float32: kept
    assert stored.field("propensity").type == pa.float64()  # 1/3 is not a float32
    assert stored.field("timestamp").type == pa.float64()
    back = LoggedInteractions.read_parquet(path)
    pd.testing.assert_frame_equal(back.frame, data.frame, check_exact=True)
    assert dict(back.frame.dtypes) == dict(data.frame.dtypes)


def test_files_of_format_version_1_still_read(tmp_path):
    data = _log(n_rows=200)
    path = tmp_path / "v1.parquet"
    data.to_parquet(path)
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[_PARQUET_META_KEY])
    wide = pa.Table.from_pandas(data.frame, preserve_index=False)  # every column int64 / float64
    pq.write_table(
        wide.replace_schema_metadata({_PARQUET_META_KEY: json.dumps({**meta, "version": 1})}), path
    )
    pd.testing.assert_frame_equal(LoggedInteractions.read_parquet(path).frame, data.frame, check_exact=True)


def test_row_group_statistics_match_the_loaded_table(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet_module, "ROW_GROUP_ROWS", 700)  # several row groups
    data = _log()
    path = tmp_path / "log.parquet"
    data.to_parquet(path)
    assert pq.ParquetFile(path).num_row_groups > 5
    streamed = parquet_module.read_parquet_summary(path, batch_rows=333)
    assert streamed["n_rows"] == data.n_interactions
    assert summarize(path) == data.stats()


def test_row_group_statistics_refuse_rows_out_of_order_across_batches(tmp_path):
    data = _log(n_rows=1_000)
    path = tmp_path / "log.parquet"
    data.to_parquet(path)
    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.loc[500, "user_id"] = 0  # row 501 goes back to user 0: unsorted, at a batch boundary
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata), path
    )
    with pytest.raises(DataError, match=re.escape(str(path)) + r".*'user_id', row 501 .*not sorted"):
        parquet_module.read_parquet_summary(path, batch_rows=500)
    with pytest.raises(DataError, match="not sorted"):
        LoggedInteractions.read_parquet(path)  # the full reader agrees


def test_row_group_statistics_refuse_an_index_outside_the_user_map(tmp_path):
    data = _log(n_rows=1_000)
    path = tmp_path / "log.parquet"
    data.to_parquet(path)
    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.loc[999, "user_id"] = data.n_users  # one past the map
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata), path
    )
    with pytest.raises(DataError, match=r"'user_id', row 1000 .*index outside"):
        parquet_module.read_parquet_summary(path)


def test_data_info_reads_a_logged_interactions_file_by_row_groups(tmp_path, monkeypatch):
    data = _log()
    path = tmp_path / "log.parquet"
    data.to_parquet(path)

    def no_full_read(*args, **kwargs):
        raise AssertionError("seqrec data info must not load the whole table")

    monkeypatch.setattr(LoggedInteractions, "read_parquet", no_full_read)
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    result = CliRunner().invoke(root, ["data", "info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["n_interactions"] == data.n_interactions and stats["n_users"] == data.n_users
