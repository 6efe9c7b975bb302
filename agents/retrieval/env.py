"""`RetrievalEnv`: a `SeqRec-v0` whose action is one of k retrieved candidates (SB3, RLlib, gymnasium).

The wrapper runs stage one (retrieval, `CandidateGenerator`) inside the environment, so any
algorithm for `Discrete` actions trains the ranker (stage two) on a small, fixed action space:

- Action Space: `Discrete(k)`: the index of the candidate to recommend.
- Observation Space: the generator's `Dict(candidates [k, D + 6], user [D + 4])`
  (`agents.retrieval.candidates`).
- Rewards, Starting State, Episode End: those of the wrapped `SeqRec-v0`; `info["item"]` is the
  catalogue item shown and `info["candidates"]` the step's k candidate ids.

RLlib: `rllib_env_creator` builds it in Ray workers from `{"policy": saved retrieval policy dir,
"env_config": {...}}` (the index is read from the policy's tensors) or `{"generator": a
CandidateGenerator, ...}`, flattened to one Box observation for RLlib's default modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from agents.policy import as_batch
from agents.retrieval.candidates import CandidateGenerator
from recsim_env.errors import ActionError, ArgumentError


class RetrievalEnv(gym.Wrapper):
    """A single `SeqRec-v0` (slate_size 1) whose actions pick among the step's retrieved candidates.

    Args:
        env: a `SeqRecEnv` with `Discrete(n_items)` actions.
        generator: the retrieval stage over the env's catalogue.
    """

    def __init__(self, env: gym.Env, generator: CandidateGenerator) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ArgumentError(
                f"RetrievalEnv needs a one-item env (Discrete actions), got {env.action_space}"
            )
        if int(env.action_space.n) != generator.n_items:
            raise ArgumentError(
                f"generator: an index of {generator.n_items} items for an env of {int(env.action_space.n)}"
            )
        self.generator = generator
        self.action_space = gym.spaces.Discrete(generator.n_candidates)
        self.observation_space = generator.observation_space
        self._candidates = np.zeros(generator.n_candidates, np.int64)

    def _observe(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch, _ = as_batch(obs)
        ids, ranker_obs = self.generator(batch)
        self._candidates = ids[0]
        return {key: value[0] for key, value in ranker_obs.items()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs), info

    def step(self, action: Any):
        if isinstance(action, np.ndarray) and action.ndim == 0:
            action = action.item()
        if (
            isinstance(action, (bool, np.bool_))
            or not isinstance(action, (int, np.integer))
            or not (0 <= int(action) < len(self._candidates))
        ):
            raise ActionError(f"action {action!r} is not a candidate index in [0, {len(self._candidates)})")
        item = int(self._candidates[int(action)])
        candidates = self._candidates
        obs, reward, terminated, truncated, info = self.env.step(item)
        info = {**info, "item": item, "candidates": candidates}
        return self._observe(obs), reward, terminated, truncated, info


def make_retrieval_env(
    generator: CandidateGenerator, env_config: Mapping[str, Any] | None = None
) -> RetrievalEnv:
    """`RetrievalEnv(SeqRecEnv(**env_config), generator)`."""
    from recsim_env.envs import SeqRecEnv

    return RetrievalEnv(SeqRecEnv(**dict(env_config or {})), generator)


def rllib_env_creator(config: Mapping[str, Any]) -> gym.Env:
    """An RLlib env creator (`ray.tune.registry.register_env("SeqRecRetrieval", rllib_env_creator)`).

    `config`: `env_config` (the `SeqRec-v0` arguments) and either `policy` (a saved retrieval policy
    directory whose index the env uses) or `generator` (a `CandidateGenerator`). The Dict observation is
    flattened to one Box (`gymnasium.wrappers.FlattenObservation`) for RLlib's default modules.
    """
    from gymnasium.wrappers import FlattenObservation

    config = dict(config)
    generator = config.get("generator")
    if generator is None:
        if "policy" not in config:
            raise ArgumentError("rllib env config: give 'policy' (a saved retrieval policy) or 'generator'")
        from agents.retrieval.policy import RetrievalPolicy

        generator = RetrievalPolicy.load(config["policy"]).generator
    return FlattenObservation(make_retrieval_env(generator, config.get("env_config")))
