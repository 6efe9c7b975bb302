"""`recsim_env` environments for RLlib env runners (the Gymnasium registry is not visible in Ray workers).

`register(env_id)` registers an env creator under the same id in Ray's registry. Given
`num_envs` (RLlib passes it with `gym_env_vectorize_mode="vector_entry_point"`), the creator returns
the environment's native vector env, e.g. `SeqRecVectorEnv`: one batched call steps all the
runner's users instead of a Python loop over `num_envs_per_env_runner` single envs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

VECTORIZE_MODE = "vector_entry_point"
"""RLlib's `gym_env_vectorize_mode` that hands `num_envs` to the creator (our native vector env)."""


def make_env(env_id: str, config: Mapping[str, Any]):
    """The env `env_id` with `config`; a native vector env of `config["num_envs"]` users when given."""
    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers the environments in this process)

    kwargs = dict(config)
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is None:
        return gym.make(env_id, **kwargs)
    return gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode=VECTORIZE_MODE, **kwargs)


def creator(env_id: str) -> Callable[[Mapping[str, Any]], Any]:
    """An RLlib env creator for `env_id` (picklable to workers: it closes over the id only)."""

    def create(config: Mapping[str, Any]):
        return make_env(env_id, config)

    return create


def register(env_id: str) -> str:
    """Register `env_id` with `ray.tune.registry.register_env`; returns the name to give RLlib."""
    from ray.tune.registry import register_env

    register_env(env_id, creator(env_id))
    return env_id
