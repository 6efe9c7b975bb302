"""The data layer's size limits and its checks of id arrays and data-set names: each refusal is an
`ArgumentError` whose message starts with the argument's name (scalar checks: `recsim_env.checks`)."""

from __future__ import annotations

import numpy as np

from recsim_env.checks import describe
from recsim_env.errors import ArgumentError, UnsafePathError

MAX_SEQUENCE_LEN = 1 << 20
"""Largest history length (`max_len`, `history_len`) a call may ask for: far above any real model's."""
MAX_NAME_LEN = 128
"""Longest data-set name (a directory name under the data dir)."""
MAX_BATCH_CELLS = 1 << 28
"""Largest `B * L` a padded batch may hold (2 GiB of int64 item ids), so one argument cannot exhaust memory."""


def int_array_argument(value: object, name: str) -> np.ndarray:
    """`value` as a 1-D int64 array; booleans, fractional floats and strings are refused (never truncated)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "i":
        return value.astype(np.int64, copy=False).reshape(-1)  # the hot path: nothing to check
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ArgumentError(f"{name}: expected integers ({err})") from err
    if arr.dtype.kind == "O" and arr.size:
        try:
            arr = np.asarray(arr.tolist())
        except (TypeError, ValueError, OverflowError) as err:
            raise ArgumentError(f"{name}: expected integers ({err})") from err
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        if np.abs(arr).max() < 2.0**53:
            return arr.astype(np.int64).reshape(-1)
    if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise ArgumentError(f"{name}: value {arr.max()} overflows int64")
    if arr.dtype.kind not in "iu":
        raise ArgumentError(f"{name}: expected integers, got an array of dtype {arr.dtype}")
    return arr.astype(np.int64).reshape(-1)


def dataset_name_argument(value: object, name: str = "name") -> str:
    """`value` as a data-set name that is one plain directory name: refused (`UnsafePathError`) when empty,
    not a string, absolute, holding a path separator (`/`, `\\`), `..`, a NUL or control character or `:`, or
    starting with a dot (hidden, and the prefix of fetch's work folders)."""
    if not isinstance(value, str):
        raise UnsafePathError(f"{name}: expected a data-set name (a string), got {type(value).__name__}")
    if not value:
        raise UnsafePathError(f"{name}: a data-set name cannot be empty")
    if len(value) > MAX_NAME_LEN:
        raise UnsafePathError(
            f"{name}: a data-set name is at most {MAX_NAME_LEN} characters, got {len(value)}"
        )
    if "/" in value or "\\" in value:
        raise UnsafePathError(f"{name} {describe(value)}: a data-set name cannot hold a path separator")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or ":" in value:
        raise UnsafePathError(
            f"{name} {describe(value)}: a data-set name cannot hold NUL, control characters or ':'"
        )
    if ".." in value:
        raise UnsafePathError(f"{name} {describe(value)}: a data-set name cannot hold '..'")
    if value.startswith("."):
        raise UnsafePathError(f"{name} {describe(value)}: a data-set name cannot start with a dot")
    if value != value.strip():
        raise UnsafePathError(
            f"{name} {describe(value)}: a data-set name cannot start or end with white space"
        )
    return value
