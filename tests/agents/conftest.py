"""Shared fixtures of the agents tests: small world logs and a SeqRec observation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import recsim_env  # noqa: F401  (registers SeqRec-v0)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models on a shared 2-core machine: more than one torch thread only spins."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def world_logs():
    from recsim_env.world.logging import log_world

    return log_world("uniform", steps=3000, seed=0, progress=False)


@pytest.fixture(scope="session")
def observations() -> dict[str, np.ndarray]:
    """A batch of 6 observations from the vector env after a few random steps."""
    env = gym.make_vec("SeqRec-v0", num_envs=6, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, *_ = env.step(rng.integers(0, 500, size=6))
    return {key: value.copy() for key, value in obs.items()}
