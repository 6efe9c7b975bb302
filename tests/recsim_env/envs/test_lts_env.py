"""SeqRecLTS-v0: the Gymnasium contract and RecSim's long-term-satisfaction equations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401
from recsim_env.envs.lts import SIM2REC_TEST_DOMAIN, SIM2REC_TRAIN_DOMAINS


def test_check_env():
    check_env(gym.make("SeqRecLTS-v0").unwrapped, skip_render_check=True)


def test_npe_and_satisfaction_follow_the_equations_on_a_hand_computed_trajectory():
    env = gym.make("SeqRecLTS-v0", choc_means=12.0, innovation_std=0.0, time_budget=5)
    obs, info = env.reset(seed=3)
    d, k = info["memory_discount"], info["sensitivity"]
    assert 0.7 <= d <= 0.9 and 0.4 <= k <= 0.6 and info["choc_mean"] == 12.0
    npe = 0.5 / (1 - d)  # NPE_0
    assert info["net_positive_exposure"] == pytest.approx(npe)
    actions = [29, 29, 0, 15, 3]
    for t, action in enumerate(actions):
        c = action / 30
        sat = 1 / (1 + np.exp(-k * npe))  # satisfaction before the step
        obs, reward, terminated, truncated, info = env.step(action)
        expected_engagement = (c * 12.0 + (1 - c) * 4.0) * sat
        assert reward == pytest.approx(expected_engagement, abs=0.06)  # engagement noise std is 0.01
        npe = d * npe - 2 * (c - 0.5)
        assert info["net_positive_exposure"] == pytest.approx(npe)
        assert info["satisfaction"] == pytest.approx(1 / (1 + np.exp(-k * npe)))
        assert obs[1] == pytest.approx(c) and obs[2] == pytest.approx((5 - t - 1) / 5)
        assert terminated == (t == 4) and not truncated


def test_clickbait_pays_now_and_costs_later():
    def total(action):
        env = gym.make("SeqRecLTS-v0", choc_means=6.0, innovation_std=0.0)
        env.reset(seed=0)
        rewards = [env.step(action)[1] for _ in range(140)]
        return rewards[0], sum(rewards)

    first_choc, total_choc = total(29)
    first_kale, total_kale = total(0)
    assert first_choc > first_kale and total_kale > total_choc


def test_domains_are_sampled_from_the_training_set_and_stay_hidden():
    env = gym.make("SeqRecLTS-v0")
    seen = {env.reset(seed=s)[1]["choc_mean"] for s in range(60)}
    assert seen == set(SIM2REC_TRAIN_DOMAINS) and SIM2REC_TEST_DOMAIN not in seen
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3,)


@pytest.mark.parametrize(
    "kwargs", [{"choc_means": []}, {"n_documents": 1}, {"time_budget": 0}, {"sensitivity_range": (0.6, 0.4)}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        gym.make("SeqRecLTS-v0", **kwargs)


def test_invalid_action():
    env = gym.make("SeqRecLTS-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action space"):
        env.step(30)
