"""`RetrievalVecEnv`: `RetrievalEnv`'s actions and observations for a whole SB3 `VecEnv` at once.

The one batched retrieval per step (a `[B, D] @ [D, n_items]` matmul and a top-k) reads the item
table once for all B users, where B single `RetrievalEnv`s would read it B times. It wraps an SB3
`VecEnv` of plain `SeqRec-v0` envs (`Discrete(n_items)`), maps each sub-env's candidate index to its
item, and converts the raw observations (and the `terminal_observation` SB3 keeps in `info` at an
episode end, for bootstrapping a truncated episode's value) to the ranker's.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.retrieval.candidates import CandidateGenerator
from recsim_env.errors import ArgumentError


class RetrievalVecEnv(VecEnvWrapper):
    """Candidate-index actions `[B]` over a `VecEnv` of `SeqRec-v0` users, one batched retrieval per step.

    Args:
        venv: an SB3 `VecEnv` whose sub-envs are `SeqRecEnv`s over the generator's catalogue.
        generator: the retrieval stage.
    """

    def __init__(self, venv: VecEnv, generator: CandidateGenerator) -> None:
        if (
            not isinstance(venv.action_space, spaces.Discrete)
            or int(venv.action_space.n) != generator.n_items
        ):
            raise ArgumentError(
                f"venv: needs Discrete({generator.n_items}) actions (one item of the index's catalogue), "
                f"got {venv.action_space}"
            )
        super().__init__(
            venv,
            observation_space=generator.observation_space,
            action_space=spaces.Discrete(generator.n_candidates),
        )
        self.generator = generator
        self.candidates = np.zeros((venv.num_envs, generator.n_candidates), np.int64)

    def _observe(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.candidates, ranker_obs = self.generator(obs)
        return ranker_obs

    def reset(self) -> dict[str, np.ndarray]:
        return self._observe(self.venv.reset())

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if (
            len(actions) != self.num_envs
            or (actions < 0).any()
            or (actions >= self.candidates.shape[1]).any()
        ):
            raise ArgumentError(
                f"actions must be {self.num_envs} candidate indices in [0, {self.candidates.shape[1]}), got {actions}"
            )
        self.items = self.candidates[np.arange(self.num_envs), actions]
        self.venv.step_async(self.items)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        if ended:
            terminal = {
                key: np.stack([infos[i]["terminal_observation"][key] for i in ended])
                for key in infos[ended[0]]["terminal_observation"]
            }
            _, ranker_terminal = self.generator(terminal)
            for row, i in enumerate(ended):
                infos[i]["terminal_observation"] = {key: value[row] for key, value in ranker_terminal.items()}
        for i, info in enumerate(infos):
            info["item"] = int(self.items[i])
        return self._observe(obs), rewards, dones, infos
