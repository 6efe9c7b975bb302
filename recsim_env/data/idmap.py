"""Reversible maps between raw id tokens and contiguous indices."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsim_env.errors import DataError


def as_token_array(tokens: Iterable | np.ndarray | pd.Series) -> np.ndarray:
    """Normalise raw tokens to int64 when they are all integers, else to an object array of Python values."""
    values = tokens.to_numpy() if isinstance(tokens, pd.Series | pd.Index) else tokens
    arr = np.asarray(values) if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
    if arr.dtype.kind == "b":
        raise DataError("IdMap: booleans are not ids")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise DataError(f"IdMap: token {arr.max()} overflows int64")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        # Integer ids that passed through a float column (e.g. read next to a NaN) stay integers.
        if arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        return arr.astype(object)
    obj = arr.astype(object)
    if obj.size and all(isinstance(t, int | np.integer) and not isinstance(t, bool) for t in obj):
        try:
            return obj.astype(np.int64)
        except OverflowError as err:
            raise DataError(f"IdMap: integer token outside int64 ({err})") from None
    return np.array([t.item() if isinstance(t, np.generic) else t for t in obj], dtype=object)


@dataclass(frozen=True, eq=False)
class IdMap:
    """Reversible map between raw id tokens (ints or strings, as in the file) and contiguous indices 0..n-1.

    Attributes:
        tokens: `[n]` raw tokens in index order; int64 when every token is an integer, else an object array.
    """

    tokens: np.ndarray

    def __post_init__(self) -> None:
        tokens = as_token_array(self.tokens)
        index = pd.Index(tokens, dtype=tokens.dtype)
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"IdMap: token {dup!r} appears more than once")
        object.__setattr__(self, "tokens", tokens)

    @functools.cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.tokens, dtype=self.tokens.dtype)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdMap):
            return NotImplemented
        return (
            self.tokens.dtype == other.tokens.dtype
            and len(self) == len(other)
            and bool(np.all(self.tokens == other.tokens))
        )

    def __hash__(self) -> int:
        return hash((len(self), self.tokens.dtype.str))

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.tokens[:3])
        return f"IdMap(n={len(self)}, tokens=[{head}{', ...' if len(self) > 3 else ''}])"

    def to_index(self, tokens) -> np.ndarray:
        """Indices of `tokens`; raises DataError naming the unknown token(s)."""
        if isinstance(tokens, np.ndarray) and tokens.dtype.kind == "i":
            query = np.atleast_1d(tokens).astype(np.int64, copy=False)  # the common case: no per-token loop
        else:
            query = as_token_array(np.atleast_1d(np.asarray(tokens, dtype=object)))
        if self.tokens.dtype == np.int64 and query.dtype != np.int64:
            # Pandas would otherwise match the string "1" to nothing and the int 1 to itself; be explicit.
            positions = np.full(query.shape[0], -1, dtype=np.int64)
        else:
            positions = self._index.get_indexer(query).astype(np.int64)
        unknown = positions < 0
        if unknown.any():
            bad = list(pd.unique(query[unknown]))
            shown = ", ".join(repr(t) for t in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(f"IdMap: unknown token(s) {shown}{more}")
        return positions

    def to_token(self, indices) -> np.ndarray:
        """Raw tokens at `indices`; raises DataError on an index outside 0..n-1."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise DataError(f"IdMap: index out of range 0..{len(self) - 1}")
        return self.tokens[idx]

    @classmethod
    def from_tokens(cls, tokens, *, sort: bool = True) -> IdMap:
        """Map over the unique `tokens`: sorted when `sort` and the tokens are comparable, else first appearance."""
        arr = as_token_array(tokens)
        unique = pd.unique(arr) if arr.dtype == np.int64 else np.array(list(dict.fromkeys(arr)), dtype=object)
        if sort:
            try:
                unique = np.sort(unique, kind="stable")
            except TypeError:  # mixed ints and strings cannot be ordered: keep first appearance
                pass
        return cls(unique)
