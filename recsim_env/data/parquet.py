"""Parquet persistence of `LoggedInteractions`: one file holding the frame, with the id maps, feedback
columns and side tables in the schema metadata, and the validation of such files when read back.

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
_PARQUET_FORMAT_VERSION = 1


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
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _PARQUET_META_KEY: json.dumps(meta).encode()}
    )
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_parquet(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """`(frame, keyword arguments of LoggedInteractions)` of a file written by `write_parquet`, every part
    validated; raises DataError for any other Parquet file (see `LoggedInteractions.read_parquet`)."""
    if not isinstance(path, str | os.PathLike):
        raise ArgumentError(f"path: expected a path, got {type(path).__name__}")
    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read Parquet file ({type(err).__name__}: {err})") from None
    raw = (table.schema.metadata or {}).get(_PARQUET_META_KEY)
    if raw is None:
        raise DataError(
            f"{path}: not written by LoggedInteractions.to_parquet (no {_PARQUET_META_KEY.decode()})"
        )
    meta = _read_meta(raw, path)
    where = str(path)
    user_ids = _idmap_from_json(meta["user_ids"], where=f"{where}: metadata 'user_ids'")
    item_ids = _idmap_from_json(meta["item_ids"], where=f"{where}: metadata 'item_ids'")
    # Plain Arrow-to-pandas conversion: the frame holds numbers only, and no pandas metadata is obeyed.
    try:
        frame = table.to_pandas(ignore_metadata=True)
    except (pa.ArrowException, ValueError, TypeError) as err:
        raise DataError(f"{path}: cannot convert the Parquet table ({err})") from err
    feedback_columns = tuple(meta["feedback_columns"])
    _check_stored_frame(frame, feedback_columns, n_users=len(user_ids), n_items=len(item_ids), source=where)
    return frame, {
        "user_ids": user_ids,
        "item_ids": item_ids,
        "feedback_columns": feedback_columns,
        "items": _table_from_b64(meta["items"], n=len(item_ids), where=f"{where}: metadata 'items'"),
        "users": _table_from_b64(meta["users"], n=len(user_ids), where=f"{where}: metadata 'users'"),
        "name": meta["name"],
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
    if isinstance(meta.get("version"), bool) or meta.get("version") != _PARQUET_FORMAT_VERSION:
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
