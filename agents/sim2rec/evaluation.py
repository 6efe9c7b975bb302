"""Rollouts of trained Sim2Rec policies: `evaluate` in `SeqRecLTS-v0` (the `lts` front end) and
`evaluate_seqrec` in any `SeqRec-v0` (the `seqrec` front end; the world by default).

The world has no hidden parameters of the set: ORACLE is then told the set's centre (member = the
ensemble mean, 1/K each; every other parameter mid-range); in a simulator set it is told each user's
true parameters.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from agents.policy import _RolloutAdapter
from agents.sim2rec.config import CONTINUOUS, HIDDEN_KEY
from agents.sim2rec.envs import hidden_vector, make_env, simset_config
from agents.sim2rec.policy import Sim2RecPolicy
from recsim_env.envs.lts import SIM2REC_TEST_DOMAIN


def evaluate(
    policy: Sim2RecPolicy,
    *,
    choc_mean: float = SIM2REC_TEST_DOMAIN,
    episodes: int = 32,
    seed: int = 10_000,
    deterministic: bool = False,
) -> np.ndarray:
    """Cumulative engagement of `episodes` users of domain `choc_mean` (held-out 14 by default).

    Policies act stochastically by default, as they were trained: in this environment the best
    behaviour mixes clickbait and wholesome documents, and a mixture's argmax is another policy.
    """
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(policy.config, choc_mean) for _ in range(episodes)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs, _ = envs.reset(seed=seed)
    totals = np.zeros(episodes)
    finished = np.zeros(episodes, dtype=bool)
    while not finished.all():
        obs, reward, terminated, truncated, _ = envs.step(policy.act(obs, deterministic=deterministic))
        totals += np.where(finished, 0.0, reward)
        finished |= terminated | truncated
    envs.close()
    return totals


class _SeqRollout(_RolloutAdapter):
    """The `agents.rollout_policy` adapter, which also hands ORACLE its users' hidden parameters."""

    needs_user_state = True

    def __init__(self, policy: Sim2RecPolicy, deterministic: bool) -> None:
        super().__init__(policy, deterministic)
        self.n_hidden = getattr(policy.network, "n_hidden", 0)
        self.ranges = simset_config(policy.config).ranges()

    def act(self, obs, rng, user_state=None) -> np.ndarray:
        if self.n_hidden:
            parameters = getattr(user_state, "parameters", None)  # the world has none
            n_members = self.n_hidden - len(CONTINUOUS)
            obs = {**obs, HIDDEN_KEY: hidden_vector(parameters, len(obs["item_ids"]), n_members, self.ranges)}
        return super().act(obs, rng)

def evaluate_seqrec(
    policy: Sim2RecPolicy,
    *,
    n_episodes: int,
    seed: int = 10_000,
    deterministic: bool = False,
    num_envs: int = 64,
    **env_kwargs,
):
    """`recsim_env.rollout.RolloutStats` of `n_episodes` episodes of `SeqRec-v0` with `env_kwargs`:
    the ground-truth world by default, or e.g. `user_model=simulator_set(config)`. Reproducible for a
    seed, as `agents.rollout_policy` (which this is, plus the hidden parameters ORACLE reads)."""
    from recsim_env.rollout import rollout

    policy.seed(seed)
    torch.manual_seed(seed)
    adapter = _SeqRollout(policy, deterministic)
    num_envs = min(num_envs, n_episodes)  # see `agents.rollout_policy`
    return rollout(adapter, n_episodes=n_episodes, seed=seed, num_envs=num_envs, **env_kwargs)
