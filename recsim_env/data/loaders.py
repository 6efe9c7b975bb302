"""Loaders from files to `LoggedInteractions`: RecBole atomic files, MovieLens layouts, generic CSV/Parquet.

Every loader raises `DataError` naming the file, the column and the first offending 1-based data row (the first
row after any header is row 1).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsim_env.data.checks import dataset_name_argument
from recsim_env.data.interactions import (
    RESERVED_COLUMNS,
    DataStats,
    LoggedInteractions,
    first_bad_row,
    has_logged_interactions_metadata,
)
from recsim_env.data.parquet import read_parquet_summary
from recsim_env.errors import ArgumentError, DataError

RECBOLE_TYPES = ("token", "float", "token_seq", "float_seq")
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
MOVIELENS_RATING_FILES = ("u.data", "ratings.dat", "ratings.csv")
_INT_TOKEN = r"-?(?:0|[1-9][0-9]*)"
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file") from err
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path}: empty file (no data rows)") from err
    except (pd.errors.ParserError, UnicodeError, ValueError, OverflowError, csv.Error) as err:
        raise DataError(f"{path}: cannot parse ({err})") from err
    except OSError as err:  # a directory, no permission, an I/O error
        raise DataError(f"{path}: cannot read ({err})") from err


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read Parquet file ({type(err).__name__}: {err})") from None


def _check_parquet_schema(path: Path, columns: dict[str, str]) -> None:
    """Refuse mapped Parquet columns whose type can hold no id, timestamp or number (lists, structs, maps,
    binary), naming the file and the column; `columns` maps a column to what it must hold."""
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read Parquet file ({type(err).__name__}: {err})") from None
    for col, role in columns.items():
        if col not in schema.names:
            continue
        kind = schema.field(col).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        nested = pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
        if nested or pa.types.is_fixed_size_binary(kind) or pa.types.is_null(kind):
            raise DataError(f"{path}: column {col!r}: Parquet type {kind} cannot hold {role}")
        if (
            role != "ids"
            and role != "timestamps"
            and not (
                pa.types.is_integer(kind)
                or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind)
                or pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
            )
        ):
            raise DataError(f"{path}: column {col!r}: Parquet type {kind} cannot hold {role}")


def _ints_if_all_integer(frames: list[tuple[pd.DataFrame, str]]) -> None:
    """Turn string id columns into int64 in place when every value in all of them is a plain integer."""
    cols = [df[c] for df, c in frames if c in df.columns]
    if not cols or not all(s.dtype.kind in "OUT" or pd.api.types.is_string_dtype(s) for s in cols):
        return
    for s in cols:
        text = s.dropna().astype(str)
        if not text.str.fullmatch(_INT_TOKEN).all():
            return
        long = text[text.str.len() >= 19]  # only these can overflow int64: keep the column as strings then
        if any(not _INT64_MIN <= int(t) <= _INT64_MAX for t in long):
            return
    for df, c in frames:
        if c in df.columns and df[c].notna().all():
            df[c] = df[c].astype(np.int64)


def _path_argument(value: object, name: str) -> Path:
    """`value` as a Path; non-paths and paths holding a NUL byte are refused with ArgumentError."""
    if not isinstance(value, str | os.PathLike):
        raise ArgumentError(f"{name}: expected a path, got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ArgumentError(f"{name}: expected a non-empty path without NUL bytes, got {text!r}")
    return Path(text)


# ---------------------------------------------------------------------------------------------- RecBole
def _read_recbole_file(path: Path) -> pd.DataFrame:
    """Read one RecBole atomic file (tab-separated, header `name:type`): token/token_seq/float_seq stay strings,
    float columns become float64."""
    raw = _read_csv(
        path,
        sep="\t",
        dtype=str,
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        na_values=[""],
        encoding="utf-8",
    )
    names, types = [], []
    for header in raw.columns:
        name, sep, kind = str(header).partition(":")
        if not sep or kind not in RECBOLE_TYPES:
            raise DataError(
                f"{path}: column {header!r}: header tokens must be `name:type` with type in {RECBOLE_TYPES}"
            )
        names.append(name)
        types.append(kind)
    raw.columns = names
    if len(raw) == 0:
        raise DataError(f"{path}: empty file (no data rows)")
    for name, kind in zip(names, types, strict=True):
        if kind == "float":
            values = pd.to_numeric(raw[name], errors="coerce")
            bad = (values.isna() & raw[name].notna()).to_numpy()
            if bad.any():
                row = first_bad_row(bad)
                raise DataError(
                    f"{path}: column {name!r}, row {row} (1-based data row): not a number: {raw[name].iloc[row - 1]!r}"
                )
            raw[name] = values.astype(np.float64)
    return raw


def load_recbole(path: str | os.PathLike, *, dataset_name: str | None = None) -> LoggedInteractions:
    """Load RecBole atomic files: a directory holding `<name>.inter` (+ `<name>.item`, `<name>.user`), or the
    `.inter` file itself. Side tables keep their raw columns (token_seq values stay space-separated strings).

    The interaction file must have `user_id`, `item_id` and `timestamp` columns; every other float column is
    feedback (e.g. `rating`).
    """
    path = _path_argument(path, "path")
    if dataset_name is not None:
        dataset_name_argument(dataset_name, "dataset_name")
    if path.is_dir():
        if dataset_name is None:
            inters = sorted(path.glob("*.inter"))
            if len(inters) != 1:
                raise DataError(
                    f"{path}: expected exactly one *.inter file, found {[p.name for p in inters]}; pass dataset_name"
                )
            inter = inters[0]
        else:
            inter = path / f"{dataset_name}.inter"
    else:
        inter = path
    if not inter.is_file():
        raise DataError(f"{inter}: no such file")
    name = dataset_name or inter.stem
    frame = _read_recbole_file(inter)
    item_path, user_path = inter.with_suffix(".item"), inter.with_suffix(".user")
    items = _read_recbole_file(item_path) if item_path.is_file() else None
    users = _read_recbole_file(user_path) if user_path.is_file() else None
    _ints_if_all_integer([(frame, "user_id")] + ([(users, "user_id")] if users is not None else []))
    _ints_if_all_integer([(frame, "item_id")] + ([(items, "item_id")] if items is not None else []))
    feedback = [c for c in frame.columns if c not in RESERVED_COLUMNS and frame[c].dtype == np.float64]
    return LoggedInteractions.from_frame(
        frame, feedback_cols=feedback, items=items, users=users, name=name, source=str(inter)
    )


# ---------------------------------------------------------------------------------------------- MovieLens
def _movielens_side_table(path: Path, sep: str, names: tuple[str, ...], encoding: str) -> pd.DataFrame:
    engine = "python" if len(sep) > 1 else "c"
    table = _read_csv(
        path, sep=sep, header=None, encoding=encoding, engine=engine, dtype=str, quoting=csv.QUOTE_NONE
    )
    table.columns = list(names[: table.shape[1]]) + [f"column_{i}" for i in range(len(names), table.shape[1])]
    return table


def load_movielens(path: str | os.PathLike) -> LoggedInteractions:
    """Load a MovieLens release from its directory or its ratings file.

    Layouts: ml-100k `u.data` (tab-separated `user item rating timestamp`, no header; + `u.item`, `u.user`,
    latin-1, '|'-separated), ml-1m `ratings.dat` (`::`-separated; + `movies.dat`, `users.dat`), ml-20m/25m
    `ratings.csv` (header `userId,movieId,rating,timestamp`; + `movies.csv`). The data set is named after the
    directory. Feedback is `("rating",)`.
    """
    path = _path_argument(path, "path")
    if path.is_dir():
        found = [path / f for f in MOVIELENS_RATING_FILES if (path / f).is_file()]
        if not found:
            raise DataError(f"{path}: unknown MovieLens layout: none of {MOVIELENS_RATING_FILES} found")
        ratings = found[0]
    else:
        ratings = path
    if not ratings.is_file():
        raise DataError(f"{ratings}: no such file")
    folder = ratings.parent
    items = users = None
    names = ("user_id", "item_id", "rating", "timestamp")
    if ratings.name == "u.data":
        frame = _read_csv(ratings, sep="\t", header=None, names=list(names))
        if (folder / "u.item").is_file():
            items = _movielens_side_table(
                folder / "u.item",
                "|",
                ("item_id", "title", "release_date", "video_release_date", "imdb_url", *MOVIELENS_GENRES),
                "latin-1",
            )
        if (folder / "u.user").is_file():
            users = _movielens_side_table(
                folder / "u.user", "|", ("user_id", "age", "gender", "occupation", "zip_code"), "latin-1"
            )
    elif ratings.name == "ratings.dat":
        # '::' read as ':' keeps pandas' C parser (fast); the numeric fields sit at even positions.
        frame = _read_csv(ratings, sep=":", header=None, usecols=[0, 2, 4, 6], names=[0, 1, 2, 3, 4, 5, 6])
        frame.columns = list(names)
        if (folder / "movies.dat").is_file():
            items = _movielens_side_table(
                folder / "movies.dat", "::", ("item_id", "title", "genres"), "latin-1"
            )
        if (folder / "users.dat").is_file():
            users = _movielens_side_table(
                folder / "users.dat", "::", ("user_id", "gender", "age", "occupation", "zip_code"), "latin-1"
            )
    elif ratings.name == "ratings.csv":
        frame = _read_csv(ratings)
        missing = [c for c in ("userId", "movieId", "rating", "timestamp") if c not in frame.columns]
        if missing:
            raise DataError(
                f"{ratings}: column {missing[0]!r}: missing column (columns present: {list(frame.columns)})"
            )
        frame = frame.rename(columns={"userId": "user_id", "movieId": "item_id"})
        if (folder / "movies.csv").is_file():
            items = _read_csv(folder / "movies.csv").rename(columns={"movieId": "item_id"})
    else:
        raise DataError(f"{ratings}: unknown MovieLens layout: expected one of {MOVIELENS_RATING_FILES}")
    for table, col in ((items, "item_id"), (users, "user_id")):
        if table is not None and col in table.columns:
            _ints_if_all_integer([(table, col)])
    return LoggedInteractions.from_frame(
        frame,
        feedback_cols=("rating",),
        items=items,
        users=users,
        name=folder.resolve().name,
        source=str(ratings),
    )


# ---------------------------------------------------------------------------------------------- generic tables
@dataclass(frozen=True, kw_only=True)
class ColumnMapping:
    """Which file columns are user / item / timestamp / feedback, and optionally session, position, slate,
    propensity."""

    user: str = "user_id"
    """Raw user id column."""
    item: str = "item_id"
    """Raw item id column."""
    timestamp: str = "timestamp"
    """Timestamp column: numeric seconds or date strings."""
    feedback: tuple[str, ...] | None = None
    """Feedback columns; None takes all remaining numeric columns."""
    session: str | None = None
    """Session id column (becomes `session_id`)."""
    position: str | None = None
    """Slate position column (becomes `position`)."""
    slate: str | None = None
    """Slate id column (becomes `slate_id`)."""
    propensity: str | None = None
    """Logging propensity column (becomes `propensity`, must lie in (0, 1])."""
    timestamp_format: str | None = None
    """strftime format of string timestamps; None: numeric seconds or ISO-8601 strings parsed by pandas."""

    def __post_init__(self) -> None:
        if self.feedback is not None:
            if isinstance(self.feedback, str) or not isinstance(self.feedback, list | tuple):
                raise ArgumentError(
                    f"ColumnMapping.feedback: expected a tuple of column names, got {type(self.feedback).__name__}"
                )
            if not all(isinstance(c, str) and c for c in self.feedback):
                raise ArgumentError("ColumnMapping.feedback: expected non-empty column names")
            object.__setattr__(self, "feedback", tuple(self.feedback))
        for field in ("user", "item", "timestamp"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise ArgumentError(f"ColumnMapping.{field}: expected a non-empty column name")
        for field in ("session", "position", "slate", "propensity", "timestamp_format"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise ArgumentError(f"ColumnMapping.{field}: expected a non-empty string or None")
        optional = [c for c in (self.session, self.position, self.slate, self.propensity) if c is not None]
        mapped = [self.user, self.item, self.timestamp, *(self.feedback or ()), *optional]
        if len(set(mapped)) != len(mapped):
            repeated = next(c for c in mapped if mapped.count(c) > 1)
            raise ArgumentError(f"ColumnMapping: column {repeated!r} is mapped more than once")

    def optional_columns(self) -> dict[str, str]:
        """File column -> reserved column name for the optional columns that are mapped."""
        pairs = {
            self.session: "session_id",
            self.position: "position",
            self.slate: "slate_id",
            self.propensity: "propensity",
        }
        return {k: v for k, v in pairs.items() if k is not None}


def load_table(
    path: str | os.PathLike, mapping: ColumnMapping = ColumnMapping(), *, name: str | None = None
) -> LoggedInteractions:
    """Load a `.csv`, `.tsv` or `.parquet` event table whose columns are named by `mapping`."""
    path = _path_argument(path, "path")
    if not isinstance(mapping, ColumnMapping):
        raise ArgumentError(f"mapping: expected a ColumnMapping, got {type(mapping).__name__}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ArgumentError(f"name: expected a non-empty string or None, got {name!r}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = _read_csv(path)
    elif suffix == ".tsv":
        frame = _read_csv(path, sep="\t")
    elif suffix == ".parquet":
        roles = {mapping.user: "ids", mapping.item: "ids", mapping.timestamp: "timestamps"}
        roles.update({c: "numbers" for c in (*(mapping.feedback or ()), *mapping.optional_columns())})
        _check_parquet_schema(path, roles)
        frame = _read_parquet(path)
    else:
        raise DataError(f"{path}: unknown file layout: expected .csv, .tsv or .parquet")
    wanted = [
        mapping.user,
        mapping.item,
        mapping.timestamp,
        *(mapping.feedback or ()),
        *mapping.optional_columns(),
    ]
    for col in wanted:
        if col not in frame.columns:
            raise DataError(
                f"{path}: column {col!r}: bad mapping, column not in file (columns present: {list(frame.columns)})"
            )
    renames = mapping.optional_columns()
    # A reserved name that is not mapped must not sneak in as an optional column by accident.
    frame = frame.drop(columns=[c for c in renames.values() if c in frame.columns and c not in renames])
    frame = frame.rename(columns=renames)
    return LoggedInteractions.from_frame(
        frame,
        user_col=mapping.user,
        item_col=mapping.item,
        time_col=mapping.timestamp,
        feedback_cols=mapping.feedback,
        name=name or path.stem,
        source=str(path),
        timestamp_format=mapping.timestamp_format,
    )


# ---------------------------------------------------------------------------------------------- dispatch
def load(path_or_name: str | os.PathLike, **kwargs) -> LoggedInteractions:
    """Load by registered name or by path, choosing the loader from the layout.

    A registered name (`ml-100k`, `ml-1m`, `ml-20m`) is resolved in `data_dir()` (run `seqrec data fetch NAME`
    first); a directory with `*.inter` -> `load_recbole`; with `u.data` / `ratings.dat` / `ratings.csv` ->
    `load_movielens`; a `.parquet` written by `to_parquet` -> `read_parquet`; other `.csv`/`.tsv`/`.parquet` ->
    `load_table` (`kwargs` go to the chosen loader, e.g. `mapping=`).
    """
    from recsim_env.data.datasets import DATASETS, data_dir

    path = _path_argument(path_or_name, "path_or_name")
    text = os.fspath(path_or_name)
    if text in DATASETS and not path.exists():
        folder = data_dir() / text
        if not folder.is_dir():
            raise DataError(f"data set {text!r} not found in {folder}; run `seqrec data fetch {text}` first")
        return load_movielens(folder, **kwargs)
    if path.is_dir():
        if any(path.glob("*.inter")):
            return load_recbole(path, **kwargs)
        if any((path / f).is_file() for f in MOVIELENS_RATING_FILES):
            return load_movielens(path, **kwargs)
        raise DataError(
            f"{path}: unknown file layout: no *.inter, u.data, ratings.dat or ratings.csv "
            f"(found {sorted(p.name for p in path.iterdir())[:10]})"
        )
    if not path.exists():
        known = ", ".join(DATASETS)
        raise DataError(f"{path}: no such file or directory (and not a registered data set: {known})")
    if path.suffix == ".inter":
        return load_recbole(path, **kwargs)
    if path.name in ("u.data", "ratings.dat"):
        return load_movielens(path, **kwargs)
    if path.name == "ratings.csv" and not kwargs:
        header = _read_csv(path, nrows=0).columns
        if {"userId", "movieId"} <= set(header):
            return load_movielens(path)
    if path.suffix.lower() == ".parquet" and has_logged_interactions_metadata(path):
        return LoggedInteractions.read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv", ".parquet"):
        return load_table(path, **kwargs)
    raise DataError(
        f"{path}: unknown file layout: expected a RecBole, MovieLens, .csv, .tsv or .parquet file"
    )


def summarize(path_or_name: str | os.PathLike) -> DataStats:
    """The `DataStats` of a data set (what `seqrec data info` prints).

    A `.parquet` written by `to_parquet` is read by row groups, two columns at a time
    (`recsim_env.data.parquet.read_parquet_summary`): memory stays near the metadata and one counter
    per user, whatever the number of rows. Anything else is loaded whole (`load`), then summarised.
    """
    path = _path_argument(path_or_name, "path_or_name")
    if path.suffix.lower() == ".parquet" and path.is_file() and has_logged_interactions_metadata(path):
        summary = read_parquet_summary(path)
        return DataStats.from_counts(
            name=summary["name"],
            events_per_user=summary["events_per_user"],
            n_items=summary["n_items"],
            time_start=summary["time_start"],
            time_end=summary["time_end"],
            feedback_columns=summary["feedback_columns"],
        )
    return load(path_or_name).stats()
