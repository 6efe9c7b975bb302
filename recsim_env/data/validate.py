"""Validation and conversion of raw table columns for `LoggedInteractions`: ids, timestamps, real values and
side tables, each refusal a `DataError` naming the source, the column and the first offending row.

Row numbers in error messages are 1-based data rows: the first row after the header is row 1.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from recsim_env.checks import describe
from recsim_env.data.idmap import IdMap, as_token_array
from recsim_env.errors import DataError

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
SECONDS_PER_DAY = 86_400.0
"""Timestamps are seconds; return gaps and session gaps are reported in days."""

# Probabilities of the logging policy: of the whole slate shown, and of the item at its position given
# the items above it (equal for one-item slates).
PROPENSITY_COLUMNS = ("propensity", "position_propensity")
OPTIONAL_INT_COLUMNS = ("session_id", "position", "slate_id")
_INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_MIN = int(np.iinfo(np.int64).min)
_INT_TEXT = re.compile(r"-?[0-9]{1,18}")
_EXACT_FLOAT_INT = 2.0**53  # floats at or above this are not exact integers


def first_bad_row(mask: np.ndarray) -> int:
    """1-based data row of the first True in `mask`."""
    return int(np.flatnonzero(mask)[0]) + 1


def _where(source: str, column: str, row: int | None = None) -> str:
    loc = f"{source}: column {column!r}"
    return loc if row is None else f"{loc}, row {row} (1-based data row)"


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
        message = why.format(value=describe(value))
    else:
        message = f"{why}: {describe(value)} ({type(value).__name__})"
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
