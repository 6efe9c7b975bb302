"""Parquet persistence of `LoggedInteractions`: one file holding the frame, with the id maps, feedback
columns and side tables in the schema metadata, and the validation of such files when read back.

The file is compact (format version 2): indices are stored as int32 when they fit, feedback and
propensities as float32 when every value is exactly a float32 (0/1 signals, ratings), timestamps as
float64, in row groups of `ROW_GROUP_ROWS` rows. Reading restores the frame's documented dtypes
(int64, float64) bit for bit. `read_parquet_summary` reads two columns a row group at a time, so its
memory does not grow with the number of rows.

The functions here take and return the table's parts (never the class), so this module does not import
`recsim_env.data.interactions`; `LoggedInteractions.to_parquet` / `read_parquet` delegate to them.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsim_env.checks import describe
from recsim_env.data.idmap import IdMap
from recsim_env.data.validate import (
    _INT64_MAX,
    _INT64_MIN,
    OPTIONAL_INT_COLUMNS,
    PROPENSITY_COLUMNS,
    RESERVED_COLUMNS,
    _refuse,
    _where,
    first_bad_row,
)
from recsim_env.errors import ArgumentError, DataError
from recsim_env.io import atomic_write

_PARQUET_META_KEY = b"recsim_env.logged_interactions"
_PARQUET_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
"""Version 1 stored every column as int64 / float64; version 2 stores compact types."""
ROW_GROUP_ROWS = 2**20
"""Rows per Parquet row group written by `write_parquet` (the unit `read_parquet_summary` streams)."""
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _compact(frame: pd.DataFrame, feedback_columns: Sequence[str]) -> dict[str, np.ndarray]:
    """The frame's columns in the narrowest type that holds every value exactly."""
    columns = {}
    float_columns = {*feedback_columns, *PROPENSITY_COLUMNS}
    for col in frame.columns:
        values = frame[col].to_numpy()
        if values.dtype == np.int64 and (
            not len(values) or (values.min() >= _INT32_MIN and values.max() <= _INT32_MAX)
        ):
            values = values.astype(np.int32)
        elif col in float_columns and values.dtype == np.float64:
            narrow = values.astype(np.float32)
            if np.array_equal(narrow.astype(np.float64), values):
                values = narrow
        columns[col] = values
    return columns


def write_parquet(
    path: str | os.PathLike,
    frame: pd.DataFrame,
    *,
    user_ids: IdMap,
    item_ids: IdMap,
    feedback_columns: Sequence[str],
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    name: str,
) -> None:
    """Write the parts of a `LoggedInteractions` to one Parquet file (see `LoggedInteractions.to_parquet`)."""
    path = Path(path)
    meta = {
        "version": _PARQUET_FORMAT_VERSION,
        "name": name,
        "feedback_columns": list(feedback_columns),
        "user_ids": _idmap_to_json(user_ids),
        "item_ids": _idmap_to_json(item_ids),
        "items": _table_to_b64(items),
        "users": _table_to_b64(users),
    }
    table = pa.table(_compact(frame, feedback_columns))
    table = table.replace_schema_metadata({_PARQUET_META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS))


def read_parquet(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """`(frame, keyword arguments of LoggedInteractions)` of a file written by `write_parquet`, every part
    validated; raises DataError for any other Parquet file (see `LoggedInteractions.read_parquet`)."""
    path = _path_argument(path)
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read Parquet file ({type(err).__name__}: {err})") from None
    meta = _stored_meta(table.schema, path)
    where = str(path)
    user_ids, item_ids = _meta_id_maps(meta, where)
    # Plain Arrow-to-pandas conversion: the frame holds numbers only, and no pandas metadata is obeyed.
    try:
        frame = table.to_pandas(ignore_metadata=True)
    except (pa.ArrowException, ValueError, TypeError) as err:
        raise DataError(f"{path}: cannot convert the Parquet table ({err})") from err
    feedback_columns = tuple(meta["feedback_columns"])
    _widen(frame, feedback_columns)
    _check_stored_frame(frame, feedback_columns, n_users=len(user_ids), n_items=len(item_ids), source=where)
    return frame, _meta_parts(meta, where, user_ids, item_ids)


def read_parquet_parts(path: str | os.PathLike) -> dict:
    """The keyword arguments of `LoggedInteractions` (id maps, feedback columns, side tables, name) of a
    file written by `write_parquet`, read from its schema metadata alone: no row is read (for readers
    that stream the rows themselves, e.g. Ray Data, and check them with `check_stored_rows`)."""
    path = _path_argument(path)
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read Parquet file ({type(err).__name__}: {err})") from None
    meta = _stored_meta(schema, path)
    where = str(path)
    return _meta_parts(meta, where, *_meta_id_maps(meta, where))


def check_stored_rows(
    frame: pd.DataFrame, feedback_columns: Sequence[str], *, n_users: int, n_items: int, source: str
) -> pd.DataFrame:
    """Rows of a `write_parquet` file read by another reader (all of them, or every row of some users,
    in file order), widened in place to the documented dtypes and checked as `read_parquet` checks a
    whole file; raises DataError naming `source`, the column and the row within `frame`."""
    feedback_columns = tuple(feedback_columns)
    _widen(frame, feedback_columns)
    _check_stored_frame(frame, feedback_columns, n_users=n_users, n_items=n_items, source=source)
    return frame


def _widen(frame: pd.DataFrame, feedback_columns: Sequence[str]) -> None:
    """Back to the documented dtypes, in place: int32 index / integer columns to int64, float32
    timestamps, feedback and propensities to float64 (exact); anything else is left for the checks."""
    integer = ("user_id", "item_id", *OPTIONAL_INT_COLUMNS)
    real = ("timestamp", *feedback_columns, *PROPENSITY_COLUMNS)
    for col in frame.columns:
        dtype = frame[col].dtype
        if col in integer and dtype == np.int32:
            frame[col] = frame[col].astype(np.int64)
        elif col in real and dtype == np.float32:
            frame[col] = frame[col].astype(np.float64)


def read_parquet_summary(path: str | os.PathLike, *, batch_rows: int = 2**16) -> dict:
    """What `LoggedInteractions.stats` needs from a file written by `write_parquet`, read by row groups.

    Only the metadata and the `user_id` and `timestamp` columns are read, `batch_rows` rows at a time;
    each batch is checked as `read_parquet` checks the frame (indices in range, finite timestamps, rows
    sorted by (user_id, timestamp), across batches too). Memory: the metadata, `n_users` counters and
    one batch. Returns `name`, `n_items`, `feedback_columns`, `n_rows`, `events_per_user` ([n_users]
    int64), `time_start` and `time_end`.
    """
    path = _path_argument(path)
    where = str(path)
    try:
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=2**20)  # read pages as they are used
        schema = parquet.schema_arrow
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read Parquet file ({type(err).__name__}: {err})") from None
    meta = _stored_meta(schema, path)
    n_users, n_items = (len(ids) for ids in _meta_id_maps(meta, where))
    for col in ("user_id", "timestamp", *meta["feedback_columns"]):
        if col not in schema.names:
            raise DataError(f"{_where(where, col)}: missing column (columns present: {schema.names})")
    counts = np.zeros(n_users, dtype=np.int64)
    start, end = np.inf, -np.inf
    rows = 0
    last_user, last_time = -1, -np.inf
    try:
        batches = parquet.iter_batches(batch_size=batch_rows, columns=["user_id", "timestamp"])
        for batch in batches:
            users = batch.column(0).to_numpy(zero_copy_only=False)
            times = batch.column(1).to_numpy(zero_copy_only=False)
            if users.dtype.kind not in "iu":
                raise DataError(f"{_where(where, 'user_id')}: expected integer indices, got {users.dtype}")
            if times.dtype.kind != "f":
                raise DataError(f"{_where(where, 'timestamp')}: expected float64 values, got {times.dtype}")
            users = users.astype(np.int64, copy=False)
            bad = (users < 0) | (users >= n_users)
            if bad.any():
                raise DataError(
                    f"{_where(where, 'user_id', rows + first_bad_row(bad))}: index outside 0..{n_users - 1}"
                )
            bad = ~np.isfinite(times)
            if bad.any():
                raise DataError(f"{_where(where, 'timestamp', rows + first_bad_row(bad))}: non-finite value")
            previous_users = np.concatenate([[last_user], users[:-1]])
            previous_times = np.concatenate([[last_time], times[:-1]])
            bad = (users < previous_users) | ((users == previous_users) & (times < previous_times))
            if bad.any():
                raise DataError(
                    f"{_where(where, 'user_id', rows + first_bad_row(bad))}: rows are not sorted by (user_id, timestamp)"
                )
            counts += np.bincount(users, minlength=n_users)
            if len(times):
                start, end = min(start, float(times.min())), max(end, float(times.max()))
                last_user, last_time = int(users[-1]), float(times[-1])
            rows += len(users)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: cannot read Parquet file ({type(err).__name__}: {err})") from None
    return {
        "name": meta["name"],
        "n_items": n_items,
        "feedback_columns": tuple(meta["feedback_columns"]),
        "n_rows": rows,
        "events_per_user": counts,
        "time_start": start if rows else float("nan"),
        "time_end": end if rows else float("nan"),
    }


_META_FIELDS = {
    "version": int,
    "name": str,
    "feedback_columns": list,
    "user_ids": dict,
    "item_ids": dict,
    "items": (str, type(None)),
    "users": (str, type(None)),
}


def _path_argument(path: str | os.PathLike) -> Path:
    """`path` as a Path; ArgumentError for anything that is not a path."""
    if not isinstance(path, str | os.PathLike):
        raise ArgumentError(f"path: expected a path, got {type(path).__name__}")
    return Path(path)


def _stored_meta(schema: pa.Schema, path: Path) -> dict:
    """The `write_parquet` metadata of the file at `path` with Arrow schema `schema`; DataError for a
    file it did not write or whose metadata is not a JSON object."""
    raw = (schema.metadata or {}).get(_PARQUET_META_KEY)
    if raw is None:
        raise DataError(
            f"{path}: not written by LoggedInteractions.to_parquet (no {_PARQUET_META_KEY.decode()})"
        )
    return _read_meta(raw, path)


def _meta_id_maps(meta: dict, where: str) -> tuple[IdMap, IdMap]:
    """The `(user_ids, item_ids)` id maps of the stored metadata `meta` of file `where`."""
    user_ids = _idmap_from_json(meta["user_ids"], where=f"{where}: metadata 'user_ids'")
    item_ids = _idmap_from_json(meta["item_ids"], where=f"{where}: metadata 'item_ids'")
    return user_ids, item_ids


def _meta_parts(meta: dict, where: str, user_ids: IdMap, item_ids: IdMap) -> dict:
    """The keyword arguments of `LoggedInteractions` but the frame, from the stored metadata `meta` of
    file `where` and its id maps (`_meta_id_maps`)."""
    return {
        "user_ids": user_ids,
        "item_ids": item_ids,
        "feedback_columns": tuple(meta["feedback_columns"]),
        "items": _table_from_b64(meta["items"], n=len(item_ids), where=f"{where}: metadata 'items'"),
        "users": _table_from_b64(meta["users"], n=len(user_ids), where=f"{where}: metadata 'users'"),
        "name": meta["name"],
    }


def _read_meta(raw: bytes, path: Path) -> dict:
    """The JSON document `to_parquet` stores, each field present and of its type, else DataError."""
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DataError(
            f"{path}: metadata {_PARQUET_META_KEY.decode()!r} is not valid JSON ({err})"
        ) from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: metadata {_PARQUET_META_KEY.decode()!r} must be a JSON object")
    if isinstance(meta.get("version"), bool) or meta.get("version") not in _READABLE_VERSIONS:
        raise DataError(f"{path}: unsupported format version {meta.get('version')!r}")
    for field, kind in _META_FIELDS.items():
        if field not in meta:
            raise DataError(f"{path}: metadata field {field!r} is missing")
        if not isinstance(meta[field], kind):
            raise DataError(
                f"{path}: metadata field {field!r} has the wrong type ({type(meta[field]).__name__})"
            )
    columns = meta["feedback_columns"]
    if not all(isinstance(c, str) and c and c not in RESERVED_COLUMNS for c in columns) or len(
        set(columns)
    ) != len(columns):
        raise DataError(
            f"{path}: metadata field 'feedback_columns' must list distinct, non-reserved column names"
        )
    return meta


def _check_stored_frame(
    frame: pd.DataFrame, feedback_columns: tuple[str, ...], *, n_users: int, n_items: int, source: str
) -> None:
    """Refuse a stored frame that `from_frame` could not have produced: wrong dtypes, out-of-range indices,
    non-finite values, rows out of (user, timestamp) order."""
    if frame.columns.duplicated().any():
        raise DataError(
            f"{_where(source, frame.columns[frame.columns.duplicated()][0])}: the column appears more than once"
        )
    for col in ("user_id", "item_id", "timestamp", *feedback_columns):
        if col not in frame.columns:
            raise DataError(f"{_where(source, col)}: missing column (columns present: {list(frame.columns)})")
    for col, n in (("user_id", n_users), ("item_id", n_items)):
        values = frame[col]
        if values.dtype != np.int64:
            raise DataError(f"{_where(source, col)}: expected int64 indices, got {values.dtype}")
        arr = values.to_numpy()
        _refuse(values, [((arr < 0) | (arr >= n), f"index outside 0..{n - 1}")], source=source, column=col)
    for col in ("timestamp", *feedback_columns, *(c for c in PROPENSITY_COLUMNS if c in frame.columns)):
        values = frame[col]
        if values.dtype != np.float64:
            raise DataError(f"{_where(source, col)}: expected float64 values, got {values.dtype}")
        _refuse(
            values, [(~np.isfinite(values.to_numpy()), "non-finite value {value}")], source=source, column=col
        )
    for col in PROPENSITY_COLUMNS:
        if col in frame.columns:
            arr = frame[col].to_numpy()
            _refuse(
                frame[col], [(~((arr > 0.0) & (arr <= 1.0)), "outside (0, 1]")], source=source, column=col
            )
    for col in OPTIONAL_INT_COLUMNS:
        if col in frame.columns and frame[col].dtype != np.int64:
            raise DataError(f"{_where(source, col)}: expected int64 values, got {frame[col].dtype}")
    users = frame["user_id"].to_numpy()
    times = frame["timestamp"].to_numpy()
    out_of_order = np.r_[False, (np.diff(users) < 0) | ((np.diff(users) == 0) & (np.diff(times) < 0))]
    if out_of_order.any():
        raise DataError(
            f"{_where(source, 'user_id', first_bad_row(out_of_order))}: rows are not sorted by (user_id, timestamp)"
        )


def has_logged_interactions_metadata(path: str | os.PathLike) -> bool:
    """Whether a Parquet file was written by `LoggedInteractions.to_parquet`."""
    try:
        return _PARQUET_META_KEY in (pq.read_schema(path).metadata or {})
    except (OSError, pa.ArrowException):
        return False


def _idmap_to_json(ids: IdMap) -> dict:
    return {"dtype": "int64" if ids.tokens.dtype == np.int64 else "object", "tokens": ids.tokens.tolist()}


def _idmap_from_json(d: dict, *, where: str) -> IdMap:
    """An id map from its JSON form; every token must be a string or an int within int64 (never a bool)."""
    if (
        set(d) != {"dtype", "tokens"}
        or d["dtype"] not in ("int64", "object")
        or not isinstance(d["tokens"], list)
    ):
        raise DataError(f"{where}: expected {{'dtype': 'int64' | 'object', 'tokens': [...]}}")
    tokens = d["tokens"]
    ints = d["dtype"] == "int64"
    for i, t in enumerate(tokens):
        is_int = isinstance(t, int) and not isinstance(t, bool) and _INT64_MIN <= t <= _INT64_MAX
        if not (is_int or (not ints and isinstance(t, str))):
            raise DataError(f"{where}: token {i} is {describe(t)} ({type(t).__name__}), not an id")
    try:
        return IdMap(np.asarray(tokens, dtype=np.int64) if ints else np.array(tokens, dtype=object))
    except DataError as err:
        raise DataError(f"{where}: {err}") from None


def _table_to_b64(table: pd.DataFrame | None) -> str | None:
    if table is None:
        return None
    buf = io.BytesIO()
    table.to_parquet(buf, index=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table_from_b64(text: str | None, *, n: int, where: str) -> pd.DataFrame | None:
    """A side table from its base64 Parquet form; it must hold one row per index `0..n-1`."""
    if text is None:
        return None
    try:
        table = pd.read_parquet(io.BytesIO(base64.b64decode(text, validate=True)))
    except Exception as err:  # binascii.Error, and pyarrow raises several unrelated types for corrupt data
        raise DataError(f"{where}: cannot read the side table ({type(err).__name__}: {err})") from None
    if not table.index.equals(pd.RangeIndex(n)):
        raise DataError(f"{where}: the side table must have one row per index 0..{n - 1}")
    return table
