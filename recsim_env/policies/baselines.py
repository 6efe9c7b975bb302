"""Log-based reference policies for the `SeqRec` environments, and the `Policy` base they share.

All act on batched observations (each value with a leading N axis) and return `[N, K]` slates.
- `UniformPolicy`: K distinct items uniformly at random.
- `PopularityPolicy`: items sampled in proportion to their logged click counts (without replacement).
- `GreedyPolicy`: oracle-free; the highest logged click-through rate given the category of the
  user's last consumed item, skipping items already in the observed history.

`agents.baselines` exposes them through the `agents.Policy` contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsim_env.checks import check_integer, check_real, describe
from recsim_env.errors import ArgumentError
from recsim_env.world.config import MAX_ITEMS


def one_hot(items: np.ndarray, n_items: int) -> np.ndarray:
    """[N, n_items] float64 distributions with all mass on `items` [N]: a deterministic policy's."""
    out = np.zeros((len(items), n_items))
    out[np.arange(len(items)), items] = 1.0
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[N, K] indices of the k largest scores per row, best first (ties to the lowest index)."""
    if k == 1:
        return np.argmax(scores, axis=1)[:, None]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def sample_without_replacement(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[N, K] items drawn without replacement with probability proportional to exp(log_weights).

    The Gumbel-top-k trick: the top k of log-weights plus Gumbel noise is a Plackett-Luce sample.
    """
    gumbel = -np.log(-np.log(rng.random(log_weights.shape)))
    return top_k(log_weights + gumbel, k)


class Policy:
    """Base of the reference policies: `act(obs, rng, user_state=None) -> [N, K]` slates."""

    name = "policy"
    needs_user_state = False

    def __init__(self, n_items: int, slate_size: int = 1) -> None:
        self.n_items = check_integer("n_items", n_items, 1, MAX_ITEMS)
        self.slate_size = check_integer("slate_size", slate_size, 1, self.n_items)

    def act(self, obs: dict[str, np.ndarray], rng: np.random.Generator, user_state: Any = None) -> np.ndarray:
        raise NotImplementedError


class UniformPolicy(Policy):
    """K distinct items uniformly at random."""

    name = "uniform"

    def act(self, obs, rng, user_state=None):
        n = obs["item_ids"].shape[0]
        return sample_without_replacement(np.zeros((n, self.n_items)), self.slate_size, rng)

    def action_distribution(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, n_items] probability of each item at the first position."""
        return np.full((obs["item_ids"].shape[0], self.n_items), 1.0 / self.n_items)


@dataclass(frozen=True)
class LoggedItemStats:
    """Click statistics of items estimated from logs (the only knowledge of oracle-free policies)."""

    clicks: np.ndarray  # [n_items]
    impressions: np.ndarray  # [n_items]
    category: np.ndarray | None  # [n_items] item category from the item side table, if any
    context_clicks: np.ndarray | None  # [n_categories, n_items] clicks after a click in that category
    context_impressions: np.ndarray | None  # [n_categories, n_items]

    @classmethod
    def from_logs(cls, data, click_column: str = "click") -> LoggedItemStats:
        """Count clicks and impressions per item (and per previous-click category when items have one)."""
        frame = data.frame
        if not isinstance(click_column, str):
            raise ArgumentError(f"click_column must be a column name, got {describe(click_column)}")
        if click_column not in frame.columns:
            raise ArgumentError(
                f"click_column: the logs have no {click_column!r} column; columns: {list(frame.columns)}"
            )
        n_items = data.n_items
        items = frame["item_id"].to_numpy()
        clicks = frame[click_column].to_numpy(dtype=np.float64)
        item_clicks = np.bincount(items, weights=clicks, minlength=n_items)
        impressions = np.bincount(items, minlength=n_items).astype(np.float64)
        category = None
        context_clicks = context_impressions = None
        if data.items is not None and "category" in data.items.columns:
            category = data.items["category"].to_numpy(dtype=np.int64)
            n_categories = int(category.max()) + 1
            # Category of each row's most recent earlier click by the same user (-1: none yet).
            users = frame["user_id"].to_numpy()
            clicked_category = np.where(clicks > 0, category[items], -1)
            previous = _previous_click_context(users, clicked_category)
            seen = previous >= 0
            flat = previous[seen] * n_items + items[seen]
            size = n_categories * n_items
            context_clicks = np.bincount(flat, weights=clicks[seen], minlength=size).reshape(
                n_categories, n_items
            )
            context_impressions = (
                np.bincount(flat, minlength=size).reshape(n_categories, n_items).astype(float)
            )
        return cls(item_clicks, impressions, category, context_clicks, context_impressions)


def _previous_click_context(users: np.ndarray, clicked_category: np.ndarray) -> np.ndarray:
    """For rows sorted by user and time: the category of the user's last click before each row, or -1."""
    index = np.where(clicked_category >= 0, np.arange(len(users)), -1)
    last = np.maximum.accumulate(index)  # last clicked row at or before each row
    previous_row = np.concatenate([[-1], last[:-1]])
    first_row_of_user = np.r_[True, users[1:] != users[:-1]]
    start = np.maximum.accumulate(np.where(first_row_of_user, np.arange(len(users)), 0))
    valid = previous_row >= start
    return np.where(valid, clicked_category[np.maximum(previous_row, 0)], -1)


class PopularityPolicy(Policy):
    """Items sampled in proportion to (logged clicks + 1), without replacement within a slate."""

    name = "popularity"

    def __init__(self, stats: LoggedItemStats, slate_size: int = 1) -> None:
        super().__init__(len(stats.clicks), slate_size)
        self.log_weights = np.log(stats.clicks + 1.0)

    def act(self, obs, rng, user_state=None):
        n = obs["item_ids"].shape[0]
        return sample_without_replacement(
            np.broadcast_to(self.log_weights, (n, self.n_items)), self.slate_size, rng
        )

    def action_distribution(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        p = np.exp(self.log_weights - self.log_weights.max())
        return np.broadcast_to(p / p.sum(), (obs["item_ids"].shape[0], self.n_items)).copy()


class GreedyPolicy(Policy):
    """Oracle-free greedy: the best logged click-through rate in the user's current context.

    The context is the category of the last item the user consumed in the observed history. Rates
    are smoothed toward the item's overall rate (`prior_strength` pseudo-impressions), which is itself
    smoothed toward the global rate. Items in the observed history are skipped, as a deployed system
    would not repeat them.
    """

    name = "greedy"

    def __init__(self, stats: LoggedItemStats, slate_size: int = 1, prior_strength: float = 20.0) -> None:
        super().__init__(len(stats.clicks), slate_size)
        prior_strength = check_real("prior_strength", prior_strength, 0.0)
        global_rate = stats.clicks.sum() / max(stats.impressions.sum(), 1.0)
        self.item_rate = (stats.clicks + prior_strength * global_rate) / (stats.impressions + prior_strength)
        self.category = stats.category
        if stats.context_clicks is not None:
            self.context_rate = (stats.context_clicks + prior_strength * self.item_rate) / (
                stats.context_impressions + prior_strength
            )
        else:
            self.context_rate = None

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, n_items] estimated click-through rates, -inf for items in the observed history."""
        items = obs["item_ids"]
        n = items.shape[0]
        scores = np.broadcast_to(self.item_rate, (n, self.n_items)).copy()
        if self.context_rate is not None:
            clicked = (obs["feedback"][:, :, 0] > 0) & (items < self.n_items)
            has_click = clicked.any(axis=1)
            last = items.shape[1] - 1 - np.argmax(clicked[:, ::-1], axis=1)
            last_item = items[np.arange(n), last]
            rows = np.flatnonzero(has_click)
            scores[rows] = self.context_rate[self.category[last_item[rows]]]
        rows, cols = np.nonzero(items < self.n_items)
        scores[rows, items[rows, cols]] = -np.inf
        return scores

    def act(self, obs, rng, user_state=None):
        return top_k(self.scores(obs), self.slate_size)
