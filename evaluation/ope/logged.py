"""Adapter from `recsim_env.data.LoggedInteractions` to the estimators' OBP-named arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recsim_env.data.interactions import LoggedInteractions
from recsim_env.errors import DataError


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


def bandit_feedback(
    logs: LoggedInteractions, *, reward_column: str | None = None, estimate_missing_pscore: bool = False
) -> BanditFeedback:
    """Read OBP-style bandit feedback from a `LoggedInteractions` table.

    Args:
        logs: The log; `item_id` is the action, the optional `position` the slate position and the optional
            `propensity` the logging probability of that item at that position.
        reward_column: Feedback column used as the reward; "click" when present, else the first feedback column.
        estimate_missing_pscore: Without a `propensity` column, use the empirical frequency of each item at
            its position, `count(a, k) / count(k)`, as the logging probability (a non-contextual proxy:
            estimates are then approximate); when False a missing column is an error.

    For slates, OBP's `pscore` is the marginal probability of the item at its position. The log's
    `propensity` column is used as is, so it must hold that marginal; a whole-slate probability (as the
    world's logger writes for slates larger than one) makes the per-position estimators wrong.

    Raises:
        DataError: naming the missing column or the first bad row (1-based data row).
    """
    frame = logs.frame
    if reward_column is None:
        if not logs.feedback_columns:
            raise DataError(f"{logs.name}: the log has no feedback column to use as the reward")
        reward_column = "click" if "click" in logs.feedback_columns else logs.feedback_columns[0]
    if reward_column not in frame.columns:
        raise DataError(
            f"{logs.name}: column {reward_column!r}: reward column not in the log "
            f"(feedback columns: {list(logs.feedback_columns)})"
        )
    reward = frame[reward_column].to_numpy(dtype=np.float64)
    missing = ~np.isfinite(reward)
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise DataError(f"{logs.name}: column {reward_column!r}, row {row} (1-based data row): reward is NaN")
    action = frame["item_id"].to_numpy(dtype=np.int64)
    position = (
        frame["position"].to_numpy(dtype=np.int64)
        if "position" in frame.columns
        else np.zeros(len(frame), np.int64)
    )
    if (position < 0).any():
        row = int(np.flatnonzero(position < 0)[0]) + 1
        raise DataError(f"{logs.name}: column 'position', row {row} (1-based data row): negative position")
    n_positions = int(position.max()) + 1
    if "propensity" in frame.columns:
        pscore = frame["propensity"].to_numpy(dtype=np.float64)
        estimated = False
    elif estimate_missing_pscore:
        pair_counts = np.zeros((logs.n_items, n_positions))
        np.add.at(pair_counts, (action, position), 1.0)
        pscore = pair_counts[action, position] / np.bincount(position, minlength=n_positions)[position]
        estimated = True
    else:
        raise DataError(
            f"{logs.name}: column 'propensity': missing; the log records no logging probabilities "
            "(pass estimate_missing_pscore=True to use empirical item frequencies)"
        )
    return BanditFeedback(reward, action, position, pscore, logs.n_items, n_positions, estimated)
