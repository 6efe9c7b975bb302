"""Oracles of the ground-truth world: policies that read the user's hidden state.

- `MyopicOracle`: the K items of highest immediate click probability.
- `FarsightedOracle`: trades the click for the user's satisfaction (`p_i + weight E[experience_i]`).

They bound what a policy that sees only the observation can reach; `recsim_env.policies.filter` holds
the reference policies that see only the observation.
"""

from __future__ import annotations

from recsim_env.checks import check_real, describe
from recsim_env.errors import ArgumentError
from recsim_env.policies.baselines import Policy, top_k
from recsim_env.world import UserWorld


class MyopicOracle(Policy):
    """Reads the hidden state: the K items with the highest immediate click probability."""

    name = "myopic-oracle"
    needs_user_state = True

    def __init__(self, world: UserWorld, slate_size: int = 1) -> None:
        _check_world(world)
        super().__init__(world.n_items, slate_size)
        self.world = world

    def act(self, obs, rng, user_state=None):
        return top_k(self.world.click_probabilities(user_state), self.slate_size)


class FarsightedOracle(Policy):
    """Reads the hidden state and keeps the user satisfied, not just clicking.

    The heuristic scores item i by p_i + weight * E[experience_i], with the click probability p_i
    and the expected experience E[experience_i] = p_i (2 c_i - 1) - (1 - p_i) no_click_penalty, where
    c_i is the item's median completion rate. Satisfaction drives both the leave probability and the
    return gap, so protecting it buys longer sessions and quicker returns at a small immediate cost.
    Satiation is already in p_i, which makes the heuristic rotate categories as it goes.
    """

    name = "farsighted-oracle"
    needs_user_state = True

    def __init__(self, world: UserWorld, slate_size: int = 1, weight: float = 0.5) -> None:
        _check_world(world)
        super().__init__(world.n_items, slate_size)
        self.world = world
        self.weight = check_real("weight", weight)

    def act(self, obs, rng, user_state=None):
        p = self.world.click_probabilities(user_state)
        completion = self.world.expected_completion(user_state)
        experience = p * (2.0 * completion - 1.0) - (1.0 - p) * self.world.config.no_click_penalty
        return top_k(p + self.weight * experience, self.slate_size)


def _check_world(world) -> None:
    """Oracles read the world's hidden state: `world` must answer `click_probabilities` (a `UserWorld`)."""
    if not callable(getattr(world, "click_probabilities", None)):
        raise ArgumentError(f"world must be a recsim_env.world.UserWorld, got {describe(world)}")
