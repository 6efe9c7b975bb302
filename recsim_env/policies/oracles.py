"""Oracles of the ground-truth world: policies that read the user's hidden state.

- `MyopicOracle`: the K items of highest immediate click probability.
- `FarsightedOracle`: trades the click for the user's satisfaction (`p_i + weight E[experience_i]`).

Both are deterministic and set `needs_user_state`: `act` and `action_distribution` take the
environment's `user_state` (for the whole batch), which every rollout loop passes to them alone.
They bound what a policy that sees only the observation can reach; `recsim_env.policies.filter` holds
the reference policies that see only the observation.
"""

from __future__ import annotations

import numpy as np

from recsim_env.checks import check_real, describe
from recsim_env.errors import ArgumentError
from recsim_env.policies.baselines import ScoreRankingPolicy
from recsim_env.world import UserWorld


class _Oracle(ScoreRankingPolicy):
    """An oracle: the K best items by `scores(user_state)`, whatever `deterministic` says."""

    needs_user_state = True

    def __init__(self, world: UserWorld, slate_size: int = 1) -> None:
        _check_world(world)
        super().__init__(world.n_items, slate_size)
        self.world = world

    def scores(self, user_state) -> np.ndarray:
        """[N, n_items] the score the oracle ranks items by."""
        raise NotImplementedError

    def ranking_scores(self, batch, user_state):
        return self.scores(user_state)


class MyopicOracle(_Oracle):
    """Reads the hidden state: the K items with the highest immediate click probability."""

    name = "myopic-oracle"

    def scores(self, user_state) -> np.ndarray:
        return self.world.click_probabilities(user_state)


class FarsightedOracle(_Oracle):
    """Reads the hidden state and keeps the user satisfied, not just clicking.

    The heuristic scores item i by p_i + weight * E[experience_i], with the click probability p_i
    and the expected experience E[experience_i] = p_i (2 c_i - 1) - (1 - p_i) no_click_penalty, where
    c_i is the item's median completion rate. Satisfaction drives both the leave probability and the
    return gap, so protecting it buys longer sessions and quicker returns at a small immediate cost.
    Satiation is already in p_i, which makes the heuristic rotate categories as it goes.
    """

    name = "farsighted-oracle"

    def __init__(self, world: UserWorld, slate_size: int = 1, weight: float = 0.5) -> None:
        super().__init__(world, slate_size)
        self.weight = check_real("weight", weight)

    def scores(self, user_state) -> np.ndarray:
        p = self.world.click_probabilities(user_state)
        completion = self.world.expected_completion(user_state)
        experience = p * (2.0 * completion - 1.0) - (1.0 - p) * self.world.config.no_click_penalty
        return p + self.weight * experience


def _check_world(world) -> None:
    """Oracles read the world's hidden state: `world` must answer `click_probabilities` (a `UserWorld`)."""
    if not callable(getattr(world, "click_probabilities", None)):
        raise ArgumentError(f"world must be a recsim_env.world.UserWorld, got {describe(world)}")
