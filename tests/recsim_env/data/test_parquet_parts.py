"""`read_parquet_parts` (a `to_parquet` file's metadata without its rows) and `check_stored_rows`."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsim_env.data import LoggedInteractions
from recsim_env.data.parquet import check_stored_rows, read_parquet, read_parquet_parts
from recsim_env.errors import DataError


@pytest.fixture
def written(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c", "c"],
            "item_id": [10, 11, 10, 12, 13],
            "timestamp": [1.0, 2.0, 1.0, 5.0, 6.0],
            "rating": [1.0, 2.5, 3.0, 4.0, 5.0],
        }
    )
    logs = LoggedInteractions.from_frame(frame, feedback_cols=["rating"])
    path = tmp_path / "logs.parquet"
    logs.to_parquet(path)
    return logs, path


def test_parts_are_those_read_parquet_returns(written):
    _, path = written
    _, expected = read_parquet(path)
    parts = read_parquet_parts(path)
    assert parts.keys() == expected.keys()
    assert parts["user_ids"] == expected["user_ids"] and parts["item_ids"] == expected["item_ids"]
    assert parts["feedback_columns"] == expected["feedback_columns"] == ("rating",)
    assert parts["name"] == expected["name"]


def test_parts_of_a_foreign_parquet_file_are_refused(tmp_path):
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(path)
    with pytest.raises(DataError, match="not written by LoggedInteractions.to_parquet"):
        read_parquet_parts(path)


def test_stored_rows_of_some_users_are_widened_and_checked(written):
    logs, path = written
    stored = pq.read_table(path).to_pandas(ignore_metadata=True)  # compact int32 / float32 columns
    rows = stored[stored["user_id"] != 1].reset_index(drop=True)
    check_stored_rows(rows, ("rating",), n_users=logs.n_users, n_items=logs.n_items, source="shard")
    expected = logs.frame[logs.frame["user_id"] != 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, expected)
    rows.loc[0, "item_id"] = logs.n_items
    with pytest.raises(DataError, match="shard.*item_id"):
        check_stored_rows(rows, ("rating",), n_users=logs.n_users, n_items=logs.n_items, source="shard")
