"""Hostile input at the data layer's boundary: every bad table, file or argument is refused with the library's
own error type (`DataError`, `ArgumentError`, `UnsafePathError`), and the message names what is at fault: the
file, the column and the first bad 1-based data row, or the argument. Never another exception type, never a
silently wrong table."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim_env.data import (
    ColumnMapping,
    LoggedInteractions,
    SequenceLoader,
    history_windows,
    leave_one_out,
    load,
    load_movielens,
    load_recbole,
    load_table,
    pad_sequences,
    temporal_split,
)
from recsim_env.data.interactions import _PARQUET_META_KEY
from recsim_env.errors import ArgumentError, DataError, UnsafePathError


def valid_frame(n: int = 6) -> pd.DataFrame:
    """A table every check accepts: int ids, float seconds, a float and an int feedback column."""
    return pd.DataFrame(
        {
            "user_id": [1 + i % 2 for i in range(n)],
            "item_id": [10 * (1 + i % 3) for i in range(n)],
            "timestamp": [float(i) for i in range(n)],
            "rating": [float(1 + i % 5) for i in range(n)],
            "like": [i % 2 for i in range(n)],
        }
    )


def with_value(column: str, row: int, value, *, dtype=object):
    """Mutation: `valid_frame()` with `value` put at 1-based `row` of `column` (the column becomes `dtype`)."""

    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        values = pd.Series(df[column].tolist(), dtype=dtype)
        values.iloc[row - 1] = value
        return df.assign(**{column: values})

    return mutate


def with_column(column: str, values):
    return lambda df: df.assign(**{column: values})


def at(column: str, row: int, what: str = "") -> str:
    return rf"logs\.csv: column '{column}', row {row} \(1-based data row\): {what}"


# ---------------------------------------------------------------------------------------------- tables
TABLE_CASES = {
    # ids
    "bool-user-column": (
        with_column("user_id", [True, False] * 3),
        at("user_id", 1, "a boolean column cannot hold ids"),
    ),
    "bool-item-column": (
        with_column("item_id", [False, True] * 3),
        at("item_id", 1, "a boolean column cannot hold ids"),
    ),
    "bool-among-int-users": (
        with_value("user_id", 4, True),
        at("user_id", 4, "expected an integer or string id: True"),
    ),
    "fractional-float-item": (
        with_value("item_id", 3, 2.5, dtype=float),
        at("item_id", 3, "expected an integer"),
    ),
    "infinite-float-item": (
        with_value("item_id", 2, np.inf, dtype=float),
        at("item_id", 2, "expected an integer"),
    ),
    "float-item-beyond-2**53": (
        with_value("item_id", 5, 1e30, dtype=float),
        at("item_id", 5, "expected an integer"),
    ),
    "python-int-overflowing-int64": (
        with_value("item_id", 2, 2**70),
        at("item_id", 2, "expected an integer within int64"),
    ),
    "uint64-overflowing-int64": (
        with_column("item_id", np.array([1, 2, 2**63 + 5, 1, 2, 3], dtype=np.uint64)),
        at("item_id", 3, "overflows int64"),
    ),
    "list-as-item-id": (
        with_value("item_id", 2, [1, 2]),
        at("item_id", 2, r"expected an integer or string id: \[1, 2\]"),
    ),
    "dict-as-user-id": (
        with_value("user_id", 6, {"a": 1}),
        at("user_id", 6, "expected an integer or string id"),
    ),
    "bytes-as-user-id": (
        with_value("user_id", 1, b"u1"),
        at("user_id", 1, "expected an integer or string id: b'u1'"),
    ),
    "datetime-user-column": (
        with_column("user_id", pd.date_range("2020-01-01", periods=6)),
        at("user_id", 1, "ids must be integers or strings"),
    ),
    "missing-user-id": (with_value("user_id", 3, None), at("user_id", 3, r"missing value \(NaN\)")),
    "missing-item-id-nullable": (
        with_column("item_id", pd.array([1, 2, None, 4, 5, 6], dtype="Int64")),
        at("item_id", 3, "missing value"),
    ),
    # timestamps
    "timestamp-word-among-seconds": (
        with_value("timestamp", 2, "x"),
        at("timestamp", 2, "cannot parse timestamp 'x'"),
    ),
    "timestamp-string-inf": (
        with_column("timestamp", ["1", "2", "inf", "4", "5", "6"]),
        at("timestamp", 3, "non-finite timestamp 'inf'"),
    ),
    "timestamp-inf": (
        with_value("timestamp", 4, np.inf, dtype=float),
        at("timestamp", 4, "non-finite timestamp"),
    ),
    "timestamp-minus-inf": (
        with_value("timestamp", 6, -np.inf, dtype=float),
        at("timestamp", 6, "non-finite"),
    ),
    "timestamp-nan": (with_value("timestamp", 5, np.nan, dtype=float), at("timestamp", 5, "missing value")),
    "timestamp-bool-column": (
        with_column("timestamp", [True, False] * 3),
        at("timestamp", 1, "a boolean column cannot hold timestamps"),
    ),
    "timestamp-bool-among-numbers": (
        with_value("timestamp", 3, True),
        at("timestamp", 3, "cannot parse timestamp True"),
    ),
    "timestamp-list": (
        with_value("timestamp", 2, [1.0]),
        at("timestamp", 2, r"cannot parse timestamp \[1\.0\]"),
    ),
    "timestamp-complex": (
        with_column("timestamp", np.arange(6) + 1j),
        at("timestamp", 1, "timestamps must be numbers"),
    ),
    "timestamp-timedelta": (
        with_column("timestamp", pd.to_timedelta(np.arange(6), unit="s")),
        at("timestamp", 1, "timestamps must be numbers"),
    ),
    "timestamp-bad-date": (
        with_column("timestamp", ["2020-01-01", "2020-01-02", "2020-13-45", "2020-01-03", "x", "2020-01-04"]),
        at("timestamp", 3, "cannot parse timestamp '2020-13-45'"),
    ),
    # feedback
    "feedback-nan": (with_value("rating", 2, np.nan, dtype=float), at("rating", 2, "missing value")),
    "feedback-inf": (with_value("rating", 4, np.inf, dtype=float), at("rating", 4, "non-finite value inf")),
    "feedback-minus-inf": (
        with_value("rating", 1, -np.inf, dtype=float),
        at("rating", 1, "non-finite value"),
    ),
    "feedback-int-column-with-missing": (
        with_column("like", pd.array([1, 0, 1, None, 1, 0], dtype="Int64")),
        at("like", 4, "missing value"),
    ),
    "feedback-bool-column-with-missing": (
        with_column("like", pd.array([True, None, True, False, True, False], dtype="boolean")),
        at("like", 2, "missing value"),
    ),
    # optional columns
    "session-bool-column": (
        with_column("session_id", [True] * 6),
        at("session_id", 1, "a boolean column is not allowed"),
    ),
    "session-fractional": (
        with_column("session_id", [1, 1, 2, 2.5, 3, 3]),
        at("session_id", 4, "expected an integer"),
    ),
    "session-overflowing": (
        with_column("session_id", [1, 1, 1e30, 2, 3, 3]),
        at("session_id", 3, "expected an integer"),
    ),
    "session-word": (
        with_column("session_id", ["1", "1", "2", "two", "3", "3"]),
        at("session_id", 4, "not a number: 'two'"),
    ),
    "position-negative": (
        with_column("position", [0, 1, 0, -1, 0, 1]),
        at("position", 4, "negative position"),
    ),
    "propensity-bool-column": (
        with_column("propensity", [True] * 6),
        at("propensity", 1, "a boolean column"),
    ),
    "propensity-zero": (
        with_column("propensity", [0.5, 0.5, 0.0, 0.5, 0.5, 0.5]),
        at("propensity", 3, r"propensity 0\.0 is outside \(0, 1\]"),
    ),
    "propensity-word": (
        with_column("propensity", ["0.5"] * 4 + ["x", "0.5"]),
        at("propensity", 5, "not a number"),
    ),
    # structure
    "empty-table": (lambda df: df.iloc[:0], r"logs\.csv: no data rows"),
    "missing-user-column": (
        lambda df: df.drop(columns=["user_id"]),
        r"logs\.csv: column 'user_id': missing column",
    ),
    "missing-timestamp-column": (
        lambda df: df.drop(columns=["timestamp"]),
        r"column 'timestamp': missing column",
    ),
    "duplicate-column-label": (
        lambda df: pd.concat([df, df[["rating"]]], axis=1),
        r"logs\.csv: column 'rating': the column appears more than once",
    ),
}


@pytest.mark.parametrize(("mutate", "pattern"), TABLE_CASES.values(), ids=TABLE_CASES.keys())
def test_hostile_tables_are_refused_naming_column_and_row(mutate, pattern):
    with pytest.raises(DataError, match=pattern):
        LoggedInteractions.from_frame(mutate(valid_frame()), source="logs.csv")


SIDE_CASES = {
    "item-table-duplicate-id": (
        {"items": pd.DataFrame({"item_id": [10, 20, 10], "title": list("abc")})},
        r"logs\.csv \(item table\): column 'item_id', row 3 .*duplicate id 10",
    ),
    "item-table-bool-ids": (
        {"items": pd.DataFrame({"item_id": [True, False], "title": list("ab")})},
        r"logs\.csv \(item table\): column 'item_id', row 1 .*boolean",
    ),
    "user-table-without-id-column": (
        {"users": pd.DataFrame({"age": [30, 40]})},
        r"logs\.csv \(user table\): column 'user_id': missing column",
    ),
    "item-not-in-catalogue": (
        {"item_catalogue": [10, 20]},
        r"column 'item_id', row 3 .*not in the item catalogue",
    ),
    "catalogue-of-bools": (
        {"item_catalogue": [True, False]},
        r"logs\.csv \(item_catalogue\): column 'item_id'.*boolean",
    ),
    "catalogue-with-nan": (
        {"item_catalogue": [10, 20, None, 30]},
        r"\(item_catalogue\): column 'item_id', row 3 .*missing",
    ),
}


@pytest.mark.parametrize(("kwargs", "pattern"), SIDE_CASES.values(), ids=SIDE_CASES.keys())
def test_hostile_side_tables_and_catalogues_are_refused(kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        LoggedInteractions.from_frame(valid_frame(), source="logs.csv", **kwargs)


def test_boolean_and_integer_feedback_columns_are_kept():
    df = valid_frame().assign(click=[True, False, True, True, False, False])
    data = LoggedInteractions.from_frame(df)
    assert data.feedback_columns == ("rating", "like", "click")
    frame = data.frame.sort_index()
    assert frame["click"].dtype == np.float64 and set(frame["click"]) == {0.0, 1.0}
    assert sorted(data.frame["click"].tolist()) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert sorted(data.frame["like"].tolist()) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    # integral float ids (an id column that went through a float) stay integers
    floats = LoggedInteractions.from_frame(valid_frame().astype({"item_id": float}))
    assert floats.item_ids.tokens.dtype == np.int64 and floats.item_ids.tokens.tolist() == [10, 20, 30]


# ---------------------------------------------------------------------------------------------- hypothesis
BAD_VALUES = {
    "user_id": [None, np.nan, True, False, 2.5, np.inf, 2**70, [1], {"a": 1}, b"x"],
    "item_id": [None, np.nan, True, -0.5, -np.inf, 2**64, (1, 2), b"\x00"],
    "timestamp": [None, np.nan, np.inf, -np.inf, "soon", True, [3.0], {"t": 1}],
    "rating": [None, np.nan, np.inf, -np.inf, "four", True, [1.0], object()],
}
CHECK_ORDER = ["user_id", "item_id", "timestamp", "rating"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(2, 30))
def test_random_bad_values_are_refused_at_the_first_bad_row_of_the_first_bad_column(data, n):
    df = valid_frame(n)
    columns = data.draw(st.lists(st.sampled_from(CHECK_ORDER), min_size=1, max_size=4, unique=True))
    first_rows = {}
    for column in columns:
        rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3, unique=True))
        values = pd.Series(df[column].tolist(), dtype=object)
        for row in rows:
            values.iloc[row] = data.draw(st.sampled_from(BAD_VALUES[column]))
        df[column] = values
        first_rows[column] = min(rows) + 1
    column = next(c for c in CHECK_ORDER if c in first_rows)
    with pytest.raises(DataError) as info:
        LoggedInteractions.from_frame(df, feedback_cols=["rating", "like"], source="logs.csv")
    message = str(info.value)
    assert message.startswith(f"logs.csv: column '{column}', row {first_rows[column]} (1-based data row)"), (
        message
    )


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 20),
    text=st.lists(st.text(alphabet="0123456789.-eE+xinfa ", min_size=0, max_size=6), min_size=1, max_size=4),
)
def test_random_text_in_numeric_csv_columns_loads_or_names_file_column_and_row(
    tmp_path_factory, data, n, text
):
    """A CSV whose numeric columns got random text in random rows: the load either succeeds with finite values
    (the text was a number) or raises DataError naming the file, the column and a row where text was put."""
    df = valid_frame(n).astype(object)
    column = data.draw(st.sampled_from(["user_id", "item_id", "timestamp", "rating"]))
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=len(text), unique=True))
    for row, value in zip(rows, text, strict=False):
        df.loc[row, column] = value
    path = tmp_path_factory.mktemp("csv") / "events.csv"
    df.to_csv(path, index=False)
    try:
        loaded = load_table(path, ColumnMapping(feedback=("rating", "like")))
    except DataError as err:
        match = re.match(
            rf"^{re.escape(str(path))}: (?:column '(\w+)', row (\d+) \(1-based data row\)|cannot parse)",
            str(err),
        )
        assert match, str(err)
        if match.group(1):
            assert match.group(1) == column
            assert int(match.group(2)) - 1 in rows
    else:
        assert np.isfinite(loaded.frame[["timestamp", "rating", "like"]].to_numpy()).all()
        assert loaded.n_interactions == n


# ---------------------------------------------------------------------------------------------- files
def write_parquet(path, table: pa.Table):
    pq.write_table(table, path)
    return path


def good_table(**columns) -> pa.Table:
    base = {
        "user_id": [1, 2, 1],
        "item_id": [10, 20, 30],
        "timestamp": [1.0, 2.0, 3.0],
        "rating": [1.0, 2.0, 3.0],
    }
    base.update(columns)
    return pa.table(base)


PARQUET_CASES = {
    "list-item-ids": (
        good_table(item_id=[[1], [2], [3]]),
        r"events\.parquet: column 'item_id': Parquet type list",
    ),
    "struct-user-ids": (
        good_table(user_id=[{"a": 1}, {"a": 2}, {"a": 3}]),
        r"events\.parquet: column 'user_id': Parquet type struct",
    ),
    "binary-item-ids": (
        good_table(item_id=pa.array([b"a", b"b", b"c"], pa.binary())),
        r"events\.parquet: column 'item_id': Parquet type binary",
    ),
    "list-timestamps": (
        good_table(timestamp=[[1.0], [2.0], [3.0]]),
        r"events\.parquet: column 'timestamp': Parquet type list",
    ),
    "map-feedback": (
        good_table(rating=pa.array([[("k", 1)], [("k", 2)], [("k", 3)]], pa.map_(pa.string(), pa.int64()))),
        r"events\.parquet: column 'rating': Parquet type map",
    ),
    "null-feedback": (good_table(rating=pa.nulls(3)), r"events\.parquet: column 'rating': Parquet type null"),
    "string-feedback": (
        good_table(rating=["1", "x", "3"]),
        r"events\.parquet: column 'rating', row 2 .*not a number: 'x'",
    ),
    "bool-ids": (
        good_table(user_id=[True, False, True]),
        r"events\.parquet: column 'user_id', row 1 .*boolean",
    ),
    "nan-timestamp": (
        good_table(timestamp=[1.0, float("nan"), 3.0]),
        r"events\.parquet: column 'timestamp', row 2",
    ),
}


@pytest.mark.parametrize(("table", "pattern"), PARQUET_CASES.values(), ids=PARQUET_CASES.keys())
def test_parquet_files_violating_the_schema_are_refused_naming_file_and_column(table, pattern, tmp_path):
    path = write_parquet(tmp_path / "events.parquet", table)
    with pytest.raises(DataError, match=pattern):
        load_table(path, ColumnMapping(feedback=("rating",)))


def test_parquet_string_session_ids_are_refused(tmp_path):
    path = write_parquet(tmp_path / "events.parquet", good_table(sess=["a", "b", "c"]))
    with pytest.raises(DataError, match=r"events\.parquet: column 'session_id', row 1 .*not a number: 'a'"):
        load_table(path, ColumnMapping(session="sess"))


CORRUPT_FILES = {
    "random-bytes.parquet": lambda good: b"\x00\xff" * 64,
    "truncated.parquet": lambda good: good[: len(good) // 2],
    "no-footer.parquet": lambda good: good[:-8],
    "empty.parquet": lambda good: b"",
    "unterminated-quote.csv": lambda good: b'user_id,item_id,timestamp\n1,2,"3\n4,5,6\n',
    "latin1-bytes.csv": lambda good: "user_id,item_id,timestamp\n\xe9\xff,1,2\n".encode("latin-1"),
    "ragged-rows.csv": lambda good: b"user_id,item_id,timestamp\n1,2,3\n4,5,6,7,8\n",
    "header-only.tsv": lambda good: b"user_id\titem_id\ttimestamp\n",
}


@pytest.mark.parametrize("name", CORRUPT_FILES)
def test_corrupt_or_truncated_files_are_refused_naming_the_file(name, tmp_path):
    good = io.BytesIO()
    pq.write_table(good_table(), good)
    path = tmp_path / name
    path.write_bytes(CORRUPT_FILES[name](good.getvalue()))
    with pytest.raises(DataError, match=re.escape(name)):
        load(path)


def test_a_directory_named_like_a_table_is_refused_naming_it(tmp_path):
    (tmp_path / "events.csv").mkdir()
    with pytest.raises(DataError, match=r"events\.csv: unknown file layout"):
        load(tmp_path / "events.csv")


def test_recbole_and_movielens_values_are_checked(tmp_path):
    folder = tmp_path / "rb"
    folder.mkdir()
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (folder / "toy.inter").write_text(header + "1\t2\t3\t10\n1\t3\tinf\t11\n")
    with pytest.raises(DataError, match=r"toy\.inter: column 'rating', row 2 .*non-finite"):
        load_recbole(folder)
    (folder / "toy.inter").write_text(header + "1\t2\t3\t10\n1\t3\t4\t-inf\n")
    with pytest.raises(DataError, match=r"toy\.inter: column 'timestamp', row 2 .*non-finite timestamp"):
        load_recbole(folder)
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "u.data").write_text("1\t10\t5\t100\n1.5\t10\t3\t50\n")
    with pytest.raises(DataError, match=r"u\.data: column 'user_id', row 2 .*expected an integer"):
        load_movielens(ml)
    (ml / "u.data").write_text("1\t10\t5\t100\n2\t99999999999999999999\t3\t50\n")
    with pytest.raises(DataError, match=r"u\.data: column 'item_id', row 2 .*int64"):
        load_movielens(ml)


# ---------------------------------------------------------------------------------------------- LoggedInteractions parquet
@pytest.fixture
def stored(tmp_path):
    """A file written by `to_parquet`, and a way to rewrite its frame and metadata."""
    data = LoggedInteractions.from_frame(
        valid_frame(), items=pd.DataFrame({"item_id": [10, 20, 30], "title": list("abc")}), name="toy"
    )
    path = tmp_path / "toy.parquet"
    data.to_parquet(path)

    def rewrite(*, meta=None, frame=None, raw_meta=None):
        table = pq.read_table(path)
        old = json.loads(table.schema.metadata[_PARQUET_META_KEY])
        if frame is not None:
            table = pa.Table.from_pandas(frame(table.to_pandas()), preserve_index=False)
        payload = raw_meta if raw_meta is not None else json.dumps(meta(old) if meta else old).encode()
        pq.write_table(table.replace_schema_metadata({_PARQUET_META_KEY: payload}), path)
        return path

    return path, rewrite


def edit(**changes):
    return lambda meta: {**meta, **changes}


def drop(key):
    return lambda meta: {k: v for k, v in meta.items() if k != key}


def _b64(frame: pd.DataFrame) -> str:
    buf = io.BytesIO()
    frame.to_parquet(buf)
    return base64.b64encode(buf.getvalue()).decode()


META_CASES = {
    "not-json": ({"raw_meta": b"{not json"}, "is not valid JSON"),
    "json-array": ({"raw_meta": b"[1, 2]"}, "must be a JSON object"),
    "version-as-string": ({"meta": edit(version="1")}, "unsupported format version '1'"),
    "version-as-bool": ({"meta": edit(version=True)}, "unsupported format version True"),
    "item-ids-missing": ({"meta": drop("item_ids")}, "metadata field 'item_ids' is missing"),
    "name-not-a-string": ({"meta": edit(name=["toy"])}, "metadata field 'name' has the wrong type"),
    "bool-token": (
        {"meta": edit(user_ids={"dtype": "int64", "tokens": [1, True]})},
        "metadata 'user_ids': token 1 is True",
    ),
    "float-token": ({"meta": edit(item_ids={"dtype": "int64", "tokens": [10, 20.5, 30]})}, "token 1 is 20.5"),
    "list-token": ({"meta": edit(user_ids={"dtype": "object", "tokens": [[1], "b"]})}, "token 0 is"),
    "duplicate-tokens": (
        {"meta": edit(user_ids={"dtype": "int64", "tokens": [1, 1]})},
        "appears more than once",
    ),
    "unknown-idmap-dtype": (
        {"meta": edit(user_ids={"dtype": "float64", "tokens": [1.0, 2.0]})},
        "metadata 'user_ids'",
    ),
    "reserved-feedback": ({"meta": edit(feedback_columns=["user_id"])}, "'feedback_columns' must list"),
    "feedback-not-in-frame": (
        {"meta": edit(feedback_columns=["rating", "dwell"])},
        "column 'dwell': missing column",
    ),
    "side-table-garbage": (
        {"meta": edit(items="!!not base64!!")},
        "metadata 'items': cannot read the side table",
    ),
    "side-table-wrong-rows": (
        {"meta": edit(items=_b64(pd.DataFrame({"title": ["a"]})))},
        "metadata 'items': the side table must have one row per index",
    ),
    "user-index-out-of-range": (
        {"frame": lambda f: f.assign(user_id=f.user_id.where(f.index != 2, 7))},
        r"column 'user_id', row 3 \(1-based data row\): index outside 0\.\.1",
    ),
    "rows-out-of-order": ({"frame": lambda f: f.iloc[::-1].reset_index(drop=True)}, "not sorted by"),
    "nan-timestamp": (
        {"frame": lambda f: f.assign(timestamp=f.timestamp.where(f.index != 1, np.nan))},
        r"column 'timestamp', row 2 .*non-finite",
    ),
    "float-item-indices": (
        {"frame": lambda f: f.astype({"item_id": float})},
        "column 'item_id': expected int64",
    ),
}


@pytest.mark.parametrize("case", META_CASES.values(), ids=META_CASES.keys())
def test_tampered_logged_interactions_files_are_refused_naming_the_file(case, stored):
    path, rewrite = stored
    kwargs, pattern = case
    rewrite(**kwargs)
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + pattern):
        LoggedInteractions.read_parquet(path)


# ---------------------------------------------------------------------------------------------- arguments
@pytest.fixture(scope="module")
def logs():
    return LoggedInteractions.from_frame(valid_frame(12), item_catalogue=[10, 20, 30, 40])


ARGUMENT_CASES = {
    "loader-max-len-absurd": (
        lambda d, s: SequenceLoader(s, max_len=10**12, batch_size=2, pad_id=4),
        "max_len",
    ),
    "loader-max-len-string": (lambda d, s: SequenceLoader(s, max_len="8", batch_size=2, pad_id=4), "max_len"),
    "loader-max-len-bool": (lambda d, s: SequenceLoader(s, max_len=True, batch_size=2, pad_id=4), "max_len"),
    "loader-max-len-zero": (lambda d, s: SequenceLoader(s, max_len=0, batch_size=2, pad_id=4), "max_len"),
    "loader-batch-size-zero": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=0, pad_id=4),
        "batch_size",
    ),
    "loader-batch-size-negative": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=-3, pad_id=4),
        "batch_size",
    ),
    "loader-batch-size-float": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=2.0, pad_id=4),
        "batch_size",
    ),
    "loader-batch-absurd": (
        lambda d, s: SequenceLoader(s, max_len=1024, batch_size=10**9, pad_id=4),
        "batch_size",
    ),
    "loader-pad-negative": (lambda d, s: SequenceLoader(s, max_len=4, batch_size=2, pad_id=-1), "pad_id"),
    "loader-pad-is-a-real-item": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=2, pad_id=0),
        "pad_id",
    ),
    "loader-pad-string": (lambda d, s: SequenceLoader(s, max_len=4, batch_size=2, pad_id="pad"), "pad_id"),
    "loader-shuffle-string": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=2, pad_id=4, shuffle="no"),
        "shuffle",
    ),
    "loader-seed-string": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=2, pad_id=4, seed="0"),
        "seed",
    ),
    "loader-fractional-users": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=2, pad_id=4, users=[0.5]),
        "users",
    ),
    "loader-users-out-of-range": (
        lambda d, s: SequenceLoader(s, max_len=4, batch_size=2, pad_id=4, users=[5]),
        "users",
    ),
    "loader-not-sequences": (lambda d, s: SequenceLoader(d, max_len=4, batch_size=2, pad_id=4), "sequences"),
    "pad-max-len-absurd": (lambda d, s: pad_sequences(s, [0], max_len=10**12, pad_id=4), "max_len"),
    "pad-bool-users": (lambda d, s: pad_sequences(s, [True, False], max_len=4, pad_id=4), "users"),
    "pad-string-users": (lambda d, s: pad_sequences(s, ["0"], max_len=4, pad_id=4), "users"),
    "pad-id-collides": (lambda d, s: pad_sequences(s, [0, 1], max_len=4, pad_id=1), "pad_id"),
    "pad-end-wrong-shape": (lambda d, s: pad_sequences(s, [0], max_len=4, pad_id=4, end=[1, 2, 3]), "end"),
    "pad-end-fractional": (lambda d, s: pad_sequences(s, [0], max_len=4, pad_id=4, end=1.5), "end"),
    "leave-one-out-string": (lambda d, s: leave_one_out("logs.csv"), "data"),
    "leave-one-out-frame": (lambda d, s: leave_one_out(d.frame), "data"),
    "temporal-fraction-string": (lambda d, s: temporal_split(d, valid_fraction="0.1"), "valid_fraction"),
    "temporal-fraction-bool": (lambda d, s: temporal_split(d, test_fraction=True), "test_fraction"),
    "temporal-fraction-nan": (lambda d, s: temporal_split(d, valid_fraction=float("nan")), "valid_fraction"),
    "temporal-fraction-above-one": (lambda d, s: temporal_split(d, test_fraction=1.5), "test_fraction"),
    "temporal-not-logs": (lambda d, s: temporal_split([1, 2, 3]), "data"),
    "windows-history-absurd": (lambda d, s: history_windows(d, history_len=10**12), "history_len"),
    "windows-history-string": (lambda d, s: history_windows(d, history_len="3"), "history_len"),
    "windows-history-bool": (lambda d, s: history_windows(d, history_len=True), "history_len"),
    "windows-feedback-string": (
        lambda d, s: history_windows(d, history_len=2, feedback_columns="rating"),
        "feedback_columns",
    ),
    "windows-feedback-unknown": (
        lambda d, s: history_windows(d, history_len=2, feedback_columns=["dwell"]),
        "feedback_columns",
    ),
    "from-frame-not-a-frame": (lambda d, s: LoggedInteractions.from_frame({"user_id": [1]}), "df"),
    "from-frame-feedback-string": (
        lambda d, s: LoggedInteractions.from_frame(valid_frame(), feedback_cols="rating"),
        "feedback_cols",
    ),
    "from-frame-catalogue-string": (
        lambda d, s: LoggedInteractions.from_frame(valid_frame(), item_catalogue="10"),
        "item_catalogue",
    ),
    "mapping-user-int": (lambda d, s: ColumnMapping(user=3), "ColumnMapping.user"),
    "mapping-feedback-string": (lambda d, s: ColumnMapping(feedback="rating"), "ColumnMapping.feedback"),
    "mapping-same-column-twice": (lambda d, s: ColumnMapping(user="id", item="id"), "ColumnMapping"),
    "load-table-mapping-string": (lambda d, s: load_table("x.csv", mapping="user_id"), "mapping"),
    "load-none": (lambda d, s: load(None), "path_or_name"),
    "load-nul-path": (lambda d, s: load("logs\x00.csv"), "path_or_name"),
}


@pytest.mark.parametrize(("call", "argument"), ARGUMENT_CASES.values(), ids=ARGUMENT_CASES.keys())
def test_bad_arguments_are_refused_naming_the_argument(call, argument, logs):
    with pytest.raises(ArgumentError, match=rf"^{re.escape(argument)}\b"):
        call(logs, logs.sequences())


@pytest.mark.parametrize("name", ["../toy", "/etc/toy", "a/b", "..", ".hidden", "", "to\x00y"])
def test_recbole_dataset_name_cannot_leave_the_folder(name, tmp_path):
    (tmp_path / "rb").mkdir()
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    with pytest.raises(UnsafePathError, match=r"^dataset_name\b"):
        load_recbole(tmp_path / "rb", dataset_name=name)


def test_valid_arguments_still_work(logs):
    seqs = logs.sequences()
    batches = list(
        SequenceLoader(seqs, max_len=3, batch_size=np.int64(1), pad_id=logs.n_items, seed=np.int32(1))
    )
    assert len(batches) == logs.n_users and batches[0].item_ids.shape == (1, 3)
    assert pad_sequences(
        seqs, np.array([0, 1]), max_len=2, pad_id=logs.n_items, end=np.int64(1)
    ).lengths.tolist() == [1, 1]
    assert sum(len(p) for p in temporal_split(logs, valid_fraction=0, test_fraction=np.float32(0.25))) == len(
        logs
    )
