"""`LoggedInteractions`: the one table type for every source of logs (files, the world, simulators).

Row numbers in error messages are 1-based data rows: the first row after the header is row 1.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsim_env.data.idmap import IdMap, as_token_array
from recsim_env.errors import DataError
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


def _require_no_nan(values: pd.Series, *, source: str, column: str) -> None:
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(f"{_where(source, column, first_bad_row(missing))}: missing value (NaN)")


def _to_int64(values: pd.Series, *, source: str, column: str) -> np.ndarray:
    _require_no_nan(values, source=source, column=column)
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numeric) | (numeric != np.round(numeric))
    if bad.any():
        row = first_bad_row(bad)
        raise DataError(f"{_where(source, column, row)}: expected an integer, got {values.iloc[row - 1]!r}")
    return values.to_numpy(dtype=np.int64) if values.dtype.kind in "iu" else numeric.astype(np.int64)


def parse_timestamps(
    values: pd.Series, *, source: str, column: str, timestamp_format: str | None = None
) -> np.ndarray:
    """Float64 seconds from numeric seconds, datetimes, or date strings (ISO-8601 or `timestamp_format`).

    A text column whose first value is a number is read as seconds; naive date strings are taken as UTC.
    """
    _require_no_nan(values, source=source, column=column)
    if values.dtype.kind in "iuf" and timestamp_format is None:
        out = values.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(out)
        if bad.any():
            raise DataError(f"{_where(source, column, first_bad_row(bad))}: non-finite timestamp")
        return out
    if values.dtype.kind == "M" or isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values
    else:
        text = values.astype(str)
        if timestamp_format is None:
            # A column whose first value is a number holds seconds (a text column read from a messy file);
            # then every value must be a number.
            numeric = pd.to_numeric(text, errors="coerce")
            if pd.notna(numeric.iloc[0]):
                bad = numeric.isna().to_numpy()
                if bad.any():
                    row = first_bad_row(bad)
                    raise DataError(
                        f"{_where(source, column, row)}: cannot parse timestamp {text.iloc[row - 1]!r} (seconds)"
                    )
                return parse_timestamps(numeric, source=source, column=column)
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        else:
            parsed = pd.to_datetime(text, format=timestamp_format, errors="coerce", utc=True)
        bad = parsed.isna().to_numpy()
        if bad.any():
            row = first_bad_row(bad)
            raise DataError(f"{_where(source, column, row)}: cannot parse timestamp {text.iloc[row - 1]!r}")
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
    if id_col not in table.columns:
        raise DataError(f"{_where(source + f' ({what} table)', id_col)}: missing column")
    _require_no_nan(table[id_col], source=f"{source} ({what} table)", column=id_col)
    dup = table[id_col].duplicated().to_numpy()
    if dup.any():
        row = first_bad_row(dup)
        raise DataError(
            f"{_where(source + f' ({what} table)', id_col, row)}: duplicate id {table[id_col].iloc[row - 1]!r}"
        )
    lookup = pd.Index(ids.tokens, dtype=ids.tokens.dtype)
    raw = table[id_col].to_numpy()
    if ids.tokens.dtype == np.int64 and raw.dtype.kind not in "iu":
        raw = pd.to_numeric(table[id_col], errors="coerce").to_numpy()
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
        if len(df) == 0:
            raise DataError(f"{source}: no data rows")
        for col in (user_col, item_col, time_col):
            if col not in df.columns:
                raise DataError(
                    f"{_where(source, col)}: missing column (columns present: {list(df.columns)})"
                )
        id_cols = {user_col, item_col, time_col}
        if feedback_cols is None:
            feedback_cols = [
                c
                for c in df.columns
                if c not in id_cols
                and c not in RESERVED_COLUMNS
                and (pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]))
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

        for col in (user_col, item_col):
            _require_no_nan(df[col], source=source, column=col)
        timestamps = parse_timestamps(
            df[time_col], source=source, column=time_col, timestamp_format=timestamp_format
        )

        user_map = IdMap.from_tokens(df[user_col])
        if item_catalogue is not None:
            item_map = IdMap.from_tokens(item_catalogue)
        elif items is not None and item_col in items.columns:
            item_map = IdMap.from_tokens(
                np.concatenate([_tokens(df[item_col]), _tokens(items[item_col].dropna())])
            )
        else:
            item_map = IdMap.from_tokens(df[item_col])
        user_idx = user_map.to_index(df[user_col])
        try:
            item_idx = item_map.to_index(df[item_col])
        except DataError:
            known = pd.Index(item_map.tokens, dtype=item_map.tokens.dtype).get_indexer(_tokens(df[item_col]))
            row = first_bad_row(known < 0)
            raise DataError(
                f"{_where(source, item_col, row)}: item {df[item_col].iloc[row - 1]!r} is not in the item catalogue"
            ) from None

        columns: dict[str, np.ndarray] = {"user_id": user_idx, "item_id": item_idx, "timestamp": timestamps}
        for col in feedback_cols:
            values = df[col]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                coerced = pd.to_numeric(values, errors="coerce")
                bad = (coerced.isna() & values.notna()).to_numpy()
                if bad.any():
                    row = first_bad_row(bad)
                    raise DataError(f"{_where(source, col, row)}: not a number: {values.iloc[row - 1]!r}")
                values = coerced
            columns[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        for col in OPTIONAL_INT_COLUMNS:
            if col in df.columns:
                columns[col] = _to_int64(df[col], source=source, column=col)
        for col in PROPENSITY_COLUMNS:
            if col not in df.columns:
                continue
            raw = df[col]
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~((values > 0.0) & (values <= 1.0))
            if bad.any():
                row = first_bad_row(bad)
                raise DataError(f"{_where(source, col, row)}: {col} {raw.iloc[row - 1]!r} is outside (0, 1]")
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
        path = Path(path)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as err:
            raise DataError(f"{path}: cannot read Parquet file ({err})") from err
        raw = (table.schema.metadata or {}).get(_PARQUET_META_KEY)
        if raw is None:
            raise DataError(
                f"{path}: not written by LoggedInteractions.to_parquet (no {_PARQUET_META_KEY.decode()})"
            )
        meta = json.loads(raw)
        if meta.get("version") != _PARQUET_FORMAT_VERSION:
            raise DataError(f"{path}: unsupported format version {meta.get('version')!r}")
        return cls(
            table.to_pandas(),
            user_ids=_idmap_from_json(meta["user_ids"]),
            item_ids=_idmap_from_json(meta["item_ids"]),
            feedback_columns=meta["feedback_columns"],
            items=_table_from_b64(meta["items"]),
            users=_table_from_b64(meta["users"]),
            name=meta["name"],
        )


def has_logged_interactions_metadata(path: str | os.PathLike) -> bool:
    """Whether a Parquet file was written by `LoggedInteractions.to_parquet`."""
    try:
        return _PARQUET_META_KEY in (pq.read_schema(path).metadata or {})
    except (OSError, pa.ArrowException):
        return False


def _tokens(values: pd.Series) -> np.ndarray:
    return as_token_array(values)


def _idmap_to_json(ids: IdMap) -> dict:
    return {"dtype": "int64" if ids.tokens.dtype == np.int64 else "object", "tokens": ids.tokens.tolist()}


def _idmap_from_json(d: dict) -> IdMap:
    if d["dtype"] == "int64":
        return IdMap(np.asarray(d["tokens"], dtype=np.int64))
    return IdMap(np.array(d["tokens"], dtype=object))


def _table_to_b64(table: pd.DataFrame | None) -> str | None:
    if table is None:
        return None
    buf = io.BytesIO()
    table.to_parquet(buf, index=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table_from_b64(text: str | None) -> pd.DataFrame | None:
    if text is None:
        return None
    return pd.read_parquet(io.BytesIO(base64.b64decode(text)))
