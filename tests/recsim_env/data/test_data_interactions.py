import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recsim_env.data.interactions as interactions_module
from recsim_env.data import RESERVED_COLUMNS, DataError, LoggedInteractions


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["bob", "alice", "bob", "alice", "bob"],
            "item_id": [30, 10, 20, 30, 10],
            "timestamp": [5.0, 1.0, 5.0, 2.0, 3.0],
            "rating": [4.0, 3.0, 5.0, 1.0, 2.0],
            "clicked": [1, 0, 1, 1, 0],
            "note": ["x", "y", "z", "w", "v"],
        }
    )


def test_from_frame_remaps_converts_and_sorts():
    data = LoggedInteractions.from_frame(small_frame(), name="toy")
    assert data.feedback_columns == ("rating", "clicked")  # numeric, non-reserved; "note" dropped
    assert list(data.frame.columns) == ["user_id", "item_id", "timestamp", "rating", "clicked"]
    assert data.frame.dtypes.to_dict() == {
        "user_id": np.int64,
        "item_id": np.int64,
        "timestamp": np.float64,
        "rating": np.float64,
        "clicked": np.float64,
    }
    assert isinstance(data.frame.index, pd.RangeIndex)
    assert data.user_ids.tokens.tolist() == ["alice", "bob"]
    assert data.item_ids.tokens.tolist() == [10, 20, 30]
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 3, 5)
    # bob's two events at t=5 keep file order (item 30 then item 20).
    bob = data.frame[data.frame.user_id == 1]
    assert data.item_ids.to_token(bob.item_id).tolist() == [10, 30, 20]
    assert data.feedback_matrix().shape == (5, 2)
    seqs = data.sequences()
    assert seqs.offsets.tolist() == [0, 2, 5]
    assert seqs.lengths().tolist() == [2, 3]
    items, times, fb = seqs.user(1)
    assert items.tolist() == [0, 2, 1] and times.tolist() == [3.0, 5.0, 5.0]
    assert fb.dtype == np.float32 and fb[:, 0].tolist() == [2.0, 4.0, 5.0]


def test_catalogue_and_side_tables():
    items = pd.DataFrame({"item_id": [40, 10, 20, 30], "title": ["d", "a", "b", "c"]})
    users = pd.DataFrame({"user_id": ["alice"], "age": [30]})
    data = LoggedInteractions.from_frame(small_frame(), items=items, users=users)
    assert data.n_items == 4  # item 40 never interacted with but is in the side table
    assert data.items["title"].tolist() == ["a", "b", "c", "d"]
    assert data.items.index.tolist() == [0, 1, 2, 3]
    assert data.users["age"].iloc[0] == 30 and pd.isna(data.users["age"].iloc[1])
    assert data.users["age"].dtype == "Int64"  # integers stay integers next to the missing row
    catalogue = LoggedInteractions.from_frame(small_frame(), item_catalogue=[10, 20, 30, 50, 60])
    assert catalogue.n_items == 5
    with pytest.raises(DataError, match=r"column 'item_id', row 1 .*not in the item catalogue"):
        LoggedInteractions.from_frame(small_frame(), item_catalogue=[10, 20])


def test_optional_columns_and_propensity_range():
    df = small_frame().assign(session_id=[1, 1, 2, 2, 3], position=[0, 1, 0, 1, 0], propensity=0.5)
    data = LoggedInteractions.from_frame(df)
    assert data.frame["session_id"].dtype == np.int64 and data.frame["propensity"].dtype == np.float64
    assert "propensity" not in data.feedback_columns and "session_id" not in data.feedback_columns
    for bad in (0.0, 1.5, np.nan, -0.1):
        df2 = df.copy()
        df2.loc[3, "propensity"] = bad
        with pytest.raises(DataError, match=r"<frame>: column 'propensity', row 4 .*outside \(0, 1\]"):
            LoggedInteractions.from_frame(df2)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda df: df.drop(columns=["timestamp"]), "column 'timestamp': missing column"),
        (lambda df: df.drop(columns=["user_id"]), "column 'user_id': missing column"),
        (lambda df: df.iloc[:0], "no data rows"),
        (
            lambda df: df.assign(timestamp=["2020-01-01", "2020-01-02", "soon", "2020-01-03", "x"]),
            r"column 'timestamp', row 3 .*cannot parse timestamp 'soon'",
        ),
        (lambda df: df.assign(session_id=[1, 2, 3, 4.5, 5]), r"column 'session_id', row 4 .*integer"),
    ],
)
def test_errors_name_source_column_and_row(mutate, pattern):
    with pytest.raises(DataError, match=pattern) as info:
        LoggedInteractions.from_frame(mutate(small_frame()), source="logs.csv")
    assert str(info.value).startswith("logs.csv")


def test_non_numeric_feedback_value_names_its_row():
    df = small_frame().assign(rating=["1", "2", "3", "four", "5"])
    with pytest.raises(DataError, match=r"logs.csv: column 'rating', row 4 .*not a number: 'four'"):
        LoggedInteractions.from_frame(df, feedback_cols=["rating"], source="logs.csv")
    with pytest.raises(DataError, match=r"column 'timestamp': a reserved column cannot be a feedback column"):
        LoggedInteractions.from_frame(df, feedback_cols=["timestamp"])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    column=st.sampled_from(["user_id", "item_id", "timestamp"]),
    data=st.data(),
)
def test_nan_in_required_column_names_its_row(n, column, data):
    row = data.draw(st.integers(0, n - 1))
    rng = np.random.default_rng(n)
    df = pd.DataFrame(
        {
            "user_id": rng.integers(0, 5, n).astype(float),
            "item_id": rng.integers(0, 7, n).astype(float),
            "timestamp": rng.random(n) * 100,
        }
    )
    df.loc[row, column] = np.nan
    with pytest.raises(DataError, match=rf"column '{column}', row {row + 1} \(1-based data row\)"):
        LoggedInteractions.from_frame(df)


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.integers(0, 3).map(float)), min_size=1, max_size=60
    )
)
def test_per_user_order_is_chronological_and_stable_under_ties(events):
    df = pd.DataFrame(events, columns=["user_id", "timestamp"])
    df["item_id"] = np.arange(len(df))  # file order, recoverable through the item tokens
    data = LoggedInteractions.from_frame(df)
    seqs = data.sequences()
    for u, token in enumerate(data.user_ids.tokens):
        items, times, _ = seqs.user(u)
        expected = df[df.user_id == token].sort_values("timestamp", kind="stable")
        assert data.item_ids.to_token(items).tolist() == expected["item_id"].tolist()
        assert np.all(np.diff(times) >= 0)


def test_iso_timestamps_become_epoch_seconds():
    df = small_frame().assign(timestamp=["1970-01-01T00:00:10Z"] * 4 + ["1970-01-02T00:00:00+00:00"])
    data = LoggedInteractions.from_frame(df)
    assert sorted(data.frame.timestamp.tolist()) == [10.0] * 4 + [86400.0]


def test_stats_and_select_users():
    data = LoggedInteractions.from_frame(small_frame())
    stats = data.stats()
    assert (stats.n_users, stats.n_items, stats.n_interactions) == (2, 3, 5)
    assert stats.sparsity == pytest.approx(1 - 5 / 6)
    assert stats.sequence_length["min"] == 2 and stats.sequence_length["max"] == 3
    assert stats.sequence_length["mean"] == 2.5
    assert stats.time_start == 1.0 and stats.time_end == 5.0
    bob = data.select_users([1])
    assert bob.n_users == 2 and bob.n_items == 3 and bob.n_interactions == 3
    assert set(bob.frame.user_id) == {1} and isinstance(bob.frame.index, pd.RangeIndex)
    assert bob.sequences().lengths().tolist() == [0, 3]


def assert_same(a: LoggedInteractions, b: LoggedInteractions) -> None:
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    assert a.user_ids == b.user_ids and a.item_ids == b.item_ids
    assert a.feedback_columns == b.feedback_columns and a.name == b.name
    for side_a, side_b in ((a.items, b.items), (a.users, b.users)):
        if side_a is None:
            assert side_b is None
        else:
            pd.testing.assert_frame_equal(side_a, side_b, check_exact=True)


def test_parquet_round_trip_is_exact(tmp_path):
    items = pd.DataFrame(
        {"item_id": [10, 20, 30, 40], "title": ["a", "b", None, "d"], "year": [1.0, 2.0, 3.0, 4.0]}
    )
    users = pd.DataFrame({"user_id": ["alice", "bob"], "age": [30, 40]})
    df = small_frame().assign(session_id=[1, 1, 2, 2, 3], propensity=0.25)
    data = LoggedInteractions.from_frame(df, items=items, users=users, name="toy")
    path = tmp_path / "toy.parquet"
    data.to_parquet(path)
    back = LoggedInteractions.read_parquet(path)
    assert_same(data, back)
    assert back.user_ids.tokens.dtype == object and back.item_ids.tokens.dtype == np.int64
    assert os.listdir(tmp_path) == ["toy.parquet"]
    # no side tables at all
    plain = LoggedInteractions.from_frame(small_frame())
    plain.to_parquet(path)
    assert_same(plain, LoggedInteractions.read_parquet(path))


def test_parquet_write_is_atomic(tmp_path, monkeypatch):
    data = LoggedInteractions.from_frame(small_frame())
    path = tmp_path / "out.parquet"

    def write_half_then_fail(table, where, **options):
        with open(where, "wb") as f:
            f.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(interactions_module.pq, "write_table", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        data.to_parquet(path)
    assert os.listdir(tmp_path) == []


def test_read_parquet_rejects_foreign_files(tmp_path):
    path = tmp_path / "plain.parquet"
    small_frame().to_parquet(path)
    with pytest.raises(DataError, match="not written by LoggedInteractions.to_parquet"):
        LoggedInteractions.read_parquet(path)


def test_propensity_columns_are_kept_and_validated():
    """Logging propensities (slate and per position) survive loading; one outside (0, 1] names its row."""
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [5, 6, 5],
            "timestamp": [1.0, 1.0, 2.0],
            "click": [1.0, 0.0, 1.0],
            "propensity": [0.02, 0.02, 0.5],
            "position_propensity": [0.2, 0.1, 0.5],
        }
    )
    data = LoggedInteractions.from_frame(df)
    assert data.feedback_columns == ("click",)
    assert data.frame["position_propensity"].tolist() == [0.2, 0.1, 0.5]
    bad = df.assign(position_propensity=[0.2, 1.5, 0.5])
    with pytest.raises(DataError, match=r"position_propensity.*row 2"):
        LoggedInteractions.from_frame(bad, source="logs.csv")
    assert set(RESERVED_COLUMNS) >= {"propensity", "position_propensity", "session_id", "slate_id"}


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, recsim_env.data, recsim_env.data.cli; bad = {'torch', 'ray', 'stable_baselines3'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


@settings(max_examples=25, deadline=None)
@given(
    users=st.lists(st.one_of(st.integers(-50, 50), st.text(min_size=1, max_size=3)), min_size=1, max_size=30),
    string_items=st.booleans(),
)
def test_random_token_types_round_trip_through_parquet(tmp_path_factory, users, string_items):
    n = len(users)
    items = [f"item{i % 4}" if string_items else i % 4 for i in range(n)]
    df = pd.DataFrame(
        {"user_id": pd.Series(users, dtype=object), "item_id": items, "timestamp": np.arange(n) % 3}
    )
    data = LoggedInteractions.from_frame(df)
    assert data.user_ids.to_token(data.frame.user_id).tolist() == [
        users[i] for i in np.lexsort((np.arange(n) % 3, data.user_ids.to_index(users)))
    ]
    path = tmp_path_factory.mktemp("rt") / "data.parquet"
    data.to_parquet(path)
    assert_same(data, LoggedInteractions.read_parquet(path))
