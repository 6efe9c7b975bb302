"""Adapter from `recsim_env.data.LoggedInteractions` to the estimators' OBP-named arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from evaluation.ope.checks import MAX_ABS_VALUE, MIN_PSCORE
from recsim_env.checks import check_bool
from recsim_env.data.interactions import LoggedInteractions
from recsim_env.errors import ArgumentError, DataError


class BanditFeedback(NamedTuple):
    """Logged bandit feedback as OBP-named arrays, one entry per row of `LoggedInteractions.frame`."""

    reward: np.ndarray  # [n] float64
    action: np.ndarray  # [n] int64 item index
    position: np.ndarray  # [n] int64 slate position (zeros when the log has none)
    pscore: np.ndarray  # [n] float64 logging probability of (action, position)
    n_actions: int
    """Catalogue size N (the log's item map, items nobody interacted with included)."""
    n_positions: int
    """Slate size K (1 + the largest logged position)."""
    pscore_estimated: bool
    """True when the log had no propensities and `pscore` is the empirical (item, position) frequency."""

    def as_kwargs(self) -> dict[str, np.ndarray]:
        """`reward`, `action`, `position`, `pscore` for an estimator call."""
        return {
            "reward": self.reward,
            "action": self.action,
            "position": self.position,
            "pscore": self.pscore,
        }

    def take(self, rows: np.ndarray) -> BanditFeedback:
        """The feedback restricted to `rows` (e.g. a subsample)."""
        return self._replace(
            reward=self.reward[rows],
            action=self.action[rows],
            position=self.position[rows],
            pscore=self.pscore[rows],
        )


def _where(source: str, column: str, bad: np.ndarray) -> str:
    row = int(np.argmax(bad)) + 1
    return f"{source}: column {column!r}, row {row} (1-based data row, in the log's (user, timestamp) order)"


def bandit_feedback(
    logs: LoggedInteractions,
    *,
    reward_column: str | None = None,
    estimate_missing_pscore: bool = False,
    source: str | None = None,
) -> BanditFeedback:
    """Read OBP-style bandit feedback from a `LoggedInteractions` table, checking every row.

    Args:
        logs: The log; `item_id` is the action, the optional `position` the slate position and the optional
            `propensity` the logging probability of that item at that position.
        reward_column: Feedback column used as the reward; "click" when present, else the first feedback column.
        estimate_missing_pscore: Without a `propensity` column, use the empirical frequency of each item at
            its position, `count(a, k) / count(k)`, as the logging probability (a non-contextual proxy:
            estimates are then approximate); when False a missing column is an error.
        source: What to name in error messages (the log's file); `logs.name` when None.

    For slates, OBP's `pscore` is the marginal probability of the item at its position. The log's
    `propensity` column is used as is, so it must hold that marginal; a whole-slate probability (as the
    world's logger writes for slates larger than one) makes the per-position estimators wrong.

    Every row is checked (a caller that subsamples afterwards cannot skip a bad one): rewards finite and at
    most `MAX_ABS_VALUE` in magnitude, items inside the catalogue, positions non-negative, propensities in
    `[MIN_PSCORE, 1]`.

    Raises:
        DataError: naming the source, the column and the first bad row (1-based data row of `logs.frame`).
        ArgumentError: for a bad `reward_column`, `estimate_missing_pscore` or `source`.
    """
    if not isinstance(logs, LoggedInteractions):
        raise ArgumentError(f"logs: expected a LoggedInteractions table, got {type(logs).__name__}")
    if reward_column is not None and not isinstance(reward_column, str):
        raise ArgumentError(f"reward_column: expected a column name, got {type(reward_column).__name__}")
    check_bool("estimate_missing_pscore", estimate_missing_pscore)
    if source is not None and not isinstance(source, str):
        raise ArgumentError(f"source: expected a string, got {type(source).__name__}")
    name = logs.name if source is None else source
    frame = logs.frame
    if len(frame) == 0:
        raise DataError(f"{name}: the log has no rows: there is nothing to evaluate")
    if reward_column is None:
        if not logs.feedback_columns:
            raise DataError(f"{name}: the log has no feedback column to use as the reward")
        reward_column = "click" if "click" in logs.feedback_columns else logs.feedback_columns[0]
    if reward_column not in frame.columns:
        raise DataError(
            f"{name}: column {reward_column!r}: reward column not in the log "
            f"(feedback columns: {list(logs.feedback_columns)})"
        )
    if reward_column not in logs.feedback_columns:
        raise DataError(
            f"{name}: column {reward_column!r}: not a feedback column, so not a reward "
            f"(feedback columns: {list(logs.feedback_columns)})"
        )
    reward = _numeric(frame, reward_column, name)
    missing = ~np.isfinite(reward)
    if missing.any():
        raise DataError(f"{_where(name, reward_column, missing)}: reward is NaN or infinite")
    huge = np.abs(reward) > MAX_ABS_VALUE
    if huge.any():
        raise DataError(f"{_where(name, reward_column, huge)}: reward exceeds {MAX_ABS_VALUE:g} in magnitude")
    action = _integers(frame, "item_id", name)
    outside = (action < 0) | (action >= logs.n_items)
    if outside.any():
        raise DataError(
            f"{_where(name, 'item_id', outside)}: item index outside the catalogue [0, {logs.n_items})"
        )
    position = (
        _integers(frame, "position", name) if "position" in frame.columns else np.zeros(len(frame), np.int64)
    )
    if (position < 0).any():
        raise DataError(f"{_where(name, 'position', position < 0)}: negative position")
    n_positions = int(position.max()) + 1
    if "propensity" in frame.columns:
        pscore = _numeric(frame, "propensity", name)
        outside = ~((pscore >= MIN_PSCORE) & (pscore <= 1.0))  # NaN included
        if outside.any():
            value = float(pscore[int(np.argmax(outside))])
            raise DataError(
                f"{_where(name, 'propensity', outside)}: propensity {value!r} is outside (0, 1]"
                + (f" (below {MIN_PSCORE:g})" if 0.0 < value < MIN_PSCORE else "")
            )
        estimated = False
    elif estimate_missing_pscore:
        pair_counts = np.zeros((logs.n_items, n_positions))
        np.add.at(pair_counts, (action, position), 1.0)
        pscore = pair_counts[action, position] / np.bincount(position, minlength=n_positions)[position]
        estimated = True
    else:
        raise DataError(
            f"{name}: column 'propensity': missing; the log records no logging probabilities "
            "(pass estimate_missing_pscore=True to use empirical item frequencies)"
        )
    return BanditFeedback(reward, action, position, pscore, logs.n_items, n_positions, estimated)


def _numeric(frame, column: str, name: str) -> np.ndarray:
    """A numeric (or boolean) column as float64; strings and objects are refused."""
    values = frame[column].to_numpy()
    if values.dtype.kind not in "biuf":
        raise DataError(f"{name}: column {column!r}: expected numbers, got dtype {values.dtype}")
    return values.astype(np.float64)


def _integers(frame, column: str, name: str) -> np.ndarray:
    """An integer column as int64; floats, bools and strings are refused (indices are never truncated)."""
    values = frame[column].to_numpy()
    if values.dtype.kind not in "iu":
        raise DataError(f"{name}: column {column!r}: expected integer indices, got dtype {values.dtype}")
    return values.astype(np.int64)
