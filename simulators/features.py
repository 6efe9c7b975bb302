"""User and item features of a learned simulator: how a side table (users or items) becomes the numbers
the model reads.

Numeric columns are standardised, low-cardinality categorical ones one-hot, token sequences (genres)
multi-hot; identifiers (`*_id`) and high-cardinality columns (such as zip codes or titles) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_CATEGORIES = 32
"""A categorical column with more distinct values (or tokens) than this (e.g. a zip code, a title) is left out."""
NUMERIC_SHARE = 0.99
"""A column is numeric when at least this share of its present values parse as numbers; the others count as
missing (MovieLens has two release years "unkonwn" and "V" among 1,682; its zip codes, 2% letters, stay text)."""


@dataclass(frozen=True)
class FeatureSpec:
    """How a side table (users or items) becomes the `[n, P]` float32 features a simulator reads (saved in
    the schema).

    Rules, per column (columns named `*_id` are identifiers, not features):

    - cells holding lists of tokens: multi-hot, one feature per token (at most `MAX_CATEGORIES`);
    - integer dtype with at most `MAX_CATEGORIES` distinct values (codes such as an item's category):
      one-hot (whole numbers held as floats or text stay numeric);
    - otherwise numeric (at least `NUMERIC_SHARE` of the present values parse as finite numbers; dates
      count as seconds, booleans as 0 / 1): standardised, a missing, unparsable or infinite value
      becoming 0, the mean;
    - text with several space-separated tokens in some value, fewer distinct tokens than values and at
      most `MAX_CATEGORIES` of them (RecBole's `token_seq`, such as MovieLens genres "Action Comedy"):
      multi-hot, one feature per token;
    - other text with at most `MAX_CATEGORIES` values (including names with a space, "health care"):
      one-hot, an all-zero row for a missing or unseen value;
    - anything else is left out.
    """

    numeric: tuple[tuple[str, float, float], ...] = ()
    """(column, mean, std) of each numeric column."""
    categorical: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(column, its categories in one-hot order) of each categorical column."""
    token_sets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(column, its tokens in multi-hot order) of each token-sequence column."""

    @property
    def names(self) -> tuple[str, ...]:
        """One name per feature: the numeric columns, `column=value` per category, `column:token` per token."""
        return (
            tuple(c for c, _, _ in self.numeric)
            + tuple(f"{c}={v}" for c, values in self.categorical for v in values)
            + tuple(f"{c}:{t}" for c, tokens in self.token_sets for t in tokens)
        )

    @property
    def width(self) -> int:
        return len(self.names)

    @classmethod
    def fit(cls, table: pd.DataFrame | None) -> FeatureSpec:
        """The spec of a side table (`LoggedInteractions.users` or `.items`); empty without one."""
        if table is None:
            return cls()
        numeric, categorical, token_sets = [], [], []
        for column in table.columns:
            if str(column).endswith("_id"):
                continue
            values = table[column]
            present = values.notna().to_numpy()
            if not present.any():
                continue
            cells = values[present]
            token_lists = [_tokens(v) if _is_list(v) else None for v in cells]
            if any(t is not None for t in token_lists):  # list-valued cells: tokens as given
                tokens = sorted({t for row in token_lists if row is not None for t in row})
                if all(t is not None for t in token_lists) and 0 < len(tokens) <= MAX_CATEGORIES:
                    token_sets.append((str(column), tuple(tokens)))
                continue
            text = cells.astype(str)
            categories = sorted(text.unique())
            if pd.api.types.is_integer_dtype(values.dtype) and len(categories) <= MAX_CATEGORIES:
                codes = np.unique(cells.to_numpy().astype(np.int64))
                categorical.append((str(column), tuple(str(v) for v in codes)))
                continue
            x = _as_number(values)
            if np.isfinite(x[present]).mean() >= NUMERIC_SHARE:
                std = float(np.nanstd(x))
                numeric.append((str(column), float(np.nanmean(x)), std if std > 0 else 1.0))
                continue
            split = [row.split() for row in text]
            tokens = sorted({t for row in split for t in row})
            # Several tokens in a value, and fewer tokens than values: a token sequence such as genres
            # ("Action Comedy"), not a category whose name has a space ("health care").
            if any(len(row) > 1 for row in split) and 0 < len(tokens) <= min(MAX_CATEGORIES, len(categories)):
                token_sets.append((str(column), tuple(tokens)))
            elif len(categories) <= MAX_CATEGORIES:
                categorical.append((str(column), tuple(categories)))
        return cls(tuple(numeric), tuple(categorical), tuple(token_sets))

    def encode(self, table: pd.DataFrame | None, n_rows: int) -> np.ndarray:
        """`[n_rows, width]` float32 features of the table's rows, one row per user or item index (zeros
        where it lacks a column)."""
        if table is not None and len(table) != n_rows:
            raise ValueError(
                f"FeatureSpec.encode: the table has {len(table)} rows, expected {n_rows} (one per index)"
            )
        out = np.zeros((n_rows, self.width), dtype=np.float32)
        at = 0
        for column, mean, std in self.numeric:
            if table is not None and column in table.columns:
                out[:, at] = np.nan_to_num((_as_number(table[column]) - mean) / std)
            at += 1
        for column, values in self.categorical:
            if table is not None and column in table.columns:
                index = pd.Index(values).get_indexer(_as_text(table[column]))
                rows = np.flatnonzero(index >= 0)
                out[rows, at + index[rows]] = 1.0
            at += len(values)
        for column, tokens in self.token_sets:
            if table is not None and column in table.columns:
                position = {t: j for j, t in enumerate(tokens)}
                for row, value in enumerate(table[column]):
                    for token in _tokens(value):
                        if token in position:
                            out[row, at + position[token]] = 1.0
            at += len(tokens)
        return out

    def encode_numeric(self, features: np.ndarray) -> np.ndarray:
        """Standardise raw numeric features `[..., len(numeric)]` given in the spec's column order (as an
        environment that shares the data's users table, like the world, observes them)."""
        if self.categorical or self.token_sets:
            raise ValueError(
                "encode_numeric: the spec has categorical or token columns; use `encode` on a users table"
            )
        table = pd.DataFrame(np.asarray(features), columns=[c for c, _, _ in self.numeric])
        return self.encode(table, len(table))

    def to_dict(self) -> dict:
        return {
            "numeric": [list(x) for x in self.numeric],
            "categorical": [[c, list(v)] for c, v in self.categorical],
            "token_sets": [[c, list(v)] for c, v in self.token_sets],
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(
            tuple((c, float(m), float(sd)) for c, m, sd in d.get("numeric", [])),
            tuple((c, tuple(v)) for c, v in d.get("categorical", [])),
            tuple((c, tuple(v)) for c, v in d.get("token_sets", [])),
        )


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, set, np.ndarray))


def _tokens(value) -> list[str]:
    """The tokens of a cell: a text's space-separated words, a list's items; none for anything else."""
    if isinstance(value, str):
        return value.split()
    if _is_list(value):
        return [str(t) for t in value]
    return []


def _as_number(values: pd.Series) -> np.ndarray:
    """A column as float64: datetimes as seconds since 1970, booleans as 0 / 1; missing values, values that
    are not numbers and infinities as NaN."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        x = (values - pd.Timestamp(0, tz=values.dt.tz)).dt.total_seconds()
    elif pd.api.types.is_timedelta64_dtype(values.dtype):
        x = values.dt.total_seconds()
    elif pd.api.types.is_bool_dtype(values.dtype):
        x = values.astype("float64")
    else:
        x = pd.to_numeric(values, errors="coerce")
    x = np.array(x, dtype=np.float64)
    x[~np.isfinite(x)] = np.nan
    return x


def _as_text(values: pd.Series) -> pd.Series:
    """A column's values as the text its categories are stored as (integer codes without a decimal point,
    also when a table being encoded holds them as floats), missing values as NaN."""
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        x = present.to_numpy(np.float64)
        if np.all(np.isfinite(x)) and np.all(x == np.round(x)):
            return present.astype(np.int64).astype(str).reindex(values.index)
    return values.astype(str).where(values.notna())
