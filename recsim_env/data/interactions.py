"""`LoggedInteractions`: the one table type for every source of logs (files, the world, simulators).

Row numbers in error messages are 1-based data rows: the first row after the header is row 1. Column
validation lives in `recsim_env.data.validate`, Parquet persistence in `recsim_env.data.parquet`; their public
names are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq  # noqa: F401  (kept as `interactions.pq`: tests patch `pq.write_table` through it)

from recsim_env.checks import describe
from recsim_env.data.idmap import IdMap
from recsim_env.data.parquet import _PARQUET_META_KEY as _PARQUET_META_KEY
from recsim_env.data.parquet import has_logged_interactions_metadata as has_logged_interactions_metadata
from recsim_env.data.parquet import read_parquet as _read_parquet
from recsim_env.data.parquet import write_parquet as _write_parquet
from recsim_env.data.validate import (
    OPTIONAL_INT_COLUMNS,
    PROPENSITY_COLUMNS,
    RESERVED_COLUMNS,
    _real_values,
    _refuse,
    _side_table,
    _to_int64,
    _where,
    first_bad_row,
    id_tokens,
    parse_timestamps,
)
from recsim_env.errors import ArgumentError, DataError


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

    @classmethod
    def from_counts(
        cls,
        *,
        name: str,
        events_per_user: np.ndarray,
        n_items: int,
        time_start: float,
        time_end: float,
        feedback_columns: Sequence[str],
    ) -> DataStats:
        """The statistics from the events of each user ([n_users] counts) and the time range."""
        active = events_per_user[events_per_user > 0]
        if active.size:
            q = np.quantile(active, [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
            seq = dict(zip(("min", "25%", "50%", "75%", "90%", "max"), map(float, q), strict=True))
            seq["mean"] = float(active.mean())
        else:
            seq = dict.fromkeys(("min", "25%", "50%", "75%", "90%", "max", "mean"), 0.0)
        n_users, n_interactions = len(events_per_user), int(events_per_user.sum())
        cells = n_users * n_items
        return cls(
            name=name,
            n_users=n_users,
            n_items=n_items,
            n_interactions=n_interactions,
            sparsity=1.0 - n_interactions / cells if cells else 1.0,
            sequence_length=seq,
            time_start=time_start,
            time_end=time_end,
            feedback_columns=tuple(feedback_columns),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["feedback_columns"] = list(self.feedback_columns)
        d["time_span_days"] = self.time_span_days
        return d


class IdMapSizes:
    """`n_users` and `n_items` of a class that holds the id maps `user_ids` and `item_ids`: the maps'
    lengths (the item map is the whole catalogue, items nobody interacted with included)."""

    user_ids: IdMap
    item_ids: IdMap

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


class LoggedInteractions(IdMapSizes):
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
                raise ArgumentError(f"{arg}: expected a non-empty string, got {describe(value)}")
        if timestamp_format is not None and not isinstance(timestamp_format, str):
            raise ArgumentError(
                f"timestamp_format: expected a string or None, got {describe(timestamp_format)}"
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

    def _parts(self) -> dict[str, Any]:
        """Everything but the frame, as keywords: the id maps, feedback columns, side tables and name (what
        `__init__` takes beside the frame, what `to_parquet` stores and `read_parquet` returns)."""
        return {
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "feedback_columns": self.feedback_columns,
            "items": self.items,
            "users": self.users,
            "name": self.name,
        }

    def _with_frame(self, frame: pd.DataFrame) -> LoggedInteractions:
        """Same maps, side tables and name over a subset of the rows (kept in order)."""
        return LoggedInteractions(frame.reset_index(drop=True), **self._parts())

    # ------------------------------------------------------------------ views
    @property
    def n_interactions(self) -> int:
        return len(self.frame)

    def __len__(self) -> int:
        return self.n_interactions

    def require_feedback(self, needed_by: str) -> tuple[str, ...]:
        """The feedback columns, for a consumer (`needed_by`, e.g. "DT4IER needs an immediate reward signal")
        that cannot work without interactions and feedback; else a `DataError` naming the data set."""
        if self.n_interactions == 0:
            raise DataError(f"{self.name}: no interactions")
        if not self.feedback_columns:
            raise DataError(f"{self.name}: no feedback columns; {needed_by}")
        return tuple(self.feedback_columns)

    def require_single_item_slates(self, needed_by: str) -> None:
        """A `DataError` naming the first row whose `position` is non-zero, for a consumer (`needed_by`, e.g.
        "DT4IER") that reads each row as one recommendation of one item."""
        if "position" not in self.frame.columns:
            return
        nonzero = np.flatnonzero(self.frame["position"].to_numpy() != 0)
        if len(nonzero):
            raise DataError(
                f"{self.name}: column 'position' is non-zero at row {int(nonzero[0]) + 1}; "
                f"{needed_by} needs one-item slates"
            )

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
        ts = self.frame["timestamp"].to_numpy()
        return DataStats.from_counts(
            name=self.name,
            events_per_user=np.bincount(self.frame["user_id"].to_numpy(), minlength=self.n_users),
            n_items=self.n_items,
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
        _write_parquet(path, self.frame, **self._parts())

    @classmethod
    def read_parquet(cls, path: str | os.PathLike) -> LoggedInteractions:
        """Read a file written by `to_parquet`; raises DataError for any other Parquet file."""
        frame, parts = _read_parquet(path)
        return cls(frame, **parts)

    @classmethod
    def from_minari(cls, dataset: Any) -> LoggedInteractions:
        """Read a Minari dataset written by `seqrec world log --minari-id` (an id or a `MinariDataset`).

        Needs the `minari` extra; see `recsim_env.data.minari.minari_frame` for the rows it yields.
        """
        from recsim_env.data.minari import minari_frame

        frame, kwargs = minari_frame(dataset)
        return cls.from_frame(frame, **kwargs)
