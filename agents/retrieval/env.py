"""`RetrievalEnv`: a `SeqRec-v0` whose action is one of k retrieved candidates (SB3, RLlib, gymnasium).

The wrapper runs stage one (retrieval, `CandidateGenerator`) inside the environment, so any
algorithm for `Discrete` actions trains the ranker (stage two) on a small, fixed action space:

- Action Space: `Discrete(k)`: the index of the candidate to recommend (for slates of K, the first
  position; the other K - 1 are the best other candidates by the `scorer`'s scores, else by
  retrieval score).
- Observation Space: the generator's `Dict(candidates [k, D + 6], user [D + 4])`
  (`agents.retrieval.candidates`).
- Rewards, Starting State, Episode End: those of the wrapped `SeqRec-v0`; `info["item"]` is the
  catalogue item shown first, `info["slate"]` the slate (K > 1) and `info["candidates"]` the step's
  k candidate ids.

RLlib: `rllib_env_creator` builds it in Ray workers from `{"policy": saved retrieval policy dir,
"env_config": {...}}` (the index, and a learned query and the slate order of the saved ranker, are
read from the policy's tensors) or `{"generator": a CandidateGenerator, ...}`, flattened to one Box
observation for RLlib's default modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from agents.policy import as_batch
from agents.retrieval.candidates import CandidateGenerator, fill_slates
from agents.retrieval.ranker import LiveScorer
from agents.retrieval.vec_env import candidate_scores, slate_size_of
from recsim_env.errors import ActionError, ArgumentError


class RetrievalEnv(gym.Wrapper):
    """A single `SeqRec-v0` whose actions pick among the step's retrieved candidates.

    Args:
        env: a `SeqRecEnv` over the generator's catalogue (`Discrete` items or `MultiDiscrete` slates).
        generator: the retrieval stage.
        scorer: a ranker's query (when learned) and scores (the order of a slate's other items).
    """

    def __init__(self, env: gym.Env, generator: CandidateGenerator, scorer: LiveScorer | None = None) -> None:
        super().__init__(env)
        try:
            self.slate_size = slate_size_of(env.action_space, generator.n_items)
        except ArgumentError as error:
            raise ArgumentError(
                f"RetrievalEnv: the generator's index of {generator.n_items} items: {error}"
            ) from None
        if self.slate_size > generator.distinct_candidates:
            raise ArgumentError(
                f"RetrievalEnv: slates of {self.slate_size} from {generator.distinct_candidates} distinct candidates"
            )
        self.generator = generator
        self.scorer = scorer
        self.action_space = gym.spaces.Discrete(generator.n_candidates)
        self.observation_space = generator.observation_space
        self._candidates = np.zeros(generator.n_candidates, np.int64)
        self._ranker_obs: dict[str, np.ndarray] = {}

    def _observe(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch, _ = as_batch(obs)
        query = self.scorer.query if self.scorer is not None and self.scorer.learned_query else None
        ids, self._ranker_obs = self.generator(batch, query)
        self._candidates = ids[0]
        return {key: value[0] for key, value in self._ranker_obs.items()}

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
        if self.slate_size == 1:
            obs, reward, terminated, truncated, info = self.env.step(item)
            info = {**info, "item": item, "candidates": candidates}
        else:
            scores = candidate_scores(self._ranker_obs, self.scorer, self.generator.dim)
            slate = fill_slates(candidates[None], np.array([int(action)]), scores, self.slate_size)[0]
            obs, reward, terminated, truncated, info = self.env.step(slate)
            info = {**info, "item": item, "slate": slate, "candidates": candidates}
        return self._observe(obs), reward, terminated, truncated, info


def make_retrieval_env(
    generator: CandidateGenerator,
    env_config: Mapping[str, Any] | None = None,
    scorer: LiveScorer | None = None,
) -> RetrievalEnv:
    """`RetrievalEnv(SeqRecEnv(**env_config), generator, scorer)`."""
    from recsim_env.envs import SeqRecEnv

    return RetrievalEnv(SeqRecEnv(**dict(env_config or {})), generator, scorer)


def rllib_env_creator(config: Mapping[str, Any]) -> gym.Env:
    """An RLlib env creator (`ray.tune.registry.register_env("SeqRecRetrieval", rllib_env_creator)`).

    `config`: `env_config` (the `SeqRec-v0` arguments) and either `policy` (a saved retrieval policy
    directory whose index the env uses) or `generator` (a `CandidateGenerator`). The Dict observation is
    flattened to one Box (`gymnasium.wrappers.FlattenObservation`) for RLlib's default modules.
    """
    from gymnasium.wrappers import FlattenObservation

    config = dict(config)
    generator, scorer = config.get("generator"), None
    if generator is None:
        if "policy" not in config:
            raise ArgumentError("rllib env config: give 'policy' (a saved retrieval policy) or 'generator'")
        from agents.retrieval.policy import RetrievalPolicy

        saved = RetrievalPolicy.load(config["policy"])
        generator, scorer = saved.generator, saved.scorer
    return FlattenObservation(make_retrieval_env(generator, config.get("env_config"), scorer))
