"""Log-based reference policies for the `SeqRec` environments, and `ReferencePolicy`, the base of
every reference policy (the `recsim_env.policies.contract.Policy` contract over a batched rule).

- `UniformPolicy`: K distinct items uniformly at random.
- `PopularityPolicy`: items sampled in proportion to their logged click counts (without replacement).
- `GreedyPolicy`: oracle-free; the highest logged click-through rate given the category of the
  user's last consumed item, skipping items already in the observed history.

`agents.baselines` adds their persistence (`save`, `load`: `agents.policy.SavablePolicy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsim_env.checks import check_integer, check_real, describe
from recsim_env.errors import ArgumentError
from recsim_env.policies.contract import (
    as_batch,
    one_hot,
    sample_slates,
    sample_without_replacement,
    top_k,
    unbatch_action,
    unbatch_probabilities,
)
from recsim_env.world.config import MAX_ITEMS


class ReferencePolicy:
    """Base of the reference policies: the `Policy` contract over a batched rule.

    A subclass implements `slates(batch, deterministic, user_state)` ([N, K] items) and
    `probabilities(batch, user_state)` ([N, n_items] first-position probabilities) for a batched
    observation; this base accepts single observations, shapes the answer, and owns the generator
    (`self.rng`, reset by `seed`) that stochastic rules draw from. A subclass that reads the hidden
    state sets `needs_user_state = True` and is refused a call without `user_state`.

    Args:
        n_items: catalogue size N.
        slate_size: K, items per step.
        seed: seed of the sampling generator.
    """

    name = "policy"
    needs_user_state = False

    def __init__(self, n_items: int, slate_size: int = 1, *, seed: int | None = 0) -> None:
        self.n_items = check_integer("n_items", n_items, 1, MAX_ITEMS)
        self.slate_size = check_integer("slate_size", slate_size, 1, self.n_items)
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the sampling generator."""
        self.rng = np.random.default_rng(seed)

    def act(
        self, obs: Mapping[str, np.ndarray], deterministic: bool = False, *, user_state: Any = None
    ) -> Any:
        """Items for one observation (int, or [K]) or a batch ([N], or [N, K])."""
        batch, single = as_batch(obs)
        slates = self.slates(batch, deterministic, self._user_state(user_state))
        return unbatch_action(slates, single, self.slate_size)

    def action_distribution(self, obs: Mapping[str, np.ndarray], *, user_state: Any = None) -> np.ndarray:
        """Probabilities of the first slate item: [n_items], or [N, n_items] for a batch."""
        batch, single = as_batch(obs)
        return unbatch_probabilities(self.probabilities(batch, self._user_state(user_state)), single)

    def slates(self, batch: dict[str, np.ndarray], deterministic: bool, user_state: Any) -> np.ndarray:
        """[N, K] items for a batched observation."""
        raise NotImplementedError

    def probabilities(self, batch: dict[str, np.ndarray], user_state: Any) -> np.ndarray:
        """[N, n_items] first-position probabilities for a batched observation."""
        raise NotImplementedError

    def _user_state(self, user_state: Any) -> Any:
        if self.needs_user_state and user_state is None:
            raise ArgumentError(
                f"user_state: {self.name} reads the user's hidden state; pass the environment's user_state"
            )
        return user_state


class ScoreRankingPolicy(ReferencePolicy):
    """Base of the reference policies that show the K best items of a score array, whatever
    `deterministic` says; the first-position distribution is one-hot on the best item.

    A subclass implements `scores(obs)` (`[N, n_items]` for a batched observation, -inf for an item
    never to show), or overrides `ranking_scores` to rank by something else (the hidden state).
    """

    def ranking_scores(self, batch: dict[str, np.ndarray], user_state: Any) -> np.ndarray:
        """[N, n_items] the scores items are ranked by: `self.scores(batch)`."""
        return self.scores(batch)

    def slates(self, batch, deterministic, user_state):
        """[N, K] the K best-scored items, best first."""
        return top_k(self.ranking_scores(batch, user_state), self.slate_size)

    def probabilities(self, batch, user_state):
        """[N, n_items] one-hot on the item the policy puts first."""
        return one_hot(top_k(self.ranking_scores(batch, user_state), 1)[:, 0], self.n_items)


class UniformPolicy(ReferencePolicy):
    """K distinct items uniformly at random (deterministic: items 0..K-1, ties to the lowest index)."""

    name = "uniform"

    def slates(self, batch, deterministic, user_state):
        if deterministic:
            return sample_slates(self.probabilities(batch, user_state), self.slate_size, self.rng, True)
        n = batch["item_ids"].shape[0]
        return sample_without_replacement(np.zeros((n, self.n_items)), self.slate_size, self.rng)

    def probabilities(self, batch, user_state):
        return np.full((batch["item_ids"].shape[0], self.n_items), 1.0 / self.n_items)


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


class PopularityPolicy(ReferencePolicy):
    """Items sampled in proportion to (logged clicks + 1), without replacement within a slate
    (deterministic: the K most clicked items).

    Args:
        stats: the click statistics it was fitted on.
        slate_size: K.
        seed: seed of the sampling generator.
    """

    name = "popularity"

    def __init__(self, stats: LoggedItemStats, slate_size: int = 1, *, seed: int | None = 0) -> None:
        super().__init__(len(stats.clicks), slate_size, seed=seed)
        self.stats = stats
        self.log_weights = np.log(stats.clicks + 1.0)

    def slates(self, batch, deterministic, user_state):
        if deterministic:
            return sample_slates(self.probabilities(batch, user_state), self.slate_size, self.rng, True)
        n = batch["item_ids"].shape[0]
        return sample_without_replacement(
            np.broadcast_to(self.log_weights, (n, self.n_items)), self.slate_size, self.rng
        )

    def probabilities(self, batch, user_state):
        p = np.exp(self.log_weights - self.log_weights.max())
        return np.broadcast_to(p / p.sum(), (batch["item_ids"].shape[0], self.n_items)).copy()


class GreedyPolicy(ScoreRankingPolicy):
    """Oracle-free greedy: the best logged click-through rate in the user's current context.

    The context is the category of the last item the user consumed in the observed history. Rates
    are smoothed toward the item's overall rate (`prior_strength` pseudo-impressions), which is itself
    smoothed toward the global rate. Items in the observed history are skipped, as a deployed system
    would not repeat them. Deterministic: `deterministic` and `seed` change nothing.

    Args:
        stats: the click statistics it was fitted on.
        slate_size: K.
        prior_strength: pseudo-impressions of the smoothing (>= 0).
        seed: unused (the `Policy` contract's generator).
    """

    name = "greedy"

    def __init__(
        self,
        stats: LoggedItemStats,
        slate_size: int = 1,
        prior_strength: float = 20.0,
        *,
        seed: int | None = 0,
    ) -> None:
        super().__init__(len(stats.clicks), slate_size, seed=seed)
        self.stats = stats
        self.prior_strength = prior_strength = check_real("prior_strength", prior_strength, 0.0)
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
