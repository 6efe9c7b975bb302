"""The vector env starts reset users on a second thread while it steps the others, with the same draws."""

import hashlib

import gymnasium as gym
import numpy as np
import pytest

import recsim_env  # noqa: F401  (registers SeqRec-v0)
from recsim_env.envs.seqrec import SeqRecVectorEnv, uses_concurrent_starts
from recsim_env.errors import ArgumentError
from recsim_env.world import UserWorld, WorldConfig


def _trajectory_hash(concurrent: bool, **kwargs) -> str:
    env = SeqRecVectorEnv(num_envs=96, concurrent_starts=concurrent, **kwargs)
    n_items = env.user_model.n_items
    k = env.config.slate_size
    # Distinct items per slate: k consecutive ids from a random start.
    first = np.random.default_rng(0).integers(0, n_items - k, size=(120, 96))
    actions = first if k == 1 else first[..., None] + np.arange(k)
    digest = hashlib.sha256()
    obs, _ = env.reset(seed=5)
    resets = 0
    for step in range(120):
        obs, rewards, terminated, truncated, info = env.step(actions[step])
        resets += int((terminated | truncated).sum())
        for key in sorted(obs):
            digest.update(np.ascontiguousarray(obs[key]).tobytes())
        for key in sorted(info):
            digest.update(key.encode() + np.ascontiguousarray(info[key]).tobytes())
        digest.update(rewards.tobytes() + terminated.tobytes() + truncated.tobytes())
    assert (env._start_executor is not None) == concurrent
    env.close()
    assert env._start_executor is None
    assert resets > 96  # every sub-env was reset at least once on average
    return digest.hexdigest()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"world_config": {"n_items": 5_000}},  # the rejection sampler
        {
            "slate_size": 3,
            "sessions_per_episode": 2,
            "user_features": True,
            "world_config": {"n_items": 2_000},
        },
    ],
)
def test_concurrent_starts_give_the_same_episodes(kwargs):
    assert _trajectory_hash(True, **kwargs) == _trajectory_hash(False, **kwargs)


def test_the_default_uses_a_second_thread_only_for_large_batches_of_a_model_that_allows_it():
    world = UserWorld(WorldConfig(n_items=5_000))
    assert uses_concurrent_starts(False, world, 1024) is False
    assert uses_concurrent_starts(None, world, 1024) is True
    # The default world's table sampler holds the GIL: it starts users on the stepping thread.
    assert uses_concurrent_starts(None, UserWorld(WorldConfig()), 1024) is False
    assert uses_concurrent_starts(True, world, 2) is True
    assert uses_concurrent_starts(None, world, 8) is False

    class SerialModel:
        pass

    assert uses_concurrent_starts(None, SerialModel(), 1024) is False
    with pytest.raises(ArgumentError, match="prepare_start"):
        uses_concurrent_starts(True, SerialModel(), 1024)


def test_a_bad_concurrent_starts_is_refused_naming_the_argument():
    with pytest.raises(ArgumentError, match="concurrent_starts"):
        SeqRecVectorEnv(num_envs=4, concurrent_starts="yes")


def test_make_vec_passes_concurrent_starts_through():
    env = gym.make_vec("SeqRec-v0", num_envs=4, concurrent_starts=True, world_config={"n_items": 1_000})
    assert env.unwrapped._start_executor is not None
    env.close()
