"""SeqRec-v0 on large catalogues: the env contract, seeding and memory do not depend on `n_items`."""

from __future__ import annotations

import tracemalloc

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401  (registers the environments)
from recsim_env.envs.core import SLATE_SORT_MAX_ITEMS, SlateSpace
from recsim_env.errors import ArgumentError
from recsim_env.world.config import MAX_ITEMS

LARGE = {"n_items": 20_000, "n_users": 200}


@pytest.mark.parametrize("slate_size", [1, 3])
def test_gymnasium_check_env_on_a_large_catalogue(slate_size):
    env = gym.make("SeqRec-v0", slate_size=slate_size, world_config=LARGE)
    assert env.unwrapped.user_model.warm_start_sampler == "rejection"
    check_env(env.unwrapped, skip_render_check=True)


def test_vector_env_matches_single_envs_on_a_large_catalogue():
    """Sub-env i of a vector env seeded s is a single env seeded s + i, with the rejection sampler too."""
    n_envs, n_steps = 3, 80
    kwargs = dict(slate_size=2, max_steps=10, world_config=LARGE)
    vector = gym.make_vec("SeqRec-v0", num_envs=n_envs, **kwargs)
    singles = [gym.make("SeqRec-v0", **kwargs) for _ in range(n_envs)]
    actions = np.random.default_rng(0).integers(0, LARGE["n_items"], size=(n_steps, n_envs, 2))
    actions[..., 1] = (actions[..., 0] + 1) % LARGE["n_items"]
    vobs, _ = vector.reset(seed=5)
    observations = [env.reset(seed=5 + i)[0] for i, env in enumerate(singles)]
    needs_reset = [False] * n_envs
    resets = 0
    for t in range(n_steps):
        for i, obs in enumerate(observations):
            np.testing.assert_array_equal(vobs["item_ids"][i], obs["item_ids"], err_msg=f"step {t} env {i}")
            np.testing.assert_array_equal(vobs["feedback"][i], obs["feedback"])
        vobs, vreward, vterm, vtrunc, _ = vector.step(actions[t])
        for i, env in enumerate(singles):
            if needs_reset[i]:
                observations[i], needs_reset[i] = env.reset()[0], False
                resets += 1
                continue
            observations[i], reward, term, trunc, _ = env.step(actions[t, i])
            assert vreward[i] == reward and (vterm[i], vtrunc[i]) == (term, trunc)
            needs_reset[i] = term or trunc
    assert resets >= 3  # the check covered warm starts drawn at autoreset


def test_the_table_sampler_is_still_refused_when_its_table_is_over_the_cap():
    world = {"n_items": 100_000, "n_users": 100, "warm_start_sampler": "table"}
    with pytest.raises(ArgumentError, match="num_envs x n_items"):
        gym.make_vec("SeqRec-v0", num_envs=1024, world_config=world)


def test_slate_space_samples_distinct_slates_on_a_large_catalogue():
    space = SlateSpace(MAX_ITEMS, (4096, 5), seed=0)
    slates = space.sample()
    assert slates.shape == (4096, 5) and slates.dtype == np.int64
    assert space.contains(slates)
    assert ((slates >= 0) & (slates < MAX_ITEMS)).all()
    np.testing.assert_array_equal(SlateSpace(MAX_ITEMS, (4096, 5), seed=0).sample(), slates)
    # Uniform over items: every decile of the catalogue gets about a tenth of the draws.
    deciles = np.bincount(slates.ravel() * 10 // MAX_ITEMS, minlength=10) / slates.size
    np.testing.assert_allclose(deciles, 0.1, atol=0.015)
    # Redraws happen: a small catalogue above the sorting threshold repeats items often.
    small = SlateSpace(SLATE_SORT_MAX_ITEMS + 1, (20_000, 20), seed=1)
    assert small.contains(small.sample())
    # A slate of most of the catalogue is sorted, not redrawn (a redraw would hardly ever succeed).
    long = SlateSpace(SLATE_SORT_MAX_ITEMS + 100, (3, SLATE_SORT_MAX_ITEMS), seed=2)
    assert long.contains(long.sample())


@pytest.mark.slow
def test_a_million_item_vector_env_resets_and_steps_in_bounded_memory():
    env = gym.make_vec("SeqRec-v0", num_envs=1024, world_config={"n_items": MAX_ITEMS})
    actions = np.random.default_rng(0).integers(0, MAX_ITEMS, size=(30, 1024))
    env.reset(seed=0)
    tracemalloc.start()
    obs, _ = env.reset(seed=1)
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 2**20  # a [1024, 10^6] table would be 8 GiB
    assert obs["item_ids"].shape == (1024, 20) and (obs["item_ids"] <= MAX_ITEMS).all()
