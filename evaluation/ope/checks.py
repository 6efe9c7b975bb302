"""Checks of estimator arguments: scalars (hyperparameters) and arrays (logged data), all vectorised.

A bad hyperparameter is an `ArgumentError` whose message starts with its name (`alpha: must be < 1, got
1.5`); bad logged data is a `FeedbackError` (both an `ArgumentError` and a `DataError`) naming the argument,
the first bad index, its value and where it sits, 0-based: `pscore[3] = 0.0 is outside (0, 1] (row 3,
0-based)`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from recsim_env.checks import check_integer, check_real, describe
from recsim_env.errors import ArgumentError, DataError

ACTION_DIST_ATOL = 1e-4
"""How far a row of `action_dist` may sum from 1 (float32 softmax over thousands of items drifts ~1e-6)."""
MIN_PSCORE = 1e-100
"""Smallest propensity accepted: below it an importance weight (up to 1 / pscore) could overflow float64."""
MAX_ABS_VALUE = 1e100
"""Largest magnitude accepted for a reward or a predicted reward, so weighted sums cannot overflow float64."""
MAX_BOOTSTRAP_SAMPLES = 1_000_000
"""Most bootstrap replicates one interval may ask for (each recomputes the estimator on n resampled units)."""


class FeedbackError(ArgumentError, DataError):
    """Bad logged data handed to an estimator as an argument.

    Both an `ArgumentError` (the message starts with the argument's name) and a `DataError` (the values are
    logged data), so callers guarding either, or `ValueError`, catch it.
    """


# ---------------------------------------------------------------------------------------- scalar arguments
def check_random_state(random_state: object) -> Any:
    """A seed for `np.random.default_rng`: an int >= 0, None, or a `np.random.Generator`."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, bool | np.bool_) or not isinstance(random_state, numbers.Integral):
        raise ArgumentError(
            f"random_state: expected an int seed, None or a numpy Generator, got "
            f"{type(random_state).__name__} {describe(random_state)}"
        )
    return check_integer("random_state", random_state, low=0)


def check_bootstrap_arguments(alpha: object, n_bootstrap_samples: object, random_state: object) -> None:
    """Refuse a bad `alpha` (outside (0, 1)), `n_bootstrap_samples` (outside [1, MAX_BOOTSTRAP_SAMPLES]) or
    `random_state` before any data is touched."""
    check_real("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    check_integer("n_bootstrap_samples", n_bootstrap_samples, low=1, high=MAX_BOOTSTRAP_SAMPLES)
    check_random_state(random_state)


# ----------------------------------------------------------------------------------------- array arguments
Where = Callable[[tuple[int, ...]], str]


def first_index(bad: np.ndarray) -> tuple[int, ...]:
    """Index of the first True of `bad` in C order."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))


def _fmt_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def row_where(index: tuple[int, ...]) -> str:
    """`(row i, 0-based)`: where a bad entry of a bandit array sits."""
    return f"(row {index[0]}, 0-based)"


def refuse_any(
    name: str, arr: np.ndarray, checks: Sequence[tuple[np.ndarray, str]], where: Where = row_where
) -> None:
    """Raise `FeedbackError` for the first entry (C order) that any `(bad_mask, why)` of `checks` flags.

    The message names `name`, the index, the value, `why` and `where(index)`; the earliest bad entry is
    named whatever its fault.
    """
    first: tuple[int, str] | None = None
    for bad, why in checks:
        if bad.any():
            flat = int(np.argmax(bad.ravel()))
            if first is None or flat < first[0]:
                first = (flat, why)
    if first is not None:
        idx = tuple(int(i) for i in np.unravel_index(first[0], arr.shape))
        raise FeedbackError(f"{name}{_fmt_index(idx)} = {describe(arr[idx])} {first[1]} {where(idx)}")


def _non_numeric(arr: np.ndarray) -> np.ndarray | None:
    """For a string or object array: True where an entry is not a number (None, 'x', ...), when knowable."""
    import pandas as pd

    try:
        flat = pd.to_numeric(pd.Series(arr.ravel(), dtype=object), errors="coerce")
        return flat.isna().to_numpy().reshape(arr.shape)
    except (TypeError, ValueError):
        return None


def numeric_array(
    name: str, value: Any, *, integer: bool = False, allow_bool: bool = False, where: Where = row_where
) -> np.ndarray:
    """`value` as a numeric array: float64, or (with `integer`) its own integer or float dtype for
    `check_indices`. Booleans (unless `allow_bool`), strings, objects, complex numbers and ragged nests are
    refused with `FeedbackError`, naming the first non-numeric entry where it can be found."""
    if value is None:
        raise FeedbackError(f"{name}: expected an array, got None")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise FeedbackError(f"{name}: cannot be read as a numeric array ({err})") from None
    kind = arr.dtype.kind
    if kind == "b":
        if allow_bool:
            return arr.astype(np.float64)
        wanted = "integer indices (bools are not actions or positions)" if integer else "numbers"
        raise FeedbackError(f"{name}: expected {wanted}, got booleans (dtype bool)")
    if kind in "iu" and integer:
        return arr
    if kind in "iuf":
        return arr if integer else arr.astype(np.float64, copy=False)
    detail = ""
    if kind in "OUS" and arr.size:
        bad = _non_numeric(arr)
        if bad is not None and bad.any():
            idx = first_index(bad)
            detail = f"; first non-number {name}{_fmt_index(idx)} = {describe(arr[idx])} {where(idx)}"
    raise FeedbackError(f"{name}: expected a numeric array, got dtype {arr.dtype}{detail}")


def check_indices(
    name: str,
    arr: np.ndarray,
    limit: int,
    range_text: str,
    *,
    alive: np.ndarray | None = None,
    where: Where = row_where,
) -> np.ndarray:
    """Integer indices in `[0, limit)` as int64 (0 where `alive` is False); floats must be integral.

    `arr` comes from `numeric_array(..., integer=True)`; ranges are checked before any cast, so huge values
    cannot wrap around.
    """
    alive = np.ones(arr.shape, dtype=bool) if alive is None else alive
    checks = []
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        checks.append((alive & ~finite, "is not a finite integer"))
        checks.append((alive & finite & (arr != np.round(arr)), "is not an integer"))
    checks.append((alive & ((arr < 0) | (arr >= limit)), f"is outside {range_text}"))
    refuse_any(name, arr, checks, where)
    return np.where(alive, arr, 0).astype(np.int64)


def check_reals(
    name: str,
    arr: np.ndarray,
    *,
    alive: np.ndarray | None = None,
    where: Where = row_where,
    what: str = "value",
) -> None:
    """Refuse non-finite entries and entries beyond `MAX_ABS_VALUE` in magnitude (where `alive`)."""
    if alive is None and np.isfinite(arr).all() and (arr.size == 0 or np.abs(arr).max() <= MAX_ABS_VALUE):
        return  # the common case: one pass, no masks
    alive = np.ones(arr.shape, dtype=bool) if alive is None else alive
    finite = np.isfinite(arr)
    refuse_any(
        name,
        arr,
        [
            (alive & ~finite, f"is not finite (NaN or inf {what})"),
            (alive & finite & (np.abs(arr) > MAX_ABS_VALUE), f"exceeds {MAX_ABS_VALUE:g} in magnitude"),
        ],
        where,
    )


def check_pscores(
    name: str, arr: np.ndarray, *, alive: np.ndarray | None = None, where: Where = row_where
) -> None:
    """Refuse propensities outside (0, 1] (NaN included) or below `MIN_PSCORE` (where `alive`)."""
    inside = (arr > 0.0) & (arr <= 1.0)
    if alive is None and inside.all() and arr.min() >= MIN_PSCORE:
        return
    alive = np.ones(arr.shape, dtype=bool) if alive is None else alive
    refuse_any(
        name,
        arr,
        [
            (alive & ~inside, "is outside (0, 1]"),
            (
                alive & inside & (arr < MIN_PSCORE),
                f"is below {MIN_PSCORE:g}: its importance weight would overflow",
            ),
        ],
        where,
    )


def dist_where(index: tuple[int, ...]) -> str:
    return f"(row {index[0]}, action {index[1]}, position {index[2]}; 0-based)"


def check_action_dist(name: str, dist: np.ndarray, where: Where = dist_where) -> None:
    """Refuse non-finite or negative probabilities, and distributions over axis 1 not summing to 1."""
    if not (np.isfinite(dist).all() and dist.min() >= 0.0):
        finite = np.isfinite(dist)
        refuse_any(name, dist, [(~finite, "is not finite"), (finite & (dist < 0), "is negative")], where)
    sums = dist.sum(axis=1)  # [n, K]
    off = ~(np.abs(sums - 1.0) <= ACTION_DIST_ATOL)
    if off.any():
        i, k = first_index(off)
        raise FeedbackError(
            f"{name}[{i}, :, {k}] sums to {sums[i, k]:.6g}, not 1 (row {i}, position {k}; 0-based)"
        )


def refuse_unknown(kwargs: Mapping[str, Any], known: Sequence[str], owner: str) -> None:
    """`ArgumentError` for a keyword argument outside `known` (a misspelt name is never silently ignored)."""
    unknown = [key for key in kwargs if key not in known]
    if unknown:
        raise ArgumentError(
            f"{unknown[0]}: unknown argument of {owner} (expected some of: {', '.join(known)})"
        )
