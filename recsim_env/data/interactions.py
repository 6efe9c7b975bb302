"""`LoggedInteractions`: the one table type for every source of logs (files, the world, simulators).

Row numbers in error messages are 1-based data rows: the first row after the header is row 1.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsim_env.data.idmap import IdMap, as_token_array
from recsim_env.errors import ArgumentError, DataError
from recsim_env.io import atomic_write

RESERVED_COLUMNS = (
    "user_id",
    "item_id",
    "timestamp",
    "session_id",
    "position",
    "slate_id",
    "propensity",
    "position_propensity",
)
# Probabilities of the logging policy: of the whole slate shown, and of the item at its position given
# the items above it (equal for one-item slates).
PROPENSITY_COLUMNS = ("propensity", "position_propensity")
OPTIONAL_INT_COLUMNS = ("session_id", "position", "slate_id")
_PARQUET_META_KEY = b"recsim_env.logged_interactions"
_PARQUET_FORMAT_VERSION = 1
_INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_MIN = int(np.iinfo(np.int64).min)
_INT_TEXT = re.compile(r"-?[0-9]{1,18}")
_EXACT_FLOAT_INT = 2.0**53  # floats at or above this are not exact integers


def first_bad_row(mask: np.ndarray) -> int:
    """1-based data row of the first True in `mask`."""
    return int(np.flatnonzero(mask)[0]) + 1


class UserSequences(NamedTuple):
    """Per-user chronological sequences in CSR layout: user u's events are rows `offsets[u]:offsets[u+1]`."""

    offsets: np.ndarray  # [n_users + 1] int64
    item_ids: np.ndarray  # [n_interactions] int64
    timestamps: np.ndarray  # [n_interactions] float64
    feedback: np.ndarray  # [n_interactions, F] float32

    def lengths(self) -> np.ndarray:
        """`[n_users]` int64 number of events per user."""
        return np.diff(self.offsets)

    def user(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views `(items [n], timestamps [n], feedback [n, F])` of user `u`'s events, oldest first."""
        lo, hi = int(self.offsets[u]), int(self.offsets[u + 1])
        return self.item_ids[lo:hi], self.timestamps[lo:hi], self.feedback[lo:hi]


@dataclass(frozen=True)
class DataStats:
    """Summary of a `LoggedInteractions` table (what `seqrec data info` prints)."""

    name: str
    """Data set name."""
    n_users: int
    """Users in the user map."""
    n_items: int
    """Items in the catalogue."""
    n_interactions: int
    """Logged events."""
    sparsity: float
    """1 - interactions / (users * items)."""
    sequence_length: dict[str, float]
    """Events per user: min, 25%, 50%, 75%, 90%, max, mean (over users with at least one event)."""
    time_start: float
    """Earliest timestamp (seconds)."""
    time_end: float
    """Latest timestamp (seconds)."""
    feedback_columns: tuple[str, ...]
    """Feedback columns in order."""

    @property
    def time_span_days(self) -> float:
        return (self.time_end - self.time_start) / 86400.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["feedback_columns"] = list(self.feedback_columns)
        d["time_span_days"] = self.time_span_days
        return d


def _where(source: str, column: str, row: int | None = None) -> str:
    loc = f"{source}: column {column!r}"
    return loc if row is None else f"{loc}, row {row} (1-based data row)"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _plain(values: pd.Series) -> pd.Series:
    """A categorical column as a column of its values (other columns unchanged)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return pd.Series(np.asarray(values), index=values.index, name=values.name)
    return values


_MISSING = "missing value (NaN)"


def _refuse(values: pd.Series, checks, *, source: str, column: str) -> None:
    """Raise DataError for the first row that any `(bad_mask, why)` of `checks` flags, naming its value.

    `why` may hold `{value}` (the offending value's repr); otherwise `: value (type)` is appended. All masks
    are computed before this is called, so the row named is the first bad row whatever its fault.
    """
    first: tuple[int, str] | None = None
    for bad, why in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            if first is None or row < first[0]:
                first = (row, why)
    if first is None:
        return
    row, why = first
    value = values.iloc[row]
    value = value.item() if isinstance(value, np.generic) else value
    if why == _MISSING:
        message = why
    elif "{value}" in why:
        message = why.format(value=_shown(value))
    else:
        message = f"{why}: {_shown(value)} ({type(value).__name__})"
    raise DataError(f"{_where(source, column, row + 1)}: {message}")


def _int64_from_floats(
    values: pd.Series, numeric: np.ndarray, missing: np.ndarray, *, source: str, column: str
):
    """Int64 of float values that are exact integers (refusing non-finite, fractional and inexact ones)."""
    with np.errstate(invalid="ignore"):
        inexact = (
            ~np.isfinite(numeric) | (numeric != np.round(numeric)) | (np.abs(numeric) >= _EXACT_FLOAT_INT)
        )
    _refuse(
        values,
        [(missing, _MISSING), (inexact & ~missing, "expected an integer (exact, below 2**53)")],
        source=source,
        column=column,
    )
    return numeric.astype(np.int64)


def _int64_from_ints(values: pd.Series, missing: np.ndarray, *, source: str, column: str) -> np.ndarray:
    """Int64 of an integer-dtype column (nullable ones included), refusing unsigned values beyond int64."""
    checks = [(missing, _MISSING)]
    if values.dtype.kind == "u":
        raw = values.to_numpy(dtype=np.uint64, na_value=0)
        checks.append((raw > np.uint64(_INT64_MAX), "overflows int64"))
    _refuse(values, checks, source=source, column=column)
    return values.to_numpy(dtype=np.int64)


def _is_int_token(value: object) -> bool:
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool | np.bool_)
        and _INT64_MIN <= int(value) <= _INT64_MAX
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _flags(arr: np.ndarray, test) -> np.ndarray:
    return np.fromiter((test(v) for v in arr), dtype=bool, count=len(arr))


def id_tokens(values: pd.Series, *, source: str, column: str) -> np.ndarray:
    """The canonical tokens of a raw id column: int64 when the column holds integers, else an object array of
    Python `str` (and `int`) values. Refused, naming the first bad row: missing values, booleans, fractional or
    non-finite floats, integers outside int64, and any other type (bytes, lists, dicts, dates)."""
    values = _plain(values)
    missing = values.isna().to_numpy()
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        _refuse(
            values,
            [(missing, _MISSING), (~missing, "a boolean column cannot hold ids")],
            source=source,
            column=column,
        )
    if dtype.kind in "iu":
        return _int64_from_ints(values, missing, source=source, column=column)
    if dtype.kind == "f":
        numeric = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return _int64_from_floats(values, numeric, missing, source=source, column=column)
    if dtype.kind != "O":
        _refuse(
            values,
            [(missing, _MISSING), (~missing, f"ids must be integers or strings, not {dtype}")],
            source=source,
            column=column,
        )
    arr = values.to_numpy(dtype=object)
    kind = pd.api.types.infer_dtype(arr, skipna=False)
    if kind == "string":
        return arr
    if kind in ("floating", "mixed-integer-float", "decimal"):
        numeric = np.array([float(v) for v in arr], dtype=np.float64)
        return _int64_from_floats(values, numeric, missing | np.isnan(numeric), source=source, column=column)
    if kind == "integer":
        _refuse(
            values,
            [(~_flags(arr, _is_int_token), "expected an integer within int64")],
            source=source,
            column=column,
        )
        return arr.astype(np.int64)
    # Mixed columns: each value must be a string or an integer within int64 (never a bool, float or container).
    ok = _flags(arr, lambda v: isinstance(v, str) or _is_int_token(v))
    _refuse(
        values,
        [(missing, _MISSING), (~ok & ~missing, "expected an integer or string id")],
        source=source,
        column=column,
    )
    return as_token_array(arr)


def _real_values(values: pd.Series, *, source: str, column: str, booleans: bool, finite: bool) -> np.ndarray:
    """Float64 of a numeric column: numeric strings are parsed, booleans become 0/1 when `booleans`; other
    strings, complex numbers and objects are refused at their row, and so are missing and infinite values
    when `finite` (else they are NaN / inf)."""
    values = _plain(values)
    missing = values.isna().to_numpy()
    checks = [(missing, _MISSING)] if finite else []
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        if not booleans:
            checks.append((~missing, "a boolean column is not allowed here"))
        _refuse(values, checks, source=source, column=column)
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype.kind in "iuf":
        out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    elif dtype.kind != "O":
        _refuse(
            values, [*checks, (~missing, f"expected real numbers, not {dtype}")], source=source, column=column
        )
    else:
        arr = values.to_numpy(dtype=object)
        kind = pd.api.types.infer_dtype(arr, skipna=True)
        if kind == "boolean" and booleans:
            out = np.array(
                [np.nan if m else float(v) for v, m in zip(arr, missing, strict=True)], dtype=np.float64
            )
        else:
            if kind in ("string", "integer", "floating", "mixed-integer-float", "decimal", "empty"):
                typed = ~missing
            else:
                typed = ~missing & _flags(arr, lambda v: isinstance(v, str) or _is_number(v))
            coerced = pd.to_numeric(
                pd.Series(np.where(typed, arr, None), index=values.index), errors="coerce"
            )
            out = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
            checks.append((~missing & np.isnan(out), "not a number"))
    if finite:
        checks.append((np.isinf(out), "non-finite value {value}"))
    _refuse(values, checks, source=source, column=column)
    return out


def _to_int64(values: pd.Series, *, source: str, column: str) -> np.ndarray:
    values = _plain(values)
    missing = values.isna().to_numpy()
    if values.dtype.kind in "iu" and not pd.api.types.is_bool_dtype(values.dtype):
        return _int64_from_ints(values, missing, source=source, column=column)
    numeric = _real_values(values, source=source, column=column, booleans=False, finite=True)
    return _int64_from_floats(values, numeric, missing, source=source, column=column)


def parse_timestamps(
    values: pd.Series, *, source: str, column: str, timestamp_format: str | None = None
) -> np.ndarray:
    """Float64 seconds from numeric seconds, datetimes, or date strings (ISO-8601 or `timestamp_format`).

    A text column whose first value is a number is read as seconds; naive date strings are taken as UTC.
    Missing, non-finite, boolean and unparseable values are refused at the first row holding any of them.
    """
    values = _plain(values)
    missing = values.isna().to_numpy()
    checks = [(missing, _MISSING)]
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        _refuse(
            values,
            [*checks, (~missing, "a boolean column cannot hold timestamps")],
            source=source,
            column=column,
        )
    if dtype.kind in "cm" or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype):
        why = f"timestamps must be numbers, datetimes or date strings, not {dtype}"
        _refuse(values, [*checks, (~missing, why)], source=source, column=column)
    if dtype.kind in "iuf" and timestamp_format is None:
        out = values.to_numpy(dtype=np.float64, na_value=np.nan)
        _refuse(
            values, [*checks, (np.isinf(out), "non-finite timestamp {value}")], source=source, column=column
        )
        return out
    if dtype.kind == "M" or isinstance(dtype, pd.DatetimeTZDtype):
        _refuse(values, checks, source=source, column=column)
        parsed = values
    else:
        arr = values.to_numpy(dtype=object)
        # Only strings, plain numbers and datetimes can be timestamps; a list's or a bool's text is no date.
        if pd.api.types.infer_dtype(arr, skipna=True) in (
            "string",
            "integer",
            "floating",
            "mixed-integer-float",
        ):
            typed = ~missing
        else:
            typed = ~missing & _flags(
                arr, lambda v: isinstance(v, str | dt.date | np.datetime64) or _is_number(v)
            )
        checks.append((~missing & ~typed, "cannot parse timestamp {value}"))
        text = values.astype(str).where(typed, None)
        numeric_mode = False
        if timestamp_format is None:
            # A column whose first usable value is a number holds seconds (a text column read from a messy
            # file); then every value must be a number.
            numeric = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            first = np.flatnonzero(typed)
            numeric_mode = bool(first.size) and not np.isnan(numeric[first[0]])
        if numeric_mode:
            checks.append((typed & np.isnan(numeric), "cannot parse timestamp {value} (seconds)"))
            checks.append((np.isinf(numeric), "non-finite timestamp {value}"))
            _refuse(values, checks, source=source, column=column)
            return numeric
        fmt = "ISO8601" if timestamp_format is None else timestamp_format
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        checks.append((typed & parsed.isna().to_numpy(), "cannot parse timestamp {value}"))
        _refuse(values, checks, source=source, column=column)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    # Seconds since the unix epoch, whatever the datetime resolution pandas chose.
    return ((parsed - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def _side_table(
    table: pd.DataFrame | None, id_col: str, ids: IdMap, *, source: str, what: str
) -> pd.DataFrame | None:
    """Reindex a raw side table by the contiguous index of its `id_col` (rows for unknown ids are dropped)."""
    if table is None:
        return None
    where = f"{source} ({what} table)"
    if id_col not in table.columns:
        raise DataError(f"{_where(where, id_col)}: missing column")
    if table.columns.duplicated().any():
        raise DataError(
            f"{_where(where, table.columns[table.columns.duplicated()][0])}: the column appears more than once"
        )
    raw = id_tokens(table[id_col], source=where, column=id_col)
    _refuse(
        table[id_col],
        [(pd.Index(raw, dtype=raw.dtype).duplicated(), "duplicate id {value}")],
        source=where,
        column=id_col,
    )
    lookup = pd.Index(ids.tokens, dtype=ids.tokens.dtype)
    if ids.tokens.dtype == np.int64 and raw.dtype != np.int64:
        # Integer ids written as text ("10") still match; other strings match nothing.
        as_int = [int(t) if isinstance(t, int) or _INT_TEXT.fullmatch(t) else None for t in raw]
        exact = np.array([t is not None for t in as_int], dtype=bool)
        positions = np.full(len(raw), -1, dtype=np.int64)
        if exact.any():
            positions[exact] = lookup.get_indexer(
                np.array([t for t in as_int if t is not None], dtype=np.int64)
            )
    else:
        positions = lookup.get_indexer(raw)
    known = positions >= 0
    out = table.loc[known].drop(columns=[id_col])
    out.index = pd.Index(positions[known].astype(np.int64), name=f"{what}_index")
    # Ids the table lacks get missing rows; integer columns become nullable so they stay integers.
    integers = {c: "Int64" for c in out.columns if pd.api.types.is_integer_dtype(out[c].dtype)}
    return out.astype(integers).reindex(pd.RangeIndex(len(ids), name=f"{what}_index"))


class LoggedInteractions:
    """One table type for every source of logs (files, the world, simulators).

    `frame` columns: `user_id` (int64 index), `item_id` (int64 index), `timestamp` (float64 seconds), the
    feedback columns (float64), then any of `session_id`, `position`, `slate_id` (int64) and `propensity`
    (float64 in (0, 1]). Rows are stable-sorted by (user_id, timestamp), so events with equal timestamps keep
    their file order. Item indices run over the whole catalogue `item_ids`, which may hold items nobody
    interacted with; the padding id for item sequences is `n_items`.

    Side tables `items` / `users` are indexed by item / user index (0..n-1, one row each, NaN rows for ids the
    raw table lacked); the raw id column is dropped (recover it with `item_ids.to_token`).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        user_ids: IdMap,
        item_ids: IdMap,
        feedback_columns: Sequence[str],
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        name: str = "interactions",
    ) -> None:
        """Wrap an already-validated frame; use `from_frame` or a loader to build one from raw data."""
        self.frame = frame
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.feedback_columns = tuple(feedback_columns)
        self.items = items
        self.users = users
        self.name = name

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        time_col: str = "timestamp",
        feedback_cols: Sequence[str] | None = None,
        item_catalogue: Sequence | None = None,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        name: str = "interactions",
        source: str = "<frame>",
        timestamp_format: str | None = None,
    ) -> LoggedInteractions:
        """Validate a raw frame, remap ids to contiguous indices, convert dtypes and stable-sort.

        Args:
            df: one row per event, in log order.
            user_col, item_col, time_col: raw id and timestamp columns.
            feedback_cols: feedback columns; None takes every remaining numeric column not in RESERVED_COLUMNS.
            item_catalogue: raw item tokens defining the catalogue; None takes the interacted items plus the
                items of the `items` side table.
            items, users: raw side tables holding an `item_col` / `user_col` column.
            name: data set name.
            source: what to name in error messages (usually the file).
            timestamp_format: strftime format for string timestamps; None accepts numbers or ISO-8601.

        Raises:
            DataError: naming `source`, the column and the first offending 1-based data row.
        """
        if not isinstance(df, pd.DataFrame):
            raise ArgumentError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
        for arg, value in (
            ("user_col", user_col),
            ("item_col", item_col),
            ("time_col", time_col),
            ("name", name),
            ("source", source),
        ):
            if not isinstance(value, str) or not value:
                raise ArgumentError(f"{arg}: expected a non-empty string, got {_shown(value)}")
        if timestamp_format is not None and not isinstance(timestamp_format, str):
            raise ArgumentError(
                f"timestamp_format: expected a string or None, got {_shown(timestamp_format)}"
            )
        if isinstance(feedback_cols, str):
            raise ArgumentError(
                f"feedback_cols: expected a sequence of column names, got the string {feedback_cols!r}"
            )
        for arg, table in (("items", items), ("users", users)):
            if table is not None and not isinstance(table, pd.DataFrame):
                raise ArgumentError(f"{arg}: expected a pandas DataFrame or None, got {type(table).__name__}")
        if len(df) == 0:
            raise DataError(f"{source}: no data rows")
        duplicated = df.columns[df.columns.duplicated()]
        if len(duplicated):
            raise DataError(f"{_where(source, duplicated[0])}: the column appears more than once")
        for col in (user_col, item_col, time_col):
            if col not in df.columns:
                raise DataError(
                    f"{_where(source, col)}: missing column (columns present: {list(df.columns)})"
                )
        if len({user_col, item_col, time_col}) != 3:
            raise DataError(f"{source}: user, item and timestamp must be three different columns")
        id_cols = {user_col, item_col, time_col}
        if feedback_cols is None:
            # Every remaining numeric or boolean column is feedback (a boolean `click` becomes 0/1).
            feedback_cols = [
                c
                for c in df.columns
                if c not in id_cols
                and c not in RESERVED_COLUMNS
                and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
                and df[c].dtype.kind != "c"
            ]
        feedback_cols = tuple(feedback_cols)
        for col in feedback_cols:
            if col not in df.columns:
                raise DataError(
                    f"{_where(source, col)}: missing column (columns present: {list(df.columns)})"
                )
            if col in RESERVED_COLUMNS or col in id_cols:
                raise DataError(f"{_where(source, col)}: a reserved column cannot be a feedback column")
        if len(set(feedback_cols)) != len(feedback_cols):
            raise DataError(f"{source}: duplicate feedback columns {feedback_cols}")

        user_tokens = id_tokens(df[user_col], source=source, column=user_col)
        item_tokens = id_tokens(df[item_col], source=source, column=item_col)
        timestamps = parse_timestamps(
            df[time_col], source=source, column=time_col, timestamp_format=timestamp_format
        )

        user_map = IdMap.from_tokens(user_tokens)
        if item_catalogue is not None:
            if isinstance(item_catalogue, str | bytes):
                raise ArgumentError("item_catalogue: expected a sequence of item ids, got a string")
            catalogue = pd.Series(
                np.asarray(item_catalogue) if isinstance(item_catalogue, np.ndarray) else list(item_catalogue)
            )
            if len(catalogue) == 0:
                raise ArgumentError("item_catalogue: must hold at least one item id")
            catalogue_tokens = id_tokens(catalogue, source=f"{source} (item_catalogue)", column=item_col)
            try:
                item_map = IdMap.from_tokens(catalogue_tokens)
            except DataError as err:
                raise DataError(f"{source} (item_catalogue): {err}") from None
        elif items is not None and item_col in items.columns:
            side = id_tokens(items[item_col], source=f"{source} (item table)", column=item_col)
            item_map = IdMap.from_tokens(np.concatenate([item_tokens, side]))
        else:
            item_map = IdMap.from_tokens(item_tokens)
        user_idx = user_map.to_index(user_tokens)
        try:
            item_idx = item_map.to_index(item_tokens)
        except DataError:
            if item_map.tokens.dtype == np.int64 and item_tokens.dtype != np.int64:
                unknown = np.ones(len(item_tokens), dtype=bool)
            else:
                unknown = pd.Index(item_map.tokens, dtype=item_map.tokens.dtype).get_indexer(item_tokens) < 0
            row = first_bad_row(unknown)
            raise DataError(
                f"{_where(source, item_col, row)}: item {df[item_col].iloc[row - 1]!r} is not in the item catalogue"
            ) from None

        columns: dict[str, np.ndarray] = {"user_id": user_idx, "item_id": item_idx, "timestamp": timestamps}
        for col in feedback_cols:
            # Missing or infinite feedback would reach a model as NaN: refuse it here, naming the row.
            columns[col] = _real_values(df[col], source=source, column=col, booleans=True, finite=True)
        for col in OPTIONAL_INT_COLUMNS:
            if col in df.columns:
                columns[col] = _to_int64(df[col], source=source, column=col)
        if "position" in columns:
            _refuse(
                df["position"],
                [(columns["position"] < 0, "negative position {value}")],
                source=source,
                column="position",
            )
        for col in PROPENSITY_COLUMNS:
            if col not in df.columns:
                continue
            raw = df[col]
            values = _real_values(raw, source=source, column=col, booleans=False, finite=False)
            outside = ~((values > 0.0) & (values <= 1.0))
            _refuse(raw, [(outside, col + " {value} is outside (0, 1]")], source=source, column=col)
            columns[col] = values

        # np.lexsort is stable: ties in (user, timestamp) keep file order.
        order = np.lexsort((timestamps, user_idx))
        frame = pd.DataFrame({k: v[order] for k, v in columns.items()})
        return cls(
            frame,
            user_ids=user_map,
            item_ids=item_map,
            feedback_columns=feedback_cols,
            items=_side_table(items, item_col, item_map, source=source, what="item"),
            users=_side_table(users, user_col, user_map, source=source, what="user"),
            name=name,
        )

    def _with_frame(self, frame: pd.DataFrame) -> LoggedInteractions:
        """Same maps, side tables and name over a subset of the rows (kept in order)."""
        return LoggedInteractions(
            frame.reset_index(drop=True),
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            feedback_columns=self.feedback_columns,
            items=self.items,
            users=self.users,
            name=self.name,
        )

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.frame)

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        return (
            f"LoggedInteractions(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions}, feedback={self.feedback_columns})"
        )

    def feedback_matrix(self) -> np.ndarray:
        """`[n_interactions, F]` float64 feedback in `feedback_columns` order."""
        if not self.feedback_columns:
            return np.zeros((self.n_interactions, 0), dtype=np.float64)
        return self.frame[list(self.feedback_columns)].to_numpy(dtype=np.float64)

    def sequences(self) -> UserSequences:
        """Per-user chronological sequences in CSR layout (users with no events get empty ranges)."""
        users = self.frame["user_id"].to_numpy(dtype=np.int64)
        counts = np.bincount(users, minlength=self.n_users)
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return UserSequences(
            offsets=offsets,
            item_ids=self.frame["item_id"].to_numpy(dtype=np.int64),
            timestamps=self.frame["timestamp"].to_numpy(dtype=np.float64),
            feedback=self.feedback_matrix().astype(np.float32),
        )

    def select_users(self, user_indices) -> LoggedInteractions:
        """The events of `user_indices` (contiguous indices); id maps, catalogue and side tables are kept."""
        wanted = np.asarray(user_indices, dtype=np.int64)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= self.n_users):
            raise DataError(f"select_users: user index out of range 0..{self.n_users - 1}")
        mask = np.isin(self.frame["user_id"].to_numpy(), wanted)
        return self._with_frame(self.frame.loc[mask])

    def stats(self) -> DataStats:
        """Users, items, interactions, sparsity, sequence-length quantiles, time span, feedback columns."""
        lengths = np.bincount(self.frame["user_id"].to_numpy(), minlength=self.n_users)
        active = lengths[lengths > 0]
        if active.size:
            q = np.quantile(active, [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
            seq = dict(zip(("min", "25%", "50%", "75%", "90%", "max"), map(float, q), strict=True))
            seq["mean"] = float(active.mean())
        else:
            seq = dict.fromkeys(("min", "25%", "50%", "75%", "90%", "max", "mean"), 0.0)
        ts = self.frame["timestamp"].to_numpy()
        cells = self.n_users * self.n_items
        return DataStats(
            name=self.name,
            n_users=self.n_users,
            n_items=self.n_items,
            n_interactions=self.n_interactions,
            sparsity=1.0 - self.n_interactions / cells if cells else 1.0,
            sequence_length=seq,
            time_start=float(ts.min()) if ts.size else float("nan"),
            time_end=float(ts.max()) if ts.size else float("nan"),
            feedback_columns=self.feedback_columns,
        )

    # ------------------------------------------------------------------ parquet
    def to_parquet(self, path: str | os.PathLike) -> None:
        """Write one Parquet file that `read_parquet` turns back into an identical object.

        Layout: the row group holds `frame`; the schema metadata key `recsim_env.logged_interactions` holds a
        JSON document with the format version, name, feedback columns, both id maps (tokens as a JSON list and
        their dtype) and the side tables, each as a base64-encoded Parquet file written by pandas. The file is
        written to a temporary file in the same directory and renamed into place, so a failure leaves nothing.
        """
        path = Path(path)
        meta = {
            "version": _PARQUET_FORMAT_VERSION,
            "name": self.name,
            "feedback_columns": list(self.feedback_columns),
            "user_ids": _idmap_to_json(self.user_ids),
            "item_ids": _idmap_to_json(self.item_ids),
            "items": _table_to_b64(self.items),
            "users": _table_to_b64(self.users),
        }
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _PARQUET_META_KEY: json.dumps(meta).encode()}
        )
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))

    @classmethod
    def read_parquet(cls, path: str | os.PathLike) -> LoggedInteractions:
        """Read a file written by `to_parquet`; raises DataError for any other Parquet file."""
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
        _check_stored_frame(
            frame, feedback_columns, n_users=len(user_ids), n_items=len(item_ids), source=where
        )
        return cls(
            frame,
            user_ids=user_ids,
            item_ids=item_ids,
            feedback_columns=feedback_columns,
            items=_table_from_b64(meta["items"], n=len(item_ids), where=f"{where}: metadata 'items'"),
            users=_table_from_b64(meta["users"], n=len(user_ids), where=f"{where}: metadata 'users'"),
            name=meta["name"],
        )


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
            raise DataError(f"{where}: token {i} is {_shown(t)} ({type(t).__name__}), not an id")
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
