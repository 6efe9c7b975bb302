"""Reference policies that see only the observation but know the world: the attainable ceiling.

Both read the posterior of `recsim_env.policies.belief.WorldFilter` (the world's equations and
catalogue, the population's law, and the observation window: what an encoder agent sees, with the
world's knowledge added) and act deterministically on it (`act` and `action_distribution` as the
`recsim_env.policies.contract.Policy` contract says; `scores` and `click_probabilities` on a batch):

- `FilterMyopicPolicy`: the K items of highest posterior click probability
  `E[sigmoid(w_aff <u, e_i> + w_cb b_i + b - w_sat s[c_i])]`.
- `FilterFarsightedPolicy`: the far-sighted heuristic of `FarsightedOracle` on the posterior,
  `p_i + weight E[experience_i]`.

`REFERENCE_POLICIES` names them with the two oracles of `recsim_env.policies.oracles`, which read the
hidden state instead; `reference_policy(name, world)` builds one. The gap between a filter policy
and its oracle is the price of not seeing the user; the gap between an agent and a filter policy is
what the agent has yet to learn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsim_env.checks import check_real, describe
from recsim_env.errors import ArgumentError
from recsim_env.policies.baselines import ScoreRankingPolicy
from recsim_env.policies.belief import BeliefConfig, WorldFilter, check_world
from recsim_env.policies.contract import Policy
from recsim_env.policies.oracles import FarsightedOracle, MyopicOracle
from recsim_env.world import UserWorld


class FilterMyopicPolicy(ScoreRankingPolicy):
    """The K items with the highest posterior click probability, from the observation alone.

    Args:
        world: the `UserWorld` whose equations and catalogue the filter knows.
        slate_size: K, items per step (the environment's `slate_size`).
        belief: what the filter reads (`BeliefConfig()`: everything).
    """

    name = "filter-myopic"
    needs_user_state = False

    def __init__(self, world: UserWorld, slate_size: int = 1, belief: BeliefConfig | None = None) -> None:
        check_world(world)
        super().__init__(world.n_items, slate_size)
        if belief is not None and not isinstance(belief, BeliefConfig):
            raise ArgumentError(f"belief must be a BeliefConfig or None, got {describe(belief)}")
        self.world = world
        self.filter = WorldFilter(world, self.slate_size, belief)

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, n_items] the score the policy ranks items by."""
        return self.filter.click_probabilities(obs)

    def click_probabilities(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[N, n_items] posterior probability that each item, shown alone, is clicked."""
        return self.filter.click_probabilities(obs)


class FilterFarsightedPolicy(FilterMyopicPolicy):
    """The far-sighted heuristic on the posterior: items ranked by `p_i + weight E[experience_i]`.

    `E[experience_i] = p_i (2 c_i - 1) - (1 - p_i) no_click_penalty` with the posterior click
    probability `p_i` and median completion `c_i` (`WorldFilter.predict`), averaged over the interest
    mixture. As for `FarsightedOracle`, protecting satisfaction buys longer sessions and quicker
    returns at a small immediate cost.

    Args:
        world: the `UserWorld` whose equations and catalogue the filter knows.
        slate_size: K, items per step.
        weight: the experience weight (>= 0; 0 is `FilterMyopicPolicy`).
        belief: what the filter reads.
    """

    name = "filter-farsighted"

    def __init__(
        self,
        world: UserWorld,
        slate_size: int = 1,
        weight: float = 0.5,
        belief: BeliefConfig | None = None,
    ) -> None:
        super().__init__(world, slate_size, belief)
        self.weight = check_real("weight", weight, 0.0)

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        click, experience = self.filter.predict(self.filter.posterior(obs))
        return click + self.weight * experience


REFERENCE_POLICIES: dict[str, Callable[..., Policy]] = {
    "filter-myopic": FilterMyopicPolicy,
    "filter-farsighted": FilterFarsightedPolicy,
    "myopic-oracle": MyopicOracle,
    "farsighted-oracle": FarsightedOracle,
}
"""The policies that know the world, by name: two that see only the observation, two oracles."""


def reference_policy(name: str, world: UserWorld, slate_size: int = 1) -> Policy:
    """The reference policy `name` (a key of `REFERENCE_POLICIES`) for `world`, with its defaults."""
    if not isinstance(name, str) or name not in REFERENCE_POLICIES:
        raise ArgumentError(
            f"name: unknown reference policy {describe(name)}; the known ones are {sorted(REFERENCE_POLICIES)}"
        )
    check_world(world)
    return REFERENCE_POLICIES[name](world, slate_size)
