"""Rollouts of trained Sim2Rec policies: `evaluate` in `SeqRecLTS-v0` (the `lts` front end) and
`evaluate_seqrec` in any `SeqRec-v0` (the `seqrec` front end; the world by default).

The world has no hidden parameters of the set: ORACLE is then told the set's centre (member = the
ensemble mean, 1/K each; every other parameter mid-range); in a simulator set it is told each user's
true parameters.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from agents.sim2rec.config import CONTINUOUS, HIDDEN_KEY
from agents.sim2rec.envs import hidden_vector, make_env, simset_config
from agents.sim2rec.policy import Sim2RecPolicy
from recsim_env.envs.lts import SIM2REC_TEST_DOMAIN
from recsim_env.rollout import StepObserver, VectorStep, run_episodes


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
    engagement = _EpisodeTotals(episodes)
    run_episodes(
        envs,
        act=lambda obs: policy.act(obs, deterministic=deterministic),
        observer=engagement,
        seed=seed,
        n_episodes=episodes,
    )
    envs.close()
    return engagement.totals


class _EpisodeTotals(StepObserver):
    """`evaluate`'s observer: each sub-env's return over its one counted episode."""

    def __init__(self, num_envs: int) -> None:
        self.running = np.zeros(num_envs)
        self.totals = np.zeros(num_envs)

    def on_step(self, step: VectorStep) -> None:
        self.running += np.where(step.live, step.rewards, 0.0)
        self.totals[step.counted] = self.running[step.counted]
        self.running[step.done] = 0.0


class _HiddenParameterPolicy:
    """A Sim2Rec policy given the users' hidden parameters from the environment's `user_state`
    (`needs_user_state`), added to each observation as ORACLE's input (other variants read none)."""

    needs_user_state = True

    def __init__(self, policy: Sim2RecPolicy) -> None:
        self.policy = policy
        self.name = getattr(policy, "name", type(policy).__name__)
        self.n_items = policy.n_items
        self.slate_size = policy.slate_size
        self.n_hidden = getattr(policy.network, "n_hidden", 0)
        self.ranges = simset_config(policy.config).ranges()

    def seed(self, seed: int | None) -> None:
        self.policy.seed(seed)

    def _with_hidden(self, obs, user_state):
        if not self.n_hidden:
            return obs
        parameters = getattr(user_state, "parameters", None)  # the world has none
        n_members = self.n_hidden - len(CONTINUOUS)
        items = np.asarray(obs["item_ids"])
        hidden = hidden_vector(parameters, len(np.atleast_2d(items)), n_members, self.ranges)
        return {**obs, HIDDEN_KEY: hidden[0] if items.ndim == 1 else hidden}

    def act(self, obs, deterministic: bool = False, *, user_state=None):
        return self.policy.act(self._with_hidden(obs, user_state), deterministic=deterministic)

    def action_distribution(self, obs, *, user_state=None) -> np.ndarray:
        return self.policy.action_distribution(self._with_hidden(obs, user_state))


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
    seed, as every `recsim_env.rollout.rollout` (which this is, with the hidden parameters ORACLE reads)."""
    from recsim_env.rollout import rollout

    return rollout(
        _HiddenParameterPolicy(policy),
        n_episodes=n_episodes,
        seed=seed,
        deterministic=deterministic,
        num_envs=num_envs,
        **env_kwargs,
    )
