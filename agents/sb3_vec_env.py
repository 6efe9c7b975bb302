"""`SeqRecSB3VecEnv`: N users of `SeqRec-v0` as one Stable-Baselines3 `VecEnv`, stepped in one batched call.

SB3's `DummyVecEnv` steps N `gym.make("SeqRec-v0")` environments in a Python loop, each through
Gymnasium's wrappers and SB3's `Monitor`: at 64 or more users that loop, not the world, takes most of
a rollout. This adapter steps the same `recsim_env.envs.core.EpisodeBatch` that `SeqRecVectorEnv`
runs, once per step for all users, and follows SB3's conventions: a finished episode resets in the
same step, its last observation goes to `info["terminal_observation"]`, `info["TimeLimit.truncated"]`
marks a cut that was not the user's choice, and `info["episode"]` holds the return, length and time
(what `Monitor` would have written, for SB3's `ep_rew_mean` logs).

Sub-env i draws its randomness from its own generator seeded `seed + i` (`VecEnv.seed`), as
`make_vec_env(..., seed=seed)` seeds the i-th `SeqRecEnv`, so both step the same users through the
same episodes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn

from recsim_env.envs import SeqRecEnv
from recsim_env.envs.core import EpisodeBatch, check_actions


class SeqRecSB3VecEnv(VecEnv):
    """`num_envs` users of `SeqRec-v0` (keyword arguments `env_config`) behind SB3's `VecEnv` API.

    Args:
        num_envs: users stepped together.
        env_config: `SeqRecEnv` keyword arguments.
    """

    def __init__(self, num_envs: int, env_config: Mapping[str, Any]) -> None:
        prototype = SeqRecEnv(**dict(env_config))
        self.render_mode = None  # read by `VecEnv.__init__` through `get_attr`
        super().__init__(num_envs, prototype.observation_space, prototype.action_space)
        self._config = prototype.config
        self._n_items = prototype.user_model.n_items
        self._batch = EpisodeBatch(prototype.user_model, prototype.config, num_envs)
        self._rngs: list[np.random.Generator] = []
        self._actions: np.ndarray | None = None
        self._episode_return = np.zeros(num_envs)
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._start = time.perf_counter()

    def reset(self) -> VecEnvObs:
        self._rngs = [gym.utils.seeding.np_random(seed)[0] for seed in self._seeds]
        self._reset_seeds()
        self._reset_options()
        self._batch.reset_rows(np.arange(self.num_envs), self._rngs)
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        return self._observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if not self._rngs or self._actions is None:
            raise RuntimeError("call reset() and step_async() before step_wait()")
        slates = check_actions(
            np.asarray(self._actions).reshape(self.num_envs),
            name="actions",
            n_envs=self.num_envs,
            batched=True,
            slate_size=self._config.slate_size,
            n_items=self._n_items,
            space=self.action_space,
        )
        rewards, terminated, truncated, _ = self._batch.step(slates)
        self._episode_return += rewards
        self._episode_length += 1
        dones = terminated | truncated
        observation = self._observation()
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        finished = np.flatnonzero(dones)
        if len(finished):
            elapsed = round(time.perf_counter() - self._start, 6)
            for i in finished:
                infos[i] = {
                    "terminal_observation": {key: value[i].copy() for key, value in observation.items()},
                    "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                    "episode": {
                        "r": float(self._episode_return[i]),
                        "l": int(self._episode_length[i]),
                        "t": elapsed,
                    },
                }
            self._batch.reset_rows(finished, [self._rngs[i] for i in finished])
            self._episode_return[finished] = 0.0
            self._episode_length[finished] = 0
            observation = self._observation()
        self._actions = None
        return observation, rewards.astype(np.float32), dones, infos

    def _observation(self) -> dict[str, np.ndarray]:
        # Fresh arrays: SB3's rollout buffer keeps references to earlier observations.
        return {key: np.array(value) for key, value in self._batch.observation().items()}

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: Any = None, **method_kwargs) -> list[Any]:
        raise NotImplementedError(f"SeqRecSB3VecEnv has no per-user environments to call {method_name!r} on")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)
